// The browser audio pipeline, put together from its parts:
//   capture.js   microphone -> its track (Chromium) or the capture worklet -> 10 or 20 ms frames with their capture time
//   encoder.js   frames -> Opus (WebCodecs) or PCM16 -> binary frames -> onFrame()
//   partner.js   each remote member's binary frames -> decoder -> jitter buffer (playback worklet)
//   mix.js       the members' volume, and the soft clip on the mix bus
//   this file    the session the page talks to, with the meters and figures
//
//   const session = await startAudio({ onFrame: (arrayBuffer) => ws.send(arrayBuffer) });
//   session.receive(arrayBuffer);          // a frame from the partner (a call of two)
//   session.receiveFrom(slot, frameView);  // a frame from a group room's member (slot byte stripped)
//
// Every remote member has a PartnerPlayback of its own and a gain (this page's volume for them); Web
// Audio sums the gains into the mix bus, and a WaveShaper soft-clips the sum (mix.js) before the
// speakers: identity at speech levels, a soft shoulder when three people talk at once.
//
// The binary frame format is in docs/protocol.md (Audio frames) and frame.js.
import { captureRate, openAudio, openCapture, wallNow } from './capture.js';
import { chooseOpusConfig, FrameEncoder, opusRate } from './encoder.js';
import { outputLatencyMs, RecentLeast } from './figures.js';
import { MIX_HEADROOM, memberGain, softClipCurve } from './mix.js';
import { PartnerPlayback } from './partner.js';
import { RateMeter } from './rate-meter.js';

const PARTNER_FFT_SIZE = 32768;
const CAPTURE_TO_SEND_SPAN_MS = 2000; // the figures use the least capture-to-send of the last 2 to 4 s
/** The key of a two-person call's one partner among the members (group-room slots are 0..255). */
export const PARTNER = -1;

/**
 * Start the microphone and the audio graph. Call from a user gesture.
 * @param {{onFrame?: (frame: ArrayBuffer) => void}} options onFrame gets each binary frame to send
 * @returns {Promise<AudioSession>}
 * @throws the getUserMedia DOMException, or an Error named 'InsecureContextError'
 */
export async function startAudio({ onFrame } = {}) {
  const { context, stream } = await openAudio();
  const rate = captureRate(context, stream);
  const opusConfig = await chooseOpusConfig(opusRate(rate));
  return new AudioSession(context, stream, rate, opusConfig, onFrame);
}

/** Call fn(...args) if it is a function; a measuring hook's error must not stop the audio. */
function notify(fn, ...args) {
  if (typeof fn !== 'function') return;
  try {
    fn(...args);
  } catch (error) {
    console.warn('duoduel: a measure hook failed:', error);
  }
}

