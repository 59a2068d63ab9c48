// Replays recorded arrivals (tests/js/traces/*.csv, made by bench/latency.py --record-arrivals) through a
// jitter buffer on a simulated audio clock, and measures what it plays. Used by tests/js/traces.test.js and
// bench/replay-traces.js.
//
// A trace is what a page's playback worklet was handed in a real call: per frame, the playback it went to
// (a member's playback starts afresh after a resume), its sequence number, the audio clock in samples when
// the worklet took it, and its length. The replay hands each frame over at the first render quantum after its
// clock (the worklet takes messages between quanta, and its clock is the quantum it last rendered), pulls
// one quantum at a time as the worklet does, and stops each playback when the next one starts.
//
// Each frame is filled with numbers that say which sample of the sender's stream it holds, so every output
// sample played as is tells how late it is: the playout delay of a quantum is how much later than over the
// fastest path its first sample is played (the figure the page shows, measured, not asked). The fastest path
// at frame k is the larger of the least transit (arrival - k frames) up to k and from k on: on a steady path
// that is the least of the whole call, and after a step (the sender's capture skipped, and every frame after
// it seems later; the receiver's audio clock stalled, and every frame after it seems earlier) it is the least
// of the frames on the same side of the step.
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';

const SAMPLES_PER_FRAME_CODE = 4096; // a frame's sample i of frame k is coded as k * 4096 + i + 1

/** The traces in a folder, by name (the file name without .csv). */
export function readTraces(folder) {
  return readdirSync(folder).filter((name) => name.endsWith('.csv')).sort()
    .map((name) => readTrace(join(folder, name)));
}

