// duoduel page: wires the buttons, the link to the server and the audio session to the connection state
// machine (connection.js), and draws what it says: the status line, the error line, the buttons, the
// group room's members, the private room's link. The connection logic itself is all in connection.js.
//
// The protocol is in docs/protocol.md: text messages are JSON control messages, for the machine; binary
// messages are audio, sealed end to end (encryption.js): opened, they go to the audio session. In a group
// room every binary message starts with its sender's slot. Everything here runs on the main thread; audio
// lives in audio.js.

import { PARTNER, startAudio } from './audio.js';
import { Connection } from './connection.js';
import { newRoomKey, roomKeyFromFragment } from './e2ee.js';
import { Encryption } from './encryption.js';
import { meterValue, mouthToEar } from './figures.js';
import { LINK_NAMES, openWebSocketLink } from './link.js';
import { LossWatch } from './loss-watch.js';
import { cleanLabel, MAX_LABEL_LENGTH, memberFrame } from './members.js';
import { OfferKeeper } from './offer.js';
import { qrMatrix, svgElement } from './qr.js';
import { fetchRefusal } from './refusal.js';
import { COPIES, CopySwitch, RedundantSender } from './redundancy.js';
import { newRoomName, roomFromLocation, roomUrl, wsUrl } from './room.js';
import { fetchOffer, offerFor, openLink, parseOffer } from './transport.js';

const STATS_INTERVAL_MS = 500;
const LOSS_WATCH_INTERVAL_MS = 250; // as often as the playback worklets post their counters

const MESSAGES = {
  micBlocked: 'Microphone blocked: allow it in the address bar, then press Start again.',
  noMic: 'No microphone found: plug one in or turn it on in your system settings, then press Start again.',
  micBusy: 'Microphone busy: close other apps or tabs that use it, then press Start again.',
  noWebSocket: 'This browser cannot open WebSockets: use a current Chrome, Firefox or Safari.',
};
const HEADPHONES_HINT = 'On speakers? Use headphones to keep your partner from hearing their own echo.';
const NAME_KEY = 'duoduel.name'; // localStorage: the name this person gave themselves in group rooms

const $ = (id) => document.getElementById(id);
const els = {
  status: $('status'),
  error: $('error'),
  loading: $('loading'),
  start: $('start'),
  mute: $('mute'),
  next: $('next'),
  block: $('block'),
  blockConfirm: $('block-confirm'),
  reportReason: $('report-reason'),
  blockYes: $('block-yes'),
  blockNo: $('block-no'),
  note: $('note'),
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
  safety: $('safety'),
  safetyCode: $('safety-code'),
  partnerLabel: $('partner-label'),
  group: $('group'),
  name: $('name'),
  members: $('members'),
  membersEmpty: $('members-empty'),
};

const connection = new Connection({ publicUrl: (room) => wsUrl(location, room) });
// Events for the machine come a turn later: never in the middle of performing another event's effects.
const encryption = new Encryption({ send: sendSealed, deliver, report: (event) => queueMicrotask(() => dispatch(event)) });
let roomKey = null; // the private room's key as its link spells it (the fragment), or null
const links = new Map(); // link number -> the link the machine opened, until it closes
const timers = new Map(); // the machine's timers: event type -> setTimeout id
// Copies of our frames, while someone we send audio to loses frames (they say so); and our watch on theirs.
const redundancy = new RedundantSender(COPIES);
const copies = new CopySwitch();
const lossWatch = new LossWatch();
let session = null; // the audio session, after Start
// The server's WebTransport offer (transport.js), fetched at load and renewed before its id token expires
// (offer.js); null: none (or not yet): the WebSocket.
const offers = new OfferKeeper(fetchOffer);
offers.renew();
let muted = false;
let talking = false; // push-to-talk: Space held while muted
const rows = new Map(); // slot -> the member's row in the list: {li, name, meter, volume, mute, figures}

// The connection: every event goes to the machine; its effects are performed here; then the page is drawn.

function dispatch(event) {
  for (const effect of connection.dispatch({ now: performance.now(), ...event })) perform(effect);
  render();
}

