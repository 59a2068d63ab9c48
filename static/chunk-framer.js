// Cuts a stream of audio chunks of any length into frames of one length, each with the time of its first
// sample, as the capture worklet cuts the render quanta. The chunks are MediaStreamTrackProcessor's AudioData
// (10 ms each in Chromium), timed by their timestamps; a jump in those (chunks the browser dropped while the
// main thread was busy, or a device that stopped for a while) is a gap, reported as the whole frames it took,
// so that the frames' numbers stay on the capture clock. Pure: node tests it.
//
//   const framer = new ChunkFramer(480, 48000, { onFrame(samples, time) {...}, onGap(frames) {...} });
//   framer.push(samples, time);   // a chunk and the time (s) of its first sample

/** A chunk that starts this many frames before or after the sample due next is a discontinuity. */
export const GAP_FRAMES = 0.5;

export class ChunkFramer {
  /**
   * @param {number} frameLength samples per frame
   * @param {number} sampleRate the chunks' rate
   * @param {object} handlers
   * @param {(samples: Float32Array, time: number) => void} handlers.onFrame a whole frame and the time (s) of its
   *   first sample; the samples are reused after the call, so copy what you keep
   * @param {(frames: number) => void} handlers.onGap this many frames were never captured (a discontinuity)
   */
  constructor(frameLength, sampleRate, { onFrame, onGap }) {
    this._frame = new Float32Array(frameLength);
    this._rate = sampleRate;
    this._onFrame = onFrame;
    this._onGap = onGap;
    this._filled = 0;
    this._frameTime = 0; // time of the frame being filled: its first sample
    this._next = null; // time of the sample due next, null before the first chunk
  }

  /** A chunk whose first sample was taken at time (s). */
  push(samples, time) {
    const frameLength = this._frame.length;
    const frameS = frameLength / this._rate;
    if (this._next !== null && Math.abs(time - this._next) > GAP_FRAMES * frameS) {
      // The part-filled frame is dropped with the gap: count the frames from its start to this chunk.
      const start = this._filled > 0 ? this._frameTime : this._next;
      const missed = Math.round((time - start) / frameS);
      this._filled = 0;
      if (missed > 0) this._onGap(missed);
    }
    this._next = time + samples.length / this._rate;
    let i = 0;
    while (i < samples.length) {
      if (this._filled === 0) this._frameTime = time + i / this._rate;
      const n = Math.min(samples.length - i, frameLength - this._filled);
      this._frame.set(samples.subarray(i, i + n), this._filled);
      this._filled += n;
      i += n;
      if (this._filled === frameLength) {
        this._filled = 0;
        this._onFrame(this._frame, this._frameTime);
      }
    }
  }
}
