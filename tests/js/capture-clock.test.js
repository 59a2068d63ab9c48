// Tests for static/capture-clock.js: capture times from the frames' arrival alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CaptureClock, RESYNC_MS, RISE_MS_PER_S } from '../../static/capture-clock.js';

const FRAME_S = 0.02;
const ORIGIN_MS = 1_700_000_000_000; // wall ms at context time 0

/** Feed frames rendered at ORIGIN_MS + t and delivered after delays[i] ms; return the clock. */
function feed(delays, { start = 0, drift = 0 } = {}) {
  const clock = new CaptureClock();
  delays.forEach((delay, i) => {
    const end = start + (i + 1) * FRAME_S;
    clock.observe(end, ORIGIN_MS + end * 1000 * (1 + drift) + delay);
  });
  return clock;
}

test('is not defined before the first frame', () => {
  assert.ok(Number.isNaN(new CaptureClock().wallTime(1)));
});

test('maps a sample to when it was rendered, late by the fastest hand-off only', () => {
  const clock = feed([7, 3, 12, 0.4, 9, 25, 5]);
  // The last frame arrived 64.6 ms after the fastest: the mapping may have risen by 0.0646 ms.
  const error = clock.wallTime(1) - (ORIGIN_MS + 1000 + 0.4);
  assert.ok(error >= 0 && error <= RISE_MS_PER_S * 0.0646 + 1e-3, `error ${error} ms`);
});

test('a slow hand-off after the fastest one does not move the mapping', () => {
  const clock = feed([0.5, 0.5, 0.5, 100, 90, 80]); // a main thread busy for 100 ms, then catching up
  // 139.5 ms of wall time after the fastest frame: a rise of 0.14 ms at most, not the 80 ms of the last.
  const error = clock.wallTime(0) - (ORIGIN_MS + 0.5);
  assert.ok(error >= 0 && error <= RISE_MS_PER_S * 0.1395 + 1e-3, `error ${error} ms`);
});

test('follows an audio clock slower than the wall clock by rising slowly', () => {
  // 0.05 % drift: 0.5 ms per second, within the allowed rise; after 60 s the error stays under 1 ms.
  const delays = new Array(3000).fill(1);
  const clock = feed(delays, { drift: 0.0005 });
  const t = 3000 * FRAME_S;
  assert.ok(RISE_MS_PER_S >= 0.5);
  assert.ok(Math.abs(clock.wallTime(t) - (ORIGIN_MS + t * 1000 * 1.0005 + 1)) < 1);
});

test('follows an audio clock faster than the wall clock at once', () => {
  const clock = feed(new Array(3000).fill(1), { drift: -0.001 });
  const t = 3000 * FRAME_S;
  assert.ok(Math.abs(clock.wallTime(t) - (ORIGIN_MS + t * 1000 * 0.999 + 1)) < 0.1);
});

test('starts again after the context clock stops (suspended) while the wall clock goes on', () => {
  const clock = feed([1, 1, 1]);
  // 5 s suspended: the next frames' context time continues where it stopped.
  const end = 4 * FRAME_S;
  clock.observe(end, ORIGIN_MS + 5000 + end * 1000 + 2);
  assert.ok(5000 > RESYNC_MS);
  assert.equal(clock.wallTime(end), ORIGIN_MS + 5000 + end * 1000 + 2);
});
