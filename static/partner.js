// One remote member's audio: their binary frames -> decoder (Opus via WebCodecs, or PCM16) ->
// resampler to our rate -> a jitter buffer in a playback worklet of their own -> `output`.
//
//   const partner = new PartnerPlayback(context, mixBus);  // when a partner arrives
//   partner.receive(arrayBuffer);                          // each of their frames
//   partner.stats();                                       // jitter buffer, codec, kbit/s, level
//   partner.close();                                       // when they leave: frees the decoder and node
//
// Nothing here is shared between partners, so a call with several people makes one per member and
// connects them all to one bus, which mixes them.
import { SILENT_PEAK } from './concealer.js';
import { CODEC_NAMES, CODEC_PCM16, FRAME_MS } from './constants.js';
import { frameDurationMs } from './frame.js';
import { ArrivalGaps } from './loss-watch.js';
import { pcm16ToFloat } from './pcm.js';
import { RateMeter } from './rate-meter.js';
import { SeenWindow, unpackFrames } from './redundancy.js';
import { Resampler } from './resampler.js';
import { isSilent } from './silence-gate.js';

// In ms of frames (3 and 10 frames of 20 ms), so that 10 ms frames may wait as long as 20 ms ones did.
const MAX_CODEC_QUEUE_MS = 60; // waiting in the decoder before we drop (the jitter buffer conceals)
// Until a new decoder's first output: Firefox's first output comes several frames late (issue 11), and
// dropping the frames that queue meanwhile showed as up to 4 lost frames at the start of Firefox calls.
const MAX_STARTING_CODEC_QUEUE_MS = 200;
const PENDING_LIMIT = 64;
const RECOVERED_FLAG = 0x10000; // above any 16-bit sequence number

