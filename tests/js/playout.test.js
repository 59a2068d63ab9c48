import { test } from 'node:test';
import assert from 'node:assert/strict';

import { seqDelta } from '../../static/frame-store.js';
import { DECISIONS, Playout, TRANSITIONS } from '../../static/playout.js';

const RATE = 48000;
const FRAME = 960; // 20 ms
const QUANTUM = 128;
const QUANTUM_MS = (QUANTUM / RATE) * 1000;

/** Continuous 440 Hz sine: frame k holds source samples k*FRAME .. k*FRAME+FRAME-1. */
function sineSample(index) {
  return 0.5 * Math.sin((2 * Math.PI * 440 * index) / RATE);
}

function sineFrame(k) {
  const frame = new Float32Array(FRAME);
  for (let i = 0; i < FRAME; i++) frame[i] = sineSample(k * FRAME + i);
  return frame;
}

/** A frame whose every sample is a value that identifies it. */
function markerValue(k) {
  return Math.fround(((k % 400) + 10) / 500);
}

function markerFrame(k) {
  return new Float32Array(FRAME).fill(markerValue(k));
}

/**
 * The frames a sender produces, with their arrival times at the receiver.
 * @param {number} count frames sent
 * @param {object} options periodMs: sender's frame period in receiver time (drift), delay(k): network delay
 *   of frame k in ms (null = lost), content(k): the frame's samples, firstSeq: sequence number of frame 0
 */
function send(count, { periodMs = 20, delay = () => 30, content = sineFrame, firstSeq = 0 } = {}) {
  const events = [];
  for (let k = 0; k < count; k++) {
    const d = delay(k);
    if (d === null) continue;
    events.push({ k, seq: (firstSeq + k) & 0xffff, arrivalMs: k * periodMs + d, samples: content(k) });
  }
  return events.sort((a, b) => a.arrivalMs - b.arrivalMs || a.k - b.k);
}

/**
 * Run the audio clock: one pull of 128 samples every 128/48000 s, delivering frames as they arrive.
 * @returns {Float32Array} everything played; play.stats holds the buffer's stats at statsAtMs (default:
 *   when the last frame arrives, before the end of the stream starves the buffer)
 */
function play(buffer, events, durationMs, { onQuantum, keep = true, statsAtMs } = {}) {
  const statsAt = statsAtMs ?? (events.length ? events.at(-1).arrivalMs : 0);
  play.stats = null;
  const pulls = Math.ceil((durationMs / 1000) * RATE / QUANTUM);
  const out = keep ? new Float32Array(pulls * QUANTUM) : null;
  const quantum = new Float32Array(QUANTUM);
  let next = 0;
  for (let p = 0; p < pulls; p++) {
    const now = p * QUANTUM_MS;
    while (next < events.length && events[next].arrivalMs <= now) {
      const e = events[next++];
      buffer.push(e.seq, e.samples, e.arrivalMs, e.recovered);
    }
    quantum.fill(NaN);
    buffer.pull(quantum);
    for (let i = 0; i < QUANTUM; i++) assert.ok(!Number.isNaN(quantum[i]), 'pull() left a sample unwritten');
    if (keep) out.set(quantum, p * QUANTUM);
    if (play.stats === null && now >= statsAt) play.stats = buffer.stats();
    if (onQuantum) onQuantum(now, buffer);
  }
  if (play.stats === null) play.stats = buffer.stats();
  return out;
}

/** Marker values as they first appear in long runs, in playback order. */
function markersInOrder(out) {
  const seen = [];
  let runValue = NaN;
  let runLength = 0;
  for (let i = 0; i <= out.length; i++) {
    const v = i < out.length ? out[i] : NaN;
    if (v === runValue) {
      runLength++;
      continue;
    }
    if (runLength >= 64 && runValue !== 0 && !seen.includes(runValue)) seen.push(runValue);
    runValue = v;
    runLength = 1;
  }
  return seen;
}

function firstNonZero(out) {
  return out.findIndex((v) => v !== 0);
}

function maxStep(out, from = 1) {
  let worst = 0;
  for (let i = Math.max(1, from); i < out.length; i++) worst = Math.max(worst, Math.abs(out[i] - out[i - 1]));
  return worst;
}

test('compares 16-bit sequence numbers across the wrap', () => {
  assert.equal(seqDelta(0, 65535), 1);
  assert.equal(seqDelta(65535, 0), -1);
  assert.equal(seqDelta(10, 5), 5);
  assert.equal(seqDelta(5, 10), -5);
});

test('plays in-order frames back to back, sample for sample', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const out = play(buffer, send(100), 2100);
  const start = firstNonZero(out) - 1; // the sine starts at 0
  assert.ok(start > 0);
  // After the short fade-in, the output is the sender's stream, unchanged and without gaps.
  for (let j = 200; j < 90 * FRAME; j++) assert.equal(out[start + j], Math.fround(sineSample(j)), `sample ${j}`);
  const stats = play.stats;
  assert.equal(stats.lost, 0);
  assert.equal(stats.underruns, 0);
  assert.equal(stats.drops, 0);
  assert.equal(stats.inserts, 0);
});

test('keeps the delay near one frame on a quiet network', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const delays = [];
  play(buffer, send(500), 10000, { keep: false, onQuantum: (now, b) => { if (now > 1000) delays.push(b.delayMs); } });
  const stats = play.stats;
  assert.ok(Math.max(...delays) < 30, `delay up to ${Math.max(...delays)} ms`);
  assert.ok(Math.min(...delays) >= 20);
  assert.ok(stats.targetMs < 25);
  assert.equal(stats.underruns, 0);
  assert.equal(stats.lost, 0);
});

