// What the page shows from the audio figures: the meters' scale, the output latency where it can be
// read safely, and the mouth-to-ear estimate. Pure functions, so node can test the arithmetic.

export const METER_FLOOR_DB = -60;

/** Map an RMS level (0..1) to a meter value (0..1) on a decibel scale, so speech moves it visibly. */
export function meterValue(level) {
  if (!(level > 0)) return 0;
  const db = 20 * Math.log10(level);
  return Math.min(1, Math.max(0, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
}

/** True for Gecko (Firefox and its forks): "Gecko/20100101"; Chromium and WebKit say "like Gecko". */
export function isGecko(userAgent) {
  return /\bGecko\/\d/.test(String(userAgent || ''));
}

/** True for Chromium and the browsers built on it ("Chrome/" in the user agent; Firefox and WebKit have none). */
export function isChromium(userAgent) {
  return /Chrome\/\d/.test(String(userAgent || '')); // HeadlessChrome/ too
}

/**
 * The AudioContext's latencyHint: 0 (the smallest output buffer the device takes) in Chromium, where it renders in
 * 128-sample callbacks (2.9 ms; 'interactive' renders in 10 ms ones, at three times the reported output latency), so
 * that the output device holds less and the playback worklet takes frames between any two quanta; 'interactive'
 * elsewhere, whose engines were not measured with a number.
 */
export function outputLatencyHint(userAgent) {
  return isChromium(userAgent) ? 0 : 'interactive';
}

/**
 * The output latency (ms: outputLatency + baseLatency) where reading it cannot block, else null.
 * Chromium and WebKit return values their audio thread keeps up to date. Gecko's first read of
 * outputLatency asks the audio backend under the graph's lock, which can deadlock with PulseAudio and
 * freeze the page for good (issue 11), so in Gecko it is never read and the estimate says so.
 * @param {{outputLatency?: number, baseLatency?: number}} context an AudioContext
 * @param {string} userAgent navigator.userAgent
 */
export function outputLatencyMs(context, userAgent) {
  if (isGecko(userAgent)) return null;
  return ((context.outputLatency || 0) + (context.baseLatency || 0)) * 1000;
}

/** Round trips kept for the estimate's path delay: 8 pings, 16 s. */
export const ROUND_TRIPS = 8;

/**
 * The last few round trips to the server. `least` is the path's own delay: a ping that waited behind a
 * stall or in a jittery queue measures that wait too, and the jitter buffer's delay already covers
 * the lateness above the path's best (it is measured from the best transit it has seen).
 */
export class RoundTrips {
  constructor(size = ROUND_TRIPS) {
    this.size = size;
    this.samples = [];
  }

  add(ms) {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.samples.push(ms);
    if (this.samples.length > this.size) this.samples.shift();
  }

  clear() {
    this.samples.length = 0;
  }

  /** The latest round trip, ms, or null before the first. */
  get latest() {
    return this.samples.length ? this.samples[this.samples.length - 1] : null;
  }

  /** The smallest recent round trip, ms, or null before the first. */
  get least() {
    return this.samples.length ? Math.min(...this.samples) : null;
  }

  /** The one-way delay to the server, ms: half the least recent round trip; null before the first. */
  get pathMs() {
    return this.samples.length ? this.least / 2 : null;
  }
}

/**
 * The least of a value over the last one to two spans (two blocks: the one filling and the one before),
 * in constant time and memory, for a value that comes 50 times a second.
 */
export class RecentLeast {
  constructor(spanMs) {
    this.spanMs = spanMs;
    this.clear();
  }

  add(value, nowMs) {
    if (!Number.isFinite(value)) return;
    if (nowMs - this._blockStart >= this.spanMs) {
      this._previous = this._current;
      this._current = Infinity;
      this._blockStart = nowMs;
    }
    this._current = Math.min(this._current, value);
  }

  clear() {
    this._previous = Infinity;
    this._current = Infinity;
    this._blockStart = -Infinity;
  }

  /** The least value of the last one to two spans, or null before the first. */
  get least() {
    const least = Math.min(this._previous, this._current);
    return least === Infinity ? null : least;
  }
}

/**
 * Mouth-to-ear estimate, ms: our least recent capture-to-send delay (standing in for the partner's: same
 * page, same framing and encoder; the least, because the playout delay is measured from the frame that
 * came fastest, and a mean would count the others' lateness twice), the way from the partner to the
 * server (partnerPathMs, which the partner's page measures and the server passes on in our pongs; our
 * own pathMs until it has) and from the server to us (pathMs: RoundTrips.pathMs), how much later than
 * over that fastest path the audio plays (jitterMs: the jitter buffer's wait plus the frames' lateness,
 * measured in the playback worklet), and the output latency when known.
 * @returns {{ms: number, withOutput: boolean} | null} null until our own path is known
 */
export function mouthToEar({ captureToSendMs, frameMs, pathMs, partnerPathMs = null, jitterMs, outputLatencyMs: output }) {
  if (pathMs === null || !Number.isFinite(pathMs)) return null;
  const captureToSend = Math.max(captureToSendMs || 0, frameMs);
  const transit = pathMs + (Number.isFinite(partnerPathMs) ? partnerPathMs : pathMs);
  const withOutput = output !== null && Number.isFinite(output);
  return { ms: captureToSend + transit + Math.max(0, jitterMs || 0) + (withOutput ? output : 0), withOutput };
}
