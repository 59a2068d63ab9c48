// The page's end-to-end encryption, put together: which keys are in use now (a private room's, from its
// link; a lobby call's, agreed by key-exchange.js), every frame sealed on its way out and opened on its way
// in. Pure (no DOM): node tests it. The cryptography is e2ee.js's and sframe.js's.
//
//   const encryption = new Encryption({ send, deliver, report });
//   encryption.useRoom(name, roomKey);  // the page's place: a private room and its link's key, or (null) the lobby
//   encryption.callKey(effect);         // the connection's callKey effects: a lobby call's key exchange
//   encryption.seal(frame);             // each frame the encoder makes; sealed, it goes to send(sealed)
//   encryption.open(source, data);      // each frame from the server; opened, it goes to deliver(source, frame)
//
// report(event) hands the connection machine what it needs to know: keyOut (a key message for the
// partner), keyAgreed (with the safety code), keyFailed, and keyVerdict (whether what comes decrypts).
//
// Without keys (the lobby before a call's key is agreed, a room whose key is still being imported) a frame
// is neither sent nor played: nothing ever leaves in clear. The keys of one room stay as long as the page is
// in it, resumes and moves between processes included, so its one sealer's counter only goes up; a lobby
// call's keys last the call (connection.js ends it).
import { FrameOpener, FrameSealer, KeyContext } from './e2ee.js';
import { KeyExchange } from './key-exchange.js';

/** One set of keys in use: a room's (call 0) or a lobby call's, with its sealer and its opener. */
class Keying {
  constructor(context, call, encryption) {
    this.call = call;
    this.sealer = new FrameSealer(context, { onFrame: (sealed) => encryption._send(sealed) });
    this.opener = new FrameOpener(context, {
      onFrame: (source, frame) => {
        if (encryption._keying === this) encryption._deliver(source, frame);
      },
      onVerdict: (verdict) => {
        if (encryption._keying === this) encryption._report({ type: 'keyVerdict', call, verdict });
      },
    });
  }
}

export class Encryption {
  /**
   * @param {object} handlers
   * @param {(sealed: ArrayBuffer) => void} handlers.send a sealed frame, for the link
   * @param {(source: any, frame: ArrayBuffer) => void} handlers.deliver an opened frame, for the audio session
   * @param {(event: object) => void} handlers.report an event for the connection machine
   */
  constructor({ send, deliver, report }) {
    this._send = send;
    this._deliver = deliver;
    this._report = report;
    this._keying = null; // the keys frames are sealed and opened with now
    this._room = null; // {name, key: the link's key as text, keying: a promise}: the room the page is in
    this._exchange = null; // {call, exchange}: the lobby call's key exchange
    this.unkeyed = 0; // frames neither sent nor played for want of a key (a call's first moments)
  }

  /** Whether frames are sealed and opened now (the figures line says "end-to-end encrypted"). */
  get keyed() {
    return this._keying !== null;
  }

  /**
   * The page's place: a private room's name and the 16 bytes of its link's key, or (null) the lobby. The
   * same room with the same key keeps its keys, KID and counter; anything else drops them.
   */
  async useRoom(name, roomKey) {
    const key = roomKey ? Array.from(roomKey).join() : null;
    if (this._room === null ? name === null : this._room.name === name && this._room.key === key) {
      return this._room?.keying ?? null;
    }
    this._keying = null;
    this._room = null;
    if (name === null || key === null) return null;
    const room = { name, key, keying: null };
    this._room = room;
    room.keying = KeyContext.forRoom(roomKey, name).then((context) => {
      if (this._room !== room) return null; // the page moved on meanwhile
      this._keying = new Keying(context, 0, this);
      return this._keying;
    });
    return room.keying;
  }

  /** The connection's callKey effect: start, receive, resend or end call number `call`'s key exchange. */
  callKey({ call, op, message }) {
    if (op === 'start') {
      this._keying = null; // until this call's key is agreed, nothing is sent or played
      const exchange = new KeyExchange({
        send: (out) => this._report({ type: 'keyOut', call, message: out }),
        onChange: (changed) => this._exchanged(call, changed),
      });
      this._exchange = { call, exchange };
      exchange.start();
      return;
    }
    if (this._exchange?.call !== call) return; // a call that is over
    const { exchange } = this._exchange;
    if (op === 'receive') exchange.receive(message);
    else if (op === 'resend') exchange.resend();
    else if (op === 'end') {
      this._exchange = null;
      if (this._keying?.call === call) this._keying = null;
    }
  }

  _exchanged(call, exchange) {
    if (this._exchange?.exchange !== exchange) return;
    if (exchange.state === 'ready') {
      this._keying = new Keying(exchange.context, call, this);
      this._report({ type: 'keyAgreed', call, code: exchange.safetyCode });
    } else if (exchange.state === 'failed') {
      console.warn('duoduel: the key exchange failed:', exchange.reason);
      this._report({ type: 'keyFailed', call, text: exchange.error });
    }
  }

  /** A frame of ours: sealed, then sent. False if it was not (no key yet, or too many in flight). */
  seal(frame) {
    if (this._keying === null) {
      this.unkeyed++;
      return false;
    }
    return this._keying.sealer.seal(frame);
  }

  /** A frame from someone else (a group room's slot byte already split off into `source`). */
  open(source, data) {
    if (this._keying === null) this.unkeyed++;
    else this._keying.opener.open(source, data);
  }

  /** The figures: keyed, and the current keys' counters (sealed, opened, failed, replayed, dropped). */
  stats() {
    const keying = this._keying;
    if (keying === null) return { keyed: false, sealed: 0, opened: 0, failed: 0, replayed: 0, dropped: 0, unkeyed: this.unkeyed };
    const { opened, failed, replayed, dropped } = keying.opener.stats();
    return {
      keyed: true, sealed: keying.sealer.sealed, opened, failed, replayed,
      dropped: dropped + keying.sealer.dropped, unkeyed: this.unkeyed,
    };
  }
}
