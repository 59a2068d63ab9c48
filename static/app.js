// duoduel page logic: Start, the WebSocket to the server, the call controls, private rooms.
//
// The protocol is in the README (Protocol): text frames are JSON control messages, binary frames
// are audio for session.receive(). Everything here runs on the main thread; audio lives in audio.js.

import { startAudio } from './audio.js';
import { meterValue, mouthToEar } from './figures.js';
import { qrMatrix, svgElement } from './qr.js';
import { newRoomName, reconnectDelay, roomFromLocation, roomUrl, wsUrl } from './room.js';

const PING_INTERVAL_MS = 2000;
const AUTO_NEXT_MS = 1500; // in the lobby, how long "Partner left" shows before we look for someone new
const STATS_INTERVAL_MS = 500;
// Audio frames queued in the socket beyond this are dropped: late audio is worse than lost audio.
const MAX_BUFFERED_BYTES = 32 * 1024;

const MESSAGES = {
  micBlocked: 'Microphone blocked: allow it in the address bar, then press Start again.',
  noMic: 'No microphone found: plug one in or turn it on in your system settings, then press Start again.',
  micBusy: 'Microphone busy: close other apps or tabs that use it, then press Start again.',
  noWebSocket: 'This browser cannot open WebSockets: use a current Chrome, Firefox or Safari.',
  roomFull: 'This room already has two people in it: create a new private room, or go back to the lobby.',
};

const $ = (id) => document.getElementById(id);
const els = {
  status: $('status'),
  error: $('error'),
  start: $('start'),
  mute: $('mute'),
  next: $('next'),
  micMeter: $('mic-meter'),
  micLabel: $('mic-label'),
  partnerMeter: $('partner-meter'),
  headphonesHint: $('headphones-hint'),
  stats: $('stats'),
  createRoom: $('create-room'),
  copyLink: $('copy-link'),
  roomIntro: $('room-intro'),
  roomPanel: $('room-panel'),
  roomLink: $('room-link'),
  roomNote: $('room-note'),
  qr: $('qr'),
  lobbyLine: $('lobby-line'),
  lobbyLink: $('lobby-link'),
};

let session = null; // the audio session, after Start
let ws = null; // the current WebSocket; handlers of a replaced socket check `ws !== socket` and do nothing
let room = null; // private room name, or null for the lobby
let badRoom = false; // the page URL names an invalid room: Start waits until the user picks another
let state = 'Press Start to talk';
let paired = false;
let partnerLeft = false; // in a room: the partner left and we wait for them (or someone) again
let roomFull = false; // the server refused us: never reconnect on our own
let muted = false;
let attempt = 0; // reconnect attempts since the server last spoke to us
let rttMs = null;
let reconnectTimer = 0;
let autoNextTimer = 0;
let pingTimer = 0;

// Status and errors.

function setStatus(text, kind) {
  state = text;
  els.status.textContent = text;
  els.status.dataset.state = kind;
}

let errorKind = null; // what the shown error is about, so fixing one thing clears only its error

function showError(text, kind = 'other') {
  errorKind = kind;
  els.error.textContent = text;
  els.error.hidden = false;
}

function clearError(kind = null) {
  if (kind !== null && kind !== errorKind) return;
  errorKind = null;
  els.error.textContent = '';
  els.error.hidden = true;
}

function insecureMessage() {
  // duoduel.py serves HTTP on 8080 and HTTPS on 8443 by default.
  const host = location.port === '8080' ? `${location.hostname}:8443` : location.host;
  return `This page needs HTTPS on other machines: open https://${host}${location.pathname} ` +
    '(run the server with --https).';
}

/** One line telling the user what to do about a startAudio() failure. */
function startErrorMessage(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return MESSAGES.micBlocked;
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return MESSAGES.noMic;
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return MESSAGES.micBusy;
    case 'InsecureContextError':
      return insecureMessage();
    default:
      return `Could not start the audio (${(err && (err.message || err.name)) || 'unknown error'}): ` +
        'reload the page and press Start again.';
  }
}

