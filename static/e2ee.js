// End-to-end encryption of audio frames: duoduel's keys, and the SFrame (sframe.js) pipeline each way.
// Pure (no DOM): node's test runner checks it, with the WebCrypto node has.
//
//   const keys = await KeyContext.forRoom(roomKeyFromFragment(location.hash), room); // a private room
//   const keys = exchange.context;                                   // a lobby call (key-exchange.js)
//   const sealer = new FrameSealer(keys, { onFrame: (sealed) => link.sendAudio(sealed) });
//   sealer.seal(frame);                      // each frame from the encoder, in order
//   const opener = new FrameOpener(keys, { onFrame: (source, frame) => session.receiveFrom(source, frame) });
//   opener.open(source, data);               // each binary message from the server (slot byte stripped)
//   opener.verdict;                          // 'waiting', 'ok', or 'wrong': nothing decrypts
//
// What is sent is an SFrame ciphertext around duoduel's frame, whole (frame.js: version, codec, seq, rate,
// capture time, payload), with AES_128_GCM_SHA256_128 and the SFrame header as the only associated data:
//   config byte, KID (0 or 8 bytes), CTR (0 to 8 bytes) | AES-GCM(duoduel frame) | 16-byte tag
// In clear is only what the receiver needs before it can decrypt: the KID names the sender's key, the CTR
// makes the nonce. Everything else is inside, the sender's wall clock (capture time) included, which would
// tell the server about each page's clock. A group room's slot byte stays in front, outside, as the server
// writes it.
//
// Keys. Each sender has a base key of its own, so that no two senders ever share a (key, nonce):
//   base_key(KID) = HKDF-SHA256(IKM = secret, salt = scope, info = "duoduel sender " + KID as 8 bytes), 16 bytes
//   sframe_key, sframe_salt = RFC 9605's derivation from base_key and KID
// In a private room the secret is the link's key (the fragment, 128 random bits) and the scope
// "duoduel room " + the room's name; each page draws a random 64-bit KID whenever it takes up a room's key.
// In a lobby call the secret is the ECDH shared secret and the scope "duoduel call " + both public keys,
// and the two pages take KIDs 0 and 1 in the order of their public keys (key-exchange.js).
// The CTR counts the frames a FrameSealer encrypts, from 0, and only goes up: one sealer per context, so one
// (KID, CTR) per key and frame. A resume, or a move to another process, keeps the page and so its context
// and counter; a reload is a new page with a new KID (or, in the lobby, a new call with a new key).
import { base64url } from './room.js';
import { bigEndian, concat, decodeHeader, decrypt, deriveKeySalt, encrypt } from './sframe.js';

export const ROOM_KEY_BYTES = 16;
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Senders whose keys a receiver keeps (a group room holds 8; the rest are members who reloaded). */
const MAX_SENDER_KEYS = 32;
/** Frames being encrypted at once; past this the newest is dropped (80 ms of audio: something is stuck). */
const SEAL_IN_FLIGHT = 4;
/** Frames being decrypted at once: a room of 8 sends 7 streams. */
const OPEN_IN_FLIGHT = 16;
/** Frames behind the newest from one sender that can still arrive (later ones are replays, or too late). */
const REPLAY_WINDOW = 64n;
/** Failures in a row, with no frame ever decrypted, before a page says its key is wrong: 1 s of one sender. */
export const WRONG_KEY_FAILURES = 50;

export const MESSAGES = Object.freeze({
  noKey: 'This room link is incomplete: its key (the part after "#") is missing or damaged. ' +
    'Open the full link, or create a new private room.',
  wrongKey: 'Nothing the others send can be decrypted: the room link (yours or theirs) is incomplete or wrong. ' +
    'Open the full link again.',
  wrongCallKey: "Your partner's audio cannot be decrypted: someone between you changed the key exchange. " +
    'Press Next to find someone else.',
});

const utf8 = new TextEncoder();

/** A fresh room key for a link's fragment: 16 random bytes as 22 base64url characters. */
export function newRoomKey(randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  const bytes = randomBytes(ROOM_KEY_BYTES);
  if (!bytes || bytes.length !== ROOM_KEY_BYTES) throw new Error(`randomBytes must return ${ROOM_KEY_BYTES} bytes`);
  return base64url(bytes);
}

/** base64url (no padding) to bytes, or null unless it is exactly `length` bytes spelled the one way base64url() does. */
export function fromBase64url(text, length) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const out = [];
  let value = 0;
  let bits = 0;
  for (const char of text) {
    value = (value << 6) | BASE64URL.indexOf(char);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
    }
    value &= (1 << bits) - 1;
  }
  // Left-over bits are zero, and fewer than a character's worth: one spelling per byte string.
  if (value !== 0 || bits >= 6 || out.length !== length) return null;
  return Uint8Array.from(out);
}

/**
 * The room key a page URL's fragment carries (location.hash: '#KEY'), as 16 bytes, or {error} (one line for
 * the page) when it is missing or is not the 22 base64url characters a page makes.
 */