test('starts again cleanly when the sequence number wraps', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const out = play(buffer, send(60, { firstSeq: 65520, content: markerFrame }), 1300);
  const expected = Array.from({ length: 60 }, (_, k) => markerValue(k));
  assert.deepEqual(markersInOrder(out), expected);
  assert.equal(buffer.stats().lost, 0);
});

test('plays reordered frames in sequence order', () => {
  const buffer = new Playout({ sampleRate: RATE });
  // After a quiet second, every fifth frame is overtaken by the one after it. The first time, the
  // buffer (one quantum of headroom on a quiet network) has to conceal it; then it has learnt the
  // lateness and waits.
  const delay = (k) => (k >= 50 && k % 5 === 3 ? 30 + 25 : 30);
  const out = play(buffer, send(100, { delay, content: markerFrame }), 2100);
  const played = markersInOrder(out);
  const expected = Array.from({ length: 100 }, (_, k) => markerValue(k)).filter((v) => v !== markerValue(53));
  assert.deepEqual(played.slice(0, 99), expected.slice(0, 99));
  const stats = play.stats;
  assert.equal(stats.lost, 0, 'it came: late, not lost');
  assert.equal(stats.late, 1);
});

test('ignores duplicate frames', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const events = send(40, { content: markerFrame });
  // Frames 10 and 20 arrive twice: once at once, once a little later (while still queued or after playing).
  const copies = [10, 20].map((k) => ({ ...events[k], arrivalMs: events[k].arrivalMs + (k === 10 ? 0.5 : 60) }));
  const all = [...events, ...copies].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const out = play(buffer, all, 1000);
  assert.deepEqual(markersInOrder(out), Array.from({ length: 40 }, (_, k) => markerValue(k)));
  const stats = play.stats;
  assert.equal(stats.duplicates, 2);
  assert.equal(stats.lost, 0);
});

test('conceals a lost frame by fading the last one out, without a gap or a click', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const out = play(buffer, send(60, { delay: (k) => (k === 25 ? null : 30) }), 1300);
  const stats = play.stats;
  assert.equal(stats.lost, 1);
  assert.equal(stats.concealed, 1);
  assert.equal(stats.underruns, 0);
  // Concealment continues the waveform: no jump bigger than a 440 Hz sine's own slope allows (+ margin).
  const slope = (2 * Math.PI * 440 * 0.5) / RATE;
  assert.ok(maxStep(out, firstNonZero(out) + 200) < slope * 4, `step ${maxStep(out)}`);
});

test('fades a longer loss to silence within 60 ms, then stays silent', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const constant = () => new Float32Array(FRAME).fill(0.5);
  const lostFrames = new Set([30, 31, 32, 33, 34, 35, 36, 37]); // 160 ms
  const out = play(buffer, send(80, { delay: (k) => (lostFrames.has(k) ? null : 30), content: constant }), 1800);
  const start = firstNonZero(out);
  // The last full-level sample before the loss, then the fade, then silence.
  let lastFull = start + 100;
  while (out[lastFull + 1] === 0.5) lastFull++;
  let silent = lastFull;
  while (out[silent] !== 0) silent++;
  const fadeMs = ((silent - lastFull) / RATE) * 1000;
  assert.ok(fadeMs > 40 && fadeMs <= 61, `fade took ${fadeMs} ms`);
  for (let i = lastFull; i < silent; i++) assert.ok(out[i + 1] <= out[i], 'concealment fades monotonically');
  let resumed = silent;
  while (out[resumed] === 0) resumed++;
  assert.ok(((resumed - silent) / RATE) * 1000 > 80, 'silence after the fade');
  assert.equal(out[resumed + 200], 0.5, 'audio comes back');
  assert.ok(maxStep(out, start + 200) < 0.01, 'no click anywhere');
  const stats = play.stats;
  assert.equal(stats.lost, 8);
  assert.equal(stats.concealed, 3);
});

test('discards a frame that arrives after its turn has passed', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const out = play(buffer, send(50, { delay: (k) => (k === 20 ? 300 : 30), content: markerFrame }), 1400);
  const stats = play.stats;
  assert.equal(stats.late, 1);
  assert.equal(stats.lost, 0, 'it came: late, not lost');
  assert.ok(!markersInOrder(out).includes(markerValue(20)));
  const rest = Array.from({ length: 50 }, (_, k) => markerValue(k)).filter((v) => v !== markerValue(20));
  assert.deepEqual(markersInOrder(out), rest);
});

/**
 * The frames of send() as a link with redundancy hands them over: each lost frame's copy comes with the next
 * frame that arrives (flagged recovered), `copyDelayMs` after it when given.
 */
function withCopies(events, lost, copyDelayMs = 0) {
  const out = [];
  for (const e of events) {
    if (lost.has(e.k - 1)) out.push({ ...e, k: e.k - 1, seq: (e.seq - 1) & 0xffff, samples: markerFrame(e.k - 1), recovered: true, arrivalMs: e.arrivalMs + copyDelayMs });
    out.push(e);
  }
  return out.sort((a, b) => a.arrivalMs - b.arrivalMs || a.k - b.k);
}