// The call.

function setMuted(value) {
  muted = value;
  if (session) session.setMuted(muted);
  els.mute.setAttribute('aria-pressed', String(muted));
  els.micLabel.textContent = muted ? 'You (muted)' : 'You';
}

function setPaired(value) {
  paired = value;
  els.headphonesHint.hidden = !paired;
  if (session) session.resetPartner();
}

function sendFrame(frame) {
  if (paired && ws && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < MAX_BUFFERED_BYTES) {
    ws.send(frame);
  }
}

function sendControl(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function ping() {
  sendControl({ type: 'ping', t: performance.now() });
}

function next() {
  clearTimeout(autoNextTimer);
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  partnerLeft = false;
  setPaired(false);
  sendControl({ type: 'next' });
  setStatus('Waiting for a partner…', 'waiting');
}

function onControl(message) {
  switch (message.type) {
    case 'waiting':
      attempt = 0;
      if (paired) setPaired(false);
      setStatus(partnerLeft ? 'Partner left. Waiting for a partner…' : 'Waiting for a partner…', 'waiting');
      break;
    case 'connected':
      attempt = 0;
      clearTimeout(autoNextTimer);
      partnerLeft = false;
      setPaired(true);
      setStatus('Connected', 'connected');
      break;
    case 'disconnected':
      setPaired(false);
      setStatus('Partner left', 'left');
      if (room === null) {
        // The server leaves us out of the queue after a partner leaves the lobby: ask again.
        clearTimeout(autoNextTimer);
        autoNextTimer = setTimeout(next, AUTO_NEXT_MS);
      } else {
        partnerLeft = true; // the server puts us back in the room and says "waiting" right away
      }
      break;
    case 'error':
      if (message.reason === 'room full') {
        onRoomFull();
      } else {
        console.warn('duoduel: server refused a message:', message.reason);
      }
      break;
    case 'moved':
      if (typeof message.url === 'string') moveTo(message.url);
      break;
    case 'pong':
      if (typeof message.t === 'number') rttMs = performance.now() - message.t;
      break;
    default:
      console.warn('duoduel: unknown message type', message.type);
  }
}

function onRoomFull() {
  roomFull = true;
  setStatus('Room full', 'full');
  showError(MESSAGES.roomFull, 'room');
  els.start.textContent = 'Try again';
  els.start.disabled = false;
  els.start.hidden = false;
  renderRoom();
}

function retryRoom() {
  if (!roomFull) return;
  hideTryAgain();
  clearError('room');
  reconnectNow();
}

function hideTryAgain() {
  if (session) els.start.hidden = true;
}

// The connection.

function connect(url = wsUrl(location, room)) {
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  let socket;
  try {
    socket = new WebSocket(url);
  } catch (err) {
    showError(`Cannot connect to the server (${err.message}): reload the page.`);
    return;
  }
  socket.binaryType = 'arraybuffer';
  ws = socket;
  setStatus(attempt === 0 ? 'Connecting…' : 'Reconnecting…', 'connecting');

  socket.addEventListener('open', () => {
    if (ws !== socket) return;
    els.next.disabled = false;
    ping();
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_INTERVAL_MS);
  });
  socket.addEventListener('message', (event) => {
    if (ws !== socket) return;
    if (typeof event.data !== 'string') {
      if (paired && session) session.receive(event.data);
      return;
    }
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      console.warn('duoduel: not JSON from the server:', event.data);
      return;
    }
    if (message && typeof message.type === 'string') onControl(message);
  });
  socket.addEventListener('close', (event) => {
    if (ws !== socket) return;
    onClose(event);
  });
}

/** The current socket is gone (or being dropped): stop its timers and end the call. */
function forgetSocket() {
  ws = null;
  clearInterval(pingTimer);
  clearTimeout(autoNextTimer);
  rttMs = null;
  setPaired(false);
  els.next.disabled = true;
}

