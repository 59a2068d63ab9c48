// The browser audio pipeline: microphone -> 20 ms frames -> Opus (WebCodecs) or PCM16 -> onFrame(),
// and partner frames -> decoder -> resampler -> jitter buffer (playback worklet) -> speakers.
//
//   const session = await startAudio({ onFrame: (arrayBuffer) => ws.send(arrayBuffer) });
//
// See the contract for the session API; stats() also carries a few extra figures (targetMs,
// underruns, arrivalJitterMs, sampleRate, muted).
import { CODEC_NAMES, CODEC_OPUS, CODEC_PCM16, FRAME_MS, OPUS_BITRATE } from './constants.js';
import { decodeFrame, encodeFrame } from './frame.js';
import { floatToPcm16, pcm16ToFloat } from './pcm.js';
import { Resampler } from './resampler.js';

const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
};
const FRAME_US = FRAME_MS * 1000; // media timestamps: one frame = 20 000 us
const MAX_CODEC_QUEUE = 3; // frames waiting in an encoder/decoder before we drop instead of queueing
const RATE_WINDOW_MS = 2000;
const PARTNER_FFT_SIZE = 32768;
const PENDING_LIMIT = 64;
// The rates Opus encodes at natively. At any other context rate (44.1 kHz is common) we resample to
// 48 kHz ourselves: the browser's encoder would otherwise resample through a FIFO that holds each
// frame until the next one arrives, one frame (20 ms) of delay.
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];
const OPUS_FALLBACK_RATE = 48000;
// Samples the encode FIFO starts with, ahead of the first resampled frame: the resampler's first
// output is a sample short of a frame, and without these the FIFO would lag a whole frame behind.
const ENCODE_FIFO_PRIME = 2;

function insecureContextError() {
  const error = new Error('The microphone needs a secure page (https:// or http://localhost).');
  error.name = 'InsecureContextError';
  return error;
}

function wallNow() {
  return performance.timeOrigin + performance.now();
}

/** The best Opus encoder config this browser takes at this rate, or null (then we send PCM16). */
async function chooseOpusConfig(sampleRate) {
  if (typeof AudioEncoder === 'undefined' || typeof AudioData === 'undefined') return null;
  const base = { codec: 'opus', sampleRate, numberOfChannels: 1, bitrate: OPUS_BITRATE };
  const candidates = [
    { ...base, opus: { frameDuration: FRAME_US, complexity: 8, usedtx: false, application: 'voip', signal: 'voice' } },
    { ...base, opus: { frameDuration: FRAME_US, complexity: 8, usedtx: false } },
    { ...base, opus: { frameDuration: FRAME_US } },
  ];
  for (const config of candidates) {
    try {
      const { supported } = await AudioEncoder.isConfigSupported(config);
      if (supported) return config;
    } catch {
      // A TypeError for an option this browser does not know: try the next one.
    }
  }
  return null;
}

/** Bytes counted over a sliding window, for kbit/s. */
class RateMeter {
  constructor() {
    this._events = [];
    this._start = performance.now();
  }

  add(bytes) {
    const now = performance.now();
    this._events.push(now, bytes);
    this._trim(now);
  }

  _trim(now) {
    let i = 0;
    while (i < this._events.length && this._events[i] < now - RATE_WINDOW_MS) i += 2;
    if (i > 0) this._events.splice(0, i);
  }

  reset() {
    this._events.length = 0;
    this._start = performance.now();
  }

  kbps() {
    const now = performance.now();
    this._trim(now);
    let bytes = 0;
    for (let i = 1; i < this._events.length; i += 2) bytes += this._events[i];
    const span = Math.min(RATE_WINDOW_MS, Math.max(250, now - this._start));
    return (bytes * 8) / span; // bits per ms = kbit/s
  }
}

/**
 * Start the microphone and the audio graph. Call from a user gesture.
 * @param {{onFrame?: (frame: ArrayBuffer) => void}} options
 * @returns {Promise<object>} the session (see the contract)
 * @throws the getUserMedia DOMException, or an Error named 'InsecureContextError'
 */
export async function startAudio({ onFrame } = {}) {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw insecureContextError();
  }
  // Created before the first await so that it starts inside the user gesture; no forced sample rate:
  // the hardware rate avoids a resampler in the browser's audio path.
  const context = new AudioContext({ latencyHint: 'interactive' });
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    await context.audioWorklet.addModule('/capture-processor.js');
    await context.audioWorklet.addModule('/playback-processor.js');
  } catch (error) {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    context.close().catch(() => {});
    throw error;
  }
  const opusRate = OPUS_RATES.includes(context.sampleRate) ? context.sampleRate : OPUS_FALLBACK_RATE;
  const opusConfig = await chooseOpusConfig(opusRate);
  return new AudioSession(context, stream, opusConfig, onFrame);
}