function perform(effect) {
  switch (effect.type) {
    case 'open':
      startLink(effect.link, effect.url, effect.webtransport);
      break;
    case 'send':
      links.get(effect.link)?.sendText(JSON.stringify(effect.message));
      break;
    case 'close':
      links.get(effect.link)?.close(effect.code, effect.reason);
      links.delete(effect.link);
      break;
    case 'schedule':
      clearTimeout(timers.get(effect.timer));
      timers.set(effect.timer, setTimeout(() => {
        timers.delete(effect.timer);
        dispatch({ type: effect.timer });
      }, effect.ms));
      break;
    case 'cancel':
      clearTimeout(timers.get(effect.timer));
      timers.delete(effect.timer);
      break;
    case 'startAudio':
      startMicrophone();
      break;
    case 'resetPartner':
      if (session) session.resetPartner();
      redundancy.reset(); // no copy of the last call's last frame rides into the next
      copies.reset(); // and no report about the last call's paths keeps copies on
      lossWatch.reset();
      break;
    case 'lossReported':
      copies.lossReported(performance.now());
      break;
    case 'addMember':
      if (session) session.addMember(effect.slot);
      break;
    case 'removeMember':
      if (session) session.removeMember(effect.slot);
      break;
    case 'restartMember':
      if (session) session.restartMember(effect.slot);
      break;
    case 'callKey':
      encryption.callKey(effect);
      break;
    case 'warn':
      console.warn('duoduel:', effect.text);
      break;
    default:
      throw new Error(`unknown effect ${effect.type}`);
  }
}

/**
 * Open the machine's link number `number`; its events go back to the machine with that number. movedOffer: the
 * WebTransport offer of url's process, when the server moved us there and named one (else the page's own serves
 * the page's own /ws).
 */
function startLink(number, url, movedOffer, renewed = false) {
  // An id token past half its life (its renewal did not run: a machine asleep) is renewed first, so that the
  // session is still this browser; the link opens then, if the machine still wants it.
  if (offers.stale() && !renewed) {
    offers.renew().then(() => {
      if (connection.link === number && !links.has(number)) startLink(number, url, movedOffer, true);
    });
    return;
  }
  try {
    const codec = session ? session.codec : undefined; // PCM16 frames are too big for datagrams
    const offer = offers.offer;
    const linkOffer = movedOffer !== undefined ? parseOffer(movedOffer) : offerFor(url, wsUrl(location), offer);
    const token = offer !== null ? offer.token : null; // our own: a moved URL's process checks it with the shared secret
    let opened = false;
    links.set(number, openLink({ webSocketUrl: url, offer: linkOffer, token, codec, openWebSocketLink }, {
      onOpen: () => {
        opened = true;
        dispatch({ type: 'linkOpen', link: number });
      },
      onText: (text) => dispatch({ type: 'text', link: number, text }),
      onAudio: (buffer) => play(number, buffer),
      onClose: ({ code, reason }) => {
        links.delete(number);
        dispatch({ type: 'linkClosed', link: number, code, reason });
        // Turned away (the WebSocket's refusal is hidden from us; a WebTransport one closes 1008): ask why.
        if (!opened || code === 1008) askWhyTurnedAway();
      },
    }));
  } catch (err) {
    // After this dispatch's effects, not in the middle of them.
    queueMicrotask(() => dispatch({ type: 'linkFailed', link: number, text: err.message }));
  }
}

/** The server's line for why it turned us away (refusal.js), to show while the page waits to try again. */
function askWhyTurnedAway() {
  fetchRefusal().then((why) => {
    if (why !== null) dispatch({ type: 'turnedAway', text: why.line, retryAfterS: why.retryAfterS });
  });
}

/** An audio frame from the server: opened, then to the partner's playback, or the member's its slot names. */
function play(number, buffer) {
  connection.heard(number, performance.now());
  if (number !== connection.link || !connection.inCall || !session) return;
  if (connection.group.group) {
    const marked = memberFrame(connection.group, buffer);
    if (marked) encryption.open(marked.slot, marked.frame);
  } else {
    encryption.open(PARTNER, buffer);
  }
}

