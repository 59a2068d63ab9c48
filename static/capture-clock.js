// When a captured sample was taken, in wall-clock ms, from the AudioContext time the capture worklet
// gives it, without asking the browser for a timestamp.
//
// AudioContext.getOutputTimestamp() and the first read of outputLatency can block the main thread for
// good in Firefox (issue 11: both query the audio backend, a lock wait with PulseAudio), and Firefox's
// getOutputTimestamp() subtracts the output latency from both of its times, so a capture time derived
// from it came out one output latency (about 40 ms) too early there. This clock uses only what the page
// sees itself: a frame whose last sample has context time t arrives on the main thread at wall time w
// (performance.timeOrigin + performance.now()), after the worklet rendered it, so t maps to at most w.
// The smallest offset w - t over the last two to four seconds is the mapping, late by the fastest
// worklet-to-main-thread hand-off only (under a millisecond when the page is idle). Recent, not since the
// start: a frame that comes through early (the graph rendering ahead in a burst) set the mapping of the
// older clock, which rose back at 1 ms per second, and a few pages here had capture times 60 to 140 ms
// early for a whole call. A slow hand-off never moves the mapping while a faster one is in the window,
// and a jump (a suspended context) restarts it.

import { RecentLeast } from './figures.js';

/** The mapping is the least offset of the last one to two spans of this length. */
export const SPAN_MS = 2000;
/** A frame this much later than the mapping predicts means the clocks jumped: start again. */
export const RESYNC_MS = 250;

export class CaptureClock {
  constructor() {
    this._offsets = new RecentLeast(SPAN_MS); // wall ms - context ms
  }

  /**
   * A captured frame arrived.
   * @param {number} endTime context time (s) just after the frame's last sample
   * @param {number} arrivalMs wall-clock ms at which the main thread got it
   */
  observe(endTime, arrivalMs) {
    const offset = arrivalMs - endTime * 1000;
    const least = this._offsets.least;
    if (least !== null && offset - least > RESYNC_MS) this._offsets.clear();
    this._offsets.add(offset, arrivalMs);
  }

  /** Wall-clock ms of context time t (s); NaN before the first frame. */
  wallTime(t) {
    const least = this._offsets.least;
    return least === null ? NaN : t * 1000 + least;
  }
}
