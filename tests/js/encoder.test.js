// Tests for the pure parts of static/encoder.js: which Opus configs are tried, at which rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { OPUS_BITRATE } from '../../static/constants.js';
import {
  chooseOpusConfig, chunkFrameIndex, configFrameMs, FrameEncoder, opusConfigCandidates, opusRate,
} from '../../static/encoder.js';
import { decodeFrame } from '../../static/frame.js';

test('10 ms frames are tried first, 20 ms after, and for each constant bitrate before variable', () => {
  const candidates = opusConfigCandidates(48000);
  const durations = candidates.map((config) => config.opus.frameDuration);
  assert.equal(durations.lastIndexOf(10000) + 1, durations.indexOf(20000), durations.join());
  for (const frameDuration of [10000, 20000]) {
    const modes = candidates.filter((c) => c.opus.frameDuration === frameDuration).map((c) => c.bitrateMode || 'variable');
    assert.ok(modes.lastIndexOf('constant') >= 0 && modes.indexOf('variable') > modes.lastIndexOf('constant'), modes.join());
  }
});

test('every candidate is mono Opus at the target bitrate', () => {
  for (const config of opusConfigCandidates(24000)) {
    assert.equal(config.codec, 'opus');
    assert.equal(config.sampleRate, 24000);
    assert.equal(config.numberOfChannels, 1);
    assert.equal(config.bitrate, OPUS_BITRATE);
  }
});

test('the config chosen is the first the encoder supports: 10 ms where it is taken, else 20 ms, else PCM16', async (t) => {
  const answers = { 10000: false, 20000: true };
  globalThis.AudioData = class {};
  globalThis.AudioEncoder = {
    isConfigSupported: async (config) => ({ supported: answers[config.opus.frameDuration], config }),
  };
  t.after(() => {
    delete globalThis.AudioEncoder;
    delete globalThis.AudioData;
  });
  assert.equal(configFrameMs(await chooseOpusConfig(48000)), 20, 'an encoder without 10 ms frames');
  answers[10000] = true;
  const config = await chooseOpusConfig(48000);
  assert.equal(configFrameMs(config), 10);
  assert.equal(config.bitrateMode, 'constant');
  assert.equal(configFrameMs(await chooseOpusConfig(48000, [20])), 20, 'asked for 20 ms only');
  answers[20000] = answers[10000] = false;
  assert.equal(await chooseOpusConfig(48000), null);
  assert.equal(configFrameMs(null), 20, 'PCM16 frames are 20 ms');
});

test('an encoded chunk finds its frame at 10 and 20 ms, from exact timestamps and from 6.5 ms early ones', () => {
  for (const frameUs of [10000, 20000]) {
    for (const index of [0, 1, 2, 57, 1000]) {
      // == : the first frame's index may come as -0, the same Map key as 0.
      assert.ok(chunkFrameIndex(index * frameUs, frameUs) == index, 'Chromium: the frame\'s timestamp');
      assert.ok(chunkFrameIndex(Math.max(0, index * frameUs - 6500), frameUs) == index, 'Firefox: the look-ahead early');
    }
  }
});

test('Opus gets the context rate when it is native, else 48 kHz', () => {
  assert.equal(opusRate(48000), 48000);
  assert.equal(opusRate(16000), 16000);
  assert.equal(opusRate(44100), 48000);
});

test('after a frame dropped for overload, each chunk still goes out under its own frame\'s number and time', (t) => {
  // Chromium's encoder times its chunks by the samples it was given since its first input (observed in Chromium:
  // inputs at 0, 10, 20, 30, 100 ms gave chunks at 0, 10, 20, 30, 40 ms), whatever the inputs' timestamps say.
  const encoders = [];
  globalThis.AudioData = class {
    constructor(init) {
      Object.assign(this, init);
    }

    close() {}
  };
  globalThis.AudioEncoder = class {
    constructor({ output }) {
      this.output = output;
      this.state = 'unconfigured';
      this.encodeQueueSize = 0;
      this.samples = 0; // given since the first input
      this.first = null;
      encoders.push(this);
    }

    configure(config) {
      this.state = 'configured';
      this.rate = config.sampleRate;
    }

    encode(audio) {
      if (this.first === null) this.first = audio.timestamp;
      const timestamp = this.first + Math.round((this.samples * 1e6) / this.rate);
      this.samples += audio.numberOfFrames;
      this.output({ timestamp, byteLength: 3, copyTo: (out) => out.set([0xf8, 1, 2]) });
    }

    close() {
      this.state = 'closed';
    }
  };
  t.after(() => {
    delete globalThis.AudioEncoder;
    delete globalThis.AudioData;
  });
  const sent = [];
  const opusConfig = opusConfigCandidates(48000)[0];
  const encoder = new FrameEncoder({
    contextRate: 48000, opusConfig, dtx: false, onFrame: (frame) => sent.push(decodeFrame(frame)),
  });
  const frame = new Float32Array(480);
  for (let k = 0; k < 6; k++) {
    encoders[0].encodeQueueSize = k === 3 ? 100 : 0; // frame 3 finds the encoder overloaded
    encoder.encode(frame, 1000 + 10 * k);
  }
  assert.equal(encoder.overloadDrops, 1);
  assert.deepEqual(sent.map((f) => f.seq), [0, 1, 2, 4, 5]);
  assert.deepEqual(sent.map((f) => f.captureTime), [1000, 1010, 1020, 1040, 1050]);
});