/** An opened frame, if whoever sent it is still here (opening takes a moment; they may have left). */
function deliver(source, frame) {
  if (!connection.inCall || !session) return;
  const here = connection.group.group
    ? connection.group.members.some((member) => member.slot === source)
    : source === PARTNER;
  if (here) session.receiveFrom(source, frame);
}

/** A frame from the encoder: sealed on its way out (nothing leaves without a key). */
function sendFrame(frame) {
  if (!connection.inCall) return;
  // While someone who hears us loses frames, each carries a copy of the previous one: packed before sealing, so
  // that the copy is inside the same seal (docs/design.md, Lost datagrams).
  encryption.seal(copies.on(performance.now()) ? redundancy.pack(frame) : frame);
}

/** Whether frames of those who send us audio went missing: if so, tell them (now and then) to send copies. */
function watchLoss() {
  if (!connection.inCall || !session) return;
  const slots = connection.group.group ? connection.group.members.map((member) => member.slot) : [PARTNER];
  for (const slot of slots) {
    const member = session.memberStats(slot);
    if (member) lossWatch.saw(slot, member.missingFrames);
  }
  if (lossWatch.reportDue(performance.now())) dispatch({ type: 'lossSeen' });
}

function sendSealed(sealed) {
  if (connection.inCall) links.get(connection.link)?.sendAudio(sealed);
}

// Drawing the page from the machine.

let drawn = {}; // what render() drew last, so it redraws only what changed

/** Only a change: tests and the latency bench record every text the status line shows. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function render() {
  const { text, kind } = connection.status;
  setText(els.status, text);
  els.status.dataset.state = kind;
  setText(els.error, connection.error ? connection.error.text : '');
  els.error.hidden = connection.error === null;
  const start = connection.startButton;
  setText(els.start, start.label);
  els.start.disabled = start.disabled;
  els.start.hidden = start.hidden;
  els.next.disabled = connection.nextButton.disabled;
  const block = connection.blockButton;
  els.block.hidden = block.hidden || block.confirming;
  if (els.blockConfirm.hidden === block.confirming) {
    els.blockConfirm.hidden = !block.confirming;
    els.reportReason.value = '';
    if (block.confirming) els.reportReason.focus();
  }
  setText(els.note, connection.note ?? '');
  els.note.hidden = connection.note === null;
  els.headphonesHint.hidden = !connection.inCall;
  const code = connection.safetyCode;
  els.safety.hidden = code === null;
  setText(els.safetyCode, code ?? '');
  if (drawn.group !== connection.group || drawn.reconnecting !== connection.reconnectingSlots) renderGroup();
  const place = [connection.room, roomKey, connection.state === 'roomFull', connection.roomError !== null, connection.group.group].join();
  if (drawn.place !== place) renderRoom();
  drawn = { group: connection.group, reconnecting: connection.reconnectingSlots, place };
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

// The microphone.

async function startMicrophone() {
  try {
    session = await startAudio({ onFrame: sendFrame });
  } catch (err) {
    console.warn('duoduel: startAudio failed:', err);
    session = null;
    dispatch({ type: 'audioFailed', text: startErrorMessage(err) });
    return;
  }
  session.setMuted(muted);
  els.mute.disabled = false;
  if (document.activeElement === els.start || document.activeElement === document.body) els.mute.focus();
  requestAnimationFrame(drawMeters);
  setInterval(drawStats, STATS_INTERVAL_MS);
  setInterval(watchLoss, LOSS_WATCH_INTERVAL_MS);
  dispatch({ type: 'audioStarted' });
}

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

// Meters and figures.

function drawMeters() {
  if (!session) return;
  const { mic, partner } = session.levels();
  els.micMeter.value = meterValue(mic);
  els.partnerMeter.value = connection.inCall ? meterValue(partner) : 0;
  for (const [slot, row] of rows) {
    const stats = session.memberStats(slot);
    row.meter.value = stats ? meterValue(stats.rms) : 0;
  }
  requestAnimationFrame(drawMeters);
}

const whole = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '–');

/** The link's kind, as the figures line names it ("over WebSocket"); empty between links. */
function over() {
  const link = links.get(connection.link);
  return link ? `over ${LINK_NAMES[link.kind] ?? link.kind}` : '';
}

