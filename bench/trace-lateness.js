#!/usr/bin/env node
// Where a recorded call's lateness comes from (tests/js/traces/, or the traces named): for each trace, how late its
// frames reached the playback worklet over the fastest path of the second around them (p50, p90, p99, max), and the
// steps between arrivals in render quanta and in ms. On loopback the network adds under a millisecond (bench/latency.py's
// send_to_receive), so what is left is the pages' own hand-offs: the audio callbacks that render the sender's capture
// worklet and the receiver's playback worklet in bursts (steps of 3 to 4 quanta at 44.1 kHz: 10 ms), and the
// main-thread hops between them (worklet -> encoder -> socket; socket -> decoder -> worklet).
//
//   node bench/trace-lateness.js [TRACE.csv ...]
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { readTrace, readTraces } from '../tests/js/trace-replay.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WINDOW_MS = 1000; // the fastest path: the least transit within this of a frame's arrival

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

/** Lateness (ms) of each frame of a trace's first playback over the least transit within WINDOW_MS of it. */
function lateness(trace) {
  const { sampleRate, frameMs } = trace.meta;
  const rows = trace.rows.filter((row) => row.playback === trace.rows[0].playback);
  const first = rows[0].seq;
  const frames = rows.map((row) => {
    const at = (row.clock * 1000) / sampleRate;
    return { at, transit: at - ((row.seq - first) & 0xffff) * frameMs };
  });
  return frames.map((f) => f.transit - Math.min(...frames.filter((g) => Math.abs(g.at - f.at) <= WINDOW_MS).map((g) => g.transit)));
}

/** How many arrivals came each number of render quanta after the one before (frames in one quantum excluded). */
function steps(trace) {
  const clocks = [...new Set(trace.rows.map((row) => row.clock))];
  const counts = new Map();
  for (let i = 1; i < clocks.length; i++) {
    const quanta = Math.round((clocks[i] - clocks[i - 1]) / trace.meta.quantum);
    counts.set(quanta, (counts.get(quanta) || 0) + 1);
  }
  return [...counts].sort((a, b) => a[0] - b[0]);
}

const args = process.argv.slice(2);
const traces = args.length ? args.map(readTrace) : readTraces(join(ROOT, 'tests', 'js', 'traces'));
for (const trace of traces) {
  const late = lateness(trace).sort((a, b) => a - b);
  const quantumMs = (trace.meta.quantum * 1000) / trace.meta.sampleRate;
  const cells = [50, 90, 99].map((p) => `p${p} ${percentile(late, p).toFixed(1)}`).join(', ');
  console.log(`${trace.name} (${trace.meta.link}, ${trace.meta.sender} -> ${trace.meta.receiver}, ${trace.meta.frameMs} ms `
    + `frames): lateness ms ${cells}, max ${late.at(-1).toFixed(1)}`);
  const shown = steps(trace).filter(([, n]) => n >= 5);
  console.log(`  steps between arrivals: ${shown.map(([q, n]) => `${q} quanta (${(q * quantumMs).toFixed(1)} ms) ×${n}`).join(', ')}`);
}
