// Adaptive jitter buffer for 20 ms mono frames, pulled 128 samples at a time by the playback worklet.
//
// Frames arrive with a 16-bit sequence number and an arrival time (ms, any clock that advances with the
// audio clock: the worklet passes currentTime * 1000, tests pass simulated time). Contiguous frames go
// straight into a ring of samples; frames that arrive ahead of a gap wait in per-sequence slots until the
// gap is filled or until playback needs the missing frame, which is then concealed (the last frame is
// replayed back and forth while fading to silence within CONCEAL_FADE_MS).
//
// Delay control. For each new frame we know how much was still buffered when it arrived (the "trough")
// and how late it was compared with the best transit time seen recently (its "lateness"; the baseline
// of best transit may rise as fast as the sender's clock is measured to drift, see _trackDrift). trough +
// lateness is the headroom an on-time frame would have found. The buffer keeps that headroom near
// margin = one render quantum + 1 ms + the peak lateness, so that the buffered delay right after a frame
// arrives sits near one frame + margin. Too much headroom (burst, sender clock faster) -> skip ahead in
// the ring with a short crossfade; too little (sender clock slower) -> replay a few ms with a crossfade.
// Nothing in pull() allocates.
//
// The peak lateness is held for PEAK_HOLD_MS while jitter keeps coming near it, then decays: jitter's
// rare worst cases recur every few seconds, and a peak that decays between them costs dropouts.
// An outage is not jitter. Over TCP a lost segment arrives as a stall and then a burst: no frame for
// OUTAGE_GAP_MS or more, then everything held at once. Those frames' lateness is the outage's, and if
// it went into the peak the buffer would keep the whole stall as delay for seconds after it (a 400 ms
// stall kept the delay near 230 ms, decaying over 8 s). So a frame that would have arrived before the
// outage ended, or that comes in the burst behind it while the burst catches up, raises the peak by at most
// OUTAGE_STEP_MS: a lone stall is skipped with a crossfade and costs at most that (5 ms) for PEAK_HOLD_MS;
// outages that come more often than that add up, step by step, until the buffer waits them out. After the
// underrun a stall causes, playback starts again on a frame that comes on time, not on a held one.

import { CONCEAL_FADE_MS, FRAME_MS, MAX_JITTER_MARGIN_MS, RENDER_QUANTUM } from './constants.js';

const BUFFERING = 0;
const PLAYING = 1;

const SLOT_EMPTY = 0;
const SLOT_PRESENT = 1; // waiting in its slot for the gap before it to be filled
const SLOT_CONSUMED = 2; // already moved to the ring (used to tell duplicates from late frames)

const SAFETY_MS = 1; // headroom above one render quantum on a perfect network
const BASELINE_RISE = 0.02; // the transit baseline may rise 2% of elapsed time (sender clock 2% slower)
const BASELINE_RISE_FLOOR = 0.001; // ... and rises at least 0.1% (ten times a sound card's drift)
const DRIFT_BLOCK_MS = 2000; // the best transit of each such block, against the last one's, gives the drift
const PEAK_HOLD_MS = 2000; // a lateness peak seen again (within PEAK_REFRESH) is kept this long, then decays
const PEAK_REFRESH = 0.8;
const PEAK_DECAY_MS = 4000; // time constant of the lateness peak's decay, once its hold has expired
const OUTAGE_GAP_MS = 150; // no frame for this long: a stall (retransmission, handover), not jitter
const OUTAGE_STEP_MS = 5; // one outage raises the lateness peak by at most this much
const T0_SMOOTHING = 0.3; // EMA weight of the newest headroom measurement
const DROP_HYSTERESIS_MS = 4;
const INSERT_HYSTERESIS_MS = 1.5;
const MAX_INSERT_MS = 20;
const ACTION_COOLDOWN_FRAMES = 2;
const MAX_EXPAND_FRAMES = Math.ceil(CONCEAL_FADE_MS / FRAME_MS); // concealed frames before an underrun
const WARMUP_FRAMES = 25; // the first 0.5 s of a stream (encoder and page warming up) raise the margin
const WARMUP_MAX_LATENESS_MS = 20; // by at most one frame
const RESYNC_FRAMES = 50; // a jump ahead this large (1 s) restarts the stream
const RESYNC_BACK_FRAMES = 500; // a jump back this large means the sender restarted its counter
const RESYNC_SILENCE_MS = 1000; // no frame for this long (partner muted, network outage): restart

