// The microphone and the audio graph: getUserMedia, the AudioContext, and the capture, whose frames (10 or
// 20 ms) come out with the wall-clock time of their first sample (see capture-clock.js). Where the browser has
// MediaStreamTrackProcessor (Chromium), the frames come from the microphone's track itself (TrackCapture), not
// through Web Audio: the same sample reaches the main thread 20 to 30 ms sooner than through the graph's input
// and the capture worklet (docs/design.md, "The capture path"). Elsewhere (Firefox, WebKit) the capture worklet
// cuts them (Capture).
//
//   const { context, stream } = await openAudio();   // from a user gesture
//   const rate = captureRate(context, stream);      // the rate the frames will come at
//   const capture = openCapture(context, stream, { sampleRate: rate, frameMs, onFrame(samples, captureTime) {...},
//                                                  onLevel(rms) {...}, onGap(frames) {...} });
import { CaptureClock } from './capture-clock.js';
import { ChunkFramer } from './chunk-framer.js';
import { CAPTURE_LEVEL_INTERVAL_S, FRAME_MS } from './constants.js';
import { outputLatencyHint } from './figures.js';
import { Resampler } from './resampler.js';

/** Chunks (10 ms each) the track processor keeps while the main thread is busy, before it drops the oldest. */
const TRACK_QUEUE_CHUNKS = 50;
/** The track's rate when its settings do not say (Chromium's capture runs at 48 kHz). */
const TRACK_FALLBACK_RATE = 48000;

const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
};

function insecureContextError() {
  const error = new Error('The microphone needs a secure page (https:// or http://localhost).');
  error.name = 'InsecureContextError';
  return error;
}

/** Wall-clock ms, the clock of the frames' capture times (both pages of a call on one machine agree). */
export function wallNow() {
  return performance.timeOrigin + performance.now();
}

/**
 * Open the microphone and an AudioContext with the duoduel worklets loaded. Call from a user gesture.
 * @returns {Promise<{context: AudioContext, stream: MediaStream}>}
 * @throws the getUserMedia DOMException, or an Error named 'InsecureContextError'
 */
export async function openAudio() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw insecureContextError();
  }
  // Created before the first await so that it starts inside the user gesture; no forced sample rate:
  // the hardware rate avoids a resampler in the browser's audio path (and forcing one fails in Firefox).
  const context = new AudioContext({ latencyHint: outputLatencyHint(navigator.userAgent) });
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    await context.audioWorklet.addModule('/capture-processor.js');
    await context.audioWorklet.addModule('/playback-processor.js');
  } catch (error) {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    context.close().catch(() => {});
    throw error;
  }
  return { context, stream };
}

/** Whether frames can come from the microphone's track without Web Audio (MediaStreamTrackProcessor: Chromium). */
export function canCaptureFromTrack() {
  return typeof MediaStreamTrackProcessor === 'function' && typeof AudioData === 'function';
}

/** The rate the capture's frames come at: the track's own where TrackCapture is used, else the context's. */
export function captureRate(context, stream) {
  if (!canCaptureFromTrack()) return context.sampleRate;
  const track = stream.getAudioTracks()[0];
  const settings = track && typeof track.getSettings === 'function' ? track.getSettings() : {};
  return settings.sampleRate > 0 ? settings.sampleRate : TRACK_FALLBACK_RATE;
}

/**
 * The capture this browser does best: TrackCapture where it can, else the capture worklet. Both take the same
 * handlers (see Capture; onGap is TrackCapture's only: frames the browser dropped, whose numbers go unused).
 */
export function openCapture(context, stream, handlers) {
  if (canCaptureFromTrack()) return new TrackCapture(stream, handlers);
  return new Capture(context, stream, handlers);
}