export class AudioSession {
  constructor(context, stream, rate, opusConfig, onFrame) {
    this.context = context;
    /** The rate of the captured frames: the microphone track's (Chromium) or the context's. */
    this.captureRate = rate;
    this._onFrame = typeof onFrame === 'function' ? onFrame : () => {};
    this._closed = false;
    this._muted = false;
    this._micRms = 0;
    this._captureToSend = new RecentLeast(CAPTURE_TO_SEND_SPAN_MS);
    this._out = new RateMeter(performance.now());
    /**
     * The measuring hook, for benchmarks and tests (bench/latency.py); the page leaves it empty.
     * Set any member to a function; each is called synchronously and its errors are only logged.
     *   captured(samples, captureTime)  every captured frame (Float32Array at captureRate, valid
     *                                   only during the call) and the wall-clock ms of its first sample
     *   sent(frame, captureTime)        every binary frame handed to onFrame, and its capture time: the frame
     *                                   in clear, header and all, before the page seals it (encryption.js)
     *   received(frame, slot)           every binary frame from a member, opened (in clear), before decoding
     *                                   (slot: its group-room slot, PARTNER (-1) in a call of two)
     *   arrivals(slot, rows, sampleRate, playback)  what a member's playback worklet takes, as it sees it
     *                                   (PartnerPlayback.recordArrivals): from the member's next frame on; playback
     *                                   numbers the member's playbacks (one starts afresh after a resume)
     * What the page plays from its partner is `partnerOutput` (an AudioNode: connect a tap to it).
     */
    this.measure = { captured: null, sent: null, received: null, arrivals: null };
    this._playbacks = 0; // PartnerPlayback objects made, to number them for measure.arrivals

    this._encoder = new FrameEncoder({
      contextRate: rate,
      opusConfig,
      onFrame: (frame, captureTime) => this._send(frame, captureTime),
    });
    this._capture = openCapture(context, stream, {
      sampleRate: rate,
      frameMs: this._encoder.frameMs,
      onFrame: (samples, captureTime) => {
        if (this._closed) return;
        notify(this.measure.captured, samples, captureTime);
        this._encoder.encode(samples, captureTime);
      },
      onLevel: (rms) => {
        this._micRms = rms;
      },
      onGap: (frames) => this._encoder.skip(frames),
    });

    // Members' gains -> mix bus (Web Audio sums) -> 1/headroom -> soft clip -> partnerOutput, which the
    // speakers and the partner analyser share: partnerOutput is exactly what this page plays.
    this._mixBus = context.createGain();
    this._mixBus.gain.value = 1 / MIX_HEADROOM;
    this._softClip = context.createWaveShaper();
    this._softClip.curve = softClipCurve();
    this._softClip.oversample = 'none'; // oversampling would add latency
    this.partnerOutput = context.createGain();
    this.partnerAnalyser = context.createAnalyser();
    this.partnerAnalyser.fftSize = PARTNER_FFT_SIZE;
    this._mixBus.connect(this._softClip);
    this._softClip.connect(this.partnerOutput);
    this.partnerOutput.connect(context.destination);
    this.partnerOutput.connect(this.partnerAnalyser);
    /** slot (PARTNER in a call of two) -> {playback: PartnerPlayback, gain: GainNode} */
    this._members = new Map();
    this._volumes = new Map(); // slot -> {percent, muted}: kept across a member's frames, reset when it leaves

    this.resume();
  }

  /** 'opus' or 'pcm16': what we send. */
  get codec() {
    return this._encoder.codec;
  }

  _send(frame, captureTime) {
    if (this._closed) return;
    this._out.add(frame.byteLength, performance.now());
    const now = wallNow();
    this._captureToSend.add(now - captureTime, now);
    notify(this.measure.sent, frame, captureTime);
    try {
      this._onFrame(frame);
    } catch {
      // A closing socket is the app's business; the audio goes on.
    }
  }

  /** A binary frame from the partner of a call of two. */
  receive(buffer) {
    this.receiveFrom(PARTNER, buffer);
  }

  /** A binary frame from one member (a group room's slot, its byte already stripped; PARTNER in a call). */
  receiveFrom(slot, frame) {
    if (this._closed || !frame) return;
    notify(this.measure.received, frame, slot);
    const member = this.addMember(slot);
    if (typeof this.measure.arrivals === 'function' && !member.recording) {
      member.recording = true;
      const number = member.number;
      member.playback.recordArrivals((rows, rate) => notify(this.measure.arrivals, slot, rows, rate, number));
    }
    member.playback.receive(frame);
  }

  /** A member arrived (or sent its first frame): its own decoder, jitter buffer and volume. */
  addMember(slot) {
    let member = this._members.get(slot);
    if (member) return member;
    const gain = this.context.createGain();
    const volume = this._volumes.get(slot);
    gain.gain.value = volume ? memberGain(volume.percent, volume.muted) : 1;
    gain.connect(this._mixBus);
    member = { playback: new PartnerPlayback(this.context, gain), gain, number: ++this._playbacks, recording: false };
    this._members.set(slot, member);
    return member;
  }

  /** A member left: free its decoder, jitter buffer and nodes, and forget this page's volume for it. */
  removeMember(slot) {
    const member = this._members.get(slot);
    this._volumes.delete(slot);
    if (!member) return;
    this._members.delete(slot);
    member.playback.close();
    try {
      member.gain.disconnect();
    } catch {
      // not connected
    }
  }