/** Signed distance a - b between two 16-bit sequence numbers, in [-32768, 32767]. */
export function seqDelta(a, b) {
  let d = ((a - b) & 0xffff);
  if (d >= 0x8000) d -= 0x10000;
  return d;
}

export class JitterBuffer {
  /**
   * @param {object} [options]
   * @param {number} [options.sampleRate=48000] playback rate; pushed frames must be at this rate
   * @param {number} [options.frameMs=20] nominal frame duration
   * @param {number} [options.quantum=128] samples per pull()
   * @param {number} [options.maxDelayMs=2000] ring capacity
   * @param {number} [options.slots=64] frames that can wait out of order
   */
  constructor({ sampleRate = 48000, frameMs = FRAME_MS, quantum = RENDER_QUANTUM, maxDelayMs = 2000,
    slots = 64 } = {}) {
    this.sampleRate = sampleRate;
    this.frameMs = frameMs;
    this.frameSamples = Math.round(sampleRate * frameMs / 1000);
    this.quantum = quantum;
    this._msPerSample = 1000 / sampleRate;

    this._xfade = Math.max(16, Math.round(sampleRate * 0.0015)); // crossfade of a drop/insert
    this._fadeInLength = Math.max(16, Math.round(sampleRate * 0.002)); // after concealment/silence
    this._maxInsert = Math.round(sampleRate * MAX_INSERT_MS / 1000);
    this._historySize = this._maxInsert + 2 * this._xfade; // played samples kept for inserts
    let capacity = 1024;
    while (capacity < Math.ceil(sampleRate * maxDelayMs / 1000) + this._historySize) capacity *= 2;
    this._ring = new Float32Array(capacity);
    this._mask = capacity - 1;

    this._slotCount = slots;
    this._maxFrame = this.frameSamples * 3;
    this._slotData = [];
    for (let i = 0; i < slots; i++) this._slotData.push(new Float32Array(this._maxFrame));
    this._slotLength = new Int32Array(slots);
    this._slotExt = new Float64Array(slots);
    this._slotState = new Uint8Array(slots);

    this._lastFrame = new Float32Array(this._maxFrame);
    this._concealStep = 1 / Math.max(1, Math.round(sampleRate * CONCEAL_FADE_MS / 1000));
    this.reset();
  }

  /** Forget everything (new partner): empty buffer, fresh estimates and counters. */
  reset() {
    this._clearStream();
    this._peakLateness = 0;
    this._peakHeldUntil = -Infinity;
    this._outageEndMs = -Infinity;
    this._outageCeiling = 0;
    this._outageBurst = false;
    this._arrivalJitter = 0;
    this.received = 0;
    this.lost = 0;
    this.concealedSamples = 0;
    this.late = 0;
    this.duplicates = 0;
    this.underruns = 0;
    this.drops = 0;
    this.droppedSamples = 0;
    this.inserts = 0;
    this.insertedSamples = 0;
    this.overflowSamples = 0;
    this.resyncs = 0;
  }

  _clearStream() {
    this._state = BUFFERING;
    this._read = 0;
    this._ringLevel = 0;
    this._played = 0;
    this._silencePad = 0;
    this._slotState.fill(SLOT_EMPTY);
    this._presentCount = 0;
    this._presentSamples = 0;
    this._nextExt = null; // next sequence (unwrapped) to move into the ring
    this._highestExt = null;
    this._lastArrival = null;
    this._lastLateness = 0;
    this._lastHeld = false;
    this._arrivals = 0;
    this._lastTransit = 0;
    this._baseline = 0;
    this._riseRate = BASELINE_RISE; // until the drift is measured
    this._blockStart = 0;
    this._blockMin = Infinity;
    this._previousBlockMin = null;
    this._t0 = null;
    this._cooldown = 0;
    this._dropPending = 0;
    this._insertPending = 0;
    this._needFadeIn = true;
    this._underrunSamples = 0;
    this._lastLength = 0;
    this._concealPos = 0;
    this._concealGain = 0;
    this._expanded = 0;
    this._unconfirmedLost = 0;
  }

  /** Frames' worth of audible concealment played so far. */
  get concealed() {
    return Math.ceil(this.concealedSamples / this.frameSamples);
  }

