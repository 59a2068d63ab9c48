// Tests for static/figures.js: meters, the output latency, the mouth-to-ear estimate.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  isChromium, isGecko, meterValue, mouthToEar, outputLatencyHint, outputLatencyMs, RecentLeast, RoundTrips,
} from '../../static/figures.js';

const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0';
const CHROMIUM = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36';
const SAFARI = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15';

test('meters map RMS to a -60..0 dB scale', () => {
  assert.equal(meterValue(0), 0);
  assert.equal(meterValue(NaN), 0);
  assert.equal(meterValue(1), 1);
  assert.equal(meterValue(0.001), 0); // -60 dB
  assert.ok(Math.abs(meterValue(0.1) - 2 / 3) < 1e-12); // -20 dB
});

test('tells Gecko from engines that only say "like Gecko"', () => {
  assert.equal(isGecko(FIREFOX), true);
  assert.equal(isGecko(CHROMIUM), false);
  assert.equal(isGecko(SAFARI), false);
  assert.equal(isGecko(undefined), false);
});

test('Chromium asks for the smallest output buffer, the other engines for the interactive one', () => {
  assert.equal(isChromium(CHROMIUM), true);
  assert.equal(outputLatencyHint(CHROMIUM), 0);
  assert.equal(outputLatencyHint(FIREFOX), 'interactive');
  assert.equal(outputLatencyHint(SAFARI), 'interactive');
  assert.equal(outputLatencyHint(undefined), 'interactive');
});

test('Firefox output latency is never read: its first read can freeze the page', () => {
  const context = {
    get outputLatency() { throw new Error('read outputLatency'); },
    get baseLatency() { throw new Error('read baseLatency'); },
  };
  assert.equal(outputLatencyMs(context, FIREFOX), null);
});

test('elsewhere the output latency is outputLatency + baseLatency', () => {
  assert.ok(Math.abs(outputLatencyMs({ outputLatency: 0.03, baseLatency: 0.01 }, CHROMIUM) - 40) < 1e-9);
  assert.equal(outputLatencyMs({ baseLatency: 0.005 }, SAFARI), 5); // no outputLatency in older Safari
});

test('mouth-to-ear adds capture-to-send, both halves of the way, the measured playout delay and the output', () => {
  const estimate = mouthToEar({ captureToSendMs: 27, frameMs: 20, pathMs: 2, partnerPathMs: 11, jitterMs: 45, outputLatencyMs: 40 });
  assert.deepEqual(estimate, { ms: 27 + 11 + 2 + 45 + 40, withOutput: true });
});

test('mouth-to-ear takes the partner half of the way as long as ours until it is known', () => {
  const estimate = mouthToEar({ captureToSendMs: 27, frameMs: 20, pathMs: 2, jitterMs: 45, outputLatencyMs: 40 });
  assert.equal(estimate.ms, 27 + 2 + 2 + 45 + 40);
});

test('mouth-to-ear without a known output latency says so', () => {
  const estimate = mouthToEar({ captureToSendMs: 27, frameMs: 20, pathMs: 2, jitterMs: 45, outputLatencyMs: null });
  assert.deepEqual(estimate, { ms: 27 + 2 + 2 + 45, withOutput: false });
});

test('mouth-to-ear counts at least one frame of filling and never a negative delay', () => {
  const estimate = mouthToEar({ captureToSendMs: 0, frameMs: 20, pathMs: 0.5, jitterMs: -3, outputLatencyMs: 0 });
  assert.equal(estimate.ms, 21);
});

test('no estimate before our own path is known', () => {
  assert.equal(mouthToEar({ captureToSendMs: 27, frameMs: 20, pathMs: null, partnerPathMs: 3, jitterMs: 45, outputLatencyMs: 0 }), null);
});

test('round_trips_keep_the_latest_few_and_their_least', () => {
  const trips = new RoundTrips(3);
  assert.equal(trips.latest, null);
  assert.equal(trips.least, null);
  for (const ms of [4, 420, 30, 25]) trips.add(ms); // 420: a ping that waited out a stall
  assert.equal(trips.latest, 25);
  assert.equal(trips.least, 25); // the 4 ms trip has left the window of 3
  trips.add(Number.NaN);
  trips.add(-1);
  assert.deepEqual(trips.samples, [420, 30, 25]);
  trips.clear();
  assert.equal(trips.least, null);
});

test('a_stalled_ping_does_not_raise_the_estimate', () => {
  const trips = new RoundTrips();
  for (const ms of [21, 48, 33, 460, 27]) trips.add(ms);
  assert.equal(trips.pathMs, 10.5);
  const estimate = mouthToEar({ captureToSendMs: 27, frameMs: 20, pathMs: trips.pathMs, jitterMs: 45, outputLatencyMs: 40 });
  assert.equal(estimate.ms, 27 + 21 + 45 + 40);
});

test('recent_least_keeps_the_least_of_the_last_one_to_two_spans', () => {
  const least = new RecentLeast(1000);
  assert.equal(least.least, null);
  least.add(30, 0);
  least.add(24, 400);
  least.add(41, 900);
  assert.equal(least.least, 24);
  least.add(35, 1000); // a new span: the last one still counts
  assert.equal(least.least, 24);
  least.add(33, 2000); // two spans on: 24 is forgotten
  assert.equal(least.least, 33);
  least.add(Number.NaN, 2100);
  assert.equal(least.least, 33);
  least.clear();
  assert.equal(least.least, null);
});
