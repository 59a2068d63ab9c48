// Binary audio frame (little-endian): 16-byte header then payload.
//   offset 0  u8   version = 1
//   offset 1  u8   codec: 0 = PCM16, 1 = Opus
//   offset 2  u16  sequence number (wraps at 65536)
//   offset 4  u32  sample rate of the payload (Hz)
//   offset 8  f64  capture time (wall-clock ms of the frame's first sample)
//   offset 16 ...  payload
import { CODEC_OPUS, CODEC_PCM16, FRAME_HEADER_BYTES, FRAME_VERSION, SEQ_MODULO } from './constants.js';

const KNOWN_CODECS = new Set([CODEC_PCM16, CODEC_OPUS]);

function toBytes(payload) {
  if (payload === undefined || payload === null) return new Uint8Array(0);
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  throw new TypeError('payload must be an ArrayBuffer or a typed array');
}

/**
 * Build one binary frame.
 * @param {{codec:number, seq:number, sampleRate:number, captureTime:number, payload:ArrayBuffer|ArrayBufferView}} frame
 * @returns {ArrayBuffer}
 */
export function encodeFrame({ codec, seq, sampleRate, captureTime, payload }) {
  if (!KNOWN_CODECS.has(codec)) throw new RangeError(`unknown codec ${codec}`);
  if (!Number.isInteger(sampleRate) || sampleRate <= 0 || sampleRate > 0xffffffff) {
    throw new RangeError(`bad sample rate ${sampleRate}`);
  }
  const bytes = toBytes(payload);
  const buffer = new ArrayBuffer(FRAME_HEADER_BYTES + bytes.byteLength);
  const view = new DataView(buffer);
  view.setUint8(0, FRAME_VERSION);
  view.setUint8(1, codec);
  // Callers may pass a running counter: the wire keeps it modulo 2^16.
  view.setUint16(2, ((Math.trunc(seq) % SEQ_MODULO) + SEQ_MODULO) % SEQ_MODULO, true);
  view.setUint32(4, sampleRate, true);
  view.setFloat64(8, Number(captureTime) || 0, true);
  new Uint8Array(buffer, FRAME_HEADER_BYTES).set(bytes);
  return buffer;
}

/**
 * Parse one binary frame.
 * @param {ArrayBuffer|ArrayBufferView} data
 * @returns {{version:number, codec:number, seq:number, sampleRate:number, captureTime:number, payload:Uint8Array} | null}
 *   null when the frame is malformed: too short, wrong version, unknown codec, zero sample rate,
 *   or a PCM16 payload with an odd byte count.
 */
export function decodeFrame(data) {
  let bytes;
  try {
    bytes = toBytes(data);
  } catch {
    return null;
  }
  if (bytes.byteLength < FRAME_HEADER_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  const codec = view.getUint8(1);
  const seq = view.getUint16(2, true);
  const sampleRate = view.getUint32(4, true);
  const captureTime = view.getFloat64(8, true);
  if (version !== FRAME_VERSION || !KNOWN_CODECS.has(codec) || sampleRate === 0) return null;
  const payload = bytes.subarray(FRAME_HEADER_BYTES);
  if (codec === CODEC_PCM16 && payload.byteLength % 2 !== 0) return null;
  return { version, codec, seq, sampleRate, captureTime, payload };
}

// Opus frame durations by TOC config (RFC 6716, 3.1), in ms: SILK 0-11, hybrid 12-15, CELT 16-31.
const SILK_MS = [10, 20, 40, 60];
const HYBRID_MS = [10, 20];
const CELT_MS = [2.5, 5, 10, 20];

/**
 * The audio a decoded frame carries, in ms: from the Opus packet's TOC byte (RFC 6716, 3.1), or from a PCM16
 * payload's length. The receiver learns the sender's frame duration (10 or 20 ms) from it, before decoding.
 * @param {{codec:number, sampleRate:number, payload:Uint8Array}} frame from decodeFrame()
 * @returns {number|null} null for an Opus frame without a packet
 */
export function frameDurationMs({ codec, sampleRate, payload }) {
  if (codec === CODEC_PCM16) return (payload.byteLength / 2 / sampleRate) * 1000;
  if (payload.byteLength === 0) return null;
  const toc = payload[0];
  const config = toc >> 3;
  let ms;
  if (config < 12) ms = SILK_MS[config & 3];
  else if (config < 16) ms = HYBRID_MS[config & 1];
  else ms = CELT_MS[config & 3];
  const code = toc & 3;
  if (code === 0) return ms;
  if (code !== 3) return 2 * ms;
  return payload.byteLength < 2 ? null : (payload[1] & 0x3f) * ms;
}
