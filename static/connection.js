// The page's connection to the server, as a state machine: named states, and every transition in the
// one table below (TRANSITIONS). Pure: no DOM, no link, no timers of its own, so node tests it.
//
// The page feeds it events, each with `now` (performance.now() ms): the person's (start, next, name,
// place: the room the page URL names, and blockAsk, blockCancel, block {reason?}: Block with its confirm),
// the microphone's (audioStarted, audioFailed), the link's (linkOpen, text, linkClosed, linkFailed, turnedAway), the
// browser's (unsupported, notice, online, pageHidden, pageShown), the timers' (pingDue, retryDue,
// autoNextDue, keyDue, noteDue), encryption's (keyOut, keyAgreed, keyFailed, keyVerdict) and the audio's
// (lossSeen: frames of a sender went missing, loss-watch.js). dispatch() returns the effects for the page to
// perform, in order:
//
//   {type: 'startAudio'}                       start the microphone; answer audioStarted or audioFailed
//   {type: 'open', link, url[, webtransport]}  open link number `link` to url; its events carry `link`;
//                                              webtransport: the offer of url's process, when a move named one
//   {type: 'send', link, message}              send a control message (an object, as JSON) on it
//   {type: 'close', link, code, reason}        close it (its events are ignored from now on)
//   {type: 'schedule', timer, ms}              dispatch {type: timer} in ms (replacing one pending)
//   {type: 'cancel', timer}                    forget that timer
//   {type: 'resetPartner'}                     the audio session forgets whoever played (call starts or ends)
//   {type: 'addMember' | 'removeMember' | 'restartMember', slot}   a group room's member's playback
//   {type: 'lossReported'}                     a receiver of our audio loses frames: send copies (redundancy.js)
//   {type: 'warn', text}                       something odd from the server, for the console
//
//   {type: 'callKey', call, op: 'start' | 'receive' | 'resend' | 'end', message}
//                                              a lobby call's key exchange (key-exchange.js): start one for
//                                              call number `call`, hand it the partner's key message, send
//                                              again what it sent (after a resume), forget it (the call ended)
//
// and then draws the page from the machine: status, error, note, startButton, nextButton, blockButton,
// linkOpen, inCall, room, group, safetyCode.
//
// Encryption (docs/design.md, End-to-end encryption): a private room's key comes with the page URL, so
// the machine knows nothing of it but a wrong one (keyVerdict). A lobby call agrees a key first: the page
// answers callKey effects with keyOut (a key message to send), keyAgreed or keyFailed; until the key is
// agreed no audio goes out, the status says so, and after KEY_WAIT_MS without one an error line says what
// to do.
//
// The protocol is docs/protocol.md's; resume.js builds the URLs a session and a resume open.

import { MESSAGES as KEY_MESSAGES } from './e2ee.js';
import { RoundTrips } from './figures.js';
import { emptyRoom, reduceRoom } from './members.js';
import { DROPPED, RESUME_REFUSED, resumeDelay, sessionUrl, withoutCall } from './resume.js';
import { reconnectDelay } from './room.js';

export const PING_INTERVAL_MS = 2000;
// In a call, a link that has brought nothing (no audio, no pong) for this long is taken for dead: after a
// network change the old connection can stay half-open for minutes. The page resumes on a new one.
export const SILENT_LINK_MS = 6000;
export const AUTO_NEXT_MS = 1500; // in the lobby, how long "Partner left" shows before we look for someone new

// How long a lobby call waits for the partner's page to agree a key (ECDH takes milliseconds; a page that
// never answers is one that cannot encrypt), counted while both pages are connected.
export const KEY_WAIT_MS = 5000;

export const ROOM_FULL = 'This room is full: create a new private room, or go back to the lobby.';
export const BLOCKED_NOTE = 'Blocked: you will not be paired with this person again. Looking for someone else…';
export const REPORTED_NOTE =
  'Reported and blocked: the operator has your report, and you will not be paired with this person again.';
