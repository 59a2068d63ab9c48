// Our side of the call on the wire: captured frames (10 or 20 ms) -> Opus (WebCodecs) or PCM16 -> binary frames.
//
//   const opusConfig = await chooseOpusConfig(rate);          // 10 ms frames where the encoder takes them
//   const encoder = new FrameEncoder({ contextRate, opusConfig, onFrame });
//   encoder.frameMs;                                          // what the capture worklet must cut
//   encoder.encode(samples, captureTime);  // every captured frame, muted or not
//
// One sequence counter numbers the frames in capture order, muted ones included, so the partner's
// jitter buffer sees a gap in time, not a burst of late frames, when we unmute. A second counter numbers the
// frames given to the Opus encoder and is their media timestamp, which is how an encoded chunk finds its frame
// again: Chromium's encoder times its chunks by the samples it was given since its first input, not by the
// inputs' timestamps, so the frames we drop (overload) must leave no hole in them (with holes, every chunk after
// a drop named a frame as many frames earlier: frames went out under older numbers and capture times).
//
// DTX: while the person is silent, a frame is sent only now and then (silence-gate.js: decided on the captured
// samples, because the browsers' Opus DTX cannot be used through WebCodecs). The encoder still codes
// every frame; the numbers of the frames left out stay unused, and the partner's playout, after the silent frame
// that came last, takes the gap for silence.
import { CODEC_OPUS, CODEC_PCM16, FRAME_MS, FRAME_MS_CHOICES, OPUS_BITRATE } from './constants.js';
import { encodeFrame } from './frame.js';
import { floatToPcm16 } from './pcm.js';
import { Resampler } from './resampler.js';
import { SilenceGate } from './silence-gate.js';

const CHUNK_EARLY_US = 1000; // a chunk's timestamp is its frame's, or before it (Firefox: 6.5 ms before)
const MAX_CODEC_QUEUE_MS = 60; // frames waiting in the encoder before we drop instead of queueing (3 of 20 ms)
const PENDING_LIMIT = 50; // frames in the encoder whose chunk has not come: 0.5 s of 10 ms frames
// The rates Opus encodes at natively. At any other context rate (44.1 kHz is common) we resample to
// 48 kHz ourselves: the browser's encoder would otherwise resample through a FIFO that holds each
// frame until the next one arrives, one frame (20 ms) of delay.
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];
const OPUS_FALLBACK_RATE = 48000;
// Samples the encode FIFO starts with, ahead of the first resampled frame: the resampler's first
// output is a sample short of a frame, and without these the FIFO would lag a whole frame behind.
const ENCODE_FIFO_PRIME = 2;

/** The rate we feed the Opus encoder for a context running at contextRate. */
export function opusRate(contextRate) {
  return OPUS_RATES.includes(contextRate) ? contextRate : OPUS_FALLBACK_RATE;
}

/**
 * Encoder configs to try, best first: each frame duration of FRAME_MS_CHOICES (10 ms first: half the
 * packetization delay, and half the frame the partner's buffer holds), and for each, constant bitrate
 * first: Firefox's encoder in variable mode sends about twice the target (54-63 kbit/s for 28), in
 * constant mode exactly the target; Chromium's holds the target either way. Browsers that do not know
 * bitrateMode or an Opus option get the next one.
 */
export function opusConfigCandidates(sampleRate, bitrate = OPUS_BITRATE, frameChoices = FRAME_MS_CHOICES) {
  const base = { codec: 'opus', sampleRate, numberOfChannels: 1, bitrate };
  return frameChoices.flatMap((frameMs) => {
    const frameDuration = frameMs * 1000;
    const voip = { frameDuration, complexity: 8, application: 'voip', signal: 'voice' };
    const plain = { frameDuration, complexity: 8 };
    return [
      { ...base, bitrateMode: 'constant', opus: voip },
      { ...base, bitrateMode: 'constant', opus: plain },
      { ...base, bitrateMode: 'constant', opus: { frameDuration } },
      { ...base, opus: voip },
      { ...base, opus: plain },
      { ...base, opus: { frameDuration } },
    ];
  });
}

/** The frame duration, ms, that an encoder config (or null: PCM16) makes. */
export function configFrameMs(opusConfig) {
  return opusConfig ? opusConfig.opus.frameDuration / 1000 : FRAME_MS;
}

/**
 * The first Opus config this browser takes (isConfigSupported says so), or null: then we send PCM16.
 * @param {number} sampleRate
 * @param {number[]} [frameChoices] frame durations to try, ms, best first
 */
