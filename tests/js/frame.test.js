import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CODEC_OPUS, CODEC_PCM16, FRAME_HEADER_BYTES } from '../../static/constants.js';
import { decodeFrame, encodeFrame, frameDurationMs } from '../../static/frame.js';

function sampleFrame(overrides = {}) {
  return {
    codec: CODEC_OPUS,
    seq: 4660,
    sampleRate: 48000,
    captureTime: 1732547123456.789,
    payload: new Uint8Array([1, 2, 3, 250]),
    ...overrides,
  };
}

test('round-trips every header field and the payload', () => {
  const frame = sampleFrame();
  const decoded = decodeFrame(encodeFrame(frame));
  assert.equal(decoded.version, 1);
  assert.equal(decoded.codec, CODEC_OPUS);
  assert.equal(decoded.seq, 4660);
  assert.equal(decoded.sampleRate, 48000);
  assert.equal(decoded.captureTime, 1732547123456.789);
  assert.deepEqual([...decoded.payload], [1, 2, 3, 250]);
});

test('lays the header out little-endian as docs/protocol.md says', () => {
  const buffer = encodeFrame(sampleFrame({ codec: CODEC_PCM16, seq: 0x1234, sampleRate: 44100, captureTime: 2.5,
    payload: new Uint8Array([9, 8]) }));
  const view = new DataView(buffer);
  assert.equal(buffer.byteLength, FRAME_HEADER_BYTES + 2);
  assert.equal(view.getUint8(0), 1);
  assert.equal(view.getUint8(1), 0);
  assert.deepEqual([...new Uint8Array(buffer, 2, 2)], [0x34, 0x12]);
  assert.equal(view.getUint32(4, true), 44100);
  assert.equal(view.getFloat64(8, true), 2.5);
  assert.deepEqual([...new Uint8Array(buffer, 16)], [9, 8]);
});

test('wraps the sequence number at 65536', () => {
  assert.equal(decodeFrame(encodeFrame(sampleFrame({ seq: 65536 + 7 }))).seq, 7);
  assert.equal(decodeFrame(encodeFrame(sampleFrame({ seq: 65535 }))).seq, 65535);
});

test('accepts an ArrayBuffer, a typed array or a DataView as payload', () => {
  const bytes = new Uint8Array([5, 6, 7, 8]);
  for (const payload of [bytes.buffer, bytes, new Int16Array(bytes.buffer), new DataView(bytes.buffer)]) {
    assert.deepEqual([...decodeFrame(encodeFrame(sampleFrame({ payload }))).payload], [5, 6, 7, 8]);
  }
});

test('encodes a frame with an empty payload', () => {
  const decoded = decodeFrame(encodeFrame(sampleFrame({ payload: new Uint8Array(0) })));
  assert.equal(decoded.payload.byteLength, 0);
});

test('decodes a frame that sits inside a larger buffer', () => {
  const buffer = encodeFrame(sampleFrame());
  const padded = new Uint8Array(buffer.byteLength + 8);
  padded.set(new Uint8Array(buffer), 3);
  const decoded = decodeFrame(padded.subarray(3, 3 + buffer.byteLength));
  assert.equal(decoded.seq, 4660);
  assert.deepEqual([...decoded.payload], [1, 2, 3, 250]);
});

test('rejects a frame shorter than the header', () => {
  assert.equal(decodeFrame(new ArrayBuffer(0)), null);
  assert.equal(decodeFrame(encodeFrame(sampleFrame()).slice(0, FRAME_HEADER_BYTES - 1)), null);
});

test('rejects a frame with the wrong version', () => {
  const buffer = encodeFrame(sampleFrame());
  new DataView(buffer).setUint8(0, 2);
  assert.equal(decodeFrame(buffer), null);
});

test('rejects a frame with an unknown codec', () => {
  const buffer = encodeFrame(sampleFrame());
  new DataView(buffer).setUint8(1, 7);
  assert.equal(decodeFrame(buffer), null);
});

test('rejects a frame with a zero sample rate', () => {
  const buffer = encodeFrame(sampleFrame());
  new DataView(buffer).setUint32(4, 0, true);
  assert.equal(decodeFrame(buffer), null);
});

test('rejects a PCM16 frame with an odd payload length', () => {
  assert.equal(decodeFrame(encodeFrame(sampleFrame({ codec: CODEC_PCM16, payload: new Uint8Array(3) }))), null);
});

test('rejects data that is not binary', () => {
  assert.equal(decodeFrame('hello'), null);
  assert.equal(decodeFrame(null), null);
});

test('refuses to encode an unknown codec or a bad sample rate', () => {
  assert.throws(() => encodeFrame(sampleFrame({ codec: 3 })), RangeError);
  assert.throws(() => encodeFrame(sampleFrame({ sampleRate: 0 })), RangeError);
  assert.throws(() => encodeFrame(sampleFrame({ sampleRate: 44100.5 })), RangeError);
});

test('a frame says how much audio it carries: the Opus TOC byte, or the PCM16 length', () => {
  const opus = (...bytes) => ({ codec: CODEC_OPUS, sampleRate: 48000, payload: Uint8Array.from(bytes) });
  assert.equal(frameDurationMs(opus(9 << 3, 0xff)), 20, 'SILK wideband, 20 ms (config 9)');
  assert.equal(frameDurationMs(opus(8 << 3)), 10, 'SILK wideband, 10 ms');
  assert.equal(frameDurationMs(opus(13 << 3)), 20, 'hybrid, 20 ms');
  assert.equal(frameDurationMs(opus(30 << 3)), 10, 'CELT fullband, 10 ms');
  assert.equal(frameDurationMs(opus((31 << 3) | 1)), 40, 'two CELT 20 ms frames in a packet (code 1)');
  assert.equal(frameDurationMs(opus((8 << 3) | 3, 3)), 30, 'three SILK 10 ms frames (code 3)');
  assert.equal(frameDurationMs(opus()), null, 'no packet');
  const pcm = { codec: CODEC_PCM16, sampleRate: 44100, payload: new Uint8Array(2 * 441) };
  assert.equal(frameDurationMs(pcm), 10);
});
