// The samples about to be played (NetEQ's sync buffer): a ring with what is still to play ahead of the read
// position and what was just played behind it (the history a stretch replays). The playout appends frames,
// concealment and silence, and reads one render quantum at a time; the crossfades that skip ahead (accelerate)
// or replay (stretch) work in place. Nothing here allocates after the constructor.

export class SampleRing {
  /**
   * @param {number} samples the most it must hold ahead of the read position
   * @param {number} historySize played samples to keep behind it
   */
  constructor(samples, historySize) {
    let capacity = 1024;
    while (capacity < samples + historySize) capacity *= 2;
    this._ring = new Float32Array(capacity);
    this._mask = capacity - 1;
    this.historySize = historySize;
    this.clear();
  }

  /** Forget everything, history included. */
  clear() {
    this._read = 0;
    this.level = 0; // samples to play
    this.history = 0; // played samples behind the read position that may be replayed
    this.overflow = 0; // samples pushed out unplayed because the ring was full (never, if sized right)
  }

  /** Sample `offset` from the read position (negative: the history). */
  at(offset) {
    return this._ring[(this._read + offset) & this._mask];
  }

  set(offset, value) {
    this._ring[(this._read + offset) & this._mask] = value;
  }

  /** Make room for n more samples to play; if the ring is full the oldest unplayed ones go. */
  _reserve(n) {
    const free = this._ring.length - this.historySize - this.level;
    if (n <= free) return;
    const excess = Math.min(n - free, this.level);
    this.discard(excess);
    this.overflow += excess;
  }

  /** Append samples [from, length) of source. */
  append(source, length, from = 0) {
    this._reserve(length - from);
    const ring = this._ring;
    const mask = this._mask;
    let write = (this._read + this.level) & mask;
    for (let i = from; i < length; i++) {
      ring[write] = source[i];
      write = (write + 1) & mask;
    }
    this.level += length - from;
  }

  /** Append one sample. */
  push(value) {
    this._reserve(1);
    this._ring[(this._read + this.level) & this._mask] = value;
    this.level++;
  }

  /** Take back the last n samples appended (not played yet). */
  unwrite(n) {
    this.level -= Math.min(n, this.level);
  }

  /** Play n samples into out[offset..]; call with n <= level. */
  read(out, offset, n) {
    const ring = this._ring;
    const mask = this._mask;
    let r = this._read;
    for (let i = 0; i < n; i++) {
      out[offset + i] = ring[r];
      r = (r + 1) & mask;
    }
    this._read = r;
    this.level -= n;
    this.history = Math.min(this.historySize, this.history + n);
  }

  /** Drop the next n samples unplayed. */
  discard(n) {
    this._read = (this._read + n) & this._mask;
    this.level -= n;
    this.history = 0; // what is behind the read position no longer joins what is ahead of it
  }

  /**
   * Accelerate: skip n samples ahead with a crossfade of xf samples from where playback is to where it goes
   * (needs level >= n + xf). The crossfade is written over the first samples after the skip.
   */
  skip(n, xf) {
    for (let j = 0; j < xf; j++) {
      const w = (j + 0.5) / xf;
      this.set(n + j, this.at(j) * (1 - w) + this.at(n + j) * w);
    }
    this.discard(n);
  }

  /**
   * Stretch: play the last n samples again, crossfading xf samples from where playback is into the replay
   * (needs history >= n + xf and level >= xf). The crossfade is written over the start of the replay.
   */
  replay(n, xf) {
    for (let j = 0; j < xf; j++) {
      const w = (j + 0.5) / xf;
      this.set(j - n, this.at(j) * (1 - w) + this.at(j - n) * w);
    }
    this._read = (this._read - n) & this._mask;
    this.level += n;
    this.history -= n;
  }
}