  /** Margin above one frame that the buffer aims for, in ms. */
  get marginMs() {
    return this.quantum * this._msPerSample + SAFETY_MS + this._peakLateness;
  }

  /** Target delay (buffered right after an on-time frame arrives), in ms. */
  get targetMs() {
    return this.frameMs + this.marginMs;
  }

  /** The target delay in samples. */
  get _targetSamples() {
    return Math.round(this.targetMs / this._msPerSample);
  }

  /** Current delay: one frame + the smoothed headroom an on-time frame finds, in ms. */
  get delayMs() {
    if (this._t0 === null) return this.levelSamples() * this._msPerSample;
    return this.frameMs + Math.max(0, this._t0);
  }

  /**
   * How much later than over the fastest path seen the next sample is played, ms: the wait the buffer adds
   * plus the lateness of its frame, measured, not estimated (frame k's media time is k frames; the fastest
   * path is the least arrival minus media time, `_baseline`). Null when the next sample is not the
   * sender's audio (before playback, silence, concealment while a frame is overdue).
   * @param {number} nowMs when the next sample is played, on the clock of push()'s arrivalMs
   */
  playoutDelayMs(nowMs) {
    if (this._state !== PLAYING || this._nextExt === null || this._silencePad > 0) return null;
    if (this._ringLevel === 0) {
      const slot = this._slotIndex(this._nextExt);
      if (this._slotState[slot] !== SLOT_PRESENT || this._slotExt[slot] !== this._nextExt) return null;
    }
    return nowMs - this._baseline - (this._nextExt * this.frameMs - this._ringLevel * this._msPerSample);
  }

  /** Everything buffered or expected (missing frames count as one nominal frame each), in samples. */
  levelSamples() {
    let missing = 0;
    if (this._highestExt !== null && this._highestExt >= this._nextExt) {
      missing = this._highestExt - this._nextExt + 1 - this._presentCount;
    }
    return this._silencePad + this._ringLevel + this._presentSamples + missing * this.frameSamples;
  }

  _unwrap(seq) {
    const s = seq & 0xffff;
    if (this._highestExt === null) return s;
    return this._highestExt + seqDelta(s, this._highestExt & 0xffff);
  }

  _slotIndex(ext) {
    return ((ext % this._slotCount) + this._slotCount) % this._slotCount;
  }

  /**
   * Accept one frame.
   * @param {number} seq 16-bit sequence number
   * @param {Float32Array} samples mono, at this.sampleRate (about one frame)
   * @param {number} [arrivalMs=0] arrival time in ms
   * @returns {boolean} false when the frame was discarded (late, duplicate, empty)
   */
  push(seq, samples, arrivalMs = 0) {
    if (!samples || samples.length === 0) return false;
    this.received++;
    let ext = this._unwrap(seq);
    if (this._nextExt !== null) {
      const silentFor = this._lastArrival === null ? 0 : arrivalMs - this._lastArrival;
      if (ext - this._nextExt >= RESYNC_FRAMES || this._nextExt - ext >= RESYNC_BACK_FRAMES
        || silentFor >= RESYNC_SILENCE_MS) {
        this._resync();
        ext = seq & 0xffff;
      }
    }
    if (this._nextExt === null) {
      this._nextExt = ext;
      this._highestExt = ext - 1;
    }

    const slot = this._slotIndex(ext);
    const known = this._slotExt[slot] === ext && this._slotState[slot] !== SLOT_EMPTY;
    if (known) {
      this.duplicates++;
      return false;
    }
    const lateness = this._updateJitter(ext, arrivalMs);
    if (ext < this._nextExt) {
      this.late++;
      if (this._unconfirmedLost > 0) this._unconfirmedLost--;
      return false;
    }
    this.lost += this._unconfirmedLost;
    this._unconfirmedLost = 0;

    const isNew = ext > this._highestExt;
    if (this._silencePad > 0) this._trimSilencePad(samples.length);
    if (isNew && this._state === PLAYING) this._control(this.levelSamples() * this._msPerSample + lateness);
    if (isNew) this._highestExt = ext;

    if (ext === this._nextExt) {
      this._appendReal(samples, samples.length);
      this._markConsumed(ext);
      this._nextExt++;
      this._drain();
    } else {
      const length = Math.min(samples.length, this._maxFrame);
      this._slotData[slot].set(samples.length > length ? samples.subarray(0, length) : samples);
      this._slotLength[slot] = length;
      this._slotExt[slot] = ext;
      this._slotState[slot] = SLOT_PRESENT;
      this._presentCount++;
      this._presentSamples += length;
    }
    return true;
  }

