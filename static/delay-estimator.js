// The jitter buffer's delay estimator (NetEQ's delay manager): from frames' arrival times and sequence
// numbers alone it estimates how late frames come and how much delay the playout should keep. It holds no
// audio and decides nothing about it: static/playout.js reads its target and its classification of each
// arrival.
//
// Lateness. Frame k's media time is k frames; its transit is its arrival minus that. The fastest path (the
// baseline) is the least transit seen, allowed to rise as fast as the sender's clock is measured to drift
// (a baseline that rose a fixed 2 % of elapsed time sat 5 to 19 ms above the best transit on a jittery link,
// so every frame looked less late than it was). A frame's lateness is its transit above the baseline.
//
// Target. The playout keeps the headroom an on-time frame finds near the margin: one render quantum, 1 ms, and
// the peak lateness: the most lateness of the last one to two spans of PEAK_SPAN_MS, so the target follows the
// arrivals within 2 to 4 s, down as well as up. "The most" leaves out the latest arrival of every PEAK_PER beyond
// the first PEAK_PER (0.5 %; NetEQ's target is a quantile of the arrivals' delays too, not their maximum): with
// 10 ms frames that is the latest frame of the spans' 200 to 400, so a lone frame 10 to 20 ms later than the rest
// does not hold the whole call back for seconds; it plays what is left of its turn (static/playout.js). On the
// recorded 10 ms call across a 50 ms round trip that took 8 ms off the playout delay for 16 ms more concealment
// in 24 s (0.07 %); with 20 ms frames (100 to 200 arrivals) nothing is left out. (A peak that was held as long as
// jitter came within 80 % of it, then decayed, kept the worst frame of a call's first seconds for good: on
// recorded loopback calls whose lateness came up to 21 ms every few frames, one frame 26 ms late in the first 5 s
// held the target at 50 ms instead of 45, and the playout delay's p50 at 37 ms instead of 29, for the same
// concealment.)
//
// Outages are not jitter. Over TCP a lost segment arrives as a stall and then a burst: no frame for
// OUTAGE_GAP_MS or more, then everything held at once. If their lateness went into the peak, the buffer would
// keep the whole stall as delay for seconds after it (a 400 ms stall kept the delay near 230 ms, decaying over
// 8 s). So a frame the outage held (it would have arrived before the outage ended, or it comes in the burst
// behind it while the burst catches up, each frame less late than the one before) raises the peak by at most
// OUTAGE_STEP_MS: a lone stall costs at most that for a span or two, while outages that come more often than
// that add up, step by step, until the playout waits them out. An outage whose frames never catch up was no
// stall: the sender's clock skipped or the path got longer, and the baseline moves up instead.
//
// Copies are arrivals. On a link that loses datagrams a lost frame comes back as a copy in the next frame's
// message (static/redundancy.js), a frame or so late; the playout hands it here like any frame, so that while
// losses keep coming the peak holds that lateness and the copies are in time to play, and once they stop it
// decays as any peak does.
import { FRAME_MS, MAX_JITTER_MARGIN_MS, RENDER_QUANTUM } from './constants.js';

/** What an arrival was, as the playout needs to know it: a closed set. */
export const ON_TIME = 'on-time'; // within the margin: playback may start on it
export const LATE = 'late'; // later than the margin, by jitter
export const HELD = 'held'; // held up by an outage (a stall, then its burst): its lateness is the outage's

const SAFETY_MS = 1; // headroom above one render quantum on a perfect network
const BASELINE_RISE = 0.02; // the baseline may rise 2% of elapsed time (sender clock 2% slower)...
const BASELINE_RISE_FLOOR = 0.001; // ... and rises at least 0.1% (ten times a sound card's drift)
const DRIFT_BLOCK_MS = 2000; // the best transit of each such block, against the last one's, gives the drift
const PEAK_SPAN_MS = 2000; // the peak is the most lateness of the last one to two spans of this
const PEAK_PER = 200; // ... but for the latest arrival of every 200 beyond the first 200 (0.5 %)
const LATENESS_BINS = MAX_JITTER_MARGIN_MS + 1; // the spans' lateness, counted by whole ms (rounded up)
const OUTAGE_GAP_MS = 150; // no frame for this long: a stall (retransmission, handover), not jitter
const OUTAGE_STEP_MS = 5; // one outage raises the lateness peak by at most this much
const WARMUP_MS = 500; // the frames of a stream's first 0.5 s (encoder and page warming up) raise the peak
const WARMUP_MAX_LATENESS_MS = 20; // by at most this much
const NEW_STREAM_AHEAD_MS = 1000; // a frame this far ahead of the one due to play begins a new stream
const NEW_STREAM_BACK_MS = 10000; // and one this far back: the sender restarted its counter
const NEW_STREAM_SILENCE_MS = 1000; // no frame for this long (partner muted, network gone): a new stream