export function roomKeyFromFragment(hash) {
  const key = fromBase64url(typeof hash === 'string' ? hash.replace(/^#/, '') : '', ROOM_KEY_BYTES);
  return key || { error: MESSAGES.noKey };
}

/** 8 random bytes as a BigInt: a page's KID in a private room. */
function randomKid(randomBytes) {
  const bytes = randomBytes(8);
  return bytes.reduce((kid, byte) => (kid << 8n) | BigInt(byte), 0n);
}

/**
 * The keys of one room or call as this page holds them: its own KID, which KIDs it accepts, and each
 * sender's SFrame key and salt (derived once, kept for the MAX_SENDER_KEYS latest senders).
 */
export class KeyContext {
  /**
   * @param {CryptoKey} secret an HKDF key: the room's link key, or a call's ECDH shared secret
   * @param {Uint8Array} scope HKDF's salt: what the secret is for (the room's name, the call's public keys)
   * @param {bigint} ownKid this page's KID
   * @param {bigint|null} peerKid the one KID accepted from others (a call), or null for any but our own (a room)
   */
  constructor(secret, scope, ownKid, peerKid = null) {
    this._secret = secret;
    this._scope = scope;
    this.ownKid = ownKid;
    this.peerKid = peerKid;
    this._keys = new Map(); // KID -> Promise<{key, salt}>, oldest first
    this.hasSealer = false;
  }

  /** A private room's keys, from the link's key (roomKeyFromFragment) and the room's name. */
  static async forRoom(roomKey, roomName, randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n))) {
    const secret = await crypto.subtle.importKey('raw', roomKey, 'HKDF', false, ['deriveBits']);
    return new KeyContext(secret, utf8.encode(`duoduel room ${roomName}`), randomKid(randomBytes));
  }

  /** A lobby call's keys, from the ECDH shared secret and both public keys in order (key-exchange.js). */
  static async forCall(sharedSecret, firstPublic, secondPublic, ownKid) {
    const secret = await crypto.subtle.importKey('raw', sharedSecret, 'HKDF', false, ['deriveBits']);
    const scope = concat(utf8.encode('duoduel call '), firstPublic, secondPublic);
    return new KeyContext(secret, scope, ownKid, 1n - ownKid);
  }

  /** Whether frames under this KID can be from someone else here. */
  accepts(kid) {
    return this.peerKid === null ? kid !== this.ownKid : kid === this.peerKid;
  }

  /** The SFrame key and salt of one sender (a promise; derived on first use). */
  senderKeys(kid) {
    let keys = this._keys.get(kid);
    if (keys) {
      this._keys.delete(kid); // most recent last
    } else {
      keys = this._derive(kid);
      if (this._keys.size >= MAX_SENDER_KEYS) this._keys.delete(this._keys.keys().next().value);
    }
    this._keys.set(kid, keys);
    return keys;
  }

  async _derive(kid) {
    const info = concat(utf8.encode('duoduel sender '), bigEndian(kid, 8));
    const baseKey = await crypto.subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: this._scope, info }, this._secret, 8 * 16);
    return deriveKeySalt(baseKey, kid);
  }
}

/**
 * Work that completes out of order, handed on in the order it started, with at most `limit` under way:
 * past that the newest is refused rather than queued, since late audio is worse than lost audio.
 */
export class InOrder {
  constructor(limit) {
    this._limit = limit;
    this._queue = []; // {done, ok, value, deliver}, oldest first
  }

  /** Whether push() would refuse now. */
  get full() {
    return this._queue.length >= this._limit;
  }

  /** Start tracking `promise`; deliver(ok, value) is called after every earlier one's. False if refused. */
  push(promise, deliver) {
    if (this.full) return false;
    const entry = { done: false, ok: false, value: undefined, deliver };
    this._queue.push(entry);
    promise.then(
      (value) => this._settle(entry, true, value),
      (error) => this._settle(entry, false, error),
    );
    return true;
  }

  _settle(entry, ok, value) {
    Object.assign(entry, { done: true, ok, value });
    while (this._queue.length && this._queue[0].done) {
      const head = this._queue.shift();
      try {
        head.deliver(head.ok, head.value);
      } catch (error) {
        console.error('duoduel: a frame handler failed:', error); // the frames behind it still go on
      }
    }
  }
}

/** Encrypts this page's frames in order, one CTR each, never more than SEAL_IN_FLIGHT at once. */
export class FrameSealer {
  /**
   * @param {KeyContext} context
   * @param {{onFrame: (sealed: ArrayBuffer) => void, maxInFlight?: number}} options
   */
  constructor(context, { onFrame, maxInFlight = SEAL_IN_FLIGHT }) {
    if (context.hasSealer) throw new Error('one sender per key context: a second would reuse its nonces');
    context.hasSealer = true;
    this._context = context;
    this._keys = context.senderKeys(context.ownKid);
    this._onFrame = onFrame;
    this._work = new InOrder(maxInFlight);
    this._ctr = 0n; // the next frame's
    this.sealed = 0;
    this.dropped = 0; // refused: too many frames in flight
    this.failed = 0;
  }