  /**
   * A frame arrived while the silence that tops playback up to the target still plays: that much less
   * silence is needed. Without this, a burst that arrives over a few quanta after an outage (its first
   * frames start playback) was held behind up to a target's worth of silence, and its skip with it.
   */
  _trimSilencePad(arriving) {
    const real = this.levelSamples() - this._silencePad + arriving;
    this._silencePad = Math.max(0, Math.min(this._silencePad, this._targetSamples - real));
  }

  _resync() {
    this.resyncs++;
    const concealPos = this._concealPos;
    const concealGain = this._concealGain;
    const lastLength = this._lastLength;
    this._clearStream();
    // Keep fading out whatever was playing.
    this._concealPos = concealPos;
    this._concealGain = concealGain;
    this._lastLength = lastLength;
    // Whatever arrives at once after the silence is older than the target: play only the newest.
    this._underrunSamples = Infinity;
  }

  /** Update the arrival statistics; returns the frame's lateness in ms. */
  _updateJitter(ext, arrivalMs) {
    const transit = arrivalMs - ext * this.frameMs;
    if (this._lastArrival === null) {
      this._baseline = transit;
      this._blockStart = arrivalMs;
    } else {
      const dt = Math.max(0, arrivalMs - this._lastArrival);
      this._baseline = Math.min(transit, this._baseline + this._riseRate * dt);
      // RFC 3550 interarrival jitter, for the stats.
      this._arrivalJitter += (Math.abs(transit - this._lastTransit) - this._arrivalJitter) / 16;
      const decaying = arrivalMs - Math.max(this._lastArrival, this._peakHeldUntil);
      if (decaying > 0) this._peakLateness *= Math.exp(-decaying / PEAK_DECAY_MS);
      if (dt > OUTAGE_GAP_MS) {
        this._outageEndMs = arrivalMs;
        this._outageCeiling = this._peakLateness + OUTAGE_STEP_MS;
      }
    }
    this._trackDrift(transit, arrivalMs);
    const lateness = transit - this._baseline;
    this._arrivals++;
    // The burst after an outage goes on while its frames catch up, each less late than the one before by
    // half a frame or more (the decoder hands them over a few ms apart, sometimes after a pause).
    this._outageBurst = arrivalMs === this._outageEndMs
      || (this._outageBurst && lateness <= this._lastLateness - this.frameMs / 2);
    // A frame held up by an outage (it would have arrived before the outage ended, or it comes in the burst
    // that follows) is late because of the outage, not of jitter: the burst is skipped, and the margin stays
    // where the jitter needs it.
    const held = this._outageBurst || arrivalMs - lateness < this._outageEndMs;
    this._lastLateness = lateness;
    this._lastHeld = held;
    const counted = held ? Math.min(lateness, this._outageCeiling) : lateness;
    const cap = this._arrivals <= WARMUP_FRAMES ? WARMUP_MAX_LATENESS_MS : MAX_JITTER_MARGIN_MS;
    // Jitter near the peak keeps it; an outage keeps only the step it added, so that outages coming more
    // often than PEAK_HOLD_MS add up and are waited for, while a lone one is forgotten.
    if (held ? counted > this._peakLateness : counted >= PEAK_REFRESH * this._peakLateness) {
      this._peakHeldUntil = arrivalMs + PEAK_HOLD_MS;
    }
    if (counted > this._peakLateness && this._peakLateness < cap) this._peakLateness = Math.min(counted, cap);
    this._lastArrival = Math.max(arrivalMs, this._lastArrival ?? arrivalMs);
    this._lastTransit = transit;
    return lateness;
  }