export class DelayEstimator {
  /**
   * @param {object} [options]
   * @param {number} [options.frameMs=20] media time per sequence number
   * @param {number} [options.quantumMs] one render quantum, in ms (128 samples at 48 kHz by default)
   */
  constructor({ frameMs = FRAME_MS, quantumMs = (RENDER_QUANTUM / 48000) * 1000 } = {}) {
    this.frameMs = frameMs;
    this.quantumMs = quantumMs;
    this._spanPrevious = new Uint32Array(LATENESS_BINS); // the span before this one: arrivals by lateness
    this._span = new Uint32Array(LATENESS_BINS); // and this one, begun at _peakStart
    this._spanArrivals = 0; // in both
    this._peakPrevious = 0; // the most lateness of the span before this one
    this._peak = 0; // and of this one
    this._peakStart = -Infinity;
    this.peakLatenessMs = 0; // the most lateness of the last one to two spans, but for the latest 0.5 %
    this._outageEnd = -Infinity;
    this._outageCeiling = 0;
    this._burst = false; // the frames coming now are an outage's burst, catching up
    this.arrivalJitterMs = 0; // RFC 3550 interarrival jitter, for the figures
    this.restart();
  }

  /**
   * A new stream (NetEQ's flush): a fresh baseline and drift. What was learnt of the network (the lateness
   * peak, the last outage) stays.
   */
  restart() {
    this.baselineMs = 0; // least transit: arrival - media time over the fastest path
    this.lateness = 0; // the newest arrival's lateness, ms
    this._leastSinceOutage = null; // the least lateness since the last outage, until a frame it did not hold
    this.arrival = ON_TIME; // the newest arrival's class
    this._lastArrival = null;
    this._lastTransit = 0;
    this._arrivals = 0;
    this._riseRate = BASELINE_RISE; // until the drift is measured
    this._blockStart = 0;
    this._blockMin = Infinity;
    this._previousBlockMin = null;
  }

  /** Margin above one frame that the playout should keep when a frame arrives on time, ms. */
  get marginMs() {
    return this.quantumMs + SAFETY_MS + this.peakLatenessMs;
  }

  /** Target delay: what should be buffered right after an on-time frame arrives, ms. */
  get targetMs() {
    return this.frameMs + this.marginMs;
  }

  /**
   * Whether frame `index` arriving at arrivalMs begins a new stream: it comes after a long silence, or it is far
   * from the frame due to play (`due`): a second ahead (a jump, or a second of audio that waits unplayed, as
   * when the sender's capture skipped and every frame seems late) or far behind (the sender's new counter).
   */
  startsNewStream(index, arrivalMs, due) {
    if (this._lastArrival === null) return false;
    return (index - due) * this.frameMs >= NEW_STREAM_AHEAD_MS || (due - index) * this.frameMs >= NEW_STREAM_BACK_MS
      || arrivalMs - this._lastArrival >= NEW_STREAM_SILENCE_MS;
  }

