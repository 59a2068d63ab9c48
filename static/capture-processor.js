// AudioWorkletProcessor 'capture-processor': cuts the microphone input into frames at the context's
// sample rate (processorOptions.frameMs long, FRAME_MS by default) and posts each one (buffer transferred)
// with the context time of its first sample. Also posts the mic level every CAPTURE_LEVEL_INTERVAL_S.
//
// Messages out: {type: 'frame', samples: Float32Array, time: seconds}
//               {type: 'level', rms: 0..1}
// Messages in:  {type: 'recycle', buffer: ArrayBuffer} gives a posted frame's buffer back for reuse.
import { CAPTURE_LEVEL_INTERVAL_S, FRAME_MS, RENDER_QUANTUM } from './constants.js';

const POOL_SIZE = 8;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options && options.processorOptions && options.processorOptions.frameMs) || FRAME_MS;
    this._frameLength = Math.round((sampleRate * frameMs) / 1000);
    this._pool = [];
    for (let i = 0; i < POOL_SIZE; i++) this._pool.push(new Float32Array(this._frameLength));
    this._frame = this._pool.pop();
    this._filled = 0;
    this._frameTime = 0;
    this._sumSquares = 0;
    this._levelSamples = 0;
    this._level = { type: 'level', rms: 0 }; // refilled for every post (postMessage copies it)
    this._lastLevelPost = 0;
    this.port.onmessage = (event) => {
      const data = event.data;
      if (data && data.type === 'recycle' && data.buffer instanceof ArrayBuffer
        && data.buffer.byteLength === this._frameLength * 4 && this._pool.length < POOL_SIZE) {
        this._pool.push(new Float32Array(data.buffer));
      }
    };
  }

  process(inputs) {
    // A disconnected input is [] (no channels): capture silence so the frame clock keeps going.
    const input = inputs[0];
    const channel = input && input.length > 0 ? input[0] : null;
    const n = channel ? channel.length : RENDER_QUANTUM;
    for (let i = 0; i < n; i++) {
      if (this._filled === 0) this._frameTime = (currentFrame + i) / sampleRate;
      const v = channel ? channel[i] : 0;
      this._frame[this._filled++] = v;
      this._sumSquares += v * v;
      if (this._filled === this._frameLength) this._postFrame();
    }
    this._levelSamples += n;
    if (currentTime - this._lastLevelPost >= CAPTURE_LEVEL_INTERVAL_S) {
      this._level.rms = Math.sqrt(this._sumSquares / this._levelSamples);
      this.port.postMessage(this._level);
      this._lastLevelPost = currentTime;
      this._sumSquares = 0;
      this._levelSamples = 0;
    }
    return true;
  }

  _postFrame() {
    const frame = this._frame;
    this.port.postMessage({ type: 'frame', samples: frame, time: this._frameTime }, [frame.buffer]);
    // Reuse a returned buffer when there is one; allocate only if the main thread kept them all.
    this._frame = this._pool.length > 0 ? this._pool.pop() : new Float32Array(this._frameLength);
    this._filled = 0;
  }
}

registerProcessor('capture-processor', CaptureProcessor);