export const NOTE_MS = 10000; // how long the line saying a block worked stays
export const REPORT_CHARS = 200; // of a report's reason, as the server keeps it
export const NO_KEY_ANSWER = "Your partner's page did not answer the key exchange, so this call cannot be " +
  'encrypted: press Next to find someone else.';

/** What the status line says in each state, and its data-state (the colour). */
const STATUS = {
  idle: (m) => [m.room === null ? 'Press Start to talk' : 'Press Start to join this private room', 'idle'],
  unsupported: () => ['Press Start to talk', 'idle'],
  starting: () => ['Starting the microphone…', 'connecting'],
  connecting: (m) => [m.attempt === 0 ? 'Connecting…' : 'Reconnecting…', 'connecting'],
  waiting: (m) => [waitingText(m), 'waiting'],
  coolingDown: (m) => [`You skipped many people in a row: your next partner comes in ${m.coolDownS} s`, 'waiting'],
  connected: (m) => CALL_KEY_STATUS[m.key?.state ?? 'ready'],
  partnerReconnecting: () => ['Partner reconnecting…', 'connecting'],
  partnerLeft: () => ['Partner left', 'left'],
  resuming: () => ['Reconnecting…', 'connecting'],
  retrying: (m) => [`Reconnecting… (connection lost, trying again in ${Math.ceil(m.retryInMs / 1000)} s)`, 'connecting'],
  roomFull: () => ['Room full', 'full'],
  away: () => ['Reconnecting…', 'connecting'],
  broken: () => ['Not connected', 'left'],
};

/** A lobby call's status while its key is agreed, once it is, and if it cannot be. */
const CALL_KEY_STATUS = {
  agreeing: ['Partner found: setting up encryption…', 'connecting'],
  ready: ['Connected', 'connected'],
  failed: ['Cannot encrypt this call', 'left'],
};

/** The states a lobby call lives through: its key too. */
const CALL_STATES = new Set(['connected', 'partnerReconnecting', 'resuming']);

function waitingText(m) {
  if (m.group.group) return 'Waiting for others to join…';
  return m.partnerGone ? 'Partner left. Waiting for a partner…' : 'Waiting for a partner…';
}

export class Connection {
  /**
   * @param {object} options
   * @param {(room: string|null) => string} options.publicUrl the /ws URL of the page's own address, for a room
   *   (null: the lobby); behind a proxy, whichever process it picks
   * @param {() => number} [options.random] for the reconnect backoff's jitter
   */
  constructor({ publicUrl, random = Math.random }) {
    this.publicUrl = publicUrl;
    this.backoff = (attempt) => reconnectDelay(attempt, random);
    this.state = 'idle';
    this.room = null; // private room name, or null for the lobby
    this.roomError = null; // the page URL names a bad room: what to say (Start waits for another)
    this.error = null; // the error line: {text, about} ('room', 'audio', 'page', 'browser' or 'link')
    this.name = null; // the name this person gave themselves for group rooms
    this.linkSeq = 0;
    this.link = 0; // the current link's number; 0: none. Events of any other link are ignored.
    this.url = null; // what the current link opened
    this.linkOpen = false;
    this.abandoned = 0; // a silent link left open (a close would end the call) until the call is back
    this.token = null; // the resume token of the current session
    this.windowMs = 0; // how long the server holds our place after a drop
    this.home = null; // the /ws URL of the process holding the session (after a move: not the public one)
    this.homeOffer = null; // the WebTransport offer of home's process when a move named one (else: the page's own)
    this.droppedAt = 0;
    this.attempt = 0; // connection attempts since the server last put us somewhere
    this.retryInMs = 0;
    this.partnerGone = false; // the call ended without us (partner left, or our place expired)
    this.group = emptyRoom(); // the group room as the server described it (members.js)
    this.reconnectingSlots = new Set(); // group members whose link dropped; replaced, never changed in place
    this.roundTrips = new RoundTrips();
    this.partnerPathMs = null; // the partner's one-way delay to the server, from our latest pong
    this.lastHeard = 0; // when the current link last brought anything
    this.confirmingBlock = false; // Block was pressed: the confirm (Block, Report, Cancel) shows
    this.note = null; // a line saying what the person's last action did (a block), for a while
    this.coolDownS = 0; // the cool-down the server imposed for skipping at speed
    this.callSeq = 0;
    this.call = 0; // the current lobby call's number, while it lasts; 0: none
    this.key = null; // the lobby call's key: {state: 'agreeing', 'ready' or 'failed', code: its safety code}
    this.effects = [];
  }

