// Tests for static/capture-clock.js: capture times from the frames' arrival alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CaptureClock, RESYNC_MS, SPAN_MS } from '../../static/capture-clock.js';

const FRAME_S = 0.02;
const ORIGIN_MS = 1_700_000_000_000; // wall ms at context time 0

/** Feed frames rendered at ORIGIN_MS + t and delivered after delays[i] ms; return the clock. */
function feed(delays, { start = 0, drift = 0, clock = new CaptureClock() } = {}) {
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
  assert.equal(clock.wallTime(1), ORIGIN_MS + 1000 + 0.4);
});

test('a slow hand-off after the fastest one does not move the mapping', () => {
  const clock = feed([0.5, 0.5, 0.5, 100, 90, 80]); // a main thread busy for 100 ms, then catching up
  assert.equal(clock.wallTime(0), ORIGIN_MS + 0.5);
});

test('forgets frames that came through early within two spans', () => {
  // The graph rendered 100 ms ahead for its first five frames (a burst at start-up), then kept time.
  const clock = feed([-100, -100, -100, -100, -100]);
  const frames = Math.ceil((2 * SPAN_MS) / (FRAME_S * 1000)) + 1;
  feed(new Array(frames).fill(1), { start: 5 * FRAME_S, clock });
  assert.equal(clock.wallTime(1), ORIGIN_MS + 1000 + 1);
});

test('follows an audio clock slower than the wall clock, behind by the drift over two spans at most', () => {
  const drift = 0.0005; // 0.5 ms per second
  const clock = feed(new Array(3000).fill(1), { drift });
  const t = 3000 * FRAME_S;
  const error = ORIGIN_MS + t * 1000 * (1 + drift) + 1 - clock.wallTime(t);
  assert.ok(error >= 0 && error <= drift * 2 * SPAN_MS, `error ${error} ms`);
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
