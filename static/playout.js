// The jitter buffer's playout (NetEQ's decision logic and operations): frames in, one render quantum of audio
// out per pull(), for the playback worklet. What it should aim for comes from the delay estimator
// (static/delay-estimator.js); this file decides what to play and does it.
//
// The parts, each with one job:
//   FrameStore (frame-store.js)      frames that came, by sequence number, until their turn (packet buffer)
//   SampleRing (sample-ring.js)      the samples about to play, and the ones just played (sync buffer)
//   Concealer (concealer.js)         the last frame played on, fading to silence (expand)
//   HeadroomFilter (below)           the smoothed headroom an on-time frame finds (buffer level filter)
//   DelayEstimator                   lateness, target, and what each arrival was (on time, late, held)
//
// State: one of BUFFERING, PRIMING, PLAYING, CONCEALING. It changes only in _transition(), by one of the named
// transitions of TRANSITIONS: prime, start, merge, expand, underrun, restart.
//
// Decision: every quantum gets exactly one, from DECISIONS, made by _decide() from the state, what the ring
// holds, the next frame, and the filtered headroom against the estimator's margin; _perform() carries it out,
// then the quantum is read from the ring. `decision` is the last one, `decisions` counts them.
//   normal      play on; take the next frame when the ring runs short
//   merge       the next frame after concealment or silence, crossfaded in from it
//   expand      the next frame is missing: conceal this quantum's part of it (or play on the concealment
//               already in the ring); once its whole turn is concealed it is given up
//   skip        the frames missing before audio that came are skipped (enough is buffered behind them), and
//               that audio merged in: concealing them in real time would play it all that much later
//   accelerate  too much is buffered (a burst, a sender clock faster than ours): skip ahead, crossfading
//   stretch     too little (a sender clock slower than ours): play the last few ms again, crossfading
//   silence     nothing to play: waiting to start, or topping up to the target before the first frame
//
// DTX. A sender in DTX sends nothing while its person is silent (a frame now and then): the last frame before such a
// gap is silence (Concealer.silent). Frames missing after a silent frame are taken for frames never sent: their
// concealment is silence, and no loss or underrun is counted for them; the playout runs on, or waits, as for any
// gap, and the estimator takes the next frame's arrival as it comes (a gap is no lateness).
//
// Loss and lateness are told apart (stats()): `lost` counts frames that never came (concealed or skipped in
// their turn, and never heard of since), `late` those that came after their turn (concealed too, and not
// played), `recovered` those that came only as a copy in a later frame's message (redundancy, on a link that
// loses datagrams) in time to play: recovered frames are neither lost nor late. A frame counted lost when its
// turn went by and that comes afterwards moves from lost to late.
//
// A frame that comes during its own turn's concealment is not given up: the concealment, played a quantum at a
// time in the frame's place, gives way to the rest of the frame (merged, crossfaded), so that a copy that comes a
// few ms after its turn (a lost datagram's frame, in the next one's message) replaces most of the concealment
// rather than none of it, and the timeline does not move. It is not lost; what was concealed of it counts as
// concealment, and `cutShort` counts such frames.
//
// Nothing in push() or pull() allocates.
import { FRAME_MS, MAX_JITTER_MARGIN_MS, RENDER_QUANTUM } from './constants.js';
import { Concealer } from './concealer.js';
import { DelayEstimator, HELD, ON_TIME } from './delay-estimator.js';
import { FrameStore } from './frame-store.js';
import { SampleRing } from './sample-ring.js';

export const BUFFERING = 'buffering'; // not playing: before the first frame, or starved; waits to start
export const PRIMING = 'priming'; // started: silence up to the target, then the first frame merges in
export const PLAYING = 'playing'; // the sender's audio
export const CONCEALING = 'concealing'; // a frame is missing: its concealment plays

