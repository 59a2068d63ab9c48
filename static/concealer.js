// Concealment (NetEQ's expand): while no frame is there to play, the last frame played is played on, back and
// forth from its end so that the waveform continues without a jump, fading to silence within CONCEAL_FADE_MS.
// The same fading source is what a frame that follows concealment or silence is crossfaded from (merge).
import { CONCEAL_FADE_MS } from './constants.js';

export class Concealer {
  /**
   * @param {number} sampleRate
   * @param {number} maxFrame the longest frame it may have to conceal from
   */
  constructor(sampleRate, maxFrame) {
    this._frame = new Float32Array(maxFrame);
    this._length = 0;
    this.fadeSamples = Math.max(1, Math.round((sampleRate * CONCEAL_FADE_MS) / 1000));
    this._position = this.fadeSamples; // samples given since armed: faded out until armed
    this.concealedSamples = 0; // audible concealment given, over the stream's life
  }

  /** Conceal from this frame (the one just put in line to play) from now on, at full level. */
  arm(samples, length) {
    if (length < 2) return;
    const n = Math.min(length, this._frame.length);
    for (let i = 0; i < n; i++) this._frame[i] = samples[i];
    this._length = n;
    this._position = 0;
  }

  /** Whether the concealment has faded to silence. */
  get faded() {
    return this._position >= this.fadeSamples || this._length < 2;
  }

  /** The next sample: the armed frame mirrored at its end, its gain falling linearly to 0. */
  next() {
    if (this.faded) return 0;
    const n = this._length;
    const period = 2 * (n - 1);
    const m = (this._position + 1) % period;
    const index = m <= n - 1 ? n - 1 - m : m - (n - 1);
    this._position++;
    this.concealedSamples++;
    return this._frame[index] * (1 - this._position / this.fadeSamples);
  }
}
