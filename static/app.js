// duoduel page logic: Start, the WebSocket to the server, the call controls, private rooms.
//
// The protocol is in docs/protocol.md: text frames are JSON control messages, binary frames
// are audio for session.receive(). Everything here runs on the main thread; audio lives in audio.js.
// The first message tells a call of two (waiting/connected) from a group room (room): in a group
// room every binary frame starts with its sender's slot, and the page lists the other members.

import { startAudio } from './audio.js';
import { meterValue, mouthToEar, RoundTrips } from './figures.js';
import { cleanLabel, emptyRoom, MAX_LABEL_LENGTH, reduceRoom, splitSlot } from './members.js';
import { qrMatrix, svgElement } from './qr.js';
import { newRoomName, reconnectDelay, roomFromLocation, roomUrl, wsUrl } from './room.js';
import { DROPPED, Resume, RESUME_REFUSED } from './resume.js';

const PING_INTERVAL_MS = 2000;
// In a call, a socket that has brought nothing (no audio, no pong) for this long is taken for dead: after a
// network change the old connection can stay half-open for minutes. The page resumes on a new socket.
const SILENT_SOCKET_MS = 6000;
const AUTO_NEXT_MS = 1500; // in the lobby, how long "Partner left" shows before we look for someone new
const STATS_INTERVAL_MS = 500;
// Audio frames queued in the socket beyond this are dropped: late audio is worse than lost audio.
const MAX_BUFFERED_BYTES = 32 * 1024;

const MESSAGES = {
  micBlocked: 'Microphone blocked: allow it in the address bar, then press Start again.',
  noMic: 'No microphone found: plug one in or turn it on in your system settings, then press Start again.',
  micBusy: 'Microphone busy: close other apps or tabs that use it, then press Start again.',
  noWebSocket: 'This browser cannot open WebSockets: use a current Chrome, Firefox or Safari.',
  roomFull: 'This room is full: create a new private room, or go back to the lobby.',
};
const HEADPHONES_HINT = 'On speakers? Use headphones to keep your partner from hearing their own echo.';
const NAME_KEY = 'duoduel.name'; // localStorage: the name this person gave themselves in group rooms

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
  partnerLabel: $('partner-label'),
  group: $('group'),
  name: $('name'),
  members: $('members'),
  membersEmpty: $('members-empty'),
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
const roundTrips = new RoundTrips(); // the latest pings' round trips to the server
let partnerPathMs = null; // the partner's one-way delay to the server, from our latest pong
let reconnectTimer = 0;
let autoNextTimer = 0;
let pingTimer = 0;
let group = emptyRoom(); // the group room as the server described it (members.js); group.group false in a call of two
let talking = false; // push-to-talk: Space held while muted
const rows = new Map(); // slot -> the member's row in the list: {li, name, meter, volume, mute, figures}
const reconnecting = new Set(); // slots of group members whose socket dropped, held by the server
const resume = new Resume(); // the resume token, and whether the page is getting its call back
let lastHeard = 0; // performance.now() of the current socket's latest message
let abandoned = null; // a silent socket left behind for a new one, closed once the call is back

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
  talking = false;
  if (session) session.setMuted(muted);
  els.mute.setAttribute('aria-pressed', String(muted));
  drawMicLabel();
}

function drawMicLabel() {
  els.micLabel.textContent = talking ? 'You (talking)' : muted ? 'You (muted)' : 'You';
}

/** Push to talk (group rooms): while muted, holding Space sends this page's voice. */
function setTalking(value) {
  if (talking === value || !session || !muted) return;
  talking = value;
  session.setMuted(!talking);
  drawMicLabel();
}

