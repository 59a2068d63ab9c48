// Tests for static/silence-gate.js and the sender's DTX in static/encoder.js: which frames of a pause are sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SILENT_PEAK } from '../../static/concealer.js';
import { decodeFrame } from '../../static/frame.js';
import { FrameEncoder } from '../../static/encoder.js';
import {
  DTX_HANGOVER_MS, DTX_REFRESH_MS, DTX_SILENT_PEAK, isSilent, SilenceGate,
} from '../../static/silence-gate.js';

const RATE = 48000;

function frame(frameMs, peak) {
  const samples = new Float32Array((RATE * frameMs) / 1000);
  for (let i = 0; i < samples.length; i++) samples[i] = peak * Math.sin((2 * Math.PI * 440 * i) / RATE);
  samples[samples.length >> 2] = peak; // the peak itself, whatever the phase
  return samples;
}

/** The indexes of the frames admitted, of `talk` talking frames then `pause` silent ones. */
function admitted(frameMs, talk, pause) {
  const gate = new SilenceGate(frameMs);
  const loud = frame(frameMs, 0.3);
  const quiet = frame(frameMs, 0);
  const sent = [];
  for (let i = 0; i < talk + pause; i++) if (gate.admit(i < talk ? loud : quiet)) sent.push(i);
  return sent;
}

test('a frame is silent only when every sample stays under half the receiver\'s line for silence', () => {
  assert.equal(DTX_SILENT_PEAK, SILENT_PEAK / 2);
  assert.ok(isSilent(frame(10, 0)));
  assert.ok(isSilent(frame(10, DTX_SILENT_PEAK * 0.99)));
  assert.ok(!isSilent(frame(10, DTX_SILENT_PEAK * 1.01)));
  assert.ok(!isSilent(frame(10, -DTX_SILENT_PEAK * 1.01)), 'a negative peak counts too');
});

for (const frameMs of [10, 20]) {
  test(`${frameMs} ms frames: talk is all sent, a pause's first 200 ms too, then one frame every 400 ms`, () => {
    const talk = 50;
    const hangover = DTX_HANGOVER_MS / frameMs;
    const refresh = DTX_REFRESH_MS / frameMs;
    const sent = admitted(frameMs, talk, 3 * refresh + hangover);
    const expected = [];
    for (let i = 0; i < talk + hangover; i++) expected.push(i);
    for (let k = 1; k <= 3; k++) expected.push(talk + hangover + k * refresh - 1);
    assert.deepEqual(sent, expected);
  });
}

test('talk after a pause is sent from its first frame, and its pause starts the hangover afresh', () => {
  const gate = new SilenceGate(10);
  const loud = frame(10, 0.3);
  const quiet = frame(10, 0);
  for (let i = 0; i < 100; i++) gate.admit(quiet);
  assert.ok(gate.admit(loud), 'the first frame of talk');
  for (let i = 0; i < DTX_HANGOVER_MS / 10; i++) assert.ok(gate.admit(quiet), `hangover frame ${i}`);
  assert.ok(!gate.admit(quiet), 'then the gap');
});

test('the encoder sends a pause as the gate says, numbering every frame so that the partner sees the gap', () => {
  const sent = [];
  const encoder = new FrameEncoder({ contextRate: RATE, opusConfig: null, onFrame: (f) => sent.push(decodeFrame(f).seq) });
  const loud = frame(20, 0.3);
  const quiet = frame(20, 0);
  for (let i = 0; i < 40; i++) encoder.encode(i < 10 || i >= 35 ? loud : quiet, i * 20);
  // 10 talking, 10 of hangover (200 ms), a gap of 15 (its refresh would have been the 20th), talk again.
  assert.deepEqual(sent, [...Array(20).keys(), 35, 36, 37, 38, 39]);
  assert.equal(encoder.dtxFrames, 40 - sent.length);
});

test('without DTX, or while muted, the gate leaves nothing out and counts nothing', () => {
  const sent = [];
  const plain = new FrameEncoder({
    contextRate: RATE, opusConfig: null, dtx: false, onFrame: (f) => sent.push(decodeFrame(f).seq),
  });
  for (let i = 0; i < 60; i++) plain.encode(frame(20, 0), i * 20);
  assert.equal(sent.length, 60);
  assert.equal(plain.dtxFrames, 0);
  const muted = new FrameEncoder({ contextRate: RATE, opusConfig: null, onFrame: () => assert.fail('sent') });
  muted.muted = true;
  for (let i = 0; i < 60; i++) muted.encode(frame(20, 0), i * 20);
  assert.equal(muted.dtxFrames, 0, 'a muted frame is not a DTX frame');
});