test('test_playout_recovered_frame_in_time_is_played_and_counted_neither_lost_nor_late_one_during_its_turn_is_cut_short', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const lost = new Set([20, 31]);
  const events = withCopies(send(60, { delay: (k) => (lost.has(k) ? null : 30), content: markerFrame }), lost);
  const out = play(buffer, events, 1200); // to before the stream's end: its concealment after the last frame
  const stats = play.stats;
  // On a quiet network a quantum of headroom is kept: the first copy, a frame behind, comes during its turn's
  // concealment, and the rest of its turn is played; its lateness raises the target, and the second copy is
  // waited for and played whole. Neither is lost or late; what was concealed of the first is concealment.
  assert.equal(stats.late, 0);
  assert.equal(stats.recovered, 2);
  assert.equal(stats.cutShort, 1);
  assert.equal(stats.lost, 0);
  assert.equal(stats.concealed, 1);
  assert.ok(buffer.concealedSamples < FRAME, `${buffer.concealedSamples} samples concealed`);
  assert.deepEqual(markersInOrder(out), Array.from({ length: 58 }, (_, k) => markerValue(k)), 'every frame is heard');
});

test('test_playout_frame_during_its_turn_plays_its_rest_in_place_after_the_concealment', () => {
  // Frame 20 comes 8 ms after its turn began (a quantum of headroom is kept on a quiet network): about 8 ms of
  // it are concealed, the rest of it plays where it would have, and the frames after it are on time as before.
  const events = send(60, { delay: (k) => (k === 20 ? 30 + 8 + QUANTUM_MS : 30), content: rampFrame });
  const buffer = new Playout({ sampleRate: RATE });
  const out = play(buffer, events, 1200);
  assert.equal(play.stats.cutShort, 1);
  assert.equal(play.stats.lost + play.stats.late, 0);
  const cut = buffer.concealedSamples;
  assert.ok(cut > 0.3 * FRAME && cut < 0.6 * FRAME, `${cut} samples of frame 20 concealed`);
  // The last sample of frame 20 and the first of frame 21 are played one after the other.
  const last = out.indexOf(21 * FRAME);
  assert.ok(last > 0 && out[last + 1] === 21 * FRAME + 1, 'frame 20 ends in its place');
});

test('test_playout_copy_after_its_turn_is_late_and_a_frame_never_sent_again_is_lost', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const events = send(60, { delay: (k) => (k === 20 || k === 40 ? null : 30), content: markerFrame });
  const copies = withCopies(events, new Set([20]), 300); // frame 20's copy comes 300 ms after frame 21
  play(buffer, copies, 1500);
  const stats = play.stats;
  assert.equal(stats.late, 1, 'frame 20 came, after its turn');
  assert.equal(stats.lost, 1, 'frame 40 never came');
  assert.equal(stats.recovered, 0);
});

test('test_playout_losses_with_copies_raise_the_target_by_a_frame_and_conceal_little', () => {
  let seed = 7;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const lost = new Set();
  for (let k = 10; k < 1500; k++) if (random() < 0.03 && !lost.has(k - 1)) lost.add(k);
  const events = withCopies(send(1500, { delay: (k) => (lost.has(k) ? null : 30), content: markerFrame }), lost);
  const waiting = new Playout({ sampleRate: RATE });
  play(waiting, events, 30500);
  const waited = play.stats;
  const notWaiting = new Playout({ sampleRate: RATE, waitForCopies: false });
  play(notWaiting, events, 30500);
  const notWaited = play.stats;
  assert.equal(waited.lost, 0);
  assert.ok(waited.recovered >= 0.9 * lost.size, `${waited.recovered} of ${lost.size} recovered`);
  assert.ok(waited.targetMs > 40 && waited.targetMs < 50, `target ${waited.targetMs}: one frame of copy lateness more`);
  assert.ok(notWaited.targetMs < 30, `target ${notWaited.targetMs} without waiting`);
  // Not waited for, a copy comes a frame behind its frame, during its turn's concealment: its rest is played.
  assert.ok(notWaited.cutShort > lost.size / 2, `${notWaited.cutShort} copies cut short without waiting`);
  assert.equal(notWaited.lost, 0);
  assert.ok(waiting.concealedSamples < notWaiting.concealedSamples / 3);
});

test('test_playout_frames_pushed_out_by_a_much_later_one_are_lost_if_they_never_came', () => {
  const buffer = new Playout({ sampleRate: RATE, maxDelayMs: 200 }); // 11 frames wait at most
  for (let k = 0; k < 5; k++) buffer.push(k, markerFrame(k), k * 20);
  buffer.push(30, markerFrame(30), 100); // 5 to 19 make room for it, missing
  assert.equal(buffer.stats().lost, 15);
});

test('raises the target on a jittery network and keeps the audio flowing', () => {
  const buffer = new Playout({ sampleRate: RATE });
  let seed = 1;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const out = play(buffer, send(1500, { delay: () => 30 + random() * 40, content: markerFrame }), 30500);
  const stats = play.stats;
  assert.ok(stats.targetMs > 55, `target ${stats.targetMs}`);
  assert.ok(stats.targetMs < 90, `target ${stats.targetMs}`);
  assert.ok(stats.delayMs < stats.targetMs + 15, `delay ${stats.delayMs}`);
  assert.ok(stats.lost <= 15, `${stats.lost} lost`);
  assert.ok(stats.underruns <= 2, `${stats.underruns} underruns`);
  assert.ok(out.length > 0);
});

