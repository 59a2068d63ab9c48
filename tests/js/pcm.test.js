import { test } from 'node:test';
import assert from 'node:assert/strict';

import { floatToPcm16, pcm16ToFloat } from '../../static/pcm.js';

test('writes two little-endian bytes per sample', () => {
  const bytes = floatToPcm16(new Float32Array([0, 1, -1, 0.5]));
  const view = new DataView(bytes.buffer);
  assert.equal(bytes.byteLength, 8);
  assert.equal(view.getInt16(0, true), 0);
  assert.equal(view.getInt16(2, true), 32767);
  assert.equal(view.getInt16(4, true), -32768);
  assert.equal(view.getInt16(6, true), 16384);
  assert.deepEqual([...bytes.subarray(2, 4)], [0xff, 0x7f]);
});

test('clamps samples outside [-1, 1] and maps NaN to zero', () => {
  const view = new DataView(floatToPcm16(new Float32Array([1.5, -3, NaN, Infinity, -Infinity])).buffer);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => view.getInt16(i * 2, true)), [32767, -32768, 0, 32767, -32768]);
});

test('round-trips within one quantisation step', () => {
  const input = new Float32Array(1000);
  for (let i = 0; i < input.length; i++) input[i] = Math.sin(i * 0.37) * 0.9;
  const output = pcm16ToFloat(floatToPcm16(input));
  assert.equal(output.length, input.length);
  for (let i = 0; i < input.length; i++) assert.ok(Math.abs(output[i] - input[i]) <= 1 / 32767);
});

test('keeps full scale exactly', () => {
  assert.deepEqual([...pcm16ToFloat(floatToPcm16(new Float32Array([1, -1, 0])))], [1, -1, 0]);
});

test('reads a payload that sits at an odd offset inside a larger buffer', () => {
  const bytes = floatToPcm16(new Float32Array([0.25, -0.25]));
  const padded = new Uint8Array(bytes.byteLength + 1);
  padded.set(bytes, 1);
  const output = pcm16ToFloat(padded.subarray(1));
  assert.ok(Math.abs(output[0] - 0.25) < 1e-4);
  assert.ok(Math.abs(output[1] + 0.25) < 1e-4);
});

test('accepts an ArrayBuffer and ignores a trailing odd byte', () => {
  const bytes = floatToPcm16(new Float32Array([0.5]));
  const odd = new Uint8Array(3);
  odd.set(bytes);
  assert.equal(pcm16ToFloat(odd.buffer).length, 1);
  assert.ok(Math.abs(pcm16ToFloat(odd.buffer)[0] - 0.5) < 1e-4);
});