function setPaired(value) {
  paired = value;
  els.headphonesHint.hidden = !paired;
  // In a group room members come and go one by one (joined/left), so a change of `paired` frees nobody.
  if (session && !group.group) session.resetPartner();
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
  if (paired && resume.token && performance.now() - lastHeard > SILENT_SOCKET_MS) {
    abandonSilentSocket();
    return;
  }
  const path = roundTrips.pathMs === null ? {} : { path: roundTrips.pathMs };
  sendControl({ type: 'ping', t: performance.now(), ...path });
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
  const before = group;
  group = reduceRoom(group, message);
  if (group !== before) onRoomChange(before, message);
  switch (message.type) {
    case 'room':
    case 'joined':
    case 'left':
    case 'label':
      break; // onRoomChange did it
    case 'waiting':
      attempt = 0;
      if (paired) setPaired(false);
      if (group.group) {
        setStatus('Waiting for others to join…', 'waiting');
      } else {
        setStatus(partnerLeft ? 'Partner left. Waiting for a partner…' : 'Waiting for a partner…', 'waiting');
      }
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
      if (group.group) break; // the last other member left; "waiting" follows at once
      setStatus('Partner left', 'left');
      if (room === null) {
        // The server leaves us out of the queue after a partner leaves the lobby: ask again.
        clearTimeout(autoNextTimer);
        autoNextTimer = setTimeout(next, AUTO_NEXT_MS);
      } else {
        partnerLeft = true; // the server puts us back in the room and says "waiting" right away
      }
      break;
    case 'session':
    case 'reconnecting':
    case 'resumed':
      onResumeMessage(message);
      break;
    case 'error':
      if (message.reason === 'room full') {
        onRoomFull();
      } else if (typeof message.reason === 'string' && message.reason.startsWith(RESUME_REFUSED)) {
        // Back too late: the call is over and the server starts a new session (waiting follows).
        resume.onRefused();
        partnerLeft = true;
        dropAbandoned();
      } else {
        console.warn('duoduel: server refused a message:', message.reason);
      }
      break;
    case 'moved':
      if (typeof message.url === 'string') moveTo(message.url);
      break;
    case 'pong':
      if (typeof message.t === 'number') roundTrips.add(performance.now() - message.t);
      partnerPathMs = typeof message.partner_path === 'number' ? message.partner_path : null;
      break;
    default:
      console.warn('duoduel: unknown message type', message.type);
  }
}

// Resuming after a dropped socket (see resume.js).

function onResumeMessage(message) {
  switch (message.type) {
    case 'session':
      if (resume.onSession(message) && abandoned) {
        // The server has moved the call to this socket: a goodbye on the old one no longer ends it.
        abandoned.close(1000, 'resumed');
        abandoned = null;
      }
      break;
    case 'reconnecting':
      // The partner's (a member's) socket dropped; the server holds their place for a few seconds.
      if (group.group) {
        reconnecting.add(message.slot);
        renderGroup();
      } else if (paired) {
        setStatus('Partner reconnecting…', 'connecting');
      }
      break;
    case 'resumed':
      // The partner (a member) is back on a new socket: start their playback afresh, so the delay their
      // silence and any burst left in the jitter buffer does not stay.
      if (group.group) {
        reconnecting.delete(message.slot);
        if (session) session.restartMember(message.slot);
        renderGroup();
      } else {
        if (session) session.resetPartner();
        if (paired) setStatus('Connected', 'connected');
      }
      break;
  }
}

function dropAbandoned() {
  if (abandoned) abandoned.close(1000, 'leaving');
  abandoned = null;
}