  /**
   * One frame arrived (duplicates excluded; frames after their turn included: their lateness counts).
   * @param {number} index the frame's sequence number, unwrapped (frame index in the stream)
   * @param {number} arrivalMs its arrival, on the playout's clock
   * @returns {string} its class: ON_TIME, LATE or HELD (also in this.arrival; its lateness in this.lateness)
   */
  arrive(index, arrivalMs) {
    const transit = arrivalMs - index * this.frameMs;
    if (this._lastArrival === null) {
      this.baselineMs = transit;
      this._blockStart = arrivalMs;
    } else {
      const dt = Math.max(0, arrivalMs - this._lastArrival);
      this.baselineMs = Math.min(transit, this.baselineMs + this._riseRate * dt);
      this.arrivalJitterMs += (Math.abs(transit - this._lastTransit) - this.arrivalJitterMs) / 16;
      if (dt > OUTAGE_GAP_MS) {
        this._outageEnd = arrivalMs;
        this._outageCeiling = this.peakLatenessMs + OUTAGE_STEP_MS;
        this._leastSinceOutage = Infinity;
      }
    }
    this._trackDrift(transit, arrivalMs);
    let lateness = transit - this.baselineMs;
    this._arrivals++;
    // The burst after an outage goes on while its frames catch up, each less late than the one before by
    // half a frame or more (the decoder hands them over a few ms apart, sometimes after a pause).
    this._burst = arrivalMs === this._outageEnd || (this._burst && lateness <= this.lateness - this.frameMs / 2);
    const held = this._burst || arrivalMs - lateness < this._outageEnd;
    if (this._leastSinceOutage !== null) {
      this._leastSinceOutage = Math.min(this._leastSinceOutage, lateness);
      if (!held) lateness -= this._stepAfterOutage(arrivalMs);
    }
    this._raisePeak(held ? Math.min(lateness, this._outageCeiling) : lateness, arrivalMs);
    this.lateness = lateness;
    this._lastArrival = Math.max(arrivalMs, this._lastArrival ?? arrivalMs);
    this._lastTransit = transit;
    if (lateness <= this.marginMs) this.arrival = ON_TIME;
    else this.arrival = held ? HELD : LATE;
    return this.arrival;
  }

  /**
   * The first frame after an outage that the outage did not hold: if every frame since came late, the frames behind
   * the outage never caught up, and it was no stall. The sender's clock skipped (its capture lost time, on a loaded
   * machine) or the path got longer: the baseline moves up by the least lateness since, and the drift is measured
   * afresh. Taken for lateness, such a step (100 to 250 ms in recorded calls) set the peak for seconds.
   * @returns {number} how far the baseline moved, ms
   */
  _stepAfterOutage(arrivalMs) {
    const step = this._leastSinceOutage > this.marginMs ? this._leastSinceOutage : 0;
    this._leastSinceOutage = null;
    if (step > 0) {
      this.baselineMs += step;
      this._previousBlockMin = null;
      this._blockMin = Infinity;
      this._blockStart = arrivalMs;
    }
    return step;
  }

  /**
   * Count a frame's lateness into this span's peak; an outage's frames count only the step it added, so that
   * outages coming more often than the spans add up and are waited for, while a lone one is forgotten.
   */
  _raisePeak(counted, arrivalMs) {
    const cap = this._arrivals * this.frameMs <= WARMUP_MS ? WARMUP_MAX_LATENESS_MS : MAX_JITTER_MARGIN_MS;
    if (arrivalMs - this._peakStart >= PEAK_SPAN_MS) {
      const emptied = this._spanPrevious;
      for (let ms = 0; ms < LATENESS_BINS; ms++) this._spanArrivals -= emptied[ms];
      emptied.fill(0);
      this._spanPrevious = this._span;
      this._span = emptied;
      this._peakPrevious = this._peak;
      this._peak = 0;
      this._peakStart = arrivalMs;
    }
    const lateness = Math.max(0, Math.min(counted, cap));
    this._peak = Math.max(this._peak, lateness);
    this._span[Math.ceil(lateness)]++;
    this._spanArrivals++;
    // The least lateness that all of the spans' arrivals are within but the latest one of every PEAK_PER beyond
    // the first PEAK_PER.
    let leftOut = Math.ceil(this._spanArrivals / PEAK_PER) - 1;
    let ms = LATENESS_BINS - 1;
    for (; ms > 0; ms--) {
      leftOut -= this._span[ms] + this._spanPrevious[ms];
      if (leftOut < 0) break;
    }
    this.peakLatenessMs = Math.min(ms, Math.max(this._peakPrevious, this._peak)); // exact, where it is the most
  }

  /**
   * Let the baseline rise only as fast as the sender's clock is seen to drift: the best transit of each
   * DRIFT_BLOCK_MS against the block before.
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
}
