// Every recorded browser call in tests/js/traces/ replayed through the jitter buffer (trace-replay.js says how),
// its figures printed and held to bounds. The bounds are the figures of the buffer before the estimator/playout
// split on the same traces (`node bench/replay-traces.js --old 84f44bd`), with a margin: 3 ms on the playout
// delay's p50 and 5 ms on its p95, and 20 % + 60 ms (three frames) on concealed and skipped audio, one underrun.
// path-chromium (10 ms frames, over WebTransport across bench/netpath.py's 50 ms round trip) came later: its
// bounds are the figures of the buffer at 962cbe3 (`--old 962cbe3`), with the same margins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Playout } from '../../static/playout.js';
import { formatFigures, readTraces, replay, withLoss } from './trace-replay.js';

const TRACES = join(dirname(fileURLToPath(import.meta.url)), 'traces');

/** Per trace, the most each figure may be: ms, but underruns. */
const BOUNDS = {
  'cut-chromium': { playoutP50: 25, playoutP95: 27, concealedMs: 277, skippedMs: 224, underruns: 3 },
  'jitter-chromium': { playoutP50: 62, playoutP95: 82, concealedMs: 253, skippedMs: 473, underruns: 2 },
  'loopback-chromium': { playoutP50: 41, playoutP95: 43, concealedMs: 229, skippedMs: 337, underruns: 3 },
  'loopback-firefox-receiver': { playoutP50: 37, playoutP95: 41, concealedMs: 204, skippedMs: 273, underruns: 2 },
  'path-chromium': { playoutP50: 41, playoutP95: 47, concealedMs: 192, skippedMs: 320, underruns: 1 },
  'stalls-chromium': { playoutP50: 38, playoutP95: 45, concealedMs: 445, skippedMs: 859, underruns: 6 },
};

const traces = readTraces(TRACES);

test('the recorded calls cover a clean link, jitter, stalls, a cut, a Firefox receiver and a packet-level path', () => {
  const names = traces.map((trace) => trace.name);
  for (const kind of ['loopback', 'jitter', 'stalls', 'cut', 'firefox', 'path']) {
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

// Loss: the clean recorded calls with their datagrams dropped as bench/netpath.py drops packets, 2 % at random
// and 2 % in Gilbert-Elliott bursts (entered with 0.61 % a datagram, left with 30 %: 3.3 datagrams on average),
// seeded, without redundancy and with one copy per datagram (static/redundancy.js).
const LOSSES = { 'random 2 %': { loss: 2, seed: 3 }, 'bursts 2 %': { burstEnter: 0.61, burstExit: 30, seed: 3 } };

for (const name of ['loopback-chromium', 'jitter-chromium', 'path-chromium']) {
  const clean = traces.find((trace) => trace.name === name);
  for (const [label, model] of Object.entries(LOSSES)) {
    test(`test_trace_${name}_with_${label.replace(/\W+/g, '_')}_loss_copies_recover_what_was_lost`, (t) => {
      const bare = withLoss(clean, model);
      const red = withLoss(clean, { ...model, copies: 1 });
      assert.equal(bare.lost, red.lost, 'the same datagrams lost');
      const without = replay(bare.trace, (options) => new Playout(options));
      const withCopies = replay(red.trace, (options) => new Playout(options));
      const base = replay(clean, (options) => new Playout(options));
      t.diagnostic(`${name}, ${label}: ${bare.lost} datagrams lost`);
      t.diagnostic(`  clean:        ${formatFigures(base)}`);
      t.diagnostic(`  no copies:    ${formatFigures(without)}, late ${without.late}`);
      t.diagnostic(`  one copy:     ${formatFigures(withCopies)}, late ${withCopies.late}, recovered ${withCopies.recovered}`);
      // Without copies every lost datagram is a frame never played: lost, or (when a later one showed the
      // stream went on only after the call's end) not counted at all; the frames that came are as in the
      // clean call.
      assert.ok(without.lost >= bare.lost - 2 && without.lost <= bare.lost + base.lost, `${without.lost} lost`);
      assert.equal(without.recovered, 0);
      // With them, a recovered frame is neither lost nor late; what is lost is what no copy brought back (give
      // or take two frames: the call's own late and lost frames move a little with the buffer's timing).
      const recoverable = red.trace.rows.filter((row) => row.recovered === 1).length;
      const near = (value, expected, what) => assert.ok(Math.abs(value - expected) <= 2, `${what}: ${value}, not ${expected}`);
      near(withCopies.recovered + withCopies.late - base.late, recoverable, 'copies in time or late');
      near(withCopies.lost, bare.lost - recoverable + base.lost, 'lost');
      // In bursts one copy brings back only a burst's last frame, and it comes a frame late: with a peak that
      // decays (the estimator forgets a late copy within seconds), it is often late again, so bursts get no more
      // concealment, not less (docs/performance.md, Loss over WebTransport).
      if (label.startsWith('bursts')) assert.ok(withCopies.concealedMs <= without.concealedMs, 'no more concealment');
      if (label.startsWith('random')) {
        assert.ok(withCopies.concealedMs < without.concealedMs, 'less concealment');
        assert.ok(withCopies.recovered >= 0.6 * bare.lost, `${withCopies.recovered} of ${bare.lost} recovered`);
        assert.ok(withCopies.concealedMs - base.concealedMs < 0.5 * (without.concealedMs - base.concealedMs),
          'the loss\'s concealment more than halved');
      }
      assert.ok(withCopies.playoutP50 - base.playoutP50 < clean.meta.frameMs,
        'waiting for copies costs less than a frame at the median');
    });
  }
}
