// Streaming linear-interpolation resampler. State carries across calls, so chunks (frames)
// join without a click and the total output length follows the rate ratio exactly (no drift):
// positions are kept as integers in units of 1/outRate input samples.

export class Resampler {
  /**
   * @param {number} inRate input sample rate (Hz, integer)
   * @param {number} outRate output sample rate (Hz, integer)
   */
  constructor(inRate, outRate) {
    if (!(inRate > 0) || !(outRate > 0)) throw new RangeError('sample rates must be positive');
    this.inRate = Math.round(inRate);
    this.outRate = Math.round(outRate);
    this.reset();
  }

  /** Forget the previous input (new stream). */
  reset() {
    // Position of the next output sample, in input samples * outRate, relative to the start of the
    // next chunk; -outRate means "the last sample of the previous chunk".
    this._pos = 0;
    this._last = 0;
    this._primed = false;
  }

  /**
   * Resample one chunk.
   * @param {Float32Array} input
   * @returns {Float32Array} a new array (may be empty)
   */
  process(input) {
    const n = input.length;
    if (n === 0) return new Float32Array(0);
    if (this.inRate === this.outRate) return Float32Array.from(input);
    const den = this.outRate;
    const step = this.inRate;
    if (!this._primed) {
      // Start exactly on the first input sample.
      this._primed = true;
      this._last = input[0];
      this._pos = 0;
    }
    // Output positions p satisfy -den <= p < (n - 1) * den.
    const end = (n - 1) * den;
    const count = this._pos < end ? Math.ceil((end - this._pos) / step) : 0;
    const out = new Float32Array(count);
    let pos = this._pos;
    for (let k = 0; k < count; k++) {
      const i = Math.floor(pos / den);
      const frac = (pos - i * den) / den;
      const a = i < 0 ? this._last : input[i];
      const b = input[i + 1];
      out[k] = a + (b - a) * frac;
      pos += step;
    }
    this._pos = pos - n * den;
    this._last = input[n - 1];
    return out;
  }
}
