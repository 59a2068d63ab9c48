import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Resampler } from '../../static/resampler.js';

/** A sine of `frequency` Hz at `rate`, cut into frames of `frameLength` samples. */
function sineFrames(frequency, rate, frameLength, frameCount) {
  const frames = [];
  for (let f = 0; f < frameCount; f++) {
    const frame = new Float32Array(frameLength);
    for (let i = 0; i < frameLength; i++) frame[i] = Math.sin(2 * Math.PI * frequency * (f * frameLength + i) / rate);
    frames.push(frame);
  }
  return frames;
}

function resampleAll(resampler, frames) {
  const parts = frames.map((frame) => resampler.process(frame));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Frequency estimated from the zero crossings (linear interpolation between samples). */
function zeroCrossingFrequency(samples, rate) {
  const crossings = [];
  for (let i = 1; i < samples.length; i++) {
    if (samples[i - 1] < 0 && samples[i] >= 0) crossings.push(i - 1 + samples[i - 1] / (samples[i - 1] - samples[i]));
  }
  return (crossings.length - 1) / ((crossings.at(-1) - crossings[0]) / rate);
}

/** Largest deviation from the ideal sine once aligned to the resampler's start. */
function maxErrorAgainstSine(samples, frequency, rate) {
  let worst = 0;
  for (let i = 0; i < samples.length; i++) {
    worst = Math.max(worst, Math.abs(samples[i] - Math.sin(2 * Math.PI * frequency * i / rate)));
  }
  return worst;
}

for (const [inRate, outRate] of [[44100, 48000], [48000, 44100], [16000, 48000]]) {
  test(`keeps a 440 Hz sine at 440 Hz from ${inRate} to ${outRate} Hz`, () => {
    const frames = sineFrames(440, inRate, inRate / 50, 50);
    const out = resampleAll(new Resampler(inRate, outRate), frames);
    assert.ok(Math.abs(zeroCrossingFrequency(out, outRate) - 440) < 0.5);
    // Linear interpolation of a 440 Hz sine stays within a fraction of a percent of the ideal curve.
    assert.ok(maxErrorAgainstSine(out, 440, outRate) < 0.01);
  });
}

test('joins frames without a discontinuity at the frame edges', () => {
  const inRate = 44100;
  const outRate = 48000;
  const frequency = 1000;
  const resampler = new Resampler(inRate, outRate);
  const out = resampleAll(resampler, sineFrames(frequency, inRate, 882, 100));
  // The biggest step between neighbouring samples of a 1 kHz sine at 48 kHz is 2*pi*1000/48000.
  const maxStep = 2 * Math.PI * frequency / outRate;
  for (let i = 1; i < out.length; i++) assert.ok(Math.abs(out[i] - out[i - 1]) <= maxStep * 1.01, `step at ${i}`);
});

test('gives the same output whether fed in frames or in one piece', () => {
  const frames = sineFrames(300, 48000, 960, 20);
  const whole = new Float32Array(960 * 20);
  frames.forEach((frame, i) => whole.set(frame, i * 960));
  const chunked = resampleAll(new Resampler(48000, 44100), frames);
  const single = new Resampler(48000, 44100).process(whole);
  assert.equal(chunked.length, single.length);
  for (let i = 0; i < single.length; i++) assert.ok(Math.abs(chunked[i] - single[i]) < 1e-6);
});

for (const [inRate, outRate] of [[44100, 48000], [48000, 44100], [16000, 48000], [48000, 16000]]) {
  test(`tracks the rate ratio over ten minutes of frames from ${inRate} to ${outRate} Hz`, () => {
    const resampler = new Resampler(inRate, outRate);
    const frame = new Float32Array(inRate / 50);
    // The resampler holds back at most one input sample, i.e. this many output samples.
    const holdBack = Math.ceil(outRate / inRate);
    let total = 0;
    const frameCount = 30000; // 10 minutes of 20 ms frames
    for (let f = 0; f < frameCount; f++) {
      const n = resampler.process(frame).length;
      assert.ok(Math.abs(n - outRate / 50) <= holdBack);
      total += n;
    }
    assert.ok(Math.abs(total - frameCount * outRate / 50) <= holdBack);
  });
}

test('passes audio through unchanged when the rates match', () => {
  const input = new Float32Array([0.1, -0.2, 0.3]);
  const out = new Resampler(48000, 48000).process(input);
  assert.deepEqual([...out], [...input]);
  assert.notEqual(out, input);
});

test('starts again from the first sample after reset', () => {
  const resampler = new Resampler(16000, 48000);
  resampler.process(new Float32Array([1, 1, 1, 1]));
  resampler.reset();
  const out = resampler.process(new Float32Array([0.5, 0.5]));
  assert.equal(out[0], 0.5);
});