  /**
   * Let the baseline rise only as fast as the sender's clock is seen to drift. Rising faster (as it did, at
   * 2% whatever the drift) lifts it above the best transit between two fast frames, which on a jittery
   * link are rare: every frame then looks less late than it is, and the buffer inserts delay it does not
   * need (on two jittery legs the baseline sat 5 to 19 ms above the best transit).
   */
  _trackDrift(transit, arrivalMs) {
    this._blockMin = Math.min(this._blockMin, transit);
    if (arrivalMs - this._blockStart < DRIFT_BLOCK_MS) return;
    if (this._previousBlockMin !== null) {
      const slope = (this._blockMin - this._previousBlockMin) / (arrivalMs - this._blockStart);
      this._riseRate = Math.min(BASELINE_RISE, Math.max(0, slope) + BASELINE_RISE_FLOOR);
    }
    this._previousBlockMin = this._blockMin;
    this._blockMin = Infinity;
    this._blockStart = arrivalMs;
  }

  /** Decide on a drop or an insert from the headroom an on-time frame would have found (ms). */
  _control(headroomMs) {
    this._t0 = this._t0 === null ? headroomMs : this._t0 + T0_SMOOTHING * (headroomMs - this._t0);
    if (this._cooldown > 0) {
      this._cooldown--;
      return;
    }
    if (this._dropPending > 0 || this._insertPending > 0) return;
    const margin = this.marginMs;
    const error = this._t0 - margin;
    const dropHysteresis = DROP_HYSTERESIS_MS + 0.1 * this._peakLateness;
    if (error > dropHysteresis) {
      this._dropPending = Math.round(error / this._msPerSample);
    } else if (error < -INSERT_HYSTERESIS_MS) {
      this._insertPending = Math.min(this._maxInsert, Math.round(-error / this._msPerSample));
    }
  }

  _markConsumed(ext) {
    const slot = this._slotIndex(ext);
    this._slotExt[slot] = ext;
    this._slotState[slot] = SLOT_CONSUMED;
  }

  /** Move frames that are now contiguous from their slots to the ring. */
  _drain() {
    for (;;) {
      const slot = this._slotIndex(this._nextExt);
      if (this._slotState[slot] !== SLOT_PRESENT || this._slotExt[slot] !== this._nextExt) return;
      const length = this._slotLength[slot];
      this._appendReal(this._slotData[slot], length);
      this._slotState[slot] = SLOT_CONSUMED;
      this._presentCount--;
      this._presentSamples -= length;
      this._nextExt++;
    }
  }

  /** Make room for n samples in the ring; on overflow the oldest samples go. */
  _reserve(n) {
    const free = this._ring.length - this._historySize - this._ringLevel;
    if (n > free) {
      const excess = Math.min(n - free, this._ringLevel);
      this._read = (this._read + excess) & this._mask;
      this._ringLevel -= excess;
      this.overflowSamples += excess;
    }
  }

  _appendReal(samples, length) {
    this._reserve(length);
    const ring = this._ring;
    const mask = this._mask;
    let write = (this._read + this._ringLevel) & mask;
    const fade = this._needFadeIn ? Math.min(this._fadeInLength, length) : 0;
    const concealedBefore = this.concealedSamples;
    for (let i = 0; i < length; i++) {
      const v = samples[i];
      if (i < fade) {
        // Crossfade from the concealment (or silence) that played before this frame.
        const w = (i + 1) / (fade + 1);
        ring[write] = v * w + this._concealSample() * (1 - w);
      } else {
        ring[write] = v;
      }
      write = (write + 1) & mask;
    }
    this._ringLevel += length;
    this.concealedSamples = concealedBefore; // the crossfade's tail is not concealment
    this._needFadeIn = false;
    if (length >= 2) {
      this._lastFrame.set(length > this._maxFrame ? samples.subarray(0, this._maxFrame) : samples.subarray(0, length));
      this._lastLength = Math.min(length, this._maxFrame);
      // While buffering, what was concealed before keeps fading out: a frame that is waiting to be played (or
      // skipped) must not be heard as concealment first (a stall's held tick was, 170 ms late).
      if (this._state === PLAYING) this._armConcealment();
    }
    this._expanded = 0;
  }

  /** Conceal from the start of the last frame, at full level. */
  _armConcealment() {
    this._concealPos = 0;
    this._concealGain = 1;
  }

  /** Next concealment sample: the last frame played back and forth, fading to silence. */
  _concealSample() {
    const n = this._lastLength;
    if (n < 2 || this._concealGain <= 0) return 0;
    const period = 2 * (n - 1);
    const m = (this._concealPos + 1) % period;
    const index = m <= n - 1 ? n - 1 - m : m - (n - 1);
    this._concealPos++;
    this.concealedSamples++;
    this._concealGain -= this._concealStep;
    if (this._concealGain < 0) this._concealGain = 0;
    return this._lastFrame[index] * this._concealGain;
  }

