// Redundancy for a link that loses datagrams (RFC 2198's idea, as WebRTC's RED sends Opus): each audio message
// also carries the payloads of the frames just before it, so that a frame whose own datagram was lost is
// recovered from the next one that arrives. Pure: no DOM, node tests it.
//
//   const sender = new RedundantSender(COPIES);       // one copy: the previous frame's payload
//   const copies = new CopySwitch();                   // on from a loss report until COPIES_HOLD_MS after the last
//   copies.lossReported(now);                         // a receiver of our audio loses frames ({"type":"loss"})
//   encryption.seal(copies.on(now) ? sender.pack(frame) : frame);  // frame: version 1 (frame.js); out: version 2
//   const window = new SeenWindow();                 // per sender: which sequence numbers came already
//   for (const f of unpackFrames(message)) if (window.accept(f.seq)) decodeAndPlay(f);  // oldest first
//
// The format (docs/protocol.md) is a frame of version 2: the newest frame's 16-byte header with version 2,
// then the count of copies, then each copy's distance back and payload length, then the copies' payloads,
// oldest first, then the newest frame's payload. A copy shares the newest frame's codec and sample rate; its
// sequence number is the newest's minus its distance and its capture time that many frames earlier. It is
// the frame format's business, not the link's: the page packs before sealing, so a copy travels inside the
// same end-to-end seal as the frame it rides with and the server sees one message, as before.
//
// Copies go out only while some receiver of our audio loses frames (docs/design.md, Copies where frames are
// lost): a receiver that counts frames missing says so (loss-watch.js), the server passes it on, and the
// sender packs copies from then until COPIES_HOLD_MS after the last report. On a clean path, none.
import { FRAME_HEADER_BYTES, FRAME_MS, FRAME_VERSION, SEQ_MODULO } from './constants.js';
import { decodeFrame, frameDurationMs } from './frame.js';

/**
 * Copies per frame while they are on. One copy, measured against two and none on recorded calls with 2 % loss
 * (docs/design.md): two recover a few more frames of a burst, and cost their wait in delay.
 */
export const COPIES = 1;

/**
 * How long copies stay on after the last loss report. A receiver that keeps losing reports every 2 s
 * (loss-watch.js), so this spans the gaps between losses at a fraction of a percent (one lost frame in 30 s
 * is 0.03 % of 10 ms frames) and keeps a path that lost once covered for the next loss, which tends to come soon
 * (Wi-Fi, a busy link); a path that has stopped losing is back to no copies within half a minute.
 */
export const COPIES_HOLD_MS = 30000;

/** The version byte of a frame that carries copies of the frames before it. */
export const REDUNDANT_VERSION = 2;
/** At most this many copies ride with a frame. */
export const MAX_COPIES = 3;
const COPY_ENTRY_BYTES = 3; // u8 distance, u16 payload length

function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * The newest frame with copies of earlier frames' payloads.
 * @param {ArrayBuffer|ArrayBufferView} frame a version 1 frame (frame.js)
 * @param {{distance: number, payload: Uint8Array}[]} copies earlier frames of the same stream, oldest first
 * @returns {ArrayBuffer} a version 2 frame, or the frame's own bytes when there are no copies
 */
export function packFrames(frame, copies) {
  const bytes = bytesOf(frame);
  if (copies.length === 0) return bytes.slice().buffer;
  const payloadBytes = copies.reduce((sum, copy) => sum + copy.payload.byteLength, 0);
  const entries = 1 + COPY_ENTRY_BYTES * copies.length;
  const out = new Uint8Array(bytes.byteLength + entries + payloadBytes);
  out.set(bytes.subarray(0, FRAME_HEADER_BYTES));
  out[0] = REDUNDANT_VERSION;
  const view = new DataView(out.buffer);
  view.setUint8(FRAME_HEADER_BYTES, copies.length);
  let at = FRAME_HEADER_BYTES + entries;
  copies.forEach((copy, i) => {
    const entry = FRAME_HEADER_BYTES + 1 + COPY_ENTRY_BYTES * i;
    view.setUint8(entry, copy.distance);
    view.setUint16(entry + 1, copy.payload.byteLength, true);
    out.set(copy.payload, at);
    at += copy.payload.byteLength;
  });
  out.set(bytes.subarray(FRAME_HEADER_BYTES), at);
  return out.buffer;
}

/**
 * The frames in one message, oldest first, each as decodeFrame() gives it plus `recovered` (true for a copy):
 * one for a version 1 frame, the copies and then the newest for a version 2 one. Null when the message is
 * malformed: copies out of order or not before the newest, lengths past its end, or a bad header.
 * @param {ArrayBuffer|ArrayBufferView} data
 */