  /** Take one event; return the effects to perform. */
  dispatch(event) {
    if (event.link !== undefined && event.link !== this.link) return []; // a replaced link's last words
    if (event.type === 'text') {
      this.lastHeard = event.now;
      event = serverEvent(event);
    }
    this.effects = [];
    const before = audience(this);
    const row = TRANSITIONS[this.state];
    if (Object.hasOwn(row, event.type) && row[event.type]) row[event.type](this, event);
    // Whoever played before the call started or ended is not the partner now.
    if (audience(this) !== before) this.emit({ type: 'resetPartner' });
    if (this.call !== 0 && !CALL_STATES.has(this.state)) endCallKey(this);
    return this.effects;
  }

  /** Audio came on a link (not dispatched: 50 a second, and it changes no state): the link is alive. */
  heard(link, now) {
    if (link === this.link) this.lastHeard = now;
  }

  /** In a call: audio goes to and comes from the partner (or the group room's others). */
  get inCall() {
    return this.state === 'connected' || this.state === 'partnerReconnecting';
  }

  get status() {
    const [text, kind] = STATUS[this.state](this);
    return { text, kind };
  }

  /** The lobby call's safety code, once its key is agreed; null otherwise. */
  get safetyCode() {
    return this.key?.state === 'ready' && this.inCall ? this.key.code : null;
  }

  /** Start is the way in; after "Room full" it comes back as "Try again"; otherwise it is hidden. */
  get startButton() {
    switch (this.state) {
      case 'idle':
        return { label: 'Start', disabled: this.roomError !== null, hidden: false };
      case 'unsupported':
      case 'starting':
        return { label: 'Start', disabled: true, hidden: false };
      case 'roomFull':
        return { label: 'Try again', disabled: false, hidden: false };
      default:
        return { label: 'Start', disabled: true, hidden: true };
    }
  }

  /** Next, in the lobby while the link is open; not while a cool-down runs. */
  get nextButton() {
    return { disabled: !this.linkOpen || this.state === 'coolingDown' };
  }

  /** Block (with Report as its option) is for a stranger from the lobby: in a call, or just after it ended. */
  get blockButton() {
    const shown = strangerHere(this);
    return { hidden: !shown, confirming: shown && this.confirmingBlock };
  }

  emit(effect) {
    this.effects.push(effect);
  }

  schedule(timer, ms) {
    this.emit({ type: 'schedule', timer, ms });
  }

  cancel(timer) {
    this.emit({ type: 'cancel', timer });
  }

  send(message) {
    if (this.linkOpen) this.emit({ type: 'send', link: this.link, message });
  }
}

/** Who plays on this page: changes when a call of two starts or ends, or a group room begins or ends. */
function audience(m) {
  if (m.group.group) return 'group';
  return m.inCall ? 'partner' : 'nobody';
}

