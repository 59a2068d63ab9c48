// Tests for the pure parts of static/encoder.js: which Opus configs are tried, at which rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { OPUS_BITRATE } from '../../static/constants.js';
import { opusConfigCandidates, opusRate } from '../../static/encoder.js';

test('constant bitrate is tried before any variable-bitrate config', () => {
  const modes = opusConfigCandidates(48000).map((config) => config.bitrateMode || 'variable');
  const lastConstant = modes.lastIndexOf('constant');
  const firstVariable = modes.indexOf('variable');
  assert.ok(lastConstant >= 0 && firstVariable > lastConstant, modes.join());
});

test('every candidate is mono Opus at the target bitrate and 20 ms frames', () => {
  for (const config of opusConfigCandidates(24000)) {
    assert.equal(config.codec, 'opus');
    assert.equal(config.sampleRate, 24000);
    assert.equal(config.numberOfChannels, 1);
    assert.equal(config.bitrate, OPUS_BITRATE);
    assert.equal(config.opus.frameDuration, 20000);
  }
});

test('Opus gets the context rate when it is native, else 48 kHz', () => {
  assert.equal(opusRate(48000), 48000);
  assert.equal(opusRate(16000), 16000);
  assert.equal(opusRate(44100), 48000);
});
