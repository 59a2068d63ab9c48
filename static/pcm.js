// PCM16 conversion: Float32 samples in [-1, 1] <-> little-endian signed 16-bit bytes.

/**
 * Float32 -> int16 little-endian bytes. Out-of-range samples are clamped; NaN becomes 0.
 * @param {Float32Array} samples
 * @returns {Uint8Array} 2 bytes per sample
 */
export function floatToPcm16(samples) {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) {
    let s = samples[i];
    if (!(s === s)) s = 0; // NaN
    if (s > 1) s = 1;
    else if (s < -1) s = -1;
    view.setInt16(i * 2, Math.round(s < 0 ? s * 32768 : s * 32767), true);
  }
  return bytes;
}

/**
 * int16 little-endian bytes -> Float32 samples in [-1, 1).
 * @param {ArrayBuffer|ArrayBufferView} data an even number of bytes (a trailing odd byte is ignored)
 * @returns {Float32Array}
 */
export function pcm16ToFloat(data) {
  const bytes = data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const n = bytes.byteLength >> 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = view.getInt16(i * 2, true);
    out[i] = v < 0 ? v / 32768 : v / 32767;
  }
  return out;
}