/** A control message from the server as an event: its type, or what kind of error it is. */
function serverEvent({ text, now, link }) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return { type: 'garbled', text: `not JSON from the server: ${text}`, now, link };
  }
  if (!message || typeof message.type !== 'string') return { type: 'garbled', text: `no type: ${text}`, now, link };
  switch (message.type) {
    case 'room':
    case 'joined':
    case 'left':
    case 'label':
      return { type: 'roomNotice', message, now, link };
    case 'error':
      if (message.reason === 'room full') return { type: 'roomFull', now, link };
      if (typeof message.reason === 'string' && message.reason.startsWith(RESUME_REFUSED)) {
        return { type: 'resumeRefused', now, link };
      }
      return { type: 'refused', text: `server refused a message: ${message.reason}`, now, link };
    case 'waiting':
    case 'connected':
    case 'disconnected':
    case 'reconnecting':
    case 'resumed':
    case 'session':
    case 'moved':
    case 'pong':
    case 'blocked':
    case 'cooldown':
    case 'loss':
      return { ...message, now, link };
    case 'key':
      return { type: 'key', message, now, link };
    default:
      return { type: 'unknown', text: `unknown message type ${message.type}`, now, link };
  }
}

// Transitions: function (machine, event). Each does one thing; the table says where it applies.

/** Before Start: the page URL names a room (or the lobby), or a bad room ({roomError}). */
function takePlace(m, e) {
  m.room = e.room ?? null;
  m.roomError = e.roomError ?? null;
  if (m.roomError !== null) m.error = { text: m.roomError, about: 'room' };
  else if (m.error?.about === 'room' || m.error?.about === 'key') m.error = null;
}

function rename(m, e) {
  m.name = e.name;
  sendLabel(m);
}

/** In a group room, the server calls us by the name this person gave (if any). */
function sendLabel(m) {
  if (m.group.group && m.name !== null && m.name !== m.group.label) m.send({ type: 'label', label: m.name });
}

/** The browser cannot do it at all (no WebSocket): say so, and Start stays disabled. */
function refuseBrowser(m, e) {
  m.error = { text: e.text, about: 'browser' };
  m.state = 'unsupported';
}

/** Something the person should know before Start (an insecure page), which Start may still get past. */
function showNotice(m, e) {
  m.error = { text: e.text, about: 'page' };
}

function startMicrophone(m) {
  if (m.roomError !== null) return;
  m.error = null;
  m.state = 'starting';
  m.emit({ type: 'startAudio' });
}

function micFailed(m, e) {
  m.error = { text: e.text, about: 'audio' };
  m.state = 'idle';
}

/**
 * A new session at url (the page's own address unless the server sent us elsewhere, with the WebTransport offer
 * of that process if it named one).
 */
function connectFresh(m, e, url = m.publicUrl(m.room), offer = null) {
  m.cancel('retryDue');
  m.token = null;
  m.home = withoutCall(url); // the move's call token is good once; a resume goes back without it
  m.homeOffer = offer;
  openLink(m, sessionUrl(url));
  m.state = 'connecting';
}

function openLink(m, url) {
  m.link = ++m.linkSeq;
  m.url = url;
  m.linkOpen = false;
  const open = { type: 'open', link: m.link, url };
  if (m.homeOffer !== null) open.webtransport = m.homeOffer;
  m.emit(open);
}

/** The link is gone (or being left): stop what ran on it, leave the group room. */
function forgetLink(m) {
  m.cancel('pingDue');
  m.cancel('autoNextDue');
  m.confirmingBlock = false;
  m.link = 0;
  m.url = null;
  m.linkOpen = false;
  m.roundTrips.clear();
  m.partnerPathMs = null;
  m.group = emptyRoom();
  m.reconnectingSlots = new Set();
}

function closeLink(m, reason) {
  if (m.link !== 0) m.emit({ type: 'close', link: m.link, code: 1000, reason });
  forgetLink(m);
}

function dropAbandoned(m, reason) {
  if (m.abandoned !== 0) m.emit({ type: 'close', link: m.abandoned, code: 1000, reason });
  m.abandoned = 0;
}

function linkOpened(m, e) {
  if (m.error?.about === 'link') m.error = null; // turned away before, let in now
  m.linkOpen = true;
  m.lastHeard = e.now;
  ping(m, e);
}

function ping(m, e) {
  const path = m.roundTrips.pathMs === null ? {} : { path: m.roundTrips.pathMs };
  m.send({ type: 'ping', t: e.now, ...path });
  m.schedule('pingDue', PING_INTERVAL_MS);
}