  /** The frame at _nextExt is missing while later ones are here: conceal it into the ring. */
  _concealNext() {
    const n = this.frameSamples;
    this._reserve(n);
    const ring = this._ring;
    const mask = this._mask;
    let write = (this._read + this._ringLevel) & mask;
    for (let i = 0; i < n; i++) {
      ring[write] = this._concealSample();
      write = (write + 1) & mask;
    }
    this._ringLevel += n;
    this._needFadeIn = true;
    this.lost++;
    this._nextExt++;
    this._drain();
  }

  /** Refill the ring with the next frame (real or concealed); false when nothing is expected. */
  _fetch() {
    if (this._nextExt === null) return false;
    const before = this._nextExt;
    this._drain();
    if (this._nextExt !== before) return true;
    if (this._highestExt > this._nextExt) {
      // A gap with audio behind it. When what is behind it fills the target without it, skip the missing
      // frame: concealing it in real time would play everything behind it that much later. After a stall
      // the decoder may drop a run of the burst (it caps its queue), and concealing that run played the
      // rest of the burst 150 to 250 ms late.
      if (this.levelSamples() - this.frameSamples >= this._targetSamples) {
        this.lost++;
        this._nextExt++;
        this._needFadeIn = true;
        this._drain();
      } else {
        this._concealNext();
      }
      return true;
    }
    return false;
  }

  /**
   * Start (again) on a frame that came on time, or once the target is buffered and the newest frame was not
   * held by an outage. After a stall the decoder hands the burst over frame by frame, and its first frame,
   * on its own, used to start playback: 20 ms played 460 ms late in the browser before the rest of the
   * burst came and was skipped.
   */
  _readyToStart() {
    const level = this.levelSamples();
    return level > 0
      && (this._lastLateness <= this.marginMs || (!this._lastHeld && level >= this._targetSamples));
  }

  _start() {
    const target = this._targetSamples;
    // Audio whose time went by while we were starved (a stall, then a burst) is stale: drop it,
    // but never below the target, so that we do not pad with silence what we could play.
    let stale = Math.min(this._underrunSamples, Math.max(0, this.levelSamples() - target));
    let droppedFromRing = false;
    while (stale > 0) {
      if (this._ringLevel > 0) {
        const k = Math.min(stale, this._ringLevel);
        this._read = (this._read + k) & this._mask;
        this._ringLevel -= k;
        this.droppedSamples += k;
        stale -= k;
        droppedFromRing = true;
        continue;
      }
      if (stale < this.frameSamples || !(this._highestExt > this._nextExt)) break;
      const slot = this._slotIndex(this._nextExt);
      if (this._slotState[slot] === SLOT_PRESENT && this._slotExt[slot] === this._nextExt) {
        this._presentCount--;
        this._presentSamples -= this._slotLength[slot];
        this.droppedSamples += this._slotLength[slot];
        this._slotState[slot] = SLOT_CONSUMED;
      } else {
        this.lost++;
      }
      this._nextExt++;
      stale -= this.frameSamples;
      this._drain();
    }
    if (droppedFromRing) {
      // What was the middle of a frame is now the start of playback: fade it in.
      const fade = Math.min(this._fadeInLength, this._ringLevel);
      for (let i = 0; i < fade; i++) this._ring[(this._read + i) & this._mask] *= (i + 1) / (fade + 1);
    }
    this._underrunSamples = 0;
    this._silencePad = Math.max(0, target - this.levelSamples());
    this._state = PLAYING;
    // The last frame appended is in the ring, to be played: conceal from it if the stream stops again.
    if (this._ringLevel > 0) this._armConcealment();
    this._t0 = null;
    this._dropPending = 0;
    this._insertPending = 0;
    this._cooldown = 1;
  }