export function unpackFrames(data) {
  const bytes = bytesOf(data);
  if (bytes === null || bytes.byteLength < FRAME_HEADER_BYTES) return null;
  if (bytes[0] !== REDUNDANT_VERSION) {
    const frame = decodeFrame(bytes);
    if (frame === null) return null;
    frame.recovered = false;
    return [frame];
  }
  if (bytes.byteLength < FRAME_HEADER_BYTES + 1) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint8(FRAME_HEADER_BYTES);
  const entries = FRAME_HEADER_BYTES + 1 + COPY_ENTRY_BYTES * count;
  if (count < 1 || count > MAX_COPIES || bytes.byteLength < entries) return null;
  const header = bytes.slice(0, FRAME_HEADER_BYTES);
  header[0] = FRAME_VERSION;
  const newest = decodeFrame(header);
  if (newest === null) return null;
  const frames = [];
  let at = entries;
  let previous = Infinity;
  for (let i = 0; i < count; i++) {
    const distance = view.getUint8(FRAME_HEADER_BYTES + 1 + COPY_ENTRY_BYTES * i);
    const length = view.getUint16(FRAME_HEADER_BYTES + 2 + COPY_ENTRY_BYTES * i, true);
    if (distance < 1 || distance >= previous || at + length > bytes.byteLength) return null;
    previous = distance;
    const payload = bytes.subarray(at, at + length);
    // Frames are 10 or 20 ms (the sender's choice): the copy's own packet says which.
    const frameMs = frameDurationMs({ ...newest, payload }) ?? FRAME_MS;
    frames.push({
      ...newest,
      seq: (newest.seq - distance + SEQ_MODULO) % SEQ_MODULO,
      captureTime: newest.captureTime - distance * frameMs,
      payload,
      recovered: true,
    });
    at += length;
  }
  if (newest.codec === 0 && (bytes.byteLength - at) % 2 !== 0) return null; // PCM16 needs whole samples
  frames.push({ ...newest, payload: bytes.subarray(at), recovered: false });
  return frames;
}

/**
 * The sending side: remembers the last `copies` frames' payloads and packs each new frame with them. A gap
 * in the sequence numbers (frames the encoder dropped) or a new codec or rate drops the copies that no
 * longer fit.
 */
export class RedundantSender {
  /** @param {number} copies 0 (send frames as they are) to MAX_COPIES */
  constructor(copies = 1) {
    if (!Number.isInteger(copies) || copies < 0 || copies > MAX_COPIES) throw new RangeError(`bad copies ${copies}`);
    this.copies = copies;
    this._recent = []; // {seq, codec, sampleRate, payload}, oldest first
    this.packed = 0; // frames sent with copies
  }

  /**
   * @param {ArrayBuffer} frame a version 1 frame
   * @returns {ArrayBuffer} what to send: version 2 with the copies that apply, or the frame as it is
   */
  pack(frame) {
    if (this.copies === 0) return frame;
    const decoded = decodeFrame(frame);
    if (decoded === null) return frame;
    const copies = [];
    for (const recent of this._recent) {
      const distance = (decoded.seq - recent.seq + SEQ_MODULO) % SEQ_MODULO;
      if (distance >= 1 && distance <= this.copies && recent.codec === decoded.codec
        && recent.sampleRate === decoded.sampleRate) copies.push({ distance, payload: recent.payload });
    }
    this._recent.push({ seq: decoded.seq, codec: decoded.codec, sampleRate: decoded.sampleRate, payload: decoded.payload.slice() });
    if (this._recent.length > this.copies) this._recent.shift();
    if (copies.length === 0) return frame;
    this.packed++;
    return packFrames(frame, copies);
  }

  /** A new stream (a new call or link): nothing from before rides with its frames. */
  reset() {
    this._recent = [];
  }
}

/**
 * Whether a sender packs copies now: from a loss report of one of its receivers (relayed by the server) until
 * holdMs after the last one. Off at the start of a call: see docs/design.md for why it does not start on.
 */
export class CopySwitch {
  constructor(holdMs = COPIES_HOLD_MS) {
    this.holdMs = holdMs;
    this.reports = 0; // loss reports taken
    this._until = -Infinity;
  }

  /** A receiver of our audio loses frames: copies from now until holdMs after this. */
  lossReported(nowMs) {
    this.reports++;
    this._until = nowMs + this.holdMs;
  }

  on(nowMs) {
    return nowMs < this._until;
  }

  /** A new call or partner: the reports were about someone else's path. */
  reset() {
    this._until = -Infinity;
  }
}

/**
 * The receiving side's memory of which frames of one sender came (or were recovered) already: a slot per
 * sequence number modulo WINDOW, holding the last one seen there. A frame WINDOW or more behind the newest
 * (a sender that started again from another counter) starts afresh. Nothing allocates after the constructor.
 */
export class SeenWindow {
  static WINDOW = 64;

  constructor() {
    this._slots = new Int32Array(SeenWindow.WINDOW);
    this.reset();
  }

  reset() {
    this._slots.fill(-1);
    this._newest = null;
  }

  /** Whether frame `seq` (16 bits) is new, remembering it; false for one that came already. */
  accept(seq) {
    if (this._newest !== null) {
      let d = (seq - this._newest) & 0xffff;
      if (d >= 0x8000) d -= 0x10000;
      if (d <= -SeenWindow.WINDOW) this.reset();
      else if (d <= 0 && this._slots[seq % SeenWindow.WINDOW] === seq) return false;
    }
    if (this._newest === null || ((seq - this._newest) & 0xffff) < 0x8000) this._newest = seq;
    this._slots[seq % SeenWindow.WINDOW] = seq;
    return true;
  }
}