/** In a call, a link silent for too long is dead whatever TCP thinks: resume on a new one. */
function pingOrAbandon(m, e) {
  if (m.token === null || e.now - m.lastHeard <= SILENT_LINK_MS) {
    ping(m, e);
    return;
  }
  // Left open: a close frame would tell the server we left, and end the call.
  dropAbandoned(m, 'leaving');
  m.abandoned = m.link;
  forgetLink(m);
  startResuming(m, e);
}

function notePong(m, e) {
  if (typeof e.t === 'number') m.roundTrips.add(e.now - e.t);
  m.partnerPathMs = typeof e.partner_path === 'number' ? e.partner_path : null;
}

/** The server's resume token for this session; a resumed session also frees the link we abandoned. */
function takeSession(m, e) {
  m.token = typeof e.token === 'string' ? e.token : null;
  m.windowMs = typeof e.window === 'number' ? e.window * 1000 : 0;
  if (e.resumed === true) dropAbandoned(m, 'resumed');
}

function followRoom(m, e) {
  const before = m.group;
  m.group = reduceRoom(before, e.message);
  if (m.group === before) return;
  if (!before.group) sendLabel(m);
  const { type, slot } = e.message;
  if (type === 'joined') m.emit({ type: 'addMember', slot });
  if (type === 'left') m.emit({ type: 'removeMember', slot });
  const present = new Set(m.group.members.map((member) => member.slot));
  if ([...m.reconnectingSlots].some((s) => !present.has(s))) {
    m.reconnectingSlots = new Set([...m.reconnectingSlots].filter((s) => present.has(s)));
  }
}

function wait(m) {
  m.attempt = 0;
  m.state = 'waiting';
}

function callStarts(m) {
  const back = m.state === 'resuming' && m.call !== 0; // our resume brought the same call back
  m.attempt = 0;
  m.partnerGone = false;
  m.confirmingBlock = false; // a confirm was for the person before
  m.cancel('autoNextDue');
  m.state = 'connected';
  if (m.room !== null) return; // a private room's key is in its link
  if (back) resendKey(m);
  else startCallKey(m);
}

function partnerLeaves(m) {
  if (m.group.group) {
    m.state = 'waiting'; // the last other member left; the server says "waiting" at once
    return;
  }
  m.state = 'partnerLeft';
  // The server leaves us out of the lobby's queue after a partner leaves: ask again, after a moment
  // (unless the person is deciding whether to block them).
  if (m.room === null && !m.confirmingBlock) m.schedule('autoNextDue', AUTO_NEXT_MS);
  else m.partnerGone = true; // in a room the server puts us back at once and says "waiting"
}

/** The partner's (a member's) link dropped; the server holds their place for a few seconds. */
function partnerDrops(m, e) {
  if (m.group.group) {
    m.reconnectingSlots = new Set([...m.reconnectingSlots, e.slot]);
  } else if (m.state === 'connected') {
    m.state = 'partnerReconnecting';
  }
}

/** The partner (a member) is back on a new link: their playback starts afresh, without the delay their
 *  silence and the burst behind it would leave in the jitter buffer. */
function partnerReturns(m, e) {
  if (m.group.group) {
    const slots = new Set(m.reconnectingSlots);
    slots.delete(e.slot);
    m.reconnectingSlots = slots;
    m.emit({ type: 'restartMember', slot: e.slot });
    return;
  }
  m.emit({ type: 'resetPartner' });
  if (m.state === 'partnerReconnecting') m.state = 'connected';
  if (m.call !== 0) resendKey(m);
}

/** Next: leave this partner (or the wait) and look for someone else. Only in the lobby. */
function findSomeoneElse(m) {
  if (!m.linkOpen || m.room !== null) return;
  m.cancel('autoNextDue');
  m.partnerGone = false;
  m.send({ type: 'next' });
  m.state = 'waiting';
}

/** A stranger from the lobby is here to block: in a call, or the one who just left it. */
function strangerHere(m) {
  return m.linkOpen && m.room === null && !m.group.group && (m.inCall || m.state === 'partnerLeft');
}