export const NORMAL = 'normal';
export const MERGE = 'merge';
export const EXPAND = 'expand';
export const SKIP = 'skip';
export const ACCELERATE = 'accelerate';
export const STRETCH = 'stretch';
export const SILENCE = 'silence';
export const DECISIONS = Object.freeze([NORMAL, MERGE, EXPAND, SKIP, ACCELERATE, STRETCH, SILENCE]);

/** Every state change: name -> [the states it leaves, the state it enters]. */
export const TRANSITIONS = Object.freeze({
  // Ready to play (a frame came on time, or the target is buffered past an outage), with less than the target
  // buffered: silence up to it first. With the target or more: what is stale is dropped, the rest fades in.
  prime: [[BUFFERING], PRIMING],
  start: [[BUFFERING], PLAYING],
  merge: [[PRIMING, CONCEALING], PLAYING], // the next frame is taken, crossfaded in
  expand: [[PRIMING, PLAYING], CONCEALING], // the next frame is due and missing
  underrun: [[PRIMING, PLAYING, CONCEALING], BUFFERING], // the concealment faded out and nothing came
  restart: [[BUFFERING, PRIMING, PLAYING, CONCEALING], BUFFERING], // a new stream (estimator.startsNewStream)
});

const T0_SMOOTHING = 0.3; // weight of the newest headroom in the filter
const ACTION_COOLDOWN_FRAMES = 2; // frames' updates the filter takes after an action before the next
const DROP_HYSTERESIS_MS = 4; // accelerate when the headroom is this much (+ 10 % of the peak) over the margin
const INSERT_HYSTERESIS_MS = 1.5; // stretch when it is this much under
const MAX_INSERT_MS = 20;
const MIN_ACTION_SAMPLES = 8;
const CROSSFADE_MS = 1.5; // of an accelerate or a stretch
const FADE_IN_MS = 2; // of a merge

/**
 * The headroom an on-time frame would have found (what was buffered when a frame came, plus its lateness),
 * smoothed. After an action it waits for a few frames' measurements before it is settled again.
 */
class HeadroomFilter {
  reset(hold) {
    this.level = null; // ms
    this._hold = hold;
    this.settled = false;
  }

  update(headroomMs) {
    this.level = this.level === null ? headroomMs : this.level + T0_SMOOTHING * (headroomMs - this.level);
    this.settled = this._hold === 0;
    if (this._hold > 0) this._hold--;
  }

  /** The playout changed the delay by ms: the level follows, and settles again after a cooldown. */
  acted(ms) {
    this.level += ms;
    this._hold = ACTION_COOLDOWN_FRAMES;
    this.settled = false;
  }
}