function figuresLine(parts) {
  return parts.filter(Boolean).join(' · ');
}

/** Whether what goes out is sealed, and how many frames that came in could not be opened (dropped). */
function encryptionFigures() {
  const { keyed, failed } = encryption.stats();
  return [keyed ? 'end-to-end encrypted' : '', failed > 0 ? `${failed} not decrypted` : ''];
}

function drawStats() {
  if (!session) return;
  const { roundTrips } = connection;
  if (!connection.inCall) {
    els.stats.textContent = roundTrips.latest === null ? '' : figuresLine([`RTT ${whole(roundTrips.latest)} ms`, over()]);
    return;
  }
  const s = session.stats();
  if (connection.group.group) {
    drawGroupStats(s);
    return;
  }
  const estimate = mouthToEar({ ...s, pathMs: roundTrips.pathMs, partnerPathMs: connection.partnerPathMs });
  // Where the browser's output latency cannot be read safely (Firefox), the estimate stops at our
  // output node and says so.
  const toEar = estimate === null ? '–' : `${whole(estimate.ms)} ms${estimate.withOutput ? '' : ' + output device'}`;
  els.stats.textContent = figuresLine([
    `RTT ${whole(roundTrips.latest)} ms`,
    `jitter buffer ${whole(s.jitterMs)} ms`,
    `lost ${whole(s.lostFrames)}`,
    `out ${s.codec} ${s.frameMs} ms${s.dtx ? ' DTX' : ''} ${whole(s.kbpsOut)} kbit/s`,
    `in ${s.partnerCodec || '–'} ${whole(s.kbpsIn)} kbit/s`,
    `≈ mouth-to-ear ${toEar}`,
    over(),
    ...encryptionFigures(),
  ]);
}

// Group rooms: the member list, names, each member's volume on this page.

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
  dispatch({ type: 'name', name });
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

/** Draw the group part of the page from the machine's group room: rows added and removed, names as text only. */
function renderGroup() {
  const { group, reconnectingSlots } = connection;
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
  for (const member of group.members) {
    let row = rows.get(member.slot);
    if (!row) {
      row = memberRow(member.slot);
      rows.set(member.slot, row);
      const after = [...els.members.children].find((li) => Number(li.dataset.slot) > member.slot);
      els.members.insertBefore(row.li, after || null);
    }
    // never innerHTML: a label is whatever its member typed
    row.name.textContent = reconnectingSlots.has(member.slot) ? `${member.label} (reconnecting…)` : member.label;
    row.volume.setAttribute('aria-label', `Volume of ${member.label} on this page`);
    row.mute.setAttribute('aria-label', `Mute ${member.label} on this page`);
  }
  els.membersEmpty.hidden = !inGroup || group.members.length > 0;
}