class AudioSession {
  constructor(context, stream, opusConfig, onFrame) {
    this.context = context;
    this._stream = stream;
    this._onFrame = typeof onFrame === 'function' ? onFrame : () => {};
    this._closed = false;
    this._muted = false;
    this._seq = 0;
    this._pending = new Map(); // encode index -> {seq, captureTime, muted} while a frame is in the encoder
    this._out = new RateMeter();
    this._in = new RateMeter();
    this._micRms = 0;
    this._partnerRms = 0;
    this._playback = null; // last stats posted by the playback worklet
    this._captureToSendMs = 0;
    this._partnerCodec = null;
    this._decoder = null;
    this._decoderRate = 0;
    this._decodeIndex = 0;
    this._decodeSeq = new Map(); // decode index -> seq
    this._resampler = null;

    this._encoder = null;
    this._encodeRate = 0;
    this._encodeResampler = null; // context rate -> encode rate, when they differ
    this._encodeFifo = null; // resampled samples not yet in a frame
    this._encodeFifoLevel = 0;
    this._encodeFrames = 0; // frames handed to the encoder (their media timestamps)
    this.codec = 'pcm16';
    if (opusConfig) {
      try {
        this._encoder = new AudioEncoder({
          output: (chunk) => this._sendOpus(chunk),
          error: () => this._fallBackToPcm(),
        });
        this._encoder.configure(opusConfig);
        this._encodeRate = opusConfig.sampleRate;
        if (this._encodeRate !== context.sampleRate) {
          this._encodeResampler = new Resampler(context.sampleRate, this._encodeRate);
          const frameLength = Math.round((this._encodeRate * FRAME_MS) / 1000);
          this._encodeFifo = new Float32Array(4 * frameLength);
        }
        this.codec = 'opus';
      } catch {
        this._fallBackToPcm();
      }
    }

    this._source = context.createMediaStreamSource(stream);
    this._capture = new AudioWorkletNode(context, 'capture-processor', {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: 'explicit',
      channelInterpretation: 'speakers',
    });
    this._capture.port.onmessage = (event) => this._onCapture(event.data);
    this._source.connect(this._capture);
    // The capture node outputs silence; connecting it keeps it pulled by the render graph.
    this._capture.connect(context.destination);

    this._playbackNode = new AudioWorkletNode(context, 'playback-processor', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    this._playbackNode.port.onmessage = (event) => this._onPlaybackStats(event.data);
    this.partnerAnalyser = context.createAnalyser();
    this.partnerAnalyser.fftSize = PARTNER_FFT_SIZE;
    this._playbackNode.connect(context.destination);
    this._playbackNode.connect(this.partnerAnalyser);

    this.resume();
  }

  // --- sending ---

  _fallBackToPcm() {
    this.codec = 'pcm16';
    const encoder = this._encoder;
    this._encoder = null;
    this._pending.clear();
    if (encoder && encoder.state !== 'closed') {
      try {
        encoder.close();
      } catch {
        // already closed
      }
    }
  }

  _onCapture(data) {
    if (this._closed || !data) return;
    if (data.type === 'level') {
      this._micRms = data.rms;
      return;
    }
    if (data.type !== 'frame') return;
    const samples = data.samples;
    // The sequence number follows the capture clock, muted or not: the partner's jitter buffer sees a
    // gap in time, not a burst of late frames, when we unmute.
    const seq = this._seq++;
    const captureTime = this._captureWallTime(data.time, samples.length);
    if (this._encoder && this._encodeResampler) {
      this._resampleAndEncode(samples, captureTime);
    } else if (this._encoder) {
      this._encodeOpus(seq, samples, captureTime, this.context.sampleRate);
    } else if (!this._muted) {
      this._send(encodeFrame({
        codec: CODEC_PCM16, seq, sampleRate: this.context.sampleRate, captureTime, payload: floatToPcm16(samples),
      }), captureTime);
    }
    // Give the buffer back to the worklet (AudioData and PCM conversion copied it).
    this._capture.port.postMessage({ type: 'recycle', buffer: samples.buffer }, [samples.buffer]);
  }

  /**
   * Wall-clock ms of a captured sample, from its context time. The render clock maps to wall time via
   * getOutputTimestamp() (a sample at contextTime is heard at performanceTime, i.e. it was rendered one
   * output latency earlier). The input device's own latency is not known to the page and not included.
   */
  _captureWallTime(contextTime, length) {
    const now = wallNow();
    const frameMs = (length / this.context.sampleRate) * 1000;
    const latest = now - frameMs; // the frame's last sample was rendered before we got it
    let wall = NaN;
    const stamp = this.context.getOutputTimestamp ? this.context.getOutputTimestamp() : null;
    if (stamp && stamp.performanceTime > 0) {
      const outputLatency = (this.context.outputLatency || 0) + (this.context.baseLatency || 0);
      wall = performance.timeOrigin + stamp.performanceTime
        + (contextTime - stamp.contextTime - outputLatency) * 1000;
    }
    if (!(wall <= latest && wall > latest - 250)) wall = latest;
    return wall;
  }

  /**
   * Resample a captured frame to the encoder's rate and encode every whole frame that is ready.
   * The resampler keeps its state across frames, so frames follow the capture clock exactly (at
   * 44.1 kHz, 882 samples in -> 960 out). The FIFO holds the remainder, a few samples at most, and
   * each frame's capture time is that of its first sample, the FIFO's offset included.
   */
  _resampleAndEncode(samples, captureTime) {
    const rate = this._encodeRate;
    const msPerSample = 1000 / rate;
    const frameLength = Math.round((rate * FRAME_MS) / 1000);
    let fifo = this._encodeFifo;
    if (this._encodeFrames === 0 && this._encodeFifoLevel === 0) {
      // Prime with silence that ends where the stream starts (see ENCODE_FIFO_PRIME).
      fifo.fill(0, 0, ENCODE_FIFO_PRIME);
      this._encodeFifoLevel = ENCODE_FIFO_PRIME;
    }
    const resampled = this._encodeResampler.process(samples);
    if (this._encodeFifoLevel + resampled.length > fifo.length) {
      // Only if the encode rate is far from a whole number of samples per capture frame.
      const bigger = new Float32Array(2 * (this._encodeFifoLevel + resampled.length));
      bigger.set(fifo.subarray(0, this._encodeFifoLevel));
      this._encodeFifo = fifo = bigger;
    }
    // The first resampled sample falls on the frame's first sample (to within one input sample):
    // what the FIFO already holds came just before it.
    const fifoTime = captureTime - this._encodeFifoLevel * msPerSample;
    fifo.set(resampled, this._encodeFifoLevel);
    this._encodeFifoLevel += resampled.length;
    let start = 0;
    while (this._encodeFifoLevel - start >= frameLength) {
      const frameTime = fifoTime + start * msPerSample;
      // Sequence numbers follow the encoded frames, which follow the capture clock.
      const seq = this._encodeFrames & 0xffff;
      this._encodeOpus(seq, fifo.subarray(start, start + frameLength), frameTime, rate);
      start += frameLength;
    }
    if (start > 0) {
      fifo.copyWithin(0, start, this._encodeFifoLevel);
      this._encodeFifoLevel -= start;
    }
  }

  _encodeOpus(seq, samples, captureTime, sampleRate) {
    const encoder = this._encoder;
    const index = this._encodeFrames++;
    if (encoder.state !== 'configured') return;
    if (encoder.encodeQueueSize > MAX_CODEC_QUEUE) return; // overloaded: drop rather than add delay
    this._pending.set(index, { seq, captureTime, muted: this._muted });
    if (this._pending.size > PENDING_LIMIT) this._pending.delete(this._pending.keys().next().value);
    let audio;
    try {
      audio = new AudioData({
        format: 'f32-planar',
        sampleRate,
        numberOfFrames: samples.length,
        numberOfChannels: 1,
        timestamp: index * FRAME_US,
        data: samples,
      });
      encoder.encode(audio);
    } catch {
      this._fallBackToPcm();
    } finally {
      if (audio) audio.close();
    }
  }

  _sendOpus(chunk) {
    if (this._closed) return;
    const index = Math.round(chunk.timestamp / FRAME_US);
    const info = this._pending.get(index);
    this._pending.delete(index);
    if (!info || info.muted) return;
    const seq = info.seq;
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    // captureTime is that of the frame's first sample, so the encoder's delay counts as latency.
    this._send(encodeFrame({
      codec: CODEC_OPUS, seq, sampleRate: this._encodeRate, captureTime: info.captureTime, payload,
    }), info.captureTime);
  }

  _send(frame, captureTime) {
    this._out.add(frame.byteLength);
    const delay = wallNow() - captureTime;
    this._captureToSendMs = this._captureToSendMs ? this._captureToSendMs + 0.1 * (delay - this._captureToSendMs) : delay;
    try {
      this._onFrame(frame);
    } catch {
      // A closing socket is the app's business; the audio goes on.
    }
  }

  // --- receiving ---

  /** A binary frame from the partner. */
  receive(buffer) {
    if (this._closed || !buffer) return;
    this._in.add(buffer.byteLength || 0);
    const frame = decodeFrame(buffer);
    if (!frame) return;
    this._partnerCodec = CODEC_NAMES[frame.codec];
    if (frame.codec === CODEC_PCM16) {
      this._play(frame.seq, pcm16ToFloat(frame.payload), frame.sampleRate);
    } else {
      this._decodeOpus(frame);
    }
  }

  _decodeOpus(frame) {
    if (typeof AudioDecoder === 'undefined' || typeof EncodedAudioChunk === 'undefined') return;
    if (!this._decoder || this._decoder.state === 'closed' || this._decoderRate !== frame.sampleRate) {
      this._closeDecoder();
      try {
        this._decoder = new AudioDecoder({
          output: (audio) => this._onDecoded(audio),
          error: () => this._closeDecoder(),
        });
        this._decoder.configure({ codec: 'opus', sampleRate: frame.sampleRate, numberOfChannels: 1 });
        this._decoderRate = frame.sampleRate;
      } catch {
        this._closeDecoder();
        return;
      }
    }
    if (this._decoder.decodeQueueSize > MAX_CODEC_QUEUE) return; // drop: the jitter buffer conceals it
    const index = this._decodeIndex++;
    this._decodeSeq.set(index, frame.seq);
    if (this._decodeSeq.size > PENDING_LIMIT) this._decodeSeq.delete(this._decodeSeq.keys().next().value);
    try {
      this._decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: index * FRAME_US, data: frame.payload }));
    } catch {
      this._closeDecoder();
    }
  }

  _onDecoded(audio) {
    try {
      const index = Math.round(audio.timestamp / FRAME_US);
      const seq = this._decodeSeq.get(index);
      this._decodeSeq.delete(index);
      if (seq === undefined || this._closed) return;
      const samples = new Float32Array(audio.numberOfFrames);
      try {
        audio.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
      } catch {
        if (audio.format !== 'f32' && audio.format !== 'f32-planar') return;
        if (audio.numberOfChannels !== 1 && audio.format === 'f32') return;
        audio.copyTo(samples, { planeIndex: 0 });
      }
      // Opus decodes at 48 kHz whatever rate the sender captured at: trust the AudioData's rate.
      this._play(seq, samples, audio.sampleRate);
    } finally {
      audio.close();
    }
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

  _play(seq, samples, rate) {
    const target = this.context.sampleRate;
    if (rate !== target) {
      if (!this._resampler || this._resampler.inRate !== rate) this._resampler = new Resampler(rate, target);
      samples = this._resampler.process(samples);
    }
    if (samples.length === 0) return;
    this._playbackNode.port.postMessage({ type: 'frame', seq, samples }, [samples.buffer]);
  }

  _onPlaybackStats(data) {
    if (!data || data.type !== 'stats') return;
    this._playback = data;
    this._partnerRms = data.rms;
  }

  // --- the contract's API ---

  /** Muted: no frame is sent; the partner's concealment fades to silence. */
  setMuted(muted) {
    this._muted = Boolean(muted);
  }

  /** New partner (or partner left): clear the jitter buffer and the decoders. */
  resetPartner() {
    this._closeDecoder();
    this._resampler = null;
    this._partnerCodec = null;
    this._partnerRms = 0;
    this._in.reset();
    this._playback = null;
    this._playbackNode.port.postMessage({ type: 'reset' });
  }

  /** RMS levels, 0..1; the page maps them to its meters' decibel scale. */
  levels() {
    return { mic: this._muted ? 0 : Math.min(1, this._micRms), partner: Math.min(1, this._partnerRms) };
  }

  stats() {
    const playback = this._playback || {};
    const context = this.context;
    return {
      codec: this.codec,
      partnerCodec: this._partnerCodec,
      kbpsOut: this._out.kbps(),
      kbpsIn: this._in.kbps(),
      jitterMs: playback.delayMs || 0,
      lostFrames: playback.lost || 0,
      concealedFrames: playback.concealed || 0,
      droppedFrames: playback.droppedFrames || 0,
      frameMs: FRAME_MS,
      outputLatencyMs: ((context.outputLatency || 0) + (context.baseLatency || 0)) * 1000,
      captureToSendMs: this._captureToSendMs,
      targetMs: playback.targetMs || 0,
      underruns: playback.underruns || 0,
      arrivalJitterMs: playback.arrivalJitterMs || 0,
      sampleRate: context.sampleRate,
      muted: this._muted,
    };
  }

  /** Resume a suspended or interrupted (iOS) context; call on gestures and visibilitychange. */
  resume() {
    const state = this.context.state;
    if (state === 'suspended' || state === 'interrupted') return this.context.resume().catch(() => {});
    return Promise.resolve();
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this._stream.getTracks().forEach((track) => track.stop());
    for (const node of [this._source, this._capture, this._playbackNode, this.partnerAnalyser]) {
      try {
        node.disconnect();
      } catch {
        // not connected
      }
    }
    this._capture.port.onmessage = null;
    this._playbackNode.port.onmessage = null;
    if (this._encoder && this._encoder.state !== 'closed') this._encoder.close();
    this._encoder = null;
    this._closeDecoder();
    this.context.close().catch(() => {});
  }
}