export class Playout {
  /**
   * @param {object} [options]
   * @param {number} [options.sampleRate=48000] playback rate; pushed frames must be at this rate
   * @param {number} [options.frameMs=20] nominal frame duration
   * @param {number} [options.quantum=128] samples per pull()
   * @param {number} [options.maxDelayMs=2000] frames that can wait, in ms
   * @param {function(string, string, string): void} [options.onTransition] (name, from, to) on each transition
   * @param {boolean} [options.waitForCopies=true] a frame recovered from a later one's copy (redundancy) is an
   *   arrival for the estimator like any other, so that its lateness (a frame or so) is waited for while losses
   *   keep coming; false: copies play only if they happen to come in time (NetEQ's way with RED), or the rest of
   *   their turn if they come during it. Measured on the recorded calls with 2 % loss (docs/design.md): with 20 ms
   *   frames waiting conceals half as much for up to a frame more delay; with 10 ms frames it costs no delay
   */
  constructor({ sampleRate = 48000, frameMs = FRAME_MS, quantum = RENDER_QUANTUM, maxDelayMs = 2000,
    onTransition = null, waitForCopies = true } = {}) {
    this._waitForCopies = waitForCopies;
    this.sampleRate = sampleRate;
    this.frameMs = frameMs;
    this.frameSamples = Math.round((sampleRate * frameMs) / 1000);
    this.quantum = quantum;
    this._msPerSample = 1000 / sampleRate;
    this._onTransition = onTransition;
    this._xfade = Math.max(16, Math.round((sampleRate * CROSSFADE_MS) / 1000));
    this._fadeIn = Math.max(16, Math.round((sampleRate * FADE_IN_MS) / 1000));
    this._maxInsert = Math.round((sampleRate * MAX_INSERT_MS) / 1000);
    this._scratch = new Float32Array(this._xfade);

    const maxFrame = 2 * this.frameSamples;
    this._estimator = new DelayEstimator({ frameMs, quantumMs: quantum * this._msPerSample });
    this._store = new FrameStore(Math.ceil(maxDelayMs / frameMs) + 1, maxFrame);
    // Ahead of the read position: the silence up to the largest target, a frame, a stretch and a quantum.
    const ahead = Math.ceil((sampleRate * (MAX_JITTER_MARGIN_MS + 5 * frameMs)) / 1000) + this._maxInsert + quantum;
    this._ring = new SampleRing(ahead, this._maxInsert + 2 * this._xfade);
    this._concealer = new Concealer(sampleRate, maxFrame);
    this._filter = new HeadroomFilter();
    this._filter.reset(1);

    this.state = BUFFERING;
    this.decision = SILENCE; // the last quantum's
    this.decisionSamples = 0; // how much the last accelerate or stretch moved
    this.decisions = Object.fromEntries(DECISIONS.map((name) => [name, 0]));
    this._starved = 0; // samples played while starved since the last start: audio that old is stale
    this._unconfirmedLost = 0; // frames concealed as overdue, lost once a later one shows the stream went on
    this._streamStart = 0; // the stream's first frame index: a frame before it is no late frame of this stream
    this._concealedOfNext = 0; // samples of the next frame's turn concealed so far: it is missing, in its turn
    this.received = 0;
    this.lost = 0;
    this.late = 0;
    this.recovered = 0;
    this.cutShort = 0;
    this.duplicates = 0;
    this.underruns = 0;
    this.drops = 0;
    this.droppedSamples = 0;
    this.inserts = 0;
    this.insertedSamples = 0;
    this.overflowSamples = 0;
    this.resyncs = 0;
  }

  /** Audible concealment played so far, in samples. */
  get concealedSamples() {
    return this._concealer.concealedSamples;
  }

  /** Frames' worth of audible concealment played so far. */
  get concealed() {
    return Math.ceil(this.concealedSamples / this.frameSamples);
  }

  /** Target delay (buffered right after an on-time frame arrives), in ms. */
  get targetMs() {
    return this._estimator.targetMs;
  }

  get _targetSamples() {
    return Math.round(this.targetMs / this._msPerSample);
  }

  /** Current delay: one frame + the smoothed headroom an on-time frame finds, in ms. */
  get delayMs() {
    const headroom = this._filter.level;
    return headroom === null ? this.levelSamples() * this._msPerSample : this.frameMs + Math.max(0, headroom);
  }

  /**
   * Everything buffered or expected (missing frames count as one nominal frame each; the one being concealed,
   * what is left of its turn, as when its concealment was put in the ring whole), in samples.
   */
  levelSamples() {
    const store = this._store;
    const level = this._ring.level + store.presentSamples + store.missing * this.frameSamples;
    if (this._concealedOfNext === 0) return level;
    // Among the missing frames if one came after it; else not counted yet.
    return level - this._concealedOfNext + (store.highest < store.next ? this.frameSamples : 0);
  }

  /**
   * How much later than over the fastest path seen the next sample is played, ms: the wait the buffer adds
   * plus the lateness of its frame, measured, not estimated (frame k's media time is k frames; the fastest
   * path is the estimator's baseline). Null when the next sample is not the sender's audio (not playing, or
   * the next frame is not there).
   * @param {number} nowMs when the next sample is played, on the clock of push()'s arrivalMs
   */
  playoutDelayMs(nowMs) {
    const store = this._store;
    if (this.state !== PLAYING || (this._ring.level === 0 && !store.has(store.next))) return null;
    return nowMs - this._estimator.baselineMs - (store.next * this.frameMs - this._ring.level * this._msPerSample);
  }

