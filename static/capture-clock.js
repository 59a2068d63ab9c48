// When a captured sample was taken, in wall-clock ms, from the AudioContext time the capture worklet
// gives it, without asking the browser for a timestamp.
//
// AudioContext.getOutputTimestamp() and the first read of outputLatency can block the main thread for
// good in Firefox (issue 11: both query the audio backend, a lock wait with PulseAudio), and Firefox's
// getOutputTimestamp() subtracts the output latency from both of its times, so a capture time derived
// from it came out one output latency (about 40 ms) too early there. This clock uses only what the page
// sees itself: a frame whose last sample has context time t arrives on the main thread at wall time w
// (performance.timeOrigin + performance.now()), after the worklet rendered it, so t maps to at most w.
// The smallest offset w - t over recent frames is the mapping, late by the fastest worklet-to-main-thread
// hand-off only (under a millisecond when the page is idle). The offset may rise slowly (the audio
// clock running slower than the wall clock) and restarts from scratch after a jump (a suspended
// context), so a single slow hand-off never sticks and a single fast one is kept.

/** How fast the offset may rise with no faster frame to confirm it: 1 ms per second, i.e. 0.1 % clock drift. */
export const RISE_MS_PER_S = 1;
/** A frame this much later than the mapping predicts means the clocks jumped: start again. */
export const RESYNC_MS = 250;

export class CaptureClock {
  constructor() {
    this._offsetMs = NaN; // wall ms - context ms
    this._lastArrivalMs = NaN;
  }

  /**
   * A captured frame arrived.
   * @param {number} endTime context time (s) just after the frame's last sample
   * @param {number} arrivalMs wall-clock ms at which the main thread got it
   */
  observe(endTime, arrivalMs) {
    const candidate = arrivalMs - endTime * 1000;
    if (Number.isNaN(this._offsetMs) || candidate - this._offsetMs > RESYNC_MS) {
      this._offsetMs = candidate;
    } else {
      const risen = this._offsetMs + (RISE_MS_PER_S * Math.max(0, arrivalMs - this._lastArrivalMs)) / 1000;
      this._offsetMs = Math.min(candidate, risen);
    }
    this._lastArrivalMs = arrivalMs;
  }

  /** Wall-clock ms of context time t (s); NaN before the first frame. */
  wallTime(t) {
    return t * 1000 + this._offsetMs;
  }
}