  /** The CTR the next frame will take. */
  get nextCtr() {
    return this._ctr;
  }

  /** Encrypt one frame; its SFrame comes to onFrame after every earlier one's. False if it was dropped. */
  seal(frame) {
    if (this._work.full) {
      this.dropped++;
      return false;
    }
    const ctr = this._ctr;
    this._ctr += 1n; // taken before any await: no two frames ever get one CTR
    const kid = this._context.ownKid;
    const sealing = this._keys.then((keys) => encrypt(keys, kid, ctr, frame));
    return this._work.push(sealing, (ok, sealed) => {
      if (!ok) {
        this.failed++;
        return;
      }
      this.sealed++;
      this._onFrame(sealed.buffer);
    });
  }
}

/** Says whether this page's key works: 'waiting' (nothing came), 'ok' (something decrypted), 'wrong'. */
export class KeyCheck {
  constructor(limit = WRONG_KEY_FAILURES) {
    this._limit = limit;
    this.opened = 0;
    this.failuresInARow = 0;
  }

  get verdict() {
    if (this.opened > 0) return 'ok';
    return this.failuresInARow >= this._limit ? 'wrong' : 'waiting';
  }

  onOpened() {
    this.opened++;
    this.failuresInARow = 0;
  }

  onFailed() {
    this.failuresInARow++;
  }
}

/** Per sender: the newest CTR and which of the REPLAY_WINDOW before it came (RFC 3711's window). */
class ReplayWindow {
  constructor() {
    this._newest = -1n;
    this._seen = 0n; // bit i: newest - i came
  }

  /** True if ctr is new (and now marked), false if it came before or is too old to tell. */
  accept(ctr) {
    if (ctr > this._newest) {
      const shift = ctr - this._newest;
      this._seen = shift >= REPLAY_WINDOW ? 1n : ((this._seen << shift) | 1n) & ((1n << REPLAY_WINDOW) - 1n);
      this._newest = ctr;
      return true;
    }
    const age = this._newest - ctr;
    if (age >= REPLAY_WINDOW || (this._seen >> age) & 1n) return false;
    this._seen |= 1n << age;
    return true;
  }
}

/**
 * Decrypts what others send, in arrival order; a frame that fails is dropped and counted, never played.
 * `source` is whatever the caller routes by (a group room's slot), handed back with the frame.
 */
export class FrameOpener {
  /**
   * @param {KeyContext} context
   * @param {{onFrame: (source: any, frame: ArrayBuffer) => void, onVerdict?: (verdict: string) => void,
   *   maxInFlight?: number}} options
   */
  constructor(context, { onFrame, onVerdict = () => {}, maxInFlight = OPEN_IN_FLIGHT }) {
    this._context = context;
    this._onFrame = onFrame;
    this._onVerdict = onVerdict;
    this._work = new InOrder(maxInFlight);
    this._check = new KeyCheck();
    this._windows = new Map(); // KID -> ReplayWindow
    this.opened = 0;
    this.failed = 0; // malformed, a KID not ours to accept, or a wrong tag
    this.replayed = 0; // authentic, but a CTR that came already
    this.dropped = 0; // refused: too many frames in flight
  }

  get verdict() {
    return this._check.verdict;
  }

  /** One binary message from someone else: an SFrame ciphertext (ArrayBuffer or a view). */
  open(source, data) {
    if (this._work.full) {
      this.dropped++;
      return;
    }
    const header = decodeHeader(data);
    const accepted = header !== null && this._context.accepts(header.kid);
    const opening = accepted
      ? this._context.senderKeys(header.kid).then((keys) => decrypt(keys, header, data))
      : Promise.reject(new Error('not an SFrame from someone here'));
    this._work.push(opening, (ok, frame) => this._done(source, header, ok, frame));
  }

  _done(source, header, ok, frame) {
    const before = this._check.verdict;
    if (!ok) {
      this.failed++;
      this._check.onFailed();
    } else if (!this._window(header.kid).accept(header.ctr)) {
      this.replayed++;
    } else {
      this.opened++;
      this._check.onOpened();
      this._onFrame(source, frame);
    }
    if (this._check.verdict !== before) this._onVerdict(this._check.verdict);
  }

  _window(kid) {
    let window = this._windows.get(kid);
    if (window) {
      this._windows.delete(kid); // most recent last, as the keys
    } else {
      if (this._windows.size >= MAX_SENDER_KEYS) this._windows.delete(this._windows.keys().next().value);
      window = new ReplayWindow();
    }
    this._windows.set(kid, window);
    return window;
  }

  /** The counters: opened, failed, replayed, dropped, and the verdict. */
  stats() {
    const { opened, failed, replayed, dropped } = this;
    return { opened, failed, replayed, dropped, verdict: this.verdict };
  }
}
