// AudioWorkletProcessor 'playback-processor': the partner's voice. Decoded, resampled Float32 frames
// arrive over the port; a Playout (the jitter buffer: static/playout.js) turns them into a steady stream of
// 128-sample quanta. A new partner, or the partner back after a resume, gets a new node.
//
// Messages in:  {type: 'frame', seq: 0..65535, samples: Float32Array (at the context rate), frameMs: the sender's
//                frame duration (a Playout for that duration starts when it differs from the current one's),
//                recovered: true when it came only as a copy in a later frame's message}
//               {type: 'close'} (the partner left: process() returns false and the node can be freed)
//               {type: 'record-arrivals'} (a measuring hook: post every frame's arrival from now on)
// Messages out: {type: 'stats', rms, ...Playout stats} every PLAYBACK_STATS_INTERVAL_S, and
//               playoutMs: the mean of Playout.playoutDelayMs over the interval (null unless at
//               least half of it played the sender's audio)
//               {type: 'arrivals', rows: Float64Array} once recording: (seq, currentFrame when the frame
//               came, its length in samples) per frame, posted by the quarter second from the message
//               handler (never from process())
import { FRAME_MS, PLAYBACK_STATS_INTERVAL_S } from './constants.js';
import { Playout } from './playout.js';

const ARRIVAL_BATCH = 64; // arrivals per post to the measuring hook, at most

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this._buffer = new Playout({ sampleRate, frameMs: FRAME_MS });
    this._sumSquares = 0;
    this._levelSamples = 0;
    this._stats = { type: 'stats' }; // refilled for every post (postMessage copies it)
    this._lastPost = 0;
    this._playoutSumMs = 0; // Playout.playoutDelayMs, summed over the current stats interval
    this._playoutQuanta = 0; // quanta of the interval that played the sender's audio
    this._quanta = 0;
    this._open = true;
    this._arrivals = null; // rows recorded for the measuring hook, once asked for
    this._arrivalCount = 0;
    this.port.onmessage = (event) => {
      const data = event.data;
      if (!data) return;
      if (data.type === 'frame' && data.samples instanceof Float32Array) {
        if (data.frameMs && data.frameMs !== this._buffer.frameMs) {
          this._buffer = new Playout({ sampleRate, frameMs: data.frameMs });
        }
        // Arrival on the audio clock: the clock that consumes the samples is the one that matters.
        this._buffer.push(data.seq, data.samples, currentTime * 1000, data.recovered === true);
        if (this._arrivals) this._recordArrival(data.seq, data.samples.length);
      } else if (data.type === 'record-arrivals') {
        this._arrivals = new Float64Array(3 * ARRIVAL_BATCH);
      } else if (data.type === 'close') {
        this._open = false;
      }
    };
  }

  /** Note one arrival for the measuring hook; post the batch once full or a quarter second old. */
  _recordArrival(seq, length) {
    const rows = this._arrivals;
    const n = this._arrivalCount++;
    rows[3 * n] = seq;
    rows[3 * n + 1] = currentFrame;
    rows[3 * n + 2] = length;
    if (this._arrivalCount < ARRIVAL_BATCH && currentFrame - rows[1] < sampleRate * PLAYBACK_STATS_INTERVAL_S) return;
    this.port.postMessage({ type: 'arrivals', rows: rows.slice(0, 3 * this._arrivalCount) });
    this._arrivalCount = 0;
  }

  process(inputs, outputs) {
    if (!this._open) return false;
    const output = outputs[0];
    if (!output || output.length === 0) return true;
    const channel = output[0];
    this._buffer.pull(channel);
    // The delay the page shows is measured on what is played: the mean, over the stats interval, of how
    // much later than over the fastest path each quantum's first sample plays (a snapshot of the buffer's
    // state, taken between a burst's arrival and its skip, showed hundreds of ms nothing was played with).
    // Asked after the pull, for the next quantum: a skip decided by this one is done by then. An interval
    // that was mostly silence or concealment (a stall) says nothing: its few quanta of audio are the
    // burst's first frames, stale, and played for a few ms only.
    const playout = this._buffer.playoutDelayMs((currentTime + channel.length / sampleRate) * 1000);
    this._quanta++;
    if (playout !== null) {
      this._playoutSumMs += playout;
      this._playoutQuanta++;
    }
    for (let c = 1; c < output.length; c++) output[c].set(channel);
    for (let i = 0; i < channel.length; i++) {
      const v = channel[i];
      this._sumSquares += v * v;
    }
    this._levelSamples += channel.length;
    if (currentTime - this._lastPost >= PLAYBACK_STATS_INTERVAL_S) {
      // Throttled: posting (a structured clone) is the only allocation here, four times a second.
      const stats = this._buffer.stats(this._stats);
      const measured = this._playoutQuanta > 0 && 2 * this._playoutQuanta >= this._quanta;
      stats.playoutMs = measured ? this._playoutSumMs / this._playoutQuanta : null;
      this._playoutSumMs = 0;
      this._playoutQuanta = 0;
      this._quanta = 0;
      stats.rms = Math.sqrt(this._sumSquares / this._levelSamples);
      this.port.postMessage(stats);
      this._lastPost = currentTime;
      this._sumSquares = 0;
      this._levelSamples = 0;
    }
    return true;
  }
}

registerProcessor('playback-processor', PlaybackProcessor);
