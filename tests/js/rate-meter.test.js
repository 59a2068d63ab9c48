// Tests for static/rate-meter.js: kbit/s over a sliding window.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RATE_WINDOW_MS, RateMeter } from '../../static/rate-meter.js';

test('86-byte frames every 20 ms read 34.4 kbit/s', () => {
  const meter = new RateMeter(0);
  for (let t = 20; t <= 5000; t += 20) meter.add(86, t);
  assert.ok(Math.abs(meter.kbps(5000) - 34.4) < 1e-9);
});

test('counts only the last window', () => {
  const meter = new RateMeter(0);
  for (let t = 20; t <= 2000; t += 20) meter.add(1000, t); // a loud start
  for (let t = 2020; t <= 6000; t += 20) meter.add(10, t);
  assert.ok(Math.abs(meter.kbps(6000) - 4) < 1e-9);
  assert.equal(meter.kbps(6000 + RATE_WINDOW_MS), 0);
});

test('the first frame does not read as a burst', () => {
  const meter = new RateMeter(0);
  meter.add(86, 1);
  assert.ok(meter.kbps(1) <= (86 * 8) / 250);
});

test('reset starts the count again', () => {
  const meter = new RateMeter(0);
  for (let t = 20; t <= 1000; t += 20) meter.add(500, t);
  meter.reset(1000);
  assert.equal(meter.kbps(1000), 0);
});