/** Block pressed: ask once more (Block, Report, Cancel); the lobby's automatic Next waits meanwhile. */
function askBlock(m) {
  if (!strangerHere(m)) return;
  m.confirmingBlock = true;
  m.cancel('autoNextDue');
}

function cancelBlock(m) {
  if (!m.confirmingBlock) return;
  m.confirmingBlock = false;
  if (m.state === 'partnerLeft') m.schedule('autoNextDue', AUTO_NEXT_MS);
}

/** Confirmed: block the stranger, or report them ({reason}); the server ends the call, as Next does. */
function blockStranger(m, e) {
  if (!m.confirmingBlock || !strangerHere(m)) return;
  m.confirmingBlock = false;
  const reason = typeof e.reason === 'string' ? e.reason.trim().slice(0, REPORT_CHARS) : null;
  m.send(reason === null ? { type: 'block' } : { type: 'report', reason });
  if (m.state === 'partnerLeft') return; // the call is over already: once the server says it blocked, look again
  m.partnerGone = false;
  m.state = 'waiting';
}

/** The server blocked them: say so for a while; after a call that had ended, look for someone else now. */
function noteBlocked(m, e) {
  m.note = e.reported === true ? REPORTED_NOTE : BLOCKED_NOTE;
  m.schedule('noteDue', NOTE_MS);
  if (m.state === 'partnerLeft') findSomeoneElse(m);
}

function clearNote(m) {
  m.note = null;
}

/** Frames of whoever sends us audio went missing: tell them, through the server, so that they send copies. */
function reportLoss(m) {
  if (m.inCall) m.send({ type: 'loss' });
}

/** Someone we send audio to loses frames: the page packs copies with ours for a while. */
function sendCopies(m) {
  if (m.inCall) m.emit({ type: 'lossReported' });
}

/** Skipping at speed: the server pairs us again only after a pause, and says how long. */
function coolDown(m, e) {
  m.coolDownS = typeof e.seconds === 'number' ? Math.ceil(e.seconds) : 0;
  m.state = 'coolingDown';
}

/**
 * Another process holds our partner or our room: go there at once, with no backoff and no "partner
 * left". If that process is gone, that link closes and we start over at the page's own address.
 */
function moveTo(m, e) {
  if (typeof e.url !== 'string') return;
  closeLink(m, 'moved');
  connectFresh(m, e, e.url, e.webtransport ?? null);
}

function refuseRoom(m) {
  closeLink(m, 'room full');
  m.error = { text: ROOM_FULL, about: 'room' };
  m.state = 'roomFull';
}

/** The current link closed: resume a call it dropped, or start a new session after a backoff. */
function linkLost(m, e) {
  const inCall = m.inCall;
  forgetLink(m);
  if (e.code === 1008 && e.reason === 'room full') {
    refuseRoom(m);
  } else if (e.code === DROPPED && inCall && m.token !== null) {
    startResuming(m, e);
  } else {
    retryLater(m);
  }
}

/** A clean close (1000, 1001 from a server going away) or a drop outside a call: the session is over. */
function retryLater(m) {
  m.token = null;
  m.retryInMs = m.backoff(m.attempt++);
  m.schedule('retryDue', m.retryInMs);
  m.state = 'retrying';
}

/** Dropped in a call: the server holds our place for its window; ask for it back at once, by token. */
function startResuming(m, e) {
  m.droppedAt = e.now;
  m.attempt = 1;
  m.state = 'resuming';
  openResume(m);
}

function openResume(m) {
  openLink(m, sessionUrl(m.home, m.token));
}

/**
 * A resume attempt failed. Within the window, try again about once a second. Past it, the place is gone,
 * or the process that held it is (only its address, /p/NAME/ws behind a proxy, knows the token): start
 * over at the page's own address, where the proxy picks a live process.
 */