  /**
   * Accept one frame.
   * @param {number} seq 16-bit sequence number
   * @param {Float32Array} samples mono, at this.sampleRate (about one frame)
   * @param {number} [arrivalMs=0] arrival time in ms
   * @param {boolean} [recovered=false] the frame came only as a copy in a later one's message (redundancy)
   * @returns {boolean} false when the frame was discarded (late, duplicate, empty)
   */
  push(seq, samples, arrivalMs = 0, recovered = false) {
    if (!samples || samples.length === 0) return false;
    this.received++;
    const store = this._store;
    const estimator = this._estimator;
    let index = store.unwrap(seq);
    if (store.next !== null && estimator.startsNewStream(index, arrivalMs, store.next)) {
      this._transition('restart');
      index = store.unwrap(seq);
    }
    if (store.next === null) {
      store.begin(index);
      this._streamStart = index;
    }
    if (store.seen(index)) {
      this.duplicates++;
      return false;
    }
    if (!recovered || this._waitForCopies) estimator.arrive(index, arrivalMs);
    if (index < store.next) {
      // Its turn went by: it was concealed or skipped as missing, and counted lost then. It was late instead.
      this.late++;
      if (this._unconfirmedLost > 0) this._unconfirmedLost--;
      else if (this.lost > 0 && index >= this._streamStart) this.lost--;
      return false;
    }
    this.lost += this._unconfirmedLost;
    this._unconfirmedLost = 0;
    if (recovered) this.recovered++;
    if (this.state === PRIMING) this._trimPrime(samples.length);
    if (index > store.highest && this.state !== BUFFERING) {
      this._filter.update(this.levelSamples() * this._msPerSample + estimator.lateness);
    }
    while (!store.fits(index)) this._overflow(); // more than maxDelayMs waits
    store.put(index, samples);
    return true;
  }

  /**
   * Fill out completely with the next samples (audio, concealment or silence): one decision, carried out.
   * @param {Float32Array} out
   */
  pull(out) {
    const n = out.length;
    const decision = this._decide(n);
    this.decision = decision;
    this.decisions[decision]++;
    this._perform(decision, n);
    this._ring.read(out, 0, n);
  }

  // --- Decisions ---

  /** This quantum's decision. Starting and running dry are transitions made here, before deciding. */
  _decide(n) {
    if (this.state === BUFFERING && this._readyToStart()) {
      // After silence, the frames missing before the first that came were never sent (DTX): nothing to wait for.
      if (this._concealer.silent && this._store.hasLater && !this._store.has(this._store.next)) this._skipMissing();
      this._transition(this.levelSamples() < this._targetSamples ? 'prime' : 'start');
    }
    if (this.state !== BUFFERING && this._ring.level < n && this._runDry()) this._transition('underrun');
    switch (this.state) {
      case BUFFERING:
        return SILENCE;
      case PRIMING:
        return this._ring.level >= n ? SILENCE : this._nextFrame(n);
      case CONCEALING:
        return this._ring.level >= n ? EXPAND : this._nextFrame(n);
      default:
        return this._control(n) ?? (this._ring.level >= n ? NORMAL : this._nextFrame(n));
    }
  }

  /**
   * Start (again) on a frame that came on time, or once the target is buffered and the newest frame was not
   * held by an outage. After a stall the decoder hands the burst over frame by frame, and its first frame,
   * on its own, used to start playback: 20 ms played 460 ms late in the browser before the rest of the burst
   * came and was skipped.
   */
  _readyToStart() {
    const level = this.levelSamples();
    const arrival = this._estimator.arrival;
    return level > 0 && (arrival === ON_TIME || (arrival !== HELD && level >= this._targetSamples));
  }

