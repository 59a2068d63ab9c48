import { test } from 'node:test';
import assert from 'node:assert/strict';

import { DelayEstimator, HELD, LATE, ON_TIME } from '../../static/delay-estimator.js';

const QUANTUM_MS = (128 / 48000) * 1000;

/** Feed frames 0..count-1 arriving at arrival(k) ms; returns each arrival's class. */
function feed(estimator, count, arrival, from = 0) {
  const classes = [];
  for (let k = from; k < from + count; k++) classes.push(estimator.arrive(k, arrival(k)));
  return classes;
}

test('a steady stream keeps the target at one frame, a quantum and 1 ms, every frame on time', () => {
  const estimator = new DelayEstimator();
  const classes = feed(estimator, 500, (k) => k * 20 + 30);
  assert.ok(classes.every((c) => c === ON_TIME));
  assert.equal(estimator.lateness, 0);
  assert.ok(Math.abs(estimator.targetMs - (20 + QUANTUM_MS + 1)) < 1e-9, `target ${estimator.targetMs}`);
});

test('jitter raises the target by its peak lateness, kept for 2 to 4 s after the last such frame, then dropped', () => {
  const estimator = new DelayEstimator();
  // 10 s where every fifth frame is 30 ms late, then a quiet network.
  const classes = feed(estimator, 500, (k) => k * 20 + 30 + (k % 5 === 0 && k > 0 ? 30 : 0));
  assert.ok(classes.includes(LATE), 'late frames are late until the margin has learnt them');
  assert.ok(Math.abs(estimator.peakLatenessMs - 30) < 1, `peak ${estimator.peakLatenessMs}`);
  const jittery = estimator.targetMs;
  feed(estimator, 100, (k) => k * 20 + 30, 500); // 2 s: the hold
  assert.ok(estimator.targetMs > jittery - 1, 'kept for 2 s');
  feed(estimator, 200, (k) => k * 20 + 30, 600); // 4 s more
  assert.equal(estimator.peakLatenessMs, 0, 'forgotten after 6 quiet seconds');
  assert.ok(Math.abs(estimator.targetMs - (20 + QUANTUM_MS + 1)) < 1e-9, `target ${estimator.targetMs}`);
});

test('test_estimator_lone_late_frame_among_10_ms_frames_is_left_out_of_the_peak_two_are_not', () => {
  // 10 ms frames, every other one 10 ms late (the pages' hand-offs); at 3 s, one frame 15 ms later than that.
  const lone = new DelayEstimator({ frameMs: 10 });
  feed(lone, 400, (k) => k * 10 + 30 + (k % 2 ? 10 : 0) + (k === 301 ? 15 : 0));
  assert.ok(Math.abs(lone.peakLatenessMs - 10) < 1, `peak ${lone.peakLatenessMs}: the lone frame left out`);
  // Two such frames among the spans' 200 to 400 arrivals: one is left out, the other sets the peak.
  const two = new DelayEstimator({ frameMs: 10 });
  feed(two, 400, (k) => k * 10 + 30 + (k % 2 ? 10 : 0) + (k === 301 || k === 351 ? 15 : 0));
  assert.ok(Math.abs(two.peakLatenessMs - 25) < 1, `peak ${two.peakLatenessMs}`);
});

test('the target follows jitter down: one frame later than the rest early in a call is not kept while the rest recurs', () => {
  const estimator = new DelayEstimator();
  // The hand-offs of a loopback call: every third frame 20 ms late; at 3 s one frame 26 ms late.
  const arrival = (k) => k * 20 + 30 + (k % 3 === 0 ? 20 : 0) + (k === 150 ? 6 : 0);
  feed(estimator, 200, arrival);
  assert.ok(estimator.peakLatenessMs > 24, `peak ${estimator.peakLatenessMs}`);
  feed(estimator, 300, arrival, 200);
  assert.ok(estimator.peakLatenessMs < 21, `peak ${estimator.peakLatenessMs} after 6 s more`);
});

test('the frames an outage held come as its burst and raise the peak by one 5 ms step at most', () => {
  const estimator = new DelayEstimator();
  feed(estimator, 500, (k) => k * 20 + 30);
  const before = estimator.peakLatenessMs;
  // Nothing crosses for 400 ms (frames 500-519), then they come one every 3 ms, catching up.
  const stallEnd = 500 * 20 + 30 + 400;
  const classes = feed(estimator, 20, (k) => stallEnd + (k - 500) * 3, 500);
  assert.ok(classes.every((c) => c === HELD), `classes ${classes}`);
  assert.ok(estimator.peakLatenessMs <= before + 5, `peak ${estimator.peakLatenessMs}`);
  assert.equal(estimator.arrive(530, 530 * 20 + 30), ON_TIME, 'a frame on time again');
});

test('a long silence, a frame a second ahead of the one due, or a counter started again begins a new stream', () => {
  const estimator = new DelayEstimator();
  assert.equal(estimator.startsNewStream(0, 0, 0), false, 'the first frame continues nothing');
  feed(estimator, 100, (k) => k * 20);
  assert.equal(estimator.startsNewStream(100, 2000, 100), false);
  assert.equal(estimator.startsNewStream(100, 1980 + 1000, 100), true, 'a second without a frame');
  assert.equal(estimator.startsNewStream(150, 2000, 100), true, 'a second ahead of the frame due');
  assert.equal(estimator.startsNewStream(149, 2000, 100), false);
  assert.equal(estimator.startsNewStream(100 - 500, 2000, 100), true, 'the sender counts from scratch');
  estimator.restart();
  assert.equal(estimator.startsNewStream(7, 5000, 0), false, 'after a restart the next frame begins the stream');
});

test('an outage whose frames never catch up moves the baseline, not the peak: the sender skipped 160 ms', () => {
  const estimator = new DelayEstimator();
  feed(estimator, 500, (k) => k * 20 + 30);
  const before = estimator.peakLatenessMs;
  // The sender's capture lost 160 ms (a loaded machine): nothing for 180 ms, then frames at their usual pace,
  // each 160 ms later than its sequence number says.
  const classes = feed(estimator, 100, (k) => k * 20 + 30 + 160, 500);
  assert.ok(estimator.peakLatenessMs <= before + 5, `peak ${estimator.peakLatenessMs}`);
  assert.ok(classes.slice(-90).every((c) => c === ON_TIME), `${classes}`);
  assert.ok(Math.abs(estimator.lateness) < 1, `lateness ${estimator.lateness}`);
});