export async function chooseOpusConfig(sampleRate, frameChoices = FRAME_MS_CHOICES) {
  if (typeof AudioEncoder === 'undefined' || typeof AudioData === 'undefined') return null;
  for (const config of opusConfigCandidates(sampleRate, OPUS_BITRATE, frameChoices)) {
    try {
      const { supported, config: accepted } = await AudioEncoder.isConfigSupported(config);
      // A browser may answer "supported" while dropping a member it does not know: then it is not this one.
      if (supported && (!config.bitrateMode || !accepted || accepted.bitrateMode === config.bitrateMode)) {
        return config;
      }
    } catch {
      // A TypeError for an option this browser does not know: try the next one.
    }
  }
  return null;
}

/** The frame an encoded chunk's timestamp (us) belongs to (see FrameEncoder._sendOpus). */
export function chunkFrameIndex(timestampUs, frameUs) {
  return Math.ceil((timestampUs - CHUNK_EARLY_US) / frameUs);
}

export class FrameEncoder {
  /**
   * @param {object} options
   * @param {number} options.contextRate the rate captured frames come at
   * @param {object|null} options.opusConfig from chooseOpusConfig(opusRate(contextRate)), or null for PCM16
   * @param {(frame: ArrayBuffer, captureTime: number) => void} options.onFrame a frame for the wire;
   *   captureTime is the wall-clock ms of its first sample, as in the header
   * @param {boolean} [options.dtx] leave out the frames of a pause (silence-gate.js)
   */
  constructor({ contextRate, opusConfig, onFrame, dtx = true }) {
    this._contextRate = contextRate;
    this._onFrame = onFrame;
    /** The duration of the frames encode() takes and sends, ms (the capture worklet cuts them). */
    this.frameMs = configFrameMs(opusConfig);
    /** Whether frames of a pause are left out (DTX). */
    this.dtx = dtx;
    this._gate = dtx ? new SilenceGate(this.frameMs) : null;
    this._frameUs = this.frameMs * 1000; // media timestamps: one frame
    this.muted = false;
    this.codec = 'pcm16';
    this._frames = 0; // the wire's sequence number (mod 2^16): every frame captured
    this._encoded = 0; // frames given to the Opus encoder: their media timestamps
    this._pending = new Map(); // encoder input number -> {seq, captureTime, send} while a frame is in the encoder
    this._encoder = null;
    this._encodeRate = 0;
    this._resampler = null; // context rate -> encode rate, when they differ
    this._fifo = null; // resampled samples not yet in a frame
    this._fifoLevel = 0;
    this.overloadDrops = 0; // frames dropped because the encoder was MAX_CODEC_QUEUE_MS behind
    this.unmatchedChunks = 0; // encoded chunks whose timestamp named no frame we gave the encoder
    this.dtxFrames = 0; // frames of a pause left out (DTX)
    if (opusConfig) this._openOpus(opusConfig);
  }

  _openOpus(config) {
    try {
      this._encoder = new AudioEncoder({
        output: (chunk) => this._sendOpus(chunk),
        error: () => this._fallBackToPcm(),
      });
      this._encoder.configure(config);
      this._encodeRate = config.sampleRate;
      if (this._encodeRate !== this._contextRate) {
        this._resampler = new Resampler(this._contextRate, this._encodeRate);
        this._fifo = new Float32Array(4 * this._frameLength(this._encodeRate));
        // Prime with silence that ends where the stream starts (see ENCODE_FIFO_PRIME).
        this._fifoLevel = ENCODE_FIFO_PRIME;
      }
      this.codec = 'opus';
    } catch {
      this._fallBackToPcm();
    }
  }

  _frameLength(rate) {
    return Math.round((rate * this.frameMs) / 1000);
  }

  /** One captured frame (context rate, this.frameMs) whose first sample was taken at captureTime (wall ms). */
  encode(samples, captureTime) {
    if (this._encoder && this._resampler) {
      this._resampleAndEncode(samples, captureTime);
    } else if (this._encoder) {
      this._encodeOpus(samples, captureTime, this._contextRate);
    } else {
      const seq = this._frames++;
      if (!this._sends(samples)) return;
      this._onFrame(encodeFrame({
        codec: CODEC_PCM16, seq, sampleRate: this._contextRate, captureTime, payload: floatToPcm16(samples),
      }), captureTime);
    }
  }