  /** Skip ahead or replay a little, with a crossfade into out[0..xfade). Returns samples written. */
  _act(out) {
    const xf = this._xfade;
    if (out.length < xf || this._silencePad > 0) return 0;
    const ring = this._ring;
    const mask = this._mask;
    const r = this._read;
    if (this._dropPending > 0) {
      const n = Math.min(this._dropPending, this._ringLevel - xf);
      if (n < 8) return 0; // wait until the ring holds what should go
      for (let j = 0; j < xf; j++) {
        const w = (j + 0.5) / xf;
        out[j] = ring[(r + j) & mask] * (1 - w) + ring[(r + n + j) & mask] * w;
      }
      this._read = (r + n + xf) & mask;
      this._ringLevel -= n + xf;
      this._played += n + xf;
      this.drops++;
      this.droppedSamples += n;
      this._dropPending = 0;
      this._t0 -= n * this._msPerSample;
      this._cooldown = ACTION_COOLDOWN_FRAMES;
      return xf;
    }
    if (this._insertPending > 0) {
      const n = Math.min(this._insertPending, Math.min(this._played, this._historySize) - xf);
      if (n < 8 || this._ringLevel < xf) return 0;
      for (let j = 0; j < xf; j++) {
        const w = (j + 0.5) / xf;
        out[j] = ring[(r + j) & mask] * (1 - w) + ring[(r - n + j) & mask] * w;
      }
      this._read = (r - n + xf) & mask;
      this._ringLevel += n - xf;
      this._played -= n;
      this.inserts++;
      this.insertedSamples += n;
      this._insertPending = 0;
      this._t0 += n * this._msPerSample;
      this._cooldown = ACTION_COOLDOWN_FRAMES;
      return xf;
    }
    return 0;
  }

  /**
   * Fill out completely with the next samples (audio, concealment or silence). Never allocates.
   * @param {Float32Array} out
   */
  pull(out) {
    const n = out.length;
    let i = 0;
    if (this._state === BUFFERING) {
      if (this._readyToStart()) {
        this._start();
      } else {
        for (; i < n; i++) out[i] = this._concealSample();
        if (this._nextExt !== null) this._underrunSamples += n;
        return;
      }
    }
    if (this._dropPending > 0 || this._insertPending > 0) {
      if (this._ringLevel < n + this._xfade) this._fetch();
      i = this._act(out);
    }
    while (i < n) {
      if (this._silencePad > 0) {
        const k = Math.min(this._silencePad, n - i);
        out.fill(0, i, i + k);
        this._silencePad -= k;
        i += k;
        continue;
      }
      if (this._ringLevel === 0) {
        if (this._fetch()) continue;
        if (this._expanded < MAX_EXPAND_FRAMES) {
          // The next frame is not here when it is due: take it as lost and conceal it. If it
          // arrives after all, it is late and discarded, and playback goes on without a gap.
          this._expanded++;
          this._concealNext();
          // Counted as lost only once a later frame shows the stream went on (see push()).
          this.lost--;
          this._unconfirmedLost++;
          continue;
        }
        // Underrun: concealment has faded out and nothing arrived. Rebuffer to the target.
        this.underruns++;
        this._state = BUFFERING;
        this._needFadeIn = true;
        this._t0 = null;
        this._underrunSamples = n - i;
        for (; i < n; i++) out[i] = this._concealSample();
        return;
      }
      const k = Math.min(this._ringLevel, n - i);
      const ring = this._ring;
      const mask = this._mask;
      let r = this._read;
      for (let j = 0; j < k; j++) {
        out[i + j] = ring[r];
        r = (r + 1) & mask;
      }
      this._read = r;
      this._ringLevel -= k;
      this._played += k;
      i += k;
    }
  }

  /**
   * Counters and figures. Pass an object to fill to avoid allocating.
   * @param {object} [into]
   */
  stats(into = {}) {
    into.delayMs = this.delayMs;
    into.targetMs = this.targetMs;
    into.bufferedMs = this.levelSamples() * this._msPerSample;
    into.arrivalJitterMs = this._arrivalJitter;
    into.peakLatenessMs = this._peakLateness;
    into.received = this.received;
    into.lost = this.lost;
    into.concealed = this.concealed;
    into.late = this.late;
    into.duplicates = this.duplicates;
    into.underruns = this.underruns;
    into.drops = this.drops;
    into.droppedMs = this.droppedSamples * this._msPerSample;
    into.droppedFrames = this.late + Math.round((this.droppedSamples + this.overflowSamples) / this.frameSamples);
    into.inserts = this.inserts;
    into.insertedMs = this.insertedSamples * this._msPerSample;
    into.resyncs = this.resyncs;
    into.playing = this._state === PLAYING;
    return into;
  }
}