  /** The next frame is due, missing, with nothing behind it, and the concealment has faded out. */
  _runDry() {
    const store = this._store;
    return !store.has(store.next) && !store.hasLater && this._concealer.faded;
  }

  /** The ring runs short within this quantum: what to do about the next frame. */
  _nextFrame(n) {
    const store = this._store;
    if (store.has(store.next)) return this.state === PLAYING ? NORMAL : MERGE;
    // The missing frame's turn ends within this quantum, and the one after it is here.
    if (this.frameSamples - this._concealedOfNext <= n - this._ring.level && store.has(store.next + 1)) return MERGE;
    const skipped = this._missingRun() * this.frameSamples - this._concealedOfNext;
    if (store.hasLater && this.levelSamples() - skipped >= this._targetSamples) {
      return SKIP;
    }
    return EXPAND;
  }

  /** Frames missing from the next one to the first that came. */
  _missingRun() {
    const store = this._store;
    let index = store.next;
    while (index < store.highest && !store.has(index)) index++;
    return index - store.next;
  }

  /**
   * Accelerate or stretch when the filtered headroom is off the estimator's margin by more than the
   * hysteresis, the filter has settled since the last action, and there is audio to act on.
   */
  _control(n) {
    const filter = this._filter;
    if (!filter.settled) return null;
    const estimator = this._estimator;
    const error = filter.level - estimator.marginMs;
    const xf = this._xfade;
    if (error > DROP_HYSTERESIS_MS + 0.1 * estimator.peakLatenessMs) {
      const wanted = Math.round(error / this._msPerSample);
      const amount = Math.min(wanted, this._contiguous(wanted + xf + n) - xf - n);
      if (amount < MIN_ACTION_SAMPLES) return null;
      this.decisionSamples = amount;
      return ACCELERATE;
    }
    if (error < -INSERT_HYSTERESIS_MS) {
      const wanted = Math.min(this._maxInsert, Math.round(-error / this._msPerSample));
      const amount = Math.min(wanted, this._ring.history - xf);
      if (amount < MIN_ACTION_SAMPLES || this._contiguous(n + xf) < n + xf) return null;
      this.decisionSamples = amount;
      return STRETCH;
    }
    return null;
  }

  /** Audio ready to play without a gap, in samples (counted up to at least `enough`). */
  _contiguous(enough) {
    const store = this._store;
    let total = this._ring.level;
    for (let index = store.next; total < enough && store.has(index); index++) total += store.lengthOf(index);
    return total;
  }

  // --- Operations ---

  _perform(decision, n) {
    switch (decision) {
      case MERGE:
        this._merge();
        break;
      case SKIP:
        this._skipMissing();
        this._merge();
        break;
      case EXPAND:
        this._conceal(n - this._ring.level);
        break;
      case ACCELERATE:
        this._accelerate(this.decisionSamples, n);
        break;
      case STRETCH:
        this._stretch(this.decisionSamples, n);
        break;
      case SILENCE:
        if (this.state === BUFFERING && this._store.next !== null) this._starved += n;
        break;
      default: // NORMAL
    }
    this._fill(n);
    // Silence, or the rest of the concealment: also where a frame shorter than a quantum runs out.
    while (this._ring.level < n) this._ring.push(this._concealer.next());
  }

  /** Take frames into the ring until it holds `samples` (while playing and frames are there). */
  _fill(samples) {
    const store = this._store;
    while (this.state === PLAYING && this._ring.level < samples && store.has(store.next)) this._take(false);
  }

  /**
   * Move the next frame from the store to the ring; a merge crossfades it in from the concealment. A frame that
   * came during its turn's concealment gives only the rest of its turn.
   */
  _take(merge) {
    const store = this._store;
    const samples = store.samples();
    const length = store.length();
    const from = Math.min(this._concealedOfNext, length - 1);
    if (from > 0) this.cutShort++;
    const at = this._ring.level;
    this._ring.append(samples, length, from);
    if (merge) this._crossfadeIn(at, Math.min(this._fadeIn, length - from));
    this._concealer.arm(samples, length);
    this._advance();
  }

