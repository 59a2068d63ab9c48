// The frames that came and wait to be played (NetEQ's packet buffer), in slots by sequence number. The playout
// takes them in order; a frame that came ahead of a gap waits in its slot until the gap is filled, skipped or
// concealed. Each slot remembers which frame it last held and whether that one was played, so a duplicate or a
// frame after its turn is told from a new one. Preallocated: nothing here allocates after the constructor.

const EMPTY = 0;
const PRESENT = 1; // waiting to be played
const DONE = 2; // played, skipped or concealed

/** Signed distance a - b between two 16-bit sequence numbers, in [-32768, 32767]. */
export function seqDelta(a, b) {
  let d = ((a - b) & 0xffff);
  if (d >= 0x8000) d -= 0x10000;
  return d;
}

export class FrameStore {
  /**
   * @param {number} slots frames that can wait (a power of two is not needed)
   * @param {number} maxFrame samples a slot holds; longer frames are cut
   */
  constructor(slots, maxFrame) {
    this.capacity = slots;
    this.maxFrame = maxFrame;
    this._data = [];
    for (let i = 0; i < slots; i++) this._data.push(new Float32Array(maxFrame));
    this._length = new Int32Array(slots);
    this._index = new Float64Array(slots);
    this._state = new Uint8Array(slots);
    this.clear();
  }

  /** Forget every frame (a new stream). */
  clear() {
    this._state.fill(EMPTY);
    this.next = null; // the next frame to play (unwrapped sequence number); null before the first frame
    this.highest = null; // the newest frame that came
    this.presentCount = 0;
    this.presentSamples = 0;
  }

  /** The stream's frame index of a 16-bit sequence number (near the newest frame). */
  unwrap(seq) {
    const s = seq & 0xffff;
    return this.highest === null ? s : this.highest + seqDelta(s, this.highest & 0xffff);
  }

  _slot(index) {
    return ((index % this.capacity) + this.capacity) % this.capacity;
  }

  /** Whether frame `index` came already (waiting, or played). */
  seen(index) {
    const slot = this._slot(index);
    return this._state[slot] !== EMPTY && this._index[slot] === index;
  }

  /** Whether frame `index` is here, waiting to be played. */
  has(index) {
    const slot = this._slot(index);
    return this._state[slot] === PRESENT && this._index[slot] === index;
  }

  /** Frames missing between the next one and the newest (each counts as one nominal frame of delay). */
  get missing() {
    if (this.next === null || this.highest < this.next) return 0;
    return this.highest - this.next + 1 - this.presentCount;
  }

  /** Whether a frame later than the next one is here (a gap ahead has audio behind it). */
  get hasLater() {
    return this.next !== null && this.highest > this.next;
  }

  /** The stream starts at frame `index`. */
  begin(index) {
    this.next = index;
    this.highest = index - 1;
  }

  /** Whether frame `index` fits in the slots (not more than capacity - 1 frames after the next one). */
  fits(index) {
    return index - this.next < this.capacity;
  }

  /** Keep frame `index` (not seen yet, after the next one's turn, and fits()) until it is played. */
  put(index, samples) {
    const slot = this._slot(index);
    const length = Math.min(samples.length, this.maxFrame);
    const data = this._data[slot];
    for (let i = 0; i < length; i++) data[i] = samples[i];
    this._length[slot] = length;
    this._index[slot] = index;
    this._state[slot] = PRESENT;
    this.presentCount++;
    this.presentSamples += length;
    if (index > this.highest) this.highest = index;
  }

  /** The next frame's samples (call has(next) first) and its length. */
  samples() {
    return this._data[this._slot(this.next)];
  }

  length() {
    return this._length[this._slot(this.next)];
  }

  /** The length of frame `index`, which is here. */
  lengthOf(index) {
    return this._length[this._slot(index)];
  }

  /**
   * Done with the next frame: played or dropped if it came (returns its length), else concealed or skipped
   * (returns 0; if it comes after all, it is not seen(): it is late).
   */
  advance() {
    const slot = this._slot(this.next);
    let length = 0;
    if (this._state[slot] === PRESENT && this._index[slot] === this.next) {
      length = this._length[slot];
      this.presentCount--;
      this.presentSamples -= length;
      this._state[slot] = DONE;
    }
    this.next++;
    return length;
  }
}
