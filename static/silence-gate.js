// DTX at the sender: which captured frames of a pause are left unsent.
//
//   const gate = new SilenceGate(frameMs);
//   if (gate.admit(samples)) send(frame);     // every frame, in capture order
//
// Opus's DTX (libopus `usedtx`) cannot be used through WebCodecs: Chromium's encoder gives no chunk for a DTX frame
// and stamps each chunk by the chunks it has given, so after the first pause every chunk names an earlier frame than
// its own (10 ms frames, 1 s of tone then silence: frame 130, libopus's update, came stamped as frame 110);
// Firefox's ignores `usedtx` and codes every frame. So the encoder codes every frame (its chunks keep their frames'
// timestamps, and its state stays whole) and this gate, on the captured samples, picks the frames that are sent:
// a pause's first DTX_HANGOVER_MS (the last word's tail and the codec's look-ahead), then one frame every
// DTX_REFRESH_MS (the partner sees the stream alive and keeps measuring its arrivals). That is libopus's pattern at
// 20 ms frames, kept in ms at 10 ms (libopus counts frames: 100 ms, then every 210 ms).
//
// A frame is silent when every sample stays under half the receiver's line for silence (SILENT_PEAK): decoded, the
// last frame before a gap is then under that line too, so the partner's playout takes the gap for silence (no
// concealment, no loss counted) rather than for loss.
import { SILENT_PEAK } from './concealer.js';

export const DTX_HANGOVER_MS = 200;
export const DTX_REFRESH_MS = 400;
/** A captured frame whose samples all stay under this (-52 dBFS) is silent; 6 dB under the receiver's line. */
export const DTX_SILENT_PEAK = SILENT_PEAK / 2;

/** Whether every sample of a frame stays under peak (by default DTX_SILENT_PEAK). */
export function isSilent(samples, peak = DTX_SILENT_PEAK) {
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    if (v >= peak || -v >= peak) return false;
  }
  return true;
}

export class SilenceGate {
  /** @param {number} frameMs the duration of the frames admit() is given */
  constructor(frameMs) {
    this._hangover = Math.round(DTX_HANGOVER_MS / frameMs);
    this._refresh = Math.round(DTX_REFRESH_MS / frameMs);
    this._silent = 0; // silent frames in a row, up to this one
  }

  /** Whether this frame (the next in capture order) is sent. */
  admit(samples) {
    if (!isSilent(samples)) {
      this._silent = 0;
      return true;
    }
    this._silent++;
    const intoGap = this._silent - this._hangover;
    return intoGap <= 0 || intoGap % this._refresh === 0;
  }
}