function drawGroupStats(s) {
  const others = connection.group.members.length;
  els.stats.textContent = figuresLine([
    `RTT ${whole(connection.roundTrips.latest)} ms`,
    `out ${s.codec} ${whole(s.kbpsOut)} kbit/s`,
    `${others} other${others === 1 ? '' : 's'} in the room`,
    over(),
    ...encryptionFigures(),
  ]);
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

/**
 * Take up the room the page URL names, with the key in its fragment (or the lobby): the machine reconnects
 * if the call had started. A room without its key is a bad link: Start waits for another.
 */
function followLocation() {
  const found = roomFromLocation(location.pathname, location.search);
  let room = found;
  let roomError = null;
  let key = null;
  if (found !== null && typeof found === 'object') {
    [room, roomError] = [null, found.error];
  } else if (found !== null) {
    key = roomKeyFromFragment(location.hash);
    if (!(key instanceof Uint8Array)) [room, roomError, key] = [null, key.error, null];
  }
  roomKey = key === null ? null : location.hash.slice(1);
  encryption.useRoom(room, key);
  dispatch({ type: 'place', room, roomError });
}

function renderRoom() {
  const { room, group } = connection;
  const roomFull = connection.state === 'roomFull';
  const badRoom = connection.roomError !== null;
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
  const url = roomUrl(location.origin, room, roomKey);
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

/** Move this page to another room, whose key is `key` (null: the lobby). */
function goTo(name, key = null) {
  history.pushState(null, '', name === null ? '/' : roomUrl(location.origin, name, key));
  followLocation();
}

/** A new room: a name nobody can guess, and a key of its own that only its link carries. */
function createRoom() {
  goTo(newRoomName(), newRoomKey());
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
  return event.code === 'Space' && connection.group.group && session !== null && (muted || talking) &&
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
  els.start.addEventListener('click', () => dispatch({ type: 'start' }));
  els.mute.addEventListener('click', () => setMuted(!muted));
  els.next.addEventListener('click', () => dispatch({ type: 'next' }));
  els.block.addEventListener('click', () => dispatch({ type: 'blockAsk' }));
  els.blockYes.addEventListener('click', () => dispatch({ type: 'block' }));
  // Report and block, or Enter in the reason.
  els.blockConfirm.addEventListener('submit', (event) => {
    event.preventDefault();
    dispatch({ type: 'block', reason: els.reportReason.value });
  });
  els.blockNo.addEventListener('click', () => dispatch({ type: 'blockCancel' }));
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
  window.addEventListener('online', () => dispatch({ type: 'online' }));
  // Into the back/forward cache: leave at once, so the partner hears "Partner left" now, not after a timeout.
  // Unloaded: a WebSocket says goodbye (1001) by itself; a WebTransport session that just vanished would look like
  // a dropped network, its place held for a resume and the partner told "reconnecting" for the window. (Firefox
  // sometimes closes the connection before this close leaves; the server takes that as a goodbye too.)
  window.addEventListener('pagehide', (event) => {
    if (event.persisted) dispatch({ type: 'pageHidden' });
    else links.get(connection.link)?.close(1001, 'page closed');
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) dispatch({ type: 'pageShown' });
  });

  els.loading.remove(); // the script came: no "has not loaded" line, ever
  dispatch({ type: 'name', name: storedName() });
  followLocation();
  if (typeof WebSocket === 'undefined') {
    dispatch({ type: 'unsupported', text: MESSAGES.noWebSocket });
  } else if (!window.isSecureContext) {
    dispatch({ type: 'notice', text: insecureMessage() });
  }
}

window.duoduel = {
  get session() {
    return session;
  },
  /** What the status line says. */
  get state() {
    return connection.status.text;
  },
  /** The connection's state (connection.js), e.g. 'waiting', 'connected', 'resuming'. */
  get connection() {
    return connection.state;
  },
  /** The current link: its kind and the URL it opened; null between links. */
  get link() {
    const link = links.get(connection.link);
    return link ? { kind: link.kind, url: connection.url } : null;
  },
  get room() {
    return connection.room;
  },
  /** The group room as the page knows it ({group, slot, label, size, members}); group false in a call. */
  get group() {
    return connection.group;
  },
  get talking() {
    return talking;
  },
  /**
   * Copies of our frames (redundancy.js): on now, frames sent with copies, loss reports taken from those who hear
   * us, and reports we sent about those we hear.
   */
  get copies() {
    return { on: copies.on(performance.now()), packed: redundancy.packed, reports: copies.reports, reported: lossWatch.reports };
  },
  /** End-to-end encryption's counters: keyed, sealed, opened, failed (not decrypted, dropped), ... */
  get encryption() {
    return encryption.stats();
  },
  /** The one-way paths to the server that the mouth-to-ear estimate adds: ours and the partner's (ms or null). */
  get paths() {
    return { pathMs: connection.roundTrips.pathMs, partnerPathMs: connection.partnerPathMs };
  },
};

init();