export class Capture {
  /**
   * @param {AudioContext} context
   * @param {MediaStream} stream
   * @param {object} handlers
   * @param {number} [handlers.frameMs] the frames' duration (FRAME_MS by default)
   * @param {(samples: Float32Array, captureTime: number) => void} handlers.onFrame a frame at the
   *   context rate and the wall-clock ms of its first sample; the samples go back to the worklet after
   *   the call, so copy what you keep
   * @param {(rms: number) => void} handlers.onLevel the mic level, 0..1, about 20 times a second
   */
  constructor(context, stream, { frameMs = FRAME_MS, onFrame, onLevel }) {
    /** Where the frames come from, for the figures. */
    this.path = 'worklet';
    this.context = context;
    this._stream = stream;
    this._onFrame = onFrame;
    this._onLevel = onLevel;
    this._clock = new CaptureClock();
    this._source = context.createMediaStreamSource(stream);
    this._node = new AudioWorkletNode(context, 'capture-processor', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: 'explicit',
      channelInterpretation: 'speakers',
      processorOptions: { frameMs },
    });
    this._node.port.onmessage = (event) => this._onMessage(event.data);
    this._source.connect(this._node);
    // The capture node outputs silence; connecting it keeps it pulled by the render graph.
    this._node.connect(context.destination);
  }

  _onMessage(data) {
    if (!data) return;
    if (data.type === 'level') {
      this._onLevel(data.rms);
      return;
    }
    if (data.type !== 'frame') return;
    const samples = data.samples;
    // Nothing here may block (issue 11): the capture time comes from our own clock, not the browser's.
    this._clock.observe(data.time + samples.length / this.context.sampleRate, wallNow());
    try {
      this._onFrame(samples, this._clock.wallTime(data.time));
    } finally {
      // Give the buffer back to the worklet (the encoder and the PCM conversion copied it).
      this._node.port.postMessage({ type: 'recycle', buffer: samples.buffer }, [samples.buffer]);
    }
  }

  close() {
    this._node.port.onmessage = null;
    this._stream.getTracks().forEach((track) => track.stop());
    for (const node of [this._source, this._node]) {
      try {
        node.disconnect();
      } catch {
        // not connected
      }
    }
  }
}

/**
 * Frames straight from the microphone's track (MediaStreamTrackProcessor's AudioData, 10 ms chunks in Chromium),
 * read on the main thread: no Web Audio input, no worklet. The chunks' timestamps time the samples; the capture
 * clock maps them to wall-clock ms as it maps the worklet's context time (a chunk's last sample was taken no later
 * than the chunk reached the main thread).
 */
export class TrackCapture {
  /**
   * @param {MediaStream} stream
   * @param {object} handlers
   * @param {number} handlers.sampleRate the frames' rate: captureRate(); a track whose chunks come at another
   *   rate is resampled to it
   * @param {number} [handlers.frameMs] the frames' duration (FRAME_MS by default)
   * @param {(samples: Float32Array, captureTime: number) => void} handlers.onFrame as Capture's
   * @param {(rms: number) => void} handlers.onLevel as Capture's
   * @param {(frames: number) => void} handlers.onGap this many frames were never captured (the browser dropped
   *   chunks while the main thread was busy, or the device stopped)
   */
  constructor(stream, { sampleRate, frameMs = FRAME_MS, onFrame, onLevel, onGap }) {
    /** Where the frames come from, for the figures. */
    this.path = 'track';
    this.sampleRate = sampleRate;
    this._stream = stream;
    this._onLevel = onLevel;
    this._clock = new CaptureClock();
    this._framer = new ChunkFramer(Math.round((sampleRate * frameMs) / 1000), sampleRate, {
      onFrame: (samples, time) => onFrame(samples, this._clock.wallTime(time)),
      onGap,
    });
    this._chunk = new Float32Array(0);
    this._resampler = null; // chunks at another rate than sampleRate
    this._sumSquares = 0;
    this._levelSamples = 0;
    this._levelEvery = Math.round(sampleRate * CAPTURE_LEVEL_INTERVAL_S);
    this._closed = false;
    const processor = new MediaStreamTrackProcessor({ track: stream.getAudioTracks()[0], maxBufferSize: TRACK_QUEUE_CHUNKS });
    this._reader = processor.readable.getReader();
    this._read();
  }

  async _read() {
    while (!this._closed) {
      let result;
      try {
        result = await this._reader.read();
      } catch {
        return; // cancelled by close(), or the track ended
      }
      if (result.done) return;
      try {
        if (!this._closed) this._take(result.value);
      } finally {
        result.value.close();
      }
    }
  }

  /** One chunk: its samples (channel 0) into frames, timed by its timestamp (us). */
  _take(data) {
    const arrival = wallNow();
    const n = data.numberOfFrames;
    if (this._chunk.length < n) this._chunk = new Float32Array(n);
    let samples = this._chunk.subarray(0, n);
    data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
    const time = data.timestamp / 1e6;
    this._clock.observe(time + n / data.sampleRate, arrival);
    if (data.sampleRate !== this.sampleRate) {
      if (!this._resampler || this._resampler.inRate !== data.sampleRate) {
        this._resampler = new Resampler(data.sampleRate, this.sampleRate);
      }
      samples = this._resampler.process(samples);
    }
    this._measureLevel(samples);
    this._framer.push(samples, time);
  }

  _measureLevel(samples) {
    for (let i = 0; i < samples.length; i++) this._sumSquares += samples[i] * samples[i];
    this._levelSamples += samples.length;
    if (this._levelSamples < this._levelEvery) return;
    this._onLevel(Math.sqrt(this._sumSquares / this._levelSamples));
    this._sumSquares = 0;
    this._levelSamples = 0;
  }

  close() {
    this._closed = true;
    this._reader.cancel().catch(() => {});
    this._stream.getTracks().forEach((track) => track.stop());
  }
}