  /** This many frames were never captured (the capture says so): their numbers go unused, as DTX's do. */
  skip(frames) {
    this._frames += frames;
  }

  /**
   * Resample a captured frame to the encoder's rate and encode every whole frame that is ready.
   * The resampler keeps its state across frames, so frames follow the capture clock exactly (at
   * 44.1 kHz, 882 samples in -> 960 out). The FIFO holds the remainder, a few samples at most, and
   * each frame's capture time is that of its first sample, the FIFO's offset included.
   */
  _resampleAndEncode(samples, captureTime) {
    const rate = this._encodeRate;
    const msPerSample = 1000 / rate;
    const frameLength = this._frameLength(rate);
    const resampled = this._resampler.process(samples);
    let fifo = this._fifo;
    if (this._fifoLevel + resampled.length > fifo.length) {
      // Only if the encode rate is far from a whole number of samples per capture frame.
      const bigger = new Float32Array(2 * (this._fifoLevel + resampled.length));
      bigger.set(fifo.subarray(0, this._fifoLevel));
      this._fifo = fifo = bigger;
    }
    // The first resampled sample falls on the frame's first sample (to within one input sample):
    // what the FIFO already holds came just before it.
    const fifoTime = captureTime - this._fifoLevel * msPerSample;
    fifo.set(resampled, this._fifoLevel);
    this._fifoLevel += resampled.length;
    let start = 0;
    while (this._fifoLevel - start >= frameLength && this._encoder) {
      this._encodeOpus(fifo.subarray(start, start + frameLength), fifoTime + start * msPerSample, rate);
      start += frameLength;
    }
    if (start > 0) {
      fifo.copyWithin(0, start, this._fifoLevel);
      this._fifoLevel -= start;
    }
  }

  _encodeOpus(samples, captureTime, sampleRate) {
    const encoder = this._encoder;
    const index = this._frames++;
    if (encoder.state !== 'configured') return;
    if (encoder.encodeQueueSize * this.frameMs > MAX_CODEC_QUEUE_MS) {
      this.overloadDrops++; // overloaded: drop rather than add delay
      return;
    }
    const input = this._encoded++;
    this._pending.set(input, { seq: index, captureTime, send: this._sends(samples) });
    if (this._pending.size > PENDING_LIMIT) this._pending.delete(this._pending.keys().next().value);
    let audio;
    try {
      audio = new AudioData({
        format: 'f32-planar',
        sampleRate,
        numberOfFrames: samples.length,
        numberOfChannels: 1,
        timestamp: input * this._frameUs,
        data: samples,
      });
      encoder.encode(audio);
    } catch {
      this._fallBackToPcm();
    } finally {
      if (audio) audio.close();
    }
  }

  _sendOpus(chunk) {
    // Chromium's chunks carry their frame's timestamp. Firefox's (ESR 153) come one more than the frames,
    // the first at 0 and then 6.5 ms (the Opus look-ahead) before each frame's: the first frame that starts
    // no more than 1 ms before a chunk's timestamp is the right one in both, at 10 and at 20 ms (rounding to
    // the nearest frame was right at 20 ms only), and the extra chunk at the end matches nothing.
    const input = chunkFrameIndex(chunk.timestamp, this._frameUs);
    const info = this._pending.get(input);
    this._pending.delete(input);
    if (!info) this.unmatchedChunks++;
    if (!info || !info.send) return;
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    // captureTime is that of the frame's first sample, so the encoder's delay counts as latency.
    this._onFrame(encodeFrame({
      codec: CODEC_OPUS, seq: info.seq, sampleRate: this._encodeRate, captureTime: info.captureTime, payload,
    }), info.captureTime);
  }

  /** Whether a frame is sent: not muted, and not left out of a pause (the gate sees every frame, in order). */
  _sends(samples) {
    const admitted = !this._gate || this._gate.admit(samples);
    if (!admitted && !this.muted) this.dtxFrames++;
    return admitted && !this.muted;
  }

  _fallBackToPcm() {
    this.codec = 'pcm16';
    const encoder = this._encoder;
    this._encoder = null;
    this._pending.clear();
    if (encoder && encoder.state !== 'closed') {
      try {
        encoder.close();
      } catch {
        // already closed
      }
    }
  }

  close() {
    const encoder = this._encoder;
    this._encoder = null;
    this._onFrame = () => {};
    this._pending.clear();
    if (encoder && encoder.state !== 'closed') encoder.close();
  }
}
