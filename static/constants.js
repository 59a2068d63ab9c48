// Shared constants for the page, the audio modules and the AudioWorklet processors.
// The wire format itself is described in docs/protocol.md and implemented in frame.js.

/** Duration of one audio frame on the wire, in milliseconds: the fallback (PCM16, and encoders without 10 ms). */
export const FRAME_MS = 20;
/** Frame durations we send, best first: 10 ms where the browser's Opus encoder takes it (encoder.js). */
export const FRAME_MS_CHOICES = Object.freeze([10, 20]);

/** Binary frame header: version, codec, seq, sample rate, capture time. */
export const FRAME_HEADER_BYTES = 16;
export const FRAME_VERSION = 1;

/** Codec ids carried in byte 1 of the header. */
export const CODEC_PCM16 = 0;
export const CODEC_OPUS = 1;
export const CODEC_NAMES = Object.freeze({ [CODEC_PCM16]: 'pcm16', [CODEC_OPUS]: 'opus' });

/** Sequence numbers are u16 and wrap. */
export const SEQ_MODULO = 65536;

/** Web Audio render quantum (samples per process() call). */
export const RENDER_QUANTUM = 128;

/** Opus bitrate for mono speech, bits per second, held constant (see encoder.js): 34.4 kbit/s on the wire with the header. */
export const OPUS_BITRATE = 28000;

/** How often the worklets post levels/stats to the main thread, in seconds. */
export const CAPTURE_LEVEL_INTERVAL_S = 0.05;
export const PLAYBACK_STATS_INTERVAL_S = 0.25;

/** Concealment of lost frames fades to silence within this many milliseconds. */
export const CONCEAL_FADE_MS = 60;

/** Upper bound of the jitter-buffer margin, whatever the network does. */
export const MAX_JITTER_MARGIN_MS = 200;