/** The socket went silent in a call: leave it open (a close frame would end the call) and resume on a new one. */
function abandonSilentSocket() {
  dropAbandoned();
  abandoned = ws;
  forgetSocket();
  resume.onClose(DROPPED, true, performance.now());
  setStatus('Reconnecting…', 'connecting');
  attempt = 1;
  connect();
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
    socket = new WebSocket(resume.url(url));
  } catch (err) {
    showError(`Cannot connect to the server (${err.message}): reload the page.`);
    return;
  }
  socket.binaryType = 'arraybuffer';
  ws = socket;
  setStatus(attempt === 0 ? 'Connecting…' : 'Reconnecting…', 'connecting');

  socket.addEventListener('open', () => {
    if (ws !== socket) return;
    lastHeard = performance.now();
    els.next.disabled = false;
    ping();
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_INTERVAL_MS);
  });
  socket.addEventListener('message', (event) => {
    if (ws !== socket) return;
    lastHeard = performance.now();
    if (typeof event.data !== 'string') {
      if (!paired || !session) return;
      if (group.group) {
        const marked = splitSlot(event.data);
        if (marked) session.receiveFrom(marked.slot, marked.frame);
      } else {
        session.receive(event.data);
      }
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
  roundTrips.clear();
  partnerPathMs = null;
  setPaired(false);
  if (group.group) {
    const before = group;
    group = emptyRoom();
    onRoomChange(before, null);
  }
  els.next.disabled = true;
}

function onClose(event) {
  const inCall = paired;
  forgetSocket();
  if (event.code === 1008 && event.reason === 'room full') roomFull = true;
  if (roomFull) {
    onRoomFull();
    return;
  }
  if (!session) return;
  if (resume.onClose(event.code, inCall, performance.now())) {
    // Dropped in a call: try at once, then about once a second while the server holds our place.
    const delay = resume.delay(attempt++, reconnectDelay, performance.now());
    setStatus('Reconnecting…', 'connecting');
    reconnectTimer = setTimeout(connect, delay);
    return;
  }
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
  resume.forget(); // a token opens a place only on the process that gave it
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
  resume.forget();
  dropAbandoned();
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
  for (const [slot, row] of rows) {
    const stats = session.memberStats(slot);
    row.meter.value = stats ? meterValue(stats.rms) : 0;
  }
  requestAnimationFrame(drawMeters);
}

const whole = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '–');

function drawStats() {
  if (!session) return;
  if (!paired) {
    els.stats.textContent = roundTrips.latest === null ? '' : `RTT ${whole(roundTrips.latest)} ms`;
    return;
  }
  const s = session.stats();
  if (group.group) {
    drawGroupStats(s);
    return;
  }
  const estimate = mouthToEar({ ...s, pathMs: roundTrips.pathMs, partnerPathMs });
  // Where the browser's output latency cannot be read safely (Firefox), the estimate stops at our
  // output node and says so.
  const toEar = estimate === null ? '–' : `${whole(estimate.ms)} ms${estimate.withOutput ? '' : ' + output device'}`;
  els.stats.textContent = [
    `RTT ${whole(roundTrips.latest)} ms`,
    `jitter buffer ${whole(s.jitterMs)} ms`,
    `lost ${whole(s.lostFrames)}`,
    `out ${s.codec} ${whole(s.kbpsOut)} kbit/s`,
    `in ${s.partnerCodec || '–'} ${whole(s.kbpsIn)} kbit/s`,
    `≈ mouth-to-ear ${toEar}`,
  ].join(' · ');
}

// Group rooms: the member list, names, each member's volume on this page.

/** The server changed the room (room, joined, left, label), or the socket went: follow it. */
function onRoomChange(before, message) {
  if (!before.group && group.group) {
    if (session) session.resetPartner(); // a fresh room: nobody from an earlier socket plays on
    const name = storedName();
    if (name !== null && name !== group.label) sendControl({ type: 'label', label: name });
  }
  if (session && message && message.type === 'joined') session.addMember(message.slot);
  if (session && message && message.type === 'left') session.removeMember(message.slot);
  if (session && !group.group) session.resetPartner();
  renderGroup();
}

function storedName() {
  try {
    return cleanLabel(localStorage.getItem(NAME_KEY));
  } catch {
    return null; // storage blocked: the name lasts as long as the page
  }
}

function onNameChange() {
  const name = cleanLabel(els.name.value);
  try {
    if (name === null) localStorage.removeItem(NAME_KEY);
    else localStorage.setItem(NAME_KEY, name);
  } catch {
    // storage blocked: the name still goes to the room
  }
  if (name !== null && group.group && name !== group.label) sendControl({ type: 'label', label: name });
}

function memberRow(slot) {
  const li = document.createElement('li');
  li.className = 'member';
  li.dataset.slot = String(slot);
  const name = document.createElement('span');
  name.className = 'member-name';
  const meter = document.createElement('meter');
  Object.assign(meter, { min: 0, max: 1, low: 0.85, high: 0.97, optimum: 0.5, value: 0 });
  const volume = document.createElement('input');
  Object.assign(volume, { type: 'range', min: '0', max: '100', step: '5', value: '100' });
  volume.className = 'member-volume';
  const mute = document.createElement('button');
  mute.type = 'button';
  mute.className = 'member-mute';
  mute.textContent = 'Mute';
  mute.setAttribute('aria-pressed', 'false');
  const figures = document.createElement('small');
  figures.className = 'member-figures';
  const apply = () => {
    if (session) session.setMemberVolume(slot, Number(volume.value), mute.getAttribute('aria-pressed') === 'true');
  };
  volume.addEventListener('input', apply);
  mute.addEventListener('click', () => {
    const now = mute.getAttribute('aria-pressed') !== 'true';
    mute.setAttribute('aria-pressed', String(now));
    mute.textContent = now ? 'Unmute' : 'Mute';
    li.classList.toggle('muted', now);
    apply();
  });
  li.append(name, meter, volume, mute, figures);
  return { li, name, meter, volume, mute, figures };
}

/** Draw the group part of the page from `group`: rows added and removed, names as text only. */
function renderGroup() {
  const inGroup = group.group;
  els.group.hidden = !inGroup;
  els.headphonesHint.textContent = inGroup
    ? 'On speakers? Use headphones to keep the others from hearing their own echo.'
    : HEADPHONES_HINT;
  els.partnerLabel.hidden = inGroup;
  els.partnerMeter.hidden = inGroup;
  if (inGroup) els.name.placeholder = group.label || 'Your name';
  const present = new Set(group.members.map((m) => m.slot));
  for (const [slot, row] of rows) {
    if (!present.has(slot)) {
      row.li.remove();
      rows.delete(slot);
    }
  }
  for (const slot of reconnecting) if (!present.has(slot)) reconnecting.delete(slot);
  for (const member of group.members) {
    let row = rows.get(member.slot);
    if (!row) {
      row = memberRow(member.slot);
      rows.set(member.slot, row);
      const after = [...els.members.children].find((li) => Number(li.dataset.slot) > member.slot);
      els.members.insertBefore(row.li, after || null);
    }
    // never innerHTML: a label is whatever its member typed
    row.name.textContent = reconnecting.has(member.slot) ? `${member.label} (reconnecting…)` : member.label;
    row.volume.setAttribute('aria-label', `Volume of ${member.label} on this page`);
    row.mute.setAttribute('aria-label', `Mute ${member.label} on this page`);
  }
  els.membersEmpty.hidden = !inGroup || group.members.length > 0;
  renderRoom();
}

function drawGroupStats(s) {
  const others = group.members.length;
  els.stats.textContent = [
    `RTT ${whole(roundTrips.latest)} ms`,
    `out ${s.codec} ${whole(s.kbpsOut)} kbit/s`,
    `${others} other${others === 1 ? '' : 's'} in the room`,
  ].join(' · ');
  for (const [slot, row] of rows) {
    const m = session.memberStats(slot);
    if (!m) {
      row.figures.textContent = '';
      row.figures.title = '';
      continue;
    }
    const lost = m.lostFrames + m.decoderDrops;
    row.figures.textContent = `lost ${whole(lost)} · buffer ${whole(m.jitterMs)} ms`;
    row.figures.title = `${m.codec || '–'} ${whole(m.kbpsIn)} kbit/s in, jitter buffer ${whole(m.jitterMs)} ms ` +
      `(target ${whole(m.targetMs)} ms), lost frames ${whole(lost)}, concealed ${whole(m.concealedFrames)}`;
  }
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
  els.roomNote.textContent = group.group
    ? 'Send this link to the people you want in the room, or let them scan the code.'
    : 'Send this link to your partner, or let them scan the code.';
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

/** Space while muted in a group room: push to talk. Never while typing, so a name can have spaces. */
function isPushToTalk(event) {
  return event.code === 'Space' && group.group && session !== null && (muted || talking) &&
    !event.ctrlKey && !event.metaKey && !event.altKey && !isTyping(event.target);
}

function onKeyUp(event) {
  if (!talking || event.code !== 'Space') return;
  event.preventDefault(); // a focused button would otherwise be clicked by the release
  talking = false;
  session.setMuted(muted);
  drawMicLabel();
}

function onKeyDown(event) {
  resumeAudio();
  if (isPushToTalk(event)) {
    event.preventDefault(); // Space must not scroll or press the focused button
    setTalking(true);
    return;
  }
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
  document.addEventListener('keyup', onKeyUp);
  // A release elsewhere (another window, a lost focus) must not leave the microphone open.
  window.addEventListener('blur', () => onKeyUp({ code: 'Space', preventDefault() {} }));
  els.name.maxLength = MAX_LABEL_LENGTH;
  els.name.value = storedName() || '';
  els.name.addEventListener('change', onNameChange);
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
      resume.forget();
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
  /** The group room as the page knows it ({group, slot, label, size, members}); group false in a call. */
  get group() {
    return group;
  },
  get talking() {
    return talking;
  },
  /** The one-way paths to the server that the mouth-to-ear estimate adds: ours and the partner's (ms or null). */
  get paths() {
    return { pathMs: roundTrips.pathMs, partnerPathMs };
  },
};

init();