function onClose(event) {
  forgetSocket();
  if (event.code === 1008 && event.reason === 'room full') roomFull = true;
  if (roomFull) {
    onRoomFull();
    return;
  }
  if (!session) return;
  const delay = reconnectDelay(attempt++);
  setStatus(`Reconnecting… (connection lost, trying again in ${Math.ceil(delay / 1000)} s)`, 'connecting');
  reconnectTimer = setTimeout(connect, delay);
}

/**
 * Another duoduel process holds our partner or our room: go there at once, with no backoff and no
 * "partner left". If that process is gone, the socket closes and we reconnect here as after any drop.
 */
function moveTo(url) {
  const old = ws;
  forgetSocket();
  if (old) old.close(1000, 'moved');
  connect(url);
}

/** Drop the current socket (if any) and connect again at once, e.g. into another room. */
function reconnectNow() {
  const old = ws;
  forgetSocket();
  roomFull = false;
  partnerLeft = false;
  attempt = 0;
  if (old) old.close(1000, 'leaving');
  connect(); // also cancels a pending reconnect
}

// Start.

async function start() {
  if (session) {
    // After "Room full" Start comes back as "Try again": someone may have left by now.
    retryRoom();
    return;
  }
  if (typeof WebSocket === 'undefined') {
    showError(MESSAGES.noWebSocket);
    return;
  }
  if (badRoom) return;
  els.start.disabled = true;
  clearError();
  setStatus('Starting the microphone…', 'connecting');
  try {
    session = await startAudio({ onFrame: sendFrame });
  } catch (err) {
    console.warn('duoduel: startAudio failed:', err);
    session = null;
    els.start.disabled = false;
    setStatus(room === null ? 'Press Start to talk' : 'Press Start to join this private room', 'idle');
    showError(startErrorMessage(err));
    return;
  }
  session.setMuted(muted);
  els.start.hidden = true;
  els.mute.disabled = false;
  if (document.activeElement === els.start || document.activeElement === document.body) els.mute.focus();
  requestAnimationFrame(drawMeters);
  setInterval(drawStats, STATS_INTERVAL_MS);
  connect();
}

// Meters and figures.

function drawMeters() {
  if (!session) return;
  const { mic, partner } = session.levels();
  els.micMeter.value = meterValue(mic);
  els.partnerMeter.value = paired ? meterValue(partner) : 0;
  requestAnimationFrame(drawMeters);
}

const whole = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '–');

function drawStats() {
  if (!session) return;
  if (!paired) {
    els.stats.textContent = rttMs === null ? '' : `RTT ${whole(rttMs)} ms`;
    return;
  }
  const s = session.stats();
  const estimate = mouthToEar({ ...s, rttMs });
  // Where the browser's output latency cannot be read safely (Firefox), the estimate stops at our
  // output node and says so.
  const toEar = estimate === null ? '–' : `${whole(estimate.ms)} ms${estimate.withOutput ? '' : ' + output device'}`;
  els.stats.textContent = [
    `RTT ${whole(rttMs)} ms`,
    `jitter buffer ${whole(s.jitterMs)} ms`,
    `lost ${whole(s.lostFrames)}`,
    `out ${s.codec} ${whole(s.kbpsOut)} kbit/s`,
    `in ${s.partnerCodec || '–'} ${whole(s.kbpsIn)} kbit/s`,
    `≈ mouth-to-ear ${toEar}`,
  ].join(' · ');
}

// Private rooms.

function setRoomFromLocation() {
  const found = roomFromLocation(location.pathname, location.search);
  badRoom = found !== null && typeof found === 'object';
  room = badRoom ? null : found;
  if (badRoom) {
    showError(found.error, 'room');
  } else {
    clearError('room');
  }
  els.start.disabled = badRoom || Boolean(session);
  if (!session) setStatus(room === null ? 'Press Start to talk' : 'Press Start to join this private room', 'idle');
  renderRoom();
}