test('lets the target decay slowly once the jitter is gone', () => {
  const buffer = new Playout({ sampleRate: RATE });
  let seed = 7;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const jitteryUntil = 250; // frames: 5 s of up to 60 ms jitter, then a quiet network
  const events = send(2000, { delay: (k) => (k < jitteryUntil ? 30 + random() * 60 : 30) });
  const samples = [];
  play(buffer, events, 40000, { keep: false, onQuantum: (now, b) => samples.push([now, b.targetMs, b.delayMs]) });
  const at = (ms) => samples.find(([now]) => now >= ms);
  const jittery = at(5000)[1];
  assert.ok(jittery > 60);
  assert.ok(at(6000)[1] > jittery * 0.6, 'a second later the target is still high');
  assert.ok(at(39000)[1] < 25, 'half a minute later it is back near one frame');
  assert.ok(at(39000)[2] < 30, `delay ${at(39000)[2]} back near one frame`);
});

test('drops samples after a burst so the delay stays bounded', () => {
  const buffer = new Playout({ sampleRate: RATE });
  // The network stalls for 600 ms at 2 s, then delivers everything at once.
  const delay = (k) => (k >= 100 && k < 130 ? 30 + (130 - k) * 20 : 30);
  const delays = [];
  play(buffer, send(1500, { delay }), 30000, { keep: false, onQuantum: (now, b) => delays.push([now, b.delayMs]) });
  const stats = play.stats;
  const worst = Math.max(...delays.map(([, d]) => d));
  assert.ok(worst < 300, `delay reached ${worst} ms`);
  assert.ok(stats.drops > 0);
  assert.ok(delays.at(-1)[1] < 30, `delay ${delays.at(-1)[1]} ms at the end`);
});

test('keeps the delay bounded when frames come in regular bursts', () => {
  const buffer = new Playout({ sampleRate: RATE });
  // Groups of five frames released together every 100 ms.
  const delay = (k) => 30 + (4 - (k % 5)) * 20;
  const delays = [];
  play(buffer, send(1000, { delay }), 20000, { keep: false, onQuantum: (now, b) => { if (now > 3000) delays.push(b.delayMs); } });
  const stats = play.stats;
  assert.ok(Math.max(...delays) < 140, `delay up to ${Math.max(...delays)} ms`);
  assert.ok(stats.underruns <= 1, `${stats.underruns} underruns`);
  assert.ok(stats.lost <= 5, `${stats.lost} lost`);
});

for (const [name, periodMs] of [['faster', 20 / 1.01], ['slower', 20 * 1.01]]) {
  test(`stays bounded over ten minutes when the sender's clock is 1% ${name}`, () => {
    const buffer = new Playout({ sampleRate: RATE });
    const minutes = 10;
    const count = Math.floor((minutes * 60000) / periodMs);
    let worst = 0;
    let best = Infinity;
    play(buffer, send(count, { periodMs, content: () => new Float32Array(FRAME).fill(0.25) }), minutes * 60000, {
      keep: false,
      onQuantum: (now, b) => {
        if (now < 1000 || !b.stats().playing) return;
        worst = Math.max(worst, b.levelSamples() / RATE * 1000);
        best = Math.min(best, b.delayMs);
      },
    });
    const stats = play.stats;
    assert.ok(worst < 50, `buffered up to ${worst} ms`);
    assert.ok(best > 15, `delay down to ${best} ms`);
    assert.ok(stats.delayMs < 35, `delay ${stats.delayMs} ms`);
    assert.ok(stats.underruns <= 3, `${stats.underruns} underruns`);
    if (name === 'faster') assert.ok(stats.droppedMs > 5000, `dropped ${stats.droppedMs} ms`);
    else assert.ok(stats.insertedMs > 5000, `inserted ${stats.insertedMs} ms`);
  });
}

test('restarts after the sender goes quiet for a while', () => {
  const buffer = new Playout({ sampleRate: RATE });
  // The partner mutes from frame 50 to 200 (3 s): its sequence numbers go on, nothing is sent.
  const out = play(buffer, send(300, { delay: (k) => (k >= 50 && k < 200 ? null : 30), content: markerFrame }), 6500);
  const played = markersInOrder(out);
  assert.deepEqual(played.slice(0, 50), Array.from({ length: 50 }, (_, k) => markerValue(k)));
  assert.equal(played[50], markerValue(200));
  const stats = play.stats;
  assert.ok(stats.delayMs < 30, `delay ${stats.delayMs}`);
});

test('outputs silence before the first frame and never leaves a sample unwritten', () => {
  const buffer = new Playout({ sampleRate: RATE });
  const out = new Float32Array(QUANTUM).fill(NaN);
  buffer.pull(out);
  assert.ok(out.every((v) => v === 0));
});

test('works at 44.1 kHz with frames of varying length', () => {
  const rate = 44100;
  const buffer = new Playout({ sampleRate: rate });
  const quantum = new Float32Array(QUANTUM);
  let pushed = 0;
  let pulledTime = 0;
  for (let k = 0; k < 500; k++) {
    const arrivalMs = k * 20 + 30;
    while (pulledTime < arrivalMs) {
      buffer.pull(quantum);
      pulledTime += (QUANTUM / rate) * 1000;
    }
    const length = k % 2 ? 881 : 883; // a resampler's output wobbles around 882
    buffer.push(k, new Float32Array(length).fill(0.1), arrivalMs);
    pushed += length;
  }
  const stats = buffer.stats();
  assert.equal(stats.underruns, 0);
  assert.equal(stats.lost, 0);
  assert.ok(stats.delayMs < 30);
  assert.ok(pushed > 0);
});

// Impaired links, as bench/impair.py makes them: TCP legs that keep order, with jitter and stalls.

