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

test('jitter raises the target by its peak lateness, held while it recurs, then decays', () => {
  const estimator = new DelayEstimator();
  // 10 s where every fifth frame is 30 ms late, then a quiet network.
  const classes = feed(estimator, 500, (k) => k * 20 + 30 + (k % 5 === 0 && k > 0 ? 30 : 0));
  assert.ok(classes.includes(LATE), 'late frames are late until the margin has learnt them');
  assert.ok(Math.abs(estimator.peakLatenessMs - 30) < 1, `peak ${estimator.peakLatenessMs}`);
  const jittery = estimator.targetMs;
  feed(estimator, 100, (k) => k * 20 + 30, 500); // 2 s: the hold
  assert.ok(estimator.targetMs > jittery - 1, 'held for 2 s');
  feed(estimator, 1000, (k) => k * 20 + 30, 600); // 20 s more
  assert.ok(estimator.targetMs < 20 + QUANTUM_MS + 2, `target ${estimator.targetMs} after 20 quiet seconds`);
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
