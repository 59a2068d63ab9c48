// Every recorded browser call in tests/js/traces/ replayed through the jitter buffer (trace-replay.js says how),
// its figures printed and held to bounds. The bounds are the figures of the buffer before the estimator/playout
// split on the same traces (`node bench/replay-traces.js --old 84f44bd`), with a margin: 3 ms on the playout
// delay's p50 and 5 ms on its p95, and 20 % + 60 ms (three frames) on concealed and skipped audio, one underrun.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Playout } from '../../static/playout.js';
import { formatFigures, readTraces, replay } from './trace-replay.js';

const TRACES = join(dirname(fileURLToPath(import.meta.url)), 'traces');

/** Per trace, the most each figure may be: ms, but underruns. */
const BOUNDS = {
  'cut-chromium': { playoutP50: 25, playoutP95: 27, concealedMs: 277, skippedMs: 224, underruns: 3 },
  'jitter-chromium': { playoutP50: 62, playoutP95: 82, concealedMs: 253, skippedMs: 473, underruns: 2 },
  'loopback-chromium': { playoutP50: 41, playoutP95: 43, concealedMs: 229, skippedMs: 337, underruns: 3 },
  'loopback-firefox-receiver': { playoutP50: 37, playoutP95: 41, concealedMs: 204, skippedMs: 273, underruns: 2 },
  'stalls-chromium': { playoutP50: 38, playoutP95: 45, concealedMs: 445, skippedMs: 859, underruns: 6 },
};

const traces = readTraces(TRACES);

test('the recorded calls cover a clean link, jitter, stalls, a cut and a Firefox receiver', () => {
  const names = traces.map((trace) => trace.name);
  for (const kind of ['loopback', 'jitter', 'stalls', 'cut', 'firefox']) {
    assert.ok(names.some((name) => name.includes(kind)), `no ${kind} trace in ${names}`);
  }
  assert.deepEqual(Object.keys(BOUNDS).sort(), names.sort(), 'every trace has bounds, and every bound a trace');
});

for (const trace of traces) {
  test(`the recorded call ${trace.name} plays within the bounds of the buffer before`, (t) => {
    const figures = replay(trace, (options) => new Playout(options));
    t.diagnostic(`${trace.name}: ${formatFigures(figures)}`);
    for (const [key, most] of Object.entries(BOUNDS[trace.name] || {})) {
      assert.ok(figures[key] <= most, `${key} ${figures[key].toFixed(1)} over ${most}`);
    }
  });
}
