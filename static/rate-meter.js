// Bytes counted over a sliding window, for the kbit/s figures. Times are ms on any one clock (the page
// passes performance.now()), so it runs and is tested without a browser.

export const RATE_WINDOW_MS = 2000;
// Before a window has passed, divide by at least this much, so the first frame does not read as a burst.
const MIN_SPAN_MS = 250;

export class RateMeter {
  /** @param {number} now start of the count (ms) */
  constructor(now) {
    this._events = []; // time, bytes, time, bytes...: at most one window of frames (100 at 50 frames/s)
    this._start = now;
  }

  add(bytes, now) {
    this._events.push(now, bytes);
    this._trim(now);
  }

  _trim(now) {
    let i = 0;
    while (i < this._events.length && this._events[i] <= now - RATE_WINDOW_MS) i += 2;
    if (i > 0) this._events.splice(0, i);
  }

  reset(now) {
    this._events.length = 0;
    this._start = now;
  }

  /** kbit/s over the last window (or since the start, when that is shorter). */
  kbps(now) {
    this._trim(now);
    let bytes = 0;
    for (let i = 1; i < this._events.length; i += 2) bytes += this._events[i];
    const span = Math.min(RATE_WINDOW_MS, Math.max(MIN_SPAN_MS, now - this._start));
    return (bytes * 8) / span; // bits per ms = kbit/s
  }
}