export class PartnerPlayback {
  /**
   * @param {AudioContext} context
   * @param {AudioNode} output where this partner's voice goes (the page's mix bus)
   */
  constructor(context, output) {
    this.context = context;
    this.codec = null; // 'opus' or 'pcm16', from their latest frame
    this.frameMs = FRAME_MS; // the duration of their frames (10 or 20 ms), from their latest frame
    this._closed = false;
    this._in = new RateMeter(performance.now());
    this._decoder = null;
    this._decoderRate = 0;
    // The decoder's input timestamps: our own count of its inputs, one frame apart. Chromium's decoder stamps its
    // outputs from the first input's timestamp on by the audio it has output, so the spacing must be the frames'.
    this._decoderFrameUs = 0;
    this._decodeIndex = 0;
    this._decodeSeq = new Map(); // decode index -> seq, + RECOVERED_FLAG for a frame recovered from a copy
    this._seen = new SeenWindow(); // which frames came already (a copy and its frame's own message: one plays)
    this._gaps = new ArrivalGaps(); // frames whose own message did not come: what copies are for
    this._resampler = null;
    this._decoderDrops = 0; // frames dropped because the decoder was MAX_CODEC_QUEUE_MS behind
    this._decoderStarted = false; // the decoder has produced its first output
    this._stats = null; // latest stats posted by the playback worklet
    this._playoutMs = 0; // the latest interval's playout delay that was measured on audio (see the worklet)
    this.node = new AudioWorkletNode(context, 'playback-processor', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    this._onArrivals = null; // the measuring hook of recordArrivals()
    this.node.port.onmessage = (event) => {
      if (event.data && event.data.type === 'stats') {
        this._stats = event.data;
        if (event.data.playoutMs !== null) this._playoutMs = event.data.playoutMs;
      } else if (event.data && event.data.type === 'arrivals' && this._onArrivals) {
        this._onArrivals(event.data.rows, this.context.sampleRate);
      }
    };
    this.node.connect(output);
  }

  /**
   * One binary message from this partner: a frame, or a frame with copies of the ones before it (redundancy.js),
   * each new frame decoded in order, oldest first; a frame that came already is not decoded again.
   */
  receive(buffer) {
    if (this._closed || !buffer) return;
    this._in.add(buffer.byteLength || 0, performance.now());
    const frames = unpackFrames(buffer);
    if (!frames) return;
    for (const frame of frames) {
      if (!this._seen.accept(frame.seq)) continue;
      this._gaps.arrive(frame.seq, frame.recovered);
      this.codec = CODEC_NAMES[frame.codec];
      this.frameMs = frameDurationMs(frame) ?? this.frameMs;
      if (frame.codec === CODEC_PCM16) {
        this._play(frame.seq, pcm16ToFloat(frame.payload), frame.sampleRate, frame.recovered);
      } else {
        this._decodeOpus(frame);
      }
    }
  }

  _decodeOpus(frame) {
    if (typeof AudioDecoder === 'undefined' || typeof EncodedAudioChunk === 'undefined') return;
    const frameUs = this.frameMs * 1000;
    if (!this._decoder || this._decoder.state === 'closed' || this._decoderRate !== frame.sampleRate
      || this._decoderFrameUs !== frameUs) {
      this._closeDecoder();
      try {
        this._decoder = new AudioDecoder({
          output: (audio) => this._onDecoded(audio),
          error: () => this._closeDecoder(),
        });
        this._decoder.configure({ codec: 'opus', sampleRate: frame.sampleRate, numberOfChannels: 1 });
        this._decoderRate = frame.sampleRate;
        this._decoderFrameUs = frameUs;
        this._decoderStarted = false;
      } catch {
        this._closeDecoder();
        return;
      }
    }
    const queueMs = this._decoderStarted ? MAX_CODEC_QUEUE_MS : MAX_STARTING_CODEC_QUEUE_MS;
    if (this._decoder.decodeQueueSize * this.frameMs > queueMs) {
      this._decoderDrops++;
      return;
    }
    const index = this._decodeIndex++;
    this._decodeSeq.set(index, frame.recovered ? frame.seq + RECOVERED_FLAG : frame.seq);
    if (this._decodeSeq.size > PENDING_LIMIT) this._decodeSeq.delete(this._decodeSeq.keys().next().value);
    try {
      this._decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: index * frameUs, data: frame.payload }));
    } catch {
      this._closeDecoder();
    }
  }

  _onDecoded(audio) {
    this._decoderStarted = true;
    try {
      const index = Math.round(audio.timestamp / this._decoderFrameUs);
      const key = this._decodeSeq.get(index);
      this._decodeSeq.delete(index);
      if (key === undefined || this._closed) return;
      const samples = new Float32Array(audio.numberOfFrames);
      try {
        audio.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
      } catch {
        if (audio.format !== 'f32' && audio.format !== 'f32-planar') return;
        if (audio.numberOfChannels !== 1 && audio.format === 'f32') return;
        audio.copyTo(samples, { planeIndex: 0 });
      }
      // Opus decodes at 48 kHz whatever rate the sender captured at: trust the AudioData's rate.
      this._play(key % RECOVERED_FLAG, samples, audio.sampleRate, key >= RECOVERED_FLAG);
    } finally {
      audio.close();
    }
  }

  _play(seq, samples, rate, recovered) {
    this._gaps.decoded(seq, isSilent(samples, SILENT_PEAK)); // as the playout will take it (concealer.js)
    const target = this.context.sampleRate;
    if (rate !== target) {
      if (!this._resampler || this._resampler.inRate !== rate) this._resampler = new Resampler(rate, target);
      samples = this._resampler.process(samples);
    }
    if (samples.length === 0) return;
    this.node.port.postMessage({ type: 'frame', seq, samples, frameMs: this.frameMs, recovered }, [samples.buffer]);
  }

  _closeDecoder() {
    const decoder = this._decoder;
    this._decoder = null;
    this._decoderRate = 0;
    this._decodeSeq.clear();
    if (decoder && decoder.state !== 'closed') {
      try {
        decoder.close();
      } catch {
        // already closed
      }
    }
  }

  /**
   * This partner's figures: codec, kbpsIn, rms (0..1, what we play of them), and the jitter buffer's
   * (jitterMs: how much later than over the fastest path the audio plays, measured; lostFrames: frames never
   * played for want of them, lost on the way or late; concealedFrames, droppedFrames, targetMs, underruns,
   * arrivalJitterMs), and
   * decoderDrops (frames dropped before decoding because the decoder fell behind: they count as lost);
   * missingFrames (frames whose own message did not come: recovered from a copy, or lost on the way);
   * `playback` is the worklet's raw counters (see Playout.stats()).
   */
  stats() {
    const playback = this._stats || {};
    return {
      codec: this.codec,
      kbpsIn: this._in.kbps(performance.now()),
      rms: playback.rms || 0,
      jitterMs: this._playoutMs,
      lostFrames: (playback.lost || 0) + (playback.late || 0),
      concealedFrames: playback.concealed || 0,
      droppedFrames: playback.droppedFrames || 0,
      targetMs: playback.targetMs || 0,
      underruns: playback.underruns || 0,
      arrivalJitterMs: playback.arrivalJitterMs || 0,
      decoderDrops: this._decoderDrops,
      missingFrames: this._gaps.missing,
      playback: this._stats,
    };
  }

  /**
   * A measuring hook: from now on, onRows(rows, sampleRate) gets every frame the playback worklet takes, as it
   * sees it: rows is a Float64Array of (seq, audio clock in samples when it came, its length) triples, in
   * batches of up to a quarter second.
   */
  recordArrivals(onRows) {
    if (this._onArrivals || this._closed) return;
    this._onArrivals = onRows;
    this.node.port.postMessage({ type: 'record-arrivals' });
  }

  /** The partner left: free the decoder and the worklet. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._closeDecoder();
    this.node.port.postMessage({ type: 'close' });
    this.node.port.onmessage = null;
    try {
      this.node.disconnect();
    } catch {
      // not connected
    }
  }
}

