#!/usr/bin/env node
// Replays the recorded browser calls of tests/js/traces/ (or the traces named) through two builds of the jitter
// buffer, and prints their figures side by side: the working tree's static/playout.js against the one at a git
// ref (default main; at a ref from before the split, its static/jitter-buffer.js).
//
//   node bench/replay-traces.js [--old REF] [TRACE.csv ...]
//   node bench/replay-traces.js --loss [TRACE.csv ...]
//
// Per trace: the playout delay (how much later than over the trace's fastest path each quantum is played, p50 and
// p95), the concealment played, the audio skipped (dropped, or after its turn), the silence played while the
// partner's audio came, and the underruns. tests/js/trace-replay.js says how the replay runs.
//
// --loss replays the working tree's buffer only, on the clean traces (default: loopback-chromium, jitter-chromium,
// loopback-firefox-receiver and path-chromium) with their datagrams dropped as bench/netpath.py would (random 2 %
// and 5 %, and 2 % in Gilbert-Elliott bursts of 3.3 datagrams on average), each with 0, 1 or 2 copies per datagram
// (static/redundancy.js), the copies waited for or not (Playout's waitForCopies): the medians over five seeds of
// the playout delay's p50 and p95, the concealment played, and the frames lost, late and recovered.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { Playout } from '../static/playout.js';
import { readTrace, readTraces, replay, withLoss } from '../tests/js/trace-replay.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const COLUMNS = [
  ['playout p50', 'playoutP50', 1], ['p95', 'playoutP95', 1], ['concealed', 'concealedMs', 0],
  ['skipped', 'skippedMs', 0], ['silent', 'silentMs', 0], ['underruns', 'underruns', 0],
];

/** A factory of the jitter buffer at a git ref, exported with the rest of its static/ into a temporary folder. */
async function bufferAt(ref, folder) {
  const archive = execFileSync('git', ['-C', ROOT, 'archive', ref, 'static'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', folder], { input: archive });
  const playout = join(folder, 'static', 'playout.js');
  if (existsSync(playout)) {
    const module = await import(pathToFileURL(playout));
    return (options) => new module.Playout(options);
  }
  const module = await import(pathToFileURL(join(folder, 'static', 'jitter-buffer.js')));
  return (options) => new module.JitterBuffer(options);
}

function cell(value, digits) {
  return value === null ? '–' : value.toFixed(digits);
}

const LOSS_TRACES = ['loopback-chromium', 'jitter-chromium', 'loopback-firefox-receiver', 'path-chromium'];
const LOSSES = { 'random 2 %': { loss: 2 }, 'bursts 2 %': { burstEnter: 0.61, burstExit: 30 }, 'random 5 %': { loss: 5 } };
const WAYS = [['none', 0, true], ['1 copy, waited for', 1, true], ['1 copy, not waited for', 1, false],
  ['2 copies, waited for', 2, true], ['2 copies, not waited for', 2, false]];

function lossTable(traces) {
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log('Medians over seeds 1 to 5. Milliseconds, but frames and datagrams.');
  console.log('trace | loss | copies | playout p50 | p95 | concealed | datagrams lost | frames lost | late | recovered');
  for (const trace of traces) {
    for (const [label, model] of Object.entries(LOSSES)) {
      for (const [way, copies, waitForCopies] of WAYS) {
        const runs = [1, 2, 3, 4, 5].map((seed) => {
          const lossy = withLoss(trace, { ...model, seed, copies });
          return { ...replay(lossy.trace, (options) => new Playout({ ...options, waitForCopies })), datagrams: lossy.lost };
        });
        const cells = [['playoutP50', 1], ['playoutP95', 1], ['concealedMs', 0], ['datagrams', 0], ['lost', 0],
          ['late', 0], ['recovered', 0]].map(([key, digits]) => cell(median(runs.map((run) => run[key])), digits));
        console.log([trace.name, label, way, ...cells].join(' | '));
      }
    }
  }
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--loss') {
    const named = args.slice(1);
    const folder = join(ROOT, 'tests', 'js', 'traces');
    lossTable(named.length ? named.map(readTrace) : LOSS_TRACES.map((name) => readTrace(join(folder, `${name}.csv`))));
    return;
  }
  let ref = 'main';
  const at = args.indexOf('--old');
  if (at >= 0) [, ref] = args.splice(at, 2);
  const traces = args.length ? args.map(readTrace) : readTraces(join(ROOT, 'tests', 'js', 'traces'));
  const folder = mkdtempSync(join(tmpdir(), 'duoduel-replay-'));
  try {
    const old = await bufferAt(ref, folder);
    const commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', ref]).toString().trim();
    console.log(`old: ${commit === ref ? ref : `${ref} (${commit})`}; new: the working tree. `
      + 'Milliseconds, but underruns. Each cell: old → new.');
    console.log(['trace', 'seconds', ...COLUMNS.map(([name]) => name)].join(' | '));
    for (const trace of traces) {
      const before = replay(trace, old);
      const after = replay(trace, (options) => new Playout(options));
      const cells = COLUMNS.map(([, key, digits]) => `${cell(before[key], digits)} → ${cell(after[key], digits)}`);
      console.log([trace.name, after.seconds.toFixed(1), ...cells].join(' | '));
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

await main();