function retryResume(m, e) {
  forgetLink(m);
  if (e.now - m.droppedAt >= m.windowMs) {
    giveUpCall(m);
    return;
  }
  m.retryInMs = resumeDelay(m.attempt++, m.backoff);
  m.schedule('retryDue', m.retryInMs);
}

function giveUpCall(m) {
  dropAbandoned(m, 'leaving');
  m.partnerGone = true;
  m.attempt = 0;
  retryLater(m);
}

/** Back too late: the call is over, and the server starts a new session on this link ("waiting" follows). */
function startAnew(m) {
  dropAbandoned(m, 'leaving');
  m.token = null;
  m.partnerGone = true;
  m.attempt = 0;
  m.state = 'connecting';
}

/** The network is back (the browser says so): try now rather than when the backoff ends. */
function retryNow(m, e) {
  if (m.link !== 0) return;
  m.cancel('retryDue');
  if (m.state === 'resuming') openResume(m);
  else connectFresh(m, e);
}

/** Leave this session on purpose and start a new one: another room, the lobby, or Try again. */
function reconnectThere(m, e) {
  takePlace(m, e);
  startOver(m, e);
}

function startOver(m, e) {
  closeLink(m, 'leaving');
  dropAbandoned(m, 'leaving');
  m.partnerGone = false;
  m.attempt = 0;
  connectFresh(m, e);
}

function tryRoomAgain(m, e) {
  m.error = null;
  startOver(m, e);
}

/** The page goes into the back/forward cache: leave now, so the partner hears "Partner left" at once. */
function leaveForNow(m) {
  m.cancel('retryDue');
  closeLink(m, 'page hidden');
  dropAbandoned(m, 'leaving');
  m.token = null;
  m.state = 'away';
}

// A lobby call's key (key-exchange.js does the cryptography; the machine says when, and what the page shows).

/** A new lobby call: its own key exchange, and a bounded wait for it. */
function startCallKey(m) {
  m.call = ++m.callSeq;
  m.key = { state: 'agreeing', code: null };
  m.emit({ type: 'callKey', call: m.call, op: 'start' });
  m.schedule('keyDue', KEY_WAIT_MS);
}

/** After a resume (ours or the partner's) what we sent may have been lost with a socket: send it again. */
function resendKey(m) {
  m.emit({ type: 'callKey', call: m.call, op: 'resend' });
  if (m.key.state === 'agreeing') m.schedule('keyDue', KEY_WAIT_MS);
}

/** The call is over (the machine checks after every event): its key goes with it. */
function endCallKey(m) {
  m.emit({ type: 'callKey', call: m.call, op: 'end' });
  m.cancel('keyDue');
  m.call = 0;
  m.key = null;
  if (m.error?.about === 'key') m.error = null;
}

/** The partner's key message, passed on by the server: to this call's exchange. */
function takeKey(m, e) {
  if (m.call === 0) warn(m, { text: 'a key message outside a lobby call' });
  else m.emit({ type: 'callKey', call: m.call, op: 'receive', message: e.message });
}

/** This call's exchange has a message for the partner. */
function giveKey(m, e) {
  if (e.call === m.call) m.send(e.message);
}

function keyAgreed(m, e) {
  if (e.call !== m.call) return;
  m.key = { state: 'ready', code: e.code };
  m.cancel('keyDue');
  if (m.error?.about === 'key') m.error = null;
}

function keyFailed(m, e) {
  if (e.call !== m.call) return;
  m.key = { state: 'failed', code: null };
  m.cancel('keyDue');
  m.error = { text: e.text, about: 'key' };
}

/** No key yet: say so, unless a page is reconnecting (its resume sends the key messages again). */
function keyOverdue(m, e) {
  if (m.key?.state !== 'agreeing') return;
  if (m.state === 'connected') keyFailed(m, { ...e, call: m.call, text: NO_KEY_ANSWER });
  else m.schedule('keyDue', KEY_WAIT_MS);
}