function renderRoom() {
  const inRoom = room !== null;
  // A room holds just the two of you: Next could only end the call, so it is a lobby button.
  els.next.hidden = inRoom;
  // A full room's link is no use to anyone: offer a new room or the lobby instead.
  els.roomPanel.hidden = !inRoom || roomFull;
  els.roomIntro.hidden = inRoom && !roomFull;
  els.lobbyLine.hidden = !inRoom && !badRoom;
  els.createRoom.classList.toggle('primary', roomFull || badRoom);
  els.qr.replaceChildren();
  els.roomNote.textContent = '';
  if (!inRoom) return;
  const url = roomUrl(location.origin, room);
  els.roomLink.href = url;
  els.roomLink.textContent = url;
  els.roomNote.textContent = 'Send this link to your partner, or let them scan the code.';
  els.qr.append(svgElement(document, qrMatrix(url).modules, { title: `QR code of ${url}` }));
}

function selectRoomLink() {
  const range = document.createRange();
  range.selectNodeContents(els.roomLink);
  const selection = getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function copyRoomLink() {
  const url = els.roomLink.textContent;
  try {
    await navigator.clipboard.writeText(url);
    els.roomNote.textContent = 'Link copied: send it to your partner, or let them scan the code.';
  } catch {
    selectRoomLink();
    els.roomNote.textContent = 'Copy the selected link and send it to your partner, or let them scan the code.';
  }
}

/** Take up the room the page URL now names; reconnect if the call had started. */
function followLocation() {
  roomFull = false;
  hideTryAgain();
  setRoomFromLocation();
  if (session) reconnectNow();
}

/** Move this page to another room (null: the lobby). */
function goTo(name) {
  history.pushState(null, '', name === null ? '/' : `/r/${name}`);
  followLocation();
}

function createRoom() {
  goTo(newRoomName());
  copyRoomLink();
}

// iOS Safari leaves the AudioContext 'interrupted' after a phone call or Siri: a gesture revives it.
function resumeAudio() {
  if (session && session.context && session.context.state !== 'running') {
    Promise.resolve(session.resume()).catch((err) => console.warn('duoduel: resume failed:', err));
  }
}

function isTyping(target) {
  return target instanceof Element &&
    (target.isContentEditable || target.closest('input, textarea, select, [contenteditable]') !== null);
}

function onKeyDown(event) {
  resumeAudio();
  if (event.key !== 'm' && event.key !== 'M') return;
  if (event.repeat || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
  if (!session) return;
  event.preventDefault();
  setMuted(!muted);
}

function init() {
  els.start.addEventListener('click', start);
  els.mute.addEventListener('click', () => setMuted(!muted));
  els.next.addEventListener('click', next);
  els.createRoom.addEventListener('click', createRoom);
  els.copyLink.addEventListener('click', copyRoomLink);
  els.lobbyLink.addEventListener('click', (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    goTo(null);
  });
  window.addEventListener('popstate', followLocation);
  document.addEventListener('keydown', onKeyDown);
  document.addEventListener('pointerdown', resumeAudio, { capture: true });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') resumeAudio();
  });
  window.addEventListener('online', () => {
    if (session && !ws && !roomFull) connect();
  });
  window.addEventListener('pagehide', (event) => {
    // Leave at once so the partner hears "Partner left" now rather than after a timeout.
    if (event.persisted && ws) {
      const old = ws;
      ws = null;
      old.close(1000, 'page hidden');
    }
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && session && !roomFull) reconnectNow();
  });

  setRoomFromLocation();
  if (typeof WebSocket === 'undefined') {
    showError(MESSAGES.noWebSocket);
    els.start.disabled = true;
  } else if (!window.isSecureContext) {
    showError(insecureMessage());
  }
}

window.duoduel = {
  get session() {
    return session;
  },
  get state() {
    return state;
  },
  get room() {
    return room;
  },
};

init();
