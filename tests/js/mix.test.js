import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MIX_HEADROOM, SOFT_CLIP_KNEE, memberGain, shape, softClip, softClipCurve } from '../../static/mix.js';

test('soft clip passes samples below the knee unchanged', () => {
  for (const x of [0, 0.01, -0.04, 0.3, -0.59, SOFT_CLIP_KNEE]) assert.equal(softClip(x), x);
});

test('soft clip stays below full scale up to three voices, and never passes it', () => {
  for (const x of [0.61, 0.9, 1, 1.5, 3, 10, 1e6]) {
    assert.ok(x > 3 ? softClip(x) <= 1 : softClip(x) < 1, `softClip(${x}) = ${softClip(x)}`);
    assert.equal(softClip(-x), -softClip(x));
  }
});

test('soft clip is monotonic and has no corner at the knee', () => {
  let previous = -Infinity;
  for (let x = -4; x <= 4; x += 0.001) {
    const y = softClip(x);
    assert.ok(y >= previous, `falls at ${x}`);
    previous = y;
  }
  const h = 1e-6;
  const slopeAbove = (softClip(SOFT_CLIP_KNEE + h) - softClip(SOFT_CLIP_KNEE)) / h;
  assert.ok(Math.abs(slopeAbove - 1) < 1e-3, `slope just above the knee ${slopeAbove}`);
});

test('soft clip turns NaN into silence', () => {
  assert.equal(softClip(NaN), 0);
});

test('three full-scale voices in phase come out below full scale, softly', () => {
  const curve = softClipCurve();
  const loud = shape(curve, MIX_HEADROOM, 3);
  assert.ok(loud < 1 && loud > 0.95, `three voices: ${loud}`);
  // A hard clip would flatten 1.2 and 2.4 alike; the shoulder keeps them apart.
  assert.ok(shape(curve, MIX_HEADROOM, 2.4) > shape(curve, MIX_HEADROOM, 1.2));
});

test('the curve through the WaveShaper is the identity for speech levels', () => {
  const curve = softClipCurve();
  for (const x of [0, 0.04, -0.04, 0.1234, -0.5, 0.599]) {
    assert.ok(Math.abs(shape(curve, MIX_HEADROOM, x) - x) < 1e-6, `shape(${x}) = ${shape(curve, MIX_HEADROOM, x)}`);
  }
});

test('the curve has an odd number of points so that silence maps to exactly zero', () => {
  const curve = softClipCurve();
  assert.equal(curve.length % 2, 1);
  assert.equal(curve[(curve.length - 1) / 2], 0);
});

test('a member slider and mute give the gain this page plays them at', () => {
  assert.equal(memberGain(100, false), 1);
  assert.equal(memberGain(50, false), 0.5);
  assert.equal(memberGain(100, true), 0);
  assert.equal(memberGain('30', false), 0.3);
  assert.equal(memberGain(250, false), 1);
  assert.equal(memberGain(-5, false), 0);
  assert.equal(memberGain('junk', false), 1);
});