/** Seed-fixed uniform random numbers in [0, 1) (mulberry32). */
function prng(seed) {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Arrival times of frames sent every 20 ms after crossing `legs` TCP links, each delayMs + uniform(0, jitterMs)
 * per frame, in order (a late frame holds back the ones behind it). A stall [startMs, durationMs] on the first
 * leg holds everything due inside it until it ends, then delivers it at once.
 */
function tcpArrivals(count, { legs = 2, delayMs = 10, jitterMs = 30, seed = 1, stall = null } = {}) {
  const random = prng(seed);
  let times = Array.from({ length: count }, (_, k) => k * 20);
  for (let leg = 0; leg < legs; leg++) {
    let previous = -Infinity;
    times = times.map((sent) => {
      let due = sent + delayMs + random() * jitterMs;
      if (leg === 0 && stall && due >= stall[0] && due < stall[0] + stall[1]) due = stall[0] + stall[1];
      previous = Math.max(due, previous);
      return previous;
    });
  }
  return times;
}

/** Frame k's samples are the sender's sample numbers k*FRAME+1 ..: what is played tells when it was sent. */
function rampFrame(k) {
  const frame = new Float32Array(FRAME);
  for (let i = 0; i < FRAME; i++) frame[i] = k * FRAME + i + 1;
  return frame;
}

/** Play frames arriving at these times; return the output and the buffer. */
function playArrivals(times, durationMs) {
  const buffer = new Playout({ sampleRate: RATE });
  const events = times.map((arrivalMs, k) => ({ k, seq: k & 0xffff, arrivalMs, samples: rampFrame(k) }));
  const out = play(buffer, events, durationMs);
  return { out, buffer };
}

/**
 * Mouth-to-ear through the link and the buffer, ms, for every output sample that is the sender's audio
 * played as is (not concealment, silence, a fade or a crossfade); NaN elsewhere.
 */
function playoutLatency(out) {
  const latency = new Float64Array(out.length).fill(NaN);
  for (let p = 1; p < out.length - 1; p++) {
    const v = out[p];
    if (v >= 1 && Number.isInteger(v) && (out[p + 1] === v + 1 || out[p - 1] === v - 1)) {
      latency[p] = ((p - (v - 1)) / RATE) * 1000;
    }
  }
  return latency;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Latencies of the real samples played between fromMs and toMs (every 48th sample: one per ms). */
function latenciesBetween(latency, fromMs, toMs) {
  const values = [];
  for (let p = Math.round((fromMs / 1000) * RATE); p < (toMs / 1000) * RATE && p < latency.length; p += 48) {
    if (!Number.isNaN(latency[p])) values.push(latency[p]);
  }
  return values;
}

for (const stallMs of [300, 400, 500]) {
  for (const [link, jitterMs] of [['a quiet link', 0], ['two jittery legs', 30]]) {
    test(`after a ${stallMs} ms stall on ${link} the delay is back within 20 ms of its level within 2 s`, () => {
      const stallAt = 10000;
      const end = stallAt + stallMs;
      const times = tcpArrivals(1000, { jitterMs, seed: stallMs, stall: [stallAt, stallMs] });
      const { out, buffer } = playArrivals(times, 20500);
      const latency = playoutLatency(out);
      const before = median(latenciesBetween(latency, 5000, stallAt));
      const after = latenciesBetween(latency, end + 2000, 20000);
      assert.ok(after.length > 7000, 'audio plays after the stall');
      const worst = Math.max(...after.map((ms) => Math.abs(ms - before)));
      assert.ok(worst <= 20, `${worst.toFixed(1)} ms away from ${before.toFixed(1)} ms, 2 s after the stall`);
      // The burst was skipped (crossfaded away), not played late: the stall's audio is mostly gone.
      const stats = buffer.stats();
      assert.ok(stats.droppedMs + stats.late * 20 >= stallMs / 2, `only ${stats.droppedMs} ms skipped`);
      assert.ok(stats.targetMs <= buffer.frameMs + 3.67 + 60 + 10, `target ${stats.targetMs} ms`);
    });
  }
}

/** The same arrivals, but a burst handed over one frame every 3 ms (as a browser's decoder does). */
function oneByOne(times) {
  const spaced = [];
  for (const t of times) spaced.push(Math.max(t, spaced.length ? spaced.at(-1) + 3 : t));
  return spaced;
}

/**
 * For every quantum whose first sample is the sender's audio played as is: playoutDelayMs() asked after
 * the previous pull (as the playback worklet asks it), and the truth: how much later than its frame's
 * fastest possible arrival (the least transit of the whole run) that sample plays.
 */
function playoutAgainstTruth(times, durationMs) {
  const fastest = Math.min(...times.map((t, k) => t - k * 20));
  const buffer = new Playout({ sampleRate: RATE });
  const quantum = new Float32Array(QUANTUM);
  const rows = [];
  let next = 0;
  let measured = null;
  for (let p = 0; p * QUANTUM_MS < durationMs; p++) {
    const now = p * QUANTUM_MS;
    for (; next < times.length && times[next] <= now; next++) buffer.push(next & 0xffff, rampFrame(next), times[next]);
    buffer.pull(quantum);
    const v = quantum[0];
    if (measured !== null && v >= 1 && Number.isInteger(v) && quantum[1] === v + 1) {
      rows.push({ now, measured, truth: now - ((v - 1) / RATE) * 1000 - fastest });
    }
    measured = buffer.playoutDelayMs(now + QUANTUM_MS);
  }
  return rows;
}

for (const stallMs of [300, 500]) {
  test(`the measured playout delay is what is played, through a ${stallMs} ms stall and its burst`, () => {
    // The page shows this figure: a snapshot of the buffer's own headroom showed 300 to 450 ms after
    // stalls, a delay that nothing was played with.
    const rows = playoutAgainstTruth(oneByOne(tcpArrivals(1000, { jitterMs: 0, seed: stallMs, stall: [10000, stallMs] })), 19000);
    assert.ok(rows.length > 6000);
    const worst = Math.max(...rows.map((r) => Math.abs(r.measured - r.truth)));
    assert.ok(worst < 1, `off by ${worst.toFixed(2)} ms`);
    const after = rows.filter((r) => r.now > 10000 + stallMs && r.now < 12000 + stallMs);
    assert.ok(Math.max(...after.map((r) => r.measured)) < 100, 'the burst is skipped, not played late');
  });
}

test('a burst handed over frame by frame after a stall restarts playback at its first frame on time', () => {
  // The held frames are skipped, not played late; playback restarts with the first frame that is on time,
  // topped up with silence to the target, and the frames right behind it make that silence unneeded, so it
  // is cut short (it was played whole: 17 to 19 ms).
  for (const stallMs of [300, 400, 500]) {
    const times = oneByOne(tcpArrivals(800, { legs: 1, delayMs: 20, jitterMs: 0, stall: [10000, stallMs] }));
    const out = playArrivals(times, 12000).out;
    const onTime = times.findIndex((t, k) => t >= 10000 + stallMs && t - (k * 20 + 20) <= 5);
    const from = Math.round((times[onTime] / 1000) * RATE);
    const silentMs = out.subarray(from, from + 0.3 * RATE).filter((v) => v === 0).length / (RATE / 1000);
    assert.ok(silentMs < 15, `${silentMs.toFixed(1)} ms of silence after a ${stallMs} ms stall's burst`);
  }
});

test('a run of the burst that never comes (dropped before the decoder) is skipped, not concealed in real time', () => {
  // The page's decoder caps its queue: after a stall it can drop a run of the burst. Concealing that run
  // frame by frame held the frames behind it back as long again (150 to 270 ms in the browser).
  for (const stallMs of [300, 400, 500]) {
    const arrivals = oneByOne(tcpArrivals(800, { legs: 1, delayMs: 20, jitterMs: 0, stall: [10000, stallMs] }));
    const firstHeld = arrivals.findIndex((t) => t >= 10000 + stallMs);
    const behind = firstHeld + 13; // the first frame after 9 that never come
    const events = arrivals
      .map((arrivalMs, k) => ({ k, seq: k & 0xffff, arrivalMs, samples: rampFrame(k) }))
      .filter(({ k }) => k < firstHeld + 4 || k >= behind);
    const out = play(new Playout({ sampleRate: RATE }), events, 12000);
    // The first sample played as is from behind the gap: how long after its frame came.
    const played = out.findIndex((v) => Number.isInteger(v) && v > behind * FRAME);
    const k = Math.floor((out[played] - 1) / FRAME);
    const waited = (played / RATE) * 1000 - arrivals[k];
    assert.ok(waited < 30, `audio behind the gap played ${waited.toFixed(0)} ms after it came (${stallMs} ms stall)`);
  }
});

test('the first frame of a burst, handed over ahead of the rest, is not played late on its own', () => {
  // The browser's decoder gave a stall's first held frame to the worklet 30 ms ahead of the rest of the
  // burst (a run of which it had dropped): that frame started playback and was played 460 ms late.
  for (const stallMs of [300, 400, 500]) {
    const arrivals = tcpArrivals(800, { legs: 1, delayMs: 20, jitterMs: 0, stall: [10000, stallMs] });
    // The first held frames were concealed in real time during the stall (they come too late); the first
    // that was not comes alone, the rest 30 ms after it, without the run the decoder dropped.
    const lead = arrivals.findIndex((t) => t >= 10000 + stallMs) + 3;
    const times = oneByOne(arrivals.map((t, k) => (k > lead ? Math.max(t, arrivals[lead] + 30) : t)));
    const events = times
      .map((arrivalMs, k) => ({ k, seq: k & 0xffff, arrivalMs, samples: rampFrame(k) }))
      .filter(({ k }) => k <= lead || k >= lead + 10);
    const buffer = new Playout({ sampleRate: RATE });
    let targetBefore = null;
    const out = play(buffer, events, 10000 + stallMs + 1000, {
      onQuantum: (now) => { if (targetBefore === null && now >= 10000) targetBefore = buffer.targetMs; },
    });
    const latency = playoutLatency(out);
    // Nothing is heard until playback starts again: not the held frames as concealment either.
    const end = Math.round(((10000 + stallMs) / 1000) * RATE);
    const restart = latency.findIndex((ms, p) => p > end && !Number.isNaN(ms));
    const heard = Math.max(...out.subarray(end, restart - 0.005 * RATE).map(Math.abs));
    assert.equal(heard, 0, `${stallMs} ms stall: the held frames were heard before playback restarted`);
    const after = latenciesBetween(latency, 10000 + stallMs, 10000 + stallMs + 1000);
    const before = median(latenciesBetween(latency, 5000, 10000));
    assert.ok(Math.max(...after) - before < 30, `played ${Math.max(...after).toFixed(0)} ms late after a ${stallMs} ms stall`);
    // The frames in the burst's wake come late because of it, not of jitter: the target stays put.
    assert.ok(buffer.targetMs <= targetBefore + 6, `target ${buffer.targetMs.toFixed(1)} ms, ${targetBefore.toFixed(1)} before`);
  }
});

test('the measured playout delay follows what is played on two jittery legs', () => {
  // The fastest path is learnt from the frames themselves, so it sits a little above the run's true least
  // transit (the best of 1,000 frames): the measure is a few ms low, never high.
  const rows = playoutAgainstTruth(tcpArrivals(1000, { jitterMs: 30, seed: 3 }), 19000).filter((r) => r.now > 3000);
  const errors = rows.map((r) => r.measured - r.truth).sort((a, b) => a - b);
  assert.ok(errors[Math.floor(errors.length * 0.05)] > -12 && errors.at(-1) < 1, `${errors[0]}..${errors.at(-1)}`);
});

test('a stall raises the margin by at most one 5 ms step; stalls that keep coming raise it step by step', () => {
  const quietTarget = new Playout({ sampleRate: RATE }).targetMs;
  const single = playArrivals(tcpArrivals(600, { jitterMs: 0, stall: [5000, 400] }), 12500).buffer;
  assert.ok(single.stats().targetMs <= quietTarget + 5, `target ${single.stats().targetMs} ms after one stall`);
  // 170 ms without a frame every 400 ms: too often to conceal each time; the buffer learns to wait instead.
  let times = Array.from({ length: 2000 }, (_, k) => k * 20 + 20);
  for (let t = 3000; t < 40000; t += 400) times = times.map((a) => (a >= t && a < t + 170 ? t + 170 : a));
  const buffer = new Playout({ sampleRate: RATE });
  const events = times.map((arrivalMs, k) => ({ seq: k, arrivalMs, samples: rampFrame(k) }));
  let underrunsAt20s = null;
  play(buffer, events, 40000, { keep: false, onQuantum: (now, b) => { if (now >= 20000 && underrunsAt20s === null) underrunsAt20s = b.underruns; } });
  assert.ok(play.stats.targetMs > 120, `target ${play.stats.targetMs} ms`);
  assert.equal(play.stats.underruns, underrunsAt20s, 'no underrun in the last 20 s: it has learnt');
});

for (const seed of [1, 2, 3, 4, 5]) {
  test(`two jittery legs (10 ms + 0-30 ms each, seed ${seed}): no frame later than it must, dropouts at most 2 %`, () => {
    const count = 1500; // 30 s
    const times = tcpArrivals(count, { seed });
    const { out, buffer } = playArrivals(times, 30500);
    const stats = play.stats;
    const dropouts = (stats.concealed + stats.underruns) / count;
    assert.ok(dropouts <= 0.02, `dropouts ${(100 * dropouts).toFixed(2)} %`);
    // The smallest fixed delay that would have played every frame so far in time: the largest transit
    // so far, plus one render quantum (a frame arriving just after a pull waits for the next one).
    const latency = playoutLatency(out);
    let worstTransit = 0;
    let worstExcess = -Infinity;
    for (let k = 0; k < count - 1; k++) {
      worstTransit = Math.max(worstTransit, times[k] - k * 20);
      if (k < 100) continue; // the first 2 s: learning
      const p = Math.round(((k * 20 + worstTransit) / 1000) * RATE);
      for (let q = p; q < p + 4 * FRAME && q < latency.length; q += 48) {
        const v = out[q];
        if (Number.isNaN(latency[q]) || Math.floor((v - 1) / FRAME) !== k) continue;
        worstExcess = Math.max(worstExcess, latency[q] - worstTransit - QUANTUM_MS);
      }
    }
    // What there is above it: 1 ms of safety and the controller's tolerance before it skips (4 ms + 10 %
    // of the peak, about 10 ms here). A baseline that rises faster than the drift adds 5 to 10 ms more.
    assert.ok(worstExcess <= 15, `a frame played ${worstExcess.toFixed(1)} ms later than it had to`);
    assert.ok(buffer.stats().delayMs < 100, `delay ${buffer.stats().delayMs} ms`);
  });
}

// States and decisions: what a log of the playout reads.

/**
 * Play events through a Playout whose every transition is checked against TRANSITIONS (it leaves a state
 * the table allows, and enters the one it names); returns the transitions' names and every quantum's decision.
 */
function playLogged(events, durationMs) {
  const transitions = [];
  const buffer = new Playout({
    sampleRate: RATE,
    onTransition: (name, from, to) => {
      assert.ok(TRANSITIONS[name][0].includes(from), `${name} from ${from}`);
      assert.equal(to, TRANSITIONS[name][1]);
      transitions.push(name);
    },
  });
  const decisions = [];
  const out = play(buffer, events, durationMs, { onQuantum: (now, b) => decisions.push(b.decision) });
  return { buffer, out, transitions, decisions };
}

/** The runs of equal decisions, as [decision, quanta] pairs. */
function runs(decisions) {
  const out = [];
  for (const d of decisions) {
    if (out.length && out.at(-1)[0] === d) out.at(-1)[1]++;
    else out.push([d, 1]);
  }
  return out;
}

test('a clean stream starts, merges its first frame in and then plays normally, one decision per quantum', () => {
  const { transitions, decisions } = playLogged(send(100), 2000);
  assert.deepEqual(transitions, ['prime', 'merge']);
  assert.equal(decisions.length, Math.ceil((2000 / 1000) * RATE / QUANTUM));
  assert.ok(decisions.every((d) => DECISIONS.includes(d)));
  const merged = decisions.indexOf('merge');
  assert.ok(decisions.slice(0, merged).every((d) => d === 'silence'));
  assert.ok(decisions.slice(merged + 1).every((d) => d === 'normal'), JSON.stringify(runs(decisions)));
});

test('a lost frame is expanded and the frame after it merged in; a longer loss underruns and starts again', () => {
  const lost = playLogged(send(60, { delay: (k) => (k === 25 ? null : 30) }), 1200);
  assert.deepEqual(lost.transitions, ['prime', 'merge', 'expand', 'merge']);
  const expanded = lost.decisions.indexOf('expand');
  assert.equal(runs(lost.decisions.slice(expanded)).slice(0, 2).map(([d]) => d).join(), 'expand,merge');
  const gone = new Set([30, 31, 32, 33, 34, 35, 36, 37]); // 160 ms: longer than the 60 ms of concealment
  const long = playLogged(send(80, { delay: (k) => (gone.has(k) ? null : 30) }), 1600);
  assert.deepEqual(long.transitions.slice(0, 4), ['prime', 'merge', 'expand', 'underrun']);
  // Playback starts again on the next frame, which comes on time; what was stale of the loss is skipped.
  assert.ok(['prime', 'start'].includes(long.transitions[4]) && long.transitions.at(-1) === 'merge', long.transitions);
});

test('a sender silent for seconds restarts the stream; so does a counter started again', () => {
  const quiet = playLogged(send(300, { delay: (k) => (k >= 50 && k < 200 ? null : 30) }), 6000);
  assert.deepEqual(quiet.transitions, ['prime', 'merge', 'expand', 'underrun', 'restart', 'prime', 'merge']);
  const events = send(100);
  for (const e of events.slice(50)) e.seq = (e.seq + 30000) & 0xffff; // the partner's page reloaded
  assert.ok(playLogged(events, 2000).transitions.includes('restart'));
});

test('the operations are the ones the link calls for: accelerate, stretch, skip', () => {
  // A sender whose clock is 1% faster than ours: what piles up is skipped, a few ms at a time, crossfading.
  const fast = playLogged(send(1000, { periodMs: 20 / 1.01, content: rampFrame }), 19500);
  assert.ok(fast.decisions.includes('accelerate'));
  assert.ok(!fast.decisions.includes('stretch'));
  // 1% slower: a few ms are played again now and then.
  const slow = playLogged(send(1000, { periodMs: 20 * 1.01, content: rampFrame }), 20000);
  assert.ok(slow.decisions.includes('stretch'));
  assert.ok(!slow.decisions.includes('accelerate'));
  // A 100 ms stall, and the decoder dropped 5 frames of its burst: with the rest of the burst behind them,
  // they are skipped, not concealed in real time.
  const arrivals = oneByOne(tcpArrivals(600, { legs: 1, delayMs: 20, jitterMs: 0, stall: [10000, 100] }));
  const firstHeld = arrivals.findIndex((t) => t >= 10100);
  const events = arrivals.map((arrivalMs, k) => ({ k, seq: k, arrivalMs, samples: rampFrame(k) }))
    .filter(({ k }) => k < firstHeld + 4 || k >= firstHeld + 9);
  assert.equal(runs(playLogged(events, 11500).decisions).filter(([d]) => d === 'skip').length, 1);
});

test('a DTX gap (frames not sent after a silent one) plays silence and counts no loss, concealment or underrun', () => {
  // Talk (a sine) for 1 s, silence for 0.2 s, then 0.5 s not sent (Opus DTX), then talk again, 10 times over.
  const silent = (k) => k % 85 >= 50 && k % 85 < 60;
  const notSent = (k) => k % 85 >= 60;
  const content = (k) => (silent(k) ? new Float32Array(FRAME) : sineFrame(k));
  const buffer = new Playout({ sampleRate: RATE });
  const targets = [];
  play(buffer, send(850, { delay: (k) => (notSent(k) ? null : 30), content }), 17500, {
    keep: false, onQuantum: (now, b) => { if (b.state === 'playing') targets.push(b.targetMs); },
  });
  const stats = play.stats;
  assert.equal(stats.lost, 0);
  assert.equal(stats.concealed, 0);
  assert.equal(stats.underruns, 0);
  assert.ok(Math.max(...targets) - Math.min(...targets) < 1e-9, `the target moved: ${Math.min(...targets)} to ${Math.max(...targets)}`);
  // The same gaps after audible frames are losses: each is concealed and counted.
  const lossy = new Playout({ sampleRate: RATE });
  play(lossy, send(850, { delay: (k) => (notSent(k) ? null : 30) }), 17500, { keep: false });
  assert.ok(play.stats.lost >= 9 * 25, `lost ${play.stats.lost}`);
  assert.ok(play.stats.concealed > 0 && play.stats.underruns > 0, JSON.stringify(play.stats));
});

test('the first words after a DTX gap play at once, with the delay they had before it', () => {
  const content = (k) => (k >= 50 && k < 60 ? new Float32Array(FRAME) : markerFrame(k));
  const buffer = new Playout({ sampleRate: RATE });
  const delays = [];
  const frames = send(150, { delay: (k) => (k >= 60 && k < 100 ? null : 30), content });
  play(buffer, frames, 3200, {
    keep: false, onQuantum: (now, b) => { const d = b.playoutDelayMs(now + QUANTUM_MS); if (d !== null) delays.push([now, d]); },
  });
  const before = delays.filter(([now]) => now > 500 && now < 1000).map(([, d]) => d);
  const after = delays.filter(([now]) => now > 2000 && now < 2100).map(([, d]) => d);
  assert.ok(after.length > 0, 'audio after the gap');
  assert.ok(Math.abs(Math.max(...after) - Math.max(...before)) < 5, `before ${Math.max(...before)}, after ${Math.max(...after)}`);
  assert.equal(play.stats.lost, 0);
});