  /** Done with the next frame (store.advance()): the next one's turn begins with nothing concealed. */
  _advance() {
    this._concealedOfNext = 0;
    return this._store.advance();
  }

  /**
   * Merge: the next frame, crossfaded in from the concealment (or the silence it has faded to); if it is
   * missing, the rest of its turn concealed first and the one after it taken.
   */
  _merge() {
    if (!this._store.has(this._store.next)) this._conceal(this.frameSamples - this._concealedOfNext);
    this._take(true);
    if (this.state !== PLAYING) this._transition('merge');
  }

  /** Crossfade the ring's samples [from, from + length) in from what the concealer plays on. */
  _crossfadeIn(from, length) {
    const ring = this._ring;
    const concealer = this._concealer;
    const counted = concealer.concealedSamples;
    for (let i = 0; i < length; i++) {
      const w = (i + 1) / (length + 1);
      ring.set(from + i, ring.at(from + i) * w + concealer.next() * (1 - w));
    }
    concealer.concealedSamples = counted; // a crossfade's tail is not concealment
  }

  /** The next frame goes unplayed to make room for a much later one: dropped if it came, else lost. */
  _overflow() {
    const length = this._advance();
    if (length > 0) this.overflowSamples += length;
    else this._countLost();
  }

  /** Skip the frames missing before the next one that came: they are lost. */
  _skipMissing() {
    const store = this._store;
    while (!store.has(store.next)) {
      this._advance();
      this._countLost();
    }
  }

  /**
   * Expand: `samples` of concealment in the missing next frame's place. A frame whose whole turn is concealed
   * is given up, and the concealment goes on into the next one's turn.
   */
  _conceal(samples) {
    for (let i = 0; i < samples; i++) {
      this._ring.push(this._concealer.next());
      if (++this._concealedOfNext >= this.frameSamples) this._giveUp();
    }
    if (this.state !== CONCEALING) this._transition('expand');
  }

  /**
   * The next frame's turn went by without it. A frame overdue with nothing behind it is counted lost only once a
   * later one shows the stream went on.
   */
  _giveUp() {
    if (this._store.hasLater) this._countLost();
    else if (!this._concealer.silent) this._unconfirmedLost++;
    this._advance();
  }

  /** One frame missing where audio went on: lost, unless the sender was silent before it (DTX: never sent). */
  _countLost() {
    if (!this._concealer.silent) this.lost++;
  }

  /** Accelerate: skip `amount` samples ahead, crossfading from where playback is to where it lands. */
  _accelerate(amount, n) {
    const ring = this._ring;
    const xf = this._xfade;
    this._fill(xf);
    for (let j = 0; j < xf; j++) this._scratch[j] = ring.at(j);
    this.droppedSamples += this._discard(amount);
    this._fill(xf + n);
    for (let j = 0; j < xf; j++) {
      const w = (j + 0.5) / xf;
      ring.set(j, this._scratch[j] * (1 - w) + ring.at(j) * w);
    }
    this.drops++;
    this._filter.acted(-amount * this._msPerSample);
  }

  /**
   * Drop the next k samples unplayed: from the ring, then frames from the store (one missing with audio behind
   * it, where a whole frame is still to go, is lost), then the head of the next frame. Returns the audio dropped.
   */
  _discard(k) {
    const ring = this._ring;
    const store = this._store;
    let dropped = Math.min(k, ring.level);
    ring.discard(dropped);
    let gone = dropped;
    for (;;) {
      if (store.has(store.next) && store.length() <= k - gone) {
        const length = this._advance();
        dropped += length;
        gone += length;
      } else if (!store.has(store.next) && store.hasLater && k - gone >= this.frameSamples) {
        this._advance();
        this._countLost();
        gone += this.frameSamples;
      } else break;
    }
    if (gone < k && store.has(store.next)) {
      this._take(false);
      ring.discard(k - gone);
      dropped += k - gone;
    }
    return dropped;
  }

