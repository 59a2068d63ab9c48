#!/usr/bin/env python3
"""What end-to-end encryption costs per frame in each browser engine: Chromium, Firefox and WebKit.

usage: python bench/e2ee_browsers.py [--engines chromium,firefox,webkit] [--frames 2000] [--runs 3]

Each engine loads the page from duoduel.py (on CPU 1; the browsers on CPU 0) and runs the page's own modules
(static/e2ee.js, sframe.js, frame.js) in it, through tests/pages.py's Page layer: --frames Opus-sized frames
(86 bytes: 16 of header, 70 of Opus at 28 kbit/s), one at a time as a page sends one every 20 ms, each sealed by a
FrameSealer and handed on before the next, then each opened by another page's FrameOpener. Browsers coarsen
performance.now() (Firefox and WebKit to 1 ms for a page that is not cross-origin isolated), so times are taken over
batches of 100 frames: per frame, the median and the worst of the batch means. It also gives the bytes of real
sealed frames against today's. Prints one JSON object per engine, then the medians over --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pages import ENGINES, Browsers  # noqa: E402

BATCH = 100

# In the page: the page's own modules, imported as the page imports them (the CSP allows 'self').
MEASURE_JS = """async ([frames, batch]) => {
  const { FrameOpener, FrameSealer, KeyContext } = await import('/e2ee.js');
  const { encodeFrame } = await import('/frame.js');
  const { decodeHeader, encrypt } = await import('/sframe.js');
  const key = crypto.getRandomValues(new Uint8Array(16));
  const [sending, receiving] = await Promise.all([KeyContext.forRoom(key, 'bench'), KeyContext.forRoom(key, 'bench')]);
  const frame = (seq) => encodeFrame({ codec: 1, seq, sampleRate: 48000, captureTime: Date.now(),
    payload: new Uint8Array(70).fill(seq & 0xff) });
  let handOn = null;
  const sealer = new FrameSealer(sending, { onFrame: (sealed) => handOn(sealed) });
  const opener = new FrameOpener(receiving, { onFrame: (source, plain) => handOn(plain) });
  const next = () => new Promise((resolve) => { handOn = resolve; });
  const warm = [];
  for (let i = 0; i < 200; i++) {  // the keys derived, the engine warm
    const sealing = next();
    sealer.seal(frame(i));
    const sealed = await sealing;
    const opening = next();
    opener.open(0, sealed);
    await opening;
  }
  const seal = [];
  const open = [];
  for (let b = 0; b < frames / batch; b++) {
    const plain = Array.from({ length: batch }, (_, i) => frame(200 + b * batch + i));
    const sealed = [];
    let t0 = performance.now();
    for (const f of plain) {
      const sealing = next();
      sealer.seal(f);
      sealed.push(await sealing);
    }
    seal.push((performance.now() - t0) / batch);
    t0 = performance.now();
    for (const s of sealed) {
      const opening = next();
      opener.open(0, s);
      await opening;
    }
    open.push((performance.now() - t0) / batch);
  }
  if (opener.failed || opener.dropped || sealer.dropped) throw new Error('frames failed or were dropped');
  const clear = frame(0).byteLength;
  const keys = await sending.senderKeys(sending.ownKid);
  const size = async (kid, ctr) => (await encrypt(keys, kid, ctr, frame(0))).byteLength;
  return {
    userAgent: navigator.userAgent, seal, open,
    bytes: { clear, room_ctr_below_2_16: await size(sending.ownKid, 65535n),
      room_ctr_below_2_24: await size(sending.ownKid, (1n << 24n) - 1n), call_ctr_below_2_16: await size(1n, 65535n) },
  };
}"""


def start_server() -> tuple[subprocess.Popen, int]:
    """duoduel.py on CPU 1 and an ephemeral port; its port from the line it logs (the rest of its log is drained)."""
    popen = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(ROOT / "duoduel.py"), "--host", "127.0.0.1",
                              "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in popen.stdout:
        if match := re.search(r"listening on http://[^ ]*:(\d+)/", line):
            threading.Thread(target=popen.stdout.read, daemon=True).start()
            return popen, int(match[1])
    raise SystemExit(f"duoduel did not start: exit {popen.wait()}")


def summary(batch_means_ms: list[float]) -> dict:
    micro = sorted(1000 * ms for ms in batch_means_ms)
    return {"p50_us": round(statistics.median(micro), 1), "max_us": round(micro[-1], 1)}


async def measure(engines: list[str], frames: int, origin: str) -> list[dict]:
    from playwright.async_api import async_playwright

    from firefox import PulseAudio
    from webkit import Xvfb

    services: dict[str, object] = {}

    def service(name: str):
        if name not in services:
            services[name] = PulseAudio().start() if name == "pulse_audio" else Xvfb().start()
        return services[name]

    results = []
    try:
        async with async_playwright() as playwright:
            for engine in engines:
                browsers = Browsers(playwright, service, Path(tempfile.mkdtemp(prefix="duoduel-e2ee-bench-")))
                try:
                    page = await browsers.launch("bench", engine, 440.0)
                    await page.goto(origin + "/")
                    data = await page.evaluate(MEASURE_JS, [frames, BATCH], timeout=120)
                finally:
                    await browsers.close()
                both = [s + o for s, o in zip(data["seal"], data["open"])]
                results.append({"engine": engine, "browser": data["userAgent"], "frames": frames,
                                "seal": summary(data["seal"]), "open": summary(data["open"]),
                                "seal_plus_open": summary(both), "bytes": data["bytes"]})
                print(json.dumps(results[-1]), flush=True)
    finally:
        for running in services.values():
            running.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated (default all three)")
    parser.add_argument("--frames", type=int, default=2000, help=f"frames per engine, a multiple of {BATCH}")
    parser.add_argument("--runs", type=int, default=3, help="runs; the medians of their p50s come last")
    args = parser.parse_args()
    engines = [name.strip() for name in args.engines.split(",")]
    if not set(engines) <= set(ENGINES) or args.frames % BATCH:
        raise SystemExit(f"e2ee bench: --engines takes {', '.join(ENGINES)}; --frames a multiple of {BATCH}")
    popen, port = start_server()
    os.sched_setaffinity(0, {0})  # the browsers inherit CPU 0
    try:
        runs = [asyncio.run(measure(engines, args.frames, f"http://127.0.0.1:{port}")) for _ in range(args.runs)]
    finally:
        popen.terminate()
        popen.wait(10)
    medians = {}
    for i, engine in enumerate(engines):
        medians[engine] = {step: round(statistics.median(run[i][step]["p50_us"] for run in runs), 1)
                           for step in ("seal", "open", "seal_plus_open")}
    print(json.dumps({"runs": args.runs, "median_p50_us_per_frame": medians, "bytes": runs[0][0]["bytes"]}))


if __name__ == "__main__":
    main()
