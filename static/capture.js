// The microphone and the audio graph: getUserMedia, the AudioContext, and the capture worklet, whose
// frames (10 or 20 ms) come out with the wall-clock time of their first sample (see capture-clock.js).
//
//   const { context, stream } = await openAudio();   // from a user gesture
//   const capture = new Capture(context, stream, { frameMs, onFrame(samples, captureTime) {...}, onLevel(rms) {...} });
import { CaptureClock } from './capture-clock.js';
import { FRAME_MS } from './constants.js';

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
  const context = new AudioContext({ latencyHint: 'interactive' });
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