/** One trace: {name, meta (the header's JSON), rows: [{playback, seq, clock, samples}]}. */
export function readTrace(path) {
  const lines = readFileSync(path, 'utf8').split('\n').filter((line) => line.length > 0);
  const meta = JSON.parse(lines[0].replace(/^#\s*/, ''));
  const columns = lines[1].split(',');
  const rows = lines.slice(2).map((line) => {
    const values = line.split(',').map(Number);
    return Object.fromEntries(columns.map((column, i) => [column, values[i]]));
  });
  return { name: basename(path, '.csv'), meta, rows };
}

/** Signed distance a - b between two 16-bit sequence numbers. */
function seqDistance(a, b) {
  const d = (a - b) & 0xffff;
  return d >= 0x8000 ? d - 0x10000 : d;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

/**
 * Replay a trace through buffers made by makeBuffer({sampleRate, frameMs, quantum}), one per playback. A
 * buffer has push(seq, samples, arrivalMs), pull(out), stats() ({underruns, lost, late, droppedMs,
 * insertedMs}) and concealedSamples.
 * @returns {{seconds, playoutP50, playoutP95, concealedMs, skippedMs, underruns, lost, insertedMs, silentMs}}
 *   playout delays in ms over every quantum that starts with the sender's audio; concealedMs: concealment
 *   played; skippedMs: audio that came but was not played (skipped, or after its turn); silentMs: output that
 *   was silence while the sender's audio came (before the first frame of each playback excluded)
 */
export function replay(trace, makeBuffer) {
  const { sampleRate, quantum, frameMs } = trace.meta;
  const msPerSample = 1000 / sampleRate;
  const playbacks = [...new Set(trace.rows.map((row) => row.playback))];
  const delays = [];
  const totals = { concealedMs: 0, skippedMs: 0, underruns: 0, lost: 0, late: 0, recovered: 0, insertedMs: 0, silentMs: 0 };
  const out = new Float32Array(quantum);
  let firstClock = Infinity;
  let lastClock = -Infinity;
  playbacks.forEach((playback, index) => {
    const rows = trace.rows.filter((row) => row.playback === playback);
    const next = trace.rows.find((row) => row.playback === playbacks[index + 1]);
    const end = next ? next.clock : rows.at(-1).clock;
    // Frame k (counted from the playback's first sequence number) was sent at k frames.
    const firstSeq = rows[0].seq;
    const frames = rows.map((row) => ({ ...row, k: seqDistance(row.seq, firstSeq) }));
    const fastest = fastestPath(frames, msPerSample, frameMs);
    const buffer = makeBuffer({ sampleRate, frameMs, quantum });
    let pushed = 0;
    const start = Math.floor(rows[0].clock / quantum) * quantum;
    firstClock = Math.min(firstClock, start);
    lastClock = Math.max(lastClock, end);
    for (let clock = start; clock < end; clock += quantum) {
      for (; pushed < frames.length && frames[pushed].clock < clock; pushed++) {
        const f = frames[pushed];
        buffer.push(f.seq, codedFrame(f.k, f.samples), f.clock * msPerSample, f.recovered === 1);
      }
      buffer.pull(out);
      const v = out[0];
      if (Number.isInteger(v) && v >= 1 && out[1] === v + 1) {
        const k = Math.floor((v - 1) / SAMPLES_PER_FRAME_CODE);
        const i = (v - 1) % SAMPLES_PER_FRAME_CODE;
        delays.push(clock * msPerSample - (k * frameMs + i * msPerSample) - fastest.get(k));
      }
      if (pushed > 0) for (let j = 0; j < quantum; j++) if (out[j] === 0) totals.silentMs += msPerSample;
    }
    const stats = buffer.stats();
    totals.concealedMs += buffer.concealedSamples * msPerSample;
    totals.skippedMs += stats.droppedMs + stats.late * frameMs;
    totals.underruns += stats.underruns;
    totals.lost += stats.lost;
    totals.late += stats.late;
    totals.recovered += stats.recovered ?? 0;
    totals.insertedMs += stats.insertedMs;
  });
  delays.sort((a, b) => a - b);
  return {
    seconds: (lastClock - firstClock) * msPerSample / 1000,
    playoutP50: percentile(delays, 50),
    playoutP95: percentile(delays, 95),
    ...totals,
  };
}

/**
 * The trace as if each frame's datagram had crossed a path that loses some (netpath.py's loss model: random, or
 * Gilbert-Elliott bursts), the sender packing `copies` earlier frames' payloads in each datagram
 * (static/redundancy.js): a lost frame is gone, unless a datagram within `copies` behind it arrives, whose copy
 * of it is handed over just before that datagram's own frame (at its clock, flagged `recovered`), once. The
 * rows of a trace are the frames' datagrams in arrival order; a frame with no row (the sender never sent it)
 * has no datagram to lose or copy.
 * @param {object} loss loss (%), burstEnter and burstExit (% per datagram; burstEnter 0: no bursts), seed
 * @returns {{trace, lost: number}} the new trace and how many datagrams the path lost
 */
export function withLoss(trace, { loss = 0, burstEnter = 0, burstExit = 30, seed = 1, copies = 0 }) {
  const random = mulberry32(seed);
  let inBurst = false;
  let lostDatagrams = 0;
  const rows = [];
  const gone = new Map(); // `${playback},${seq}` -> the frame's row, while a copy may still bring it back
  for (const row of trace.rows) {
    if (burstEnter > 0 && random() * 100 < (inBurst ? burstExit : burstEnter)) inBurst = !inBurst;
    if (inBurst || random() * 100 < loss) {
      lostDatagrams++;
      gone.set(`${row.playback},${row.seq}`, row);
      continue;
    }
    for (let distance = copies; distance >= 1; distance--) {
      const key = `${row.playback},${(row.seq - distance) & 0xffff}`;
      const lost = gone.get(key);
      if (!lost) continue;
      gone.delete(key);
      rows.push({ ...lost, clock: row.clock, recovered: 1 });
    }
    rows.push(row);
  }
  return { trace: { ...trace, name: trace.name, rows }, lost: lostDatagrams };
}

/** A small seeded generator (mulberry32): the same losses on every run. */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The fastest path at each frame k (see the header), as a Map k -> ms. */
function fastestPath(frames, msPerSample, frameMs) {
  const transit = new Map();
  for (const f of frames) transit.set(f.k, Math.min(transit.get(f.k) ?? Infinity, f.clock * msPerSample - f.k * frameMs));
  const ks = [...transit.keys()].sort((a, b) => a - b);
  const suffix = new Map();
  let least = Infinity;
  for (let j = ks.length - 1; j >= 0; j--) suffix.set(ks[j], (least = Math.min(least, transit.get(ks[j]))));
  const fastest = new Map();
  least = Infinity;
  for (const k of ks) fastest.set(k, Math.max((least = Math.min(least, transit.get(k))), suffix.get(k)));
  return fastest;
}

/** Frame k of a playback, `length` samples, each coded with its place in the sender's stream. */
function codedFrame(k, length) {
  const frame = new Float32Array(length);
  for (let i = 0; i < length; i++) frame[i] = k * SAMPLES_PER_FRAME_CODE + i + 1;
  return frame;
}

/** The figures as one line of text, for logs and the bench. */
export function formatFigures(f) {
  const ms = (value) => (value === null ? '–' : value.toFixed(1));
  return `playout p50 ${ms(f.playoutP50)} ms, p95 ${ms(f.playoutP95)} ms; concealed ${ms(f.concealedMs)} ms, `
    + `skipped ${ms(f.skippedMs)} ms, silent ${ms(f.silentMs)} ms, inserted ${ms(f.insertedMs)} ms; `
    + `underruns ${f.underruns}, lost ${f.lost}`;
}