  /** A member is back on a new socket: its playback starts afresh, at this page's volume for it. */
  restartMember(slot) {
    const volume = this._volumes.get(slot);
    this.removeMember(slot);
    if (volume) this._volumes.set(slot, volume);
  }

  /** How loud this page plays one member: percent 0..100, muted (this page only). */
  setMemberVolume(slot, percent, muted) {
    this._volumes.set(slot, { percent, muted });
    const member = this._members.get(slot);
    if (member) member.gain.gain.setTargetAtTime(memberGain(percent, muted), this.context.currentTime, 0.01);
  }

  /** One member's figures (PartnerPlayback.stats()), or null before its first frame. */
  memberStats(slot) {
    const member = this._members.get(slot);
    return member ? member.playback.stats() : null;
  }

  /** How many members have a decoder and jitter buffer here now. */
  get memberCount() {
    return this._members.size;
  }

  /** Muted: no frame is sent; the partner's concealment fades to silence. */
  setMuted(muted) {
    this._muted = Boolean(muted);
    this._encoder.muted = this._muted;
  }

  /** New partner (or partner left, or a new room): free every member's decoder and jitter buffer. */
  resetPartner() {
    for (const slot of [...this._members.keys()]) this.removeMember(slot);
    this._volumes.clear();
  }

  /** The partner of a call of two; in a group room the member heard loudest now (for the call's figures). */
  get _partner() {
    const partner = this._members.get(PARTNER);
    if (partner) return partner.playback;
    let loudest = null;
    for (const { playback } of this._members.values()) {
      if (loudest === null || playback.stats().rms > loudest.stats().rms) loudest = playback;
    }
    return loudest;
  }

  /** RMS levels, 0..1; the page maps them to its meters' decibel scale. */
  levels() {
    const partner = this._partner ? this._partner.stats().rms : 0;
    return { mic: this._muted ? 0 : Math.min(1, this._micRms), partner: Math.min(1, partner) };
  }

  /**
   * The call's figures: what we send (codec, kbpsOut, captureToSendMs), what we play of the partner
   * (partnerCodec, kbpsIn, jitterMs, lostFrames, concealedFrames, droppedFrames, targetMs, underruns,
   * arrivalJitterMs, decoderDrops, playback: the jitter buffer's raw counters), encoderDrops (frames the
   * encoder was too far behind to take, or whose chunk came back unrecognised), dtx and dtxFrames (whether we
   * leave out frames of silence, and how many we did), capturePath ('track': from the microphone's track, or
   * 'worklet': through Web Audio), and the context's (frameMs: the duration of our frames,
   * outputLatencyMs: null where it cannot be read without risk of blocking, sampleRate, muted).
   */
  stats() {
    const partner = this._partner ? this._partner.stats() : null;
    const context = this.context;
    return {
      codec: this.codec,
      partnerCodec: partner ? partner.codec : null,
      kbpsOut: this._out.kbps(performance.now()),
      kbpsIn: partner ? partner.kbpsIn : 0,
      jitterMs: partner ? partner.jitterMs : 0,
      lostFrames: partner ? partner.lostFrames : 0,
      concealedFrames: partner ? partner.concealedFrames : 0,
      droppedFrames: partner ? partner.droppedFrames : 0,
      targetMs: partner ? partner.targetMs : 0,
      underruns: partner ? partner.underruns : 0,
      arrivalJitterMs: partner ? partner.arrivalJitterMs : 0,
      decoderDrops: partner ? partner.decoderDrops : 0,
      encoderDrops: this._encoder.overloadDrops + this._encoder.unmatchedChunks,
      dtx: this._encoder.dtx,
      dtxFrames: this._encoder.dtxFrames,
      playback: partner ? partner.playback : null,
      capturePath: this._capture.path,
      frameMs: this._encoder.frameMs,
      outputLatencyMs: outputLatencyMs(context, navigator.userAgent),
      captureToSendMs: this._captureToSend.least ?? 0,
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
    this._capture.close();
    this._encoder.close();
    this.resetPartner();
    for (const node of [this._mixBus, this._softClip, this.partnerOutput, this.partnerAnalyser]) {
      try {
        node.disconnect();
      } catch {
        // not connected
      }
    }
    this.context.close().catch(() => {});
  }
}
