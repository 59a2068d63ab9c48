// Mixing several members' voices: Web Audio sums every member's playback node into one bus; this
// module shapes that sum so that three people talking at once never clips harshly. Pure functions, so
// node can test the curve; audio.js loads the curve into a WaveShaperNode (no latency, no allocation on
// the audio thread).

/** Below this level the mix passes unchanged: one voice, or two quiet ones, sound exactly as they came. */
export const SOFT_CLIP_KNEE = 0.6;

/** The loudest sum the curve maps before it saturates: three full-scale voices. */
export const MIX_HEADROOM = 3;

/** Points in the WaveShaper curve: linear interpolation between them is exact below the knee. */
export const CURVE_POINTS = 4097;

/**
 * Soft clip: the identity up to the knee, then a tanh shoulder that approaches 1 and never passes it.
 * Continuous with slope 1 at the knee, odd, monotonic.
 * @param {number} x a sample of the mix
 * @param {number} knee where the shoulder starts (0 < knee < 1)
 */
export function softClip(x, knee = SOFT_CLIP_KNEE) {
  const magnitude = Math.abs(x);
  if (!(magnitude > knee)) return Number.isNaN(x) ? 0 : x;
  const room = 1 - knee;
  return Math.sign(x) * (knee + room * Math.tanh((magnitude - knee) / room));
}

/**
 * The WaveShaperNode curve for a mix bus that a gain of 1 / headroom feeds: the shaper maps its input
 * -1..1 through points[i], so point i holds softClip of the original sum headroom * (-1 + 2i / (n - 1)).
 * @returns {Float32Array}
 */
export function softClipCurve(points = CURVE_POINTS, headroom = MIX_HEADROOM, knee = SOFT_CLIP_KNEE) {
  const curve = new Float32Array(points);
  for (let i = 0; i < points; i++) curve[i] = softClip(headroom * (-1 + (2 * i) / (points - 1)), knee);
  return curve;
}

/** Apply the WaveShaper's mapping to one sample, as the node does (linear interpolation): for tests. */
export function shape(curve, headroom, x) {
  const t = Math.min(1, Math.max(-1, x / headroom));
  const position = ((t + 1) / 2) * (curve.length - 1);
  const i = Math.min(curve.length - 2, Math.floor(position));
  const fraction = position - i;
  return curve[i] + fraction * (curve[i + 1] - curve[i]);
}

/**
 * A member's local volume, a slider's 0..100 and a mute switch, as the gain this page plays them at.
 * @param {number} percent the slider's value
 * @param {boolean} muted muted on this page only
 */
export function memberGain(percent, muted) {
  if (muted) return 0;
  const value = Number(percent);
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value / 100)) : 1;
}