/**
 * What the page decrypts says whether its key is right (e2ee.js's verdict): 'wrong' once many frames and
 * none decrypted, 'ok' once one did. `call` is the lobby call the verdict is about (0: the private room).
 */
function keyVerdict(m, e) {
  if (e.call !== m.call) return;
  if (e.verdict === 'wrong') {
    m.error = { text: m.call === 0 ? KEY_MESSAGES.wrongKey : KEY_MESSAGES.wrongCallKey, about: 'key' };
  } else if (e.verdict === 'ok' && m.error?.about === 'key' && m.key?.state !== 'failed') {
    m.error = null;
  }
}

/**
 * The server said why it turned our last link away (refusal.js: a ban, a limit, a full server): show its line, and
 * try again when it says, or (a ban) not until the page is loaded again.
 */
function turnedAway(m, e) {
  m.error = { text: e.text, about: 'link' };
  m.cancel('retryDue');
  if (e.retryAfterS === null) {
    m.state = 'broken';
    return;
  }
  m.retryInMs = e.retryAfterS * 1000;
  m.schedule('retryDue', m.retryInMs);
}

function linkFailed(m, e) {
  forgetLink(m);
  m.error = { text: `Cannot connect to the server (${e.text}): reload the page.`, about: 'link' };
  m.state = 'broken';
}

function warn(m, e) {
  m.emit({ type: 'warn', text: e.text });
}

// Every state with a link to the server, open or opening, takes these.
const LINKED = {
  linkOpen: linkOpened,
  linkClosed: linkLost,
  linkFailed,
  pingDue: ping,
  pong: notePong,
  session: takeSession,
  roomNotice: followRoom,
  waiting: wait,
  connected: callStarts,
  disconnected: partnerLeaves,
  reconnecting: partnerDrops,
  resumed: partnerReturns,
  moved: moveTo,
  roomFull: refuseRoom,
  refused: warn,
  garbled: warn,
  unknown: warn,
  next: findSomeoneElse,
  name: rename,
  place: reconnectThere,
  pageHidden: leaveForNow,
  blockAsk: askBlock,
  blockCancel: cancelBlock,
  block: blockStranger,
  blocked: noteBlocked,
  cooldown: coolDown,
  noteDue: clearNote,
  lossSeen: reportLoss,
  loss: sendCopies,
  key: takeKey,
  keyOut: giveKey,
  keyAgreed,
  keyFailed,
  keyDue: keyOverdue,
  keyVerdict,
};

/** state -> event type -> transition. An event its state does not list changes nothing. */
const TRANSITIONS = {
  idle: { place: takePlace, name: rename, start: startMicrophone, unsupported: refuseBrowser, notice: showNotice },
  unsupported: { name: rename },
  starting: { place: takePlace, name: rename, audioStarted: connectFresh, audioFailed: micFailed },
  connecting: LINKED,
  waiting: LINKED,
  connected: { ...LINKED, pingDue: pingOrAbandon },
  partnerReconnecting: { ...LINKED, pingDue: pingOrAbandon },
  partnerLeft: { ...LINKED, autoNextDue: findSomeoneElse },
  // Skipped at speed: the server pairs us when the pause ends ("waiting" or "connected"); Next waits too.
  coolingDown: { ...LINKED, next: null },
  // Next waits until the call is back (or is not).
  resuming: { ...LINKED, linkClosed: retryResume, retryDue: openResume, resumeRefused: startAnew, online: retryNow, next: null },
  retrying: {
    place: reconnectThere, name: rename, retryDue: connectFresh, online: retryNow, pageHidden: leaveForNow, noteDue: clearNote,
    turnedAway,
  },
  roomFull: { place: reconnectThere, name: rename, start: tryRoomAgain, noteDue: clearNote }, // Start says "Try again"
  away: { place: takePlace, name: rename, pageShown: startOver, noteDue: clearNote },
  broken: { place: reconnectThere, name: rename, noteDue: clearNote },
};

/** The names of the states, for tests and docs. */
export const STATES = Object.freeze(Object.keys(TRANSITIONS));
