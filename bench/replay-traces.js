#!/usr/bin/env node
// Replays the recorded browser calls of tests/js/traces/ (or the traces named) through two builds of the jitter
// buffer, and prints their figures side by side: the working tree's static/playout.js against the one at a git
// ref (default main; at a ref from before the split, its static/jitter-buffer.js).
//
//   node bench/replay-traces.js [--old REF] [TRACE.csv ...]
//
// Per trace: the playout delay (how much later than over the trace's fastest path each quantum is played, p50 and
// p95), the concealment played, the audio skipped (dropped, or after its turn), the silence played while the
// partner's audio came, and the underruns. tests/js/trace-replay.js says how the replay runs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { Playout } from '../static/playout.js';
import { readTrace, readTraces, replay } from '../tests/js/trace-replay.js';

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

async function main() {
  const args = process.argv.slice(2);
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
