// Tests for static/chunk-framer.js: the microphone track's chunks cut into frames, each timed by its first sample.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ChunkFramer } from '../../static/chunk-framer.js';

const RATE = 48000;

/** A framer of frameLength samples that records its frames (copied) and gaps. */
function recorder(frameLength) {
  const frames = [];
  const gaps = [];
  const framer = new ChunkFramer(frameLength, RATE, {
    onFrame: (samples, time) => frames.push({ samples: Array.from(samples), time }),
    onGap: (missed) => gaps.push(missed),
  });
  return { framer, frames, gaps };
}

/** n samples numbered from first, so a frame shows which samples it holds. */
function chunk(first, n) {
  return Float32Array.from({ length: n }, (_, i) => first + i);
}

test('a chunk of one frame is that frame, at the chunk time', () => {
  const { framer, frames } = recorder(480);
  framer.push(chunk(0, 480), 1.0);
  framer.push(chunk(480, 480), 1.01);
  assert.deepEqual(frames.map((f) => f.time), [1.0, 1.01]);
  assert.deepEqual(frames[1].samples, Array.from(chunk(480, 480)));
});

test('chunks of another length are cut into whole frames timed by their first sample', () => {
  const { framer, frames, gaps } = recorder(480);
  for (let k = 0; k < 15; k++) framer.push(chunk(k * 128, 128), 2 + (k * 128) / RATE);
  assert.equal(frames.length, 4); // 1,920 samples of 15 * 128 = 1,920
  frames.forEach((frame, i) => {
    assert.equal(frame.samples[0], i * 480);
    assert.equal(frame.samples[479], i * 480 + 479);
    assert.ok(Math.abs(frame.time - (2 + (i * 480) / RATE)) < 1e-9);
  });
  assert.deepEqual(gaps, []);
});

test('timestamps that wobble by less than half a frame are not a gap', () => {
  const { framer, frames, gaps } = recorder(480);
  [0, 0.0101, 0.0199, 0.0302].forEach((t, k) => framer.push(chunk(k * 480, 480), t));
  assert.equal(frames.length, 4);
  assert.deepEqual(gaps, []);
});

test('a jump in the timestamps reports the frames it took and starts a fresh frame', () => {
  const { framer, frames, gaps } = recorder(480);
  framer.push(chunk(0, 480), 0);
  framer.push(chunk(480, 240), 0.01); // half a frame, then 50 ms of chunks were dropped
  framer.push(chunk(10000, 480), 0.065);
  assert.deepEqual(gaps, [6]); // from the half frame's start (10 ms) to 65 ms: the half frame and 5 more
  assert.equal(frames.length, 2);
  assert.equal(frames[1].samples[0], 10000);
  assert.equal(frames[1].time, 0.065);
});