  /** Stretch: play the last `amount` samples again, crossfading into them. */
  _stretch(amount, n) {
    this._fill(n + this._xfade);
    this._ring.replay(amount, this._xfade);
    this.inserts++;
    this.insertedSamples += amount;
    this._filter.acted(amount * this._msPerSample);
  }

  /**
   * A frame came while the silence before the first frame plays: that much less silence is needed. Without
   * this, a burst that came over a few quanta after an outage (its first frames starting playback) waited
   * behind up to a target's worth of silence, and its skip with it.
   */
  _trimPrime(arriving) {
    const ring = this._ring;
    const real = this.levelSamples() - ring.level + arriving;
    ring.unwrite(ring.level - Math.max(0, Math.min(ring.level, this._targetSamples - real)));
  }

  // --- Transitions ---

  /** The one place the state changes; each transition does what entering its state needs. */
  _transition(name) {
    const from = this.state;
    const to = TRANSITIONS[name][1];
    switch (name) {
      case 'prime': {
        const silence = this._targetSamples - this.levelSamples();
        for (let i = 0; i < silence; i++) this._ring.push(this._concealer.next());
        this._starved = 0;
        this._filter.reset(1);
        break;
      }
      case 'start': {
        // Audio whose time went by while playback was starved (a stall, then a burst) is stale: drop it, but
        // never below the target, so that no silence is played where audio could be.
        const stale = Math.min(this._starved, this.levelSamples() - this._targetSamples);
        if (stale > 0) this.droppedSamples += this._discard(stale);
        if (this._ring.level > 0) this._crossfadeIn(0, Math.min(this._fadeIn, this._ring.level));
        else if (this._store.has(this._store.next)) this._take(true);
        this._starved = 0;
        this._filter.reset(1);
        break;
      }
      case 'underrun':
        if (!this._concealer.silent) this.underruns++; // after silence: the sender's DTX
        this._starved = -this._ring.level; // the quantum's silence counts from where the concealment ends
        this._concealedOfNext = 0; // the next frame's turn begins when playback does
        this._filter.reset(0);
        break;
      case 'restart':
        this.resyncs++;
        this._store.clear();
        this._concealedOfNext = 0;
        this._ring.clear(); // the concealer keeps fading out what was playing
        this._estimator.restart();
        this._unconfirmedLost = 0;
        this._starved = Infinity; // whatever comes at once after the silence is older than the target
        this._filter.reset(0);
        break;
      default: // merge, expand: what they need is done by the operation
    }
    this.state = to;
    if (this._onTransition) this._onTransition(name, from, to);
  }

  /**
   * Counters and figures. Pass an object to fill to avoid allocating.
   * @param {object} [into]
   */
  stats(into = {}) {
    const estimator = this._estimator;
    into.state = this.state;
    into.delayMs = this.delayMs;
    into.targetMs = this.targetMs;
    into.bufferedMs = this.levelSamples() * this._msPerSample;
    into.arrivalJitterMs = estimator.arrivalJitterMs;
    into.peakLatenessMs = estimator.peakLatenessMs;
    into.received = this.received;
    into.lost = this.lost;
    into.concealed = this.concealed;
    into.late = this.late;
    into.recovered = this.recovered;
    into.cutShort = this.cutShort;
    into.duplicates = this.duplicates;
    into.underruns = this.underruns;
    into.drops = this.drops;
    into.droppedMs = this.droppedSamples * this._msPerSample;
    into.droppedFrames = this.late
      + Math.round((this.droppedSamples + this.overflowSamples + this._ring.overflow) / this.frameSamples);
    into.inserts = this.inserts;
    into.insertedMs = this.insertedSamples * this._msPerSample;
    into.resyncs = this.resyncs;
    into.playing = this.state !== BUFFERING;
    into.decisions = this.decisions;
    into.frameMs = this.frameMs; // the sender's frame duration
    return into;
  }
}
