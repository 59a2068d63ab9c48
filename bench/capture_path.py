#!/usr/bin/env python3
"""Where a captured sample's time goes in a Chromium page: each tick of the fake microphone's click train, timed at
every step from the microphone to the wire.

usage: python bench/capture_path.py [--seconds 10] [--period 0.5]

One Chromium page (its fake microphone plays the click train of bench/latency.py) presses Start and waits in the
lobby, capturing and encoding as in a call. For each tick, on the page's main thread, against the moment the tick's
chunk of the microphone's track arrives there (a MediaStreamTrackProcessor on a clone of the page's track: the
earliest any page code can have the sample; 0 ms by definition), the bench gives the medians of:

  track_timestamp       the chunk's AudioData timestamp (Chromium: performance.now()'s timebase): how long before
                        its arrival the track stamped it
  page_captured         the page's capture gave the frame holding the tick to the encoder (session.measure.captured)
  page_sent             the encoded frame was handed to the link (session.measure.sent)
  graph_interactive     a capture worklet in an AudioContext({latencyHint: 'interactive'}) fed by the track (a
                        MediaStreamAudioSourceNode: Web Audio's input path, the page's capture before
                        MediaStreamTrackProcessor) posted the 10 ms frame holding the tick
  graph_hint_0          the same in an AudioContext({latencyHint: 0}) (128-sample callbacks)

and each context's baseLatency and outputLatency. It prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import missing_browser, write_click_train  # noqa: E402
from pages import ChromiumPage  # noqa: E402

from bench.latency import KEEP_MICROPHONE_JS, start_server  # noqa: E402

# Every path's tick: the first sample above THRESHOLD after a quiet REFRACTORY_MS, at the main thread's arrival of
# the chunk or frame holding it.
MEASURE_JS = """async ([seconds]) => {
  const THRESHOLD = 0.05, REFRACTORY_MS = 250;
  const s = window.duoduel.session;
  const now = () => performance.now();
  const loud = (samples) => samples.some((v) => Math.abs(v) > THRESHOLD);
  const ticks = {track: [], track_timestamp: [], page_captured: [], page_sent: [], graph_interactive: [], graph_hint_0: []};
  const last = {};
  const mark = (path, t) => {
    if (t - (last[path] ?? -Infinity) < REFRACTORY_MS) return false;
    last[path] = t;
    ticks[path].push(t);
    return true;
  };
  const stream = window.__benchMicrophone;
  const contexts = {};
  for (const [path, latencyHint] of [['graph_interactive', 'interactive'], ['graph_hint_0', 0]]) {
    const ctx = new AudioContext({latencyHint});
    await ctx.audioWorklet.addModule('/capture-processor.js');
    const node = new AudioWorkletNode(ctx, 'capture-processor', {numberOfInputs: 1, numberOfOutputs: 1,
      outputChannelCount: [1], channelCount: 1, channelCountMode: 'explicit', processorOptions: {frameMs: 10}});
    node.port.onmessage = (event) => {
      const data = event.data;
      if (data && data.type === 'frame') {
        if (loud(data.samples)) mark(path, now());
        node.port.postMessage({type: 'recycle', buffer: data.samples.buffer}, [data.samples.buffer]);
      }
    };
    ctx.createMediaStreamSource(stream).connect(node);
    node.connect(ctx.destination);
    await ctx.resume();
    contexts[path] = ctx;
  }
  // The frame holding a tick, by its capture time: captured when loud, sent when its capture time comes back.
  const loudFrames = new Set();
  s.measure.captured = (samples, captureTime) => {
    if (loud(samples) && mark('page_captured', now())) loudFrames.add(captureTime);
  };
  s.measure.sent = (frame, captureTime) => {
    if (loudFrames.delete(captureTime)) ticks.page_sent.push(now());
  };
  const reader = new MediaStreamTrackProcessor({track: stream.getAudioTracks()[0].clone()}).readable.getReader();
  const chunk = new Float32Array(48000);
  const end = now() + seconds * 1000;
  while (now() < end) {
    const {value} = await reader.read();
    const arrival = now();
    const samples = chunk.subarray(0, value.numberOfFrames);
    value.copyTo(samples, {planeIndex: 0, format: 'f32-planar'});
    if (loud(samples) && mark('track', arrival)) ticks.track_timestamp.push(value.timestamp / 1000);
    value.close();
  }
  reader.cancel();
  const latency = {};
  for (const [path, ctx] of Object.entries(contexts)) {
    latency[path] = {baseLatencyMs: ctx.baseLatency * 1000, outputLatencyMs: ctx.outputLatency * 1000};
    ctx.close();
  }
  return {ticks, latency, capturePath: s.stats().capturePath, frameMs: s.stats().frameMs};
}"""


def after_track(track: list[float], times: list[float], period_ms: float) -> list[float]:
    """For each tick on the track, how long after it the same tick came by another path (within half a period)."""
    out = []
    for t in track:
        later = [u - t for u in times if -period_ms / 4 < u - t < period_ms / 2]
        if later:
            out.append(later[0])
    return out


async def measure(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    popen, port = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wav = write_click_train(Path(tmp) / "clicks.wav", period_s=args.period)
            async with async_playwright() as playwright:
                page = await ChromiumPage.launch(playwright, "a", wav)
                try:
                    await page.goto(f"http://localhost:{port}/")
                    await page.evaluate(KEEP_MICROPHONE_JS)
                    await page.click("#start")
                    await page.wait_for("() => window.duoduel.session !== null", what="the session")
                    await asyncio.sleep(2)  # past the start
                    data = await page.evaluate(MEASURE_JS, [args.seconds], timeout=args.seconds + 30)
                finally:
                    await page.close()
    finally:
        popen.terminate()
        popen.wait(10)
    ticks = data["ticks"]
    period_ms = args.period * 1000
    steps = {"track_timestamp": [ts - t for t, ts in zip(ticks["track"], ticks["track_timestamp"])]}
    for path in ("page_captured", "page_sent", "graph_interactive", "graph_hint_0"):
        steps[path] = after_track(ticks["track"], ticks[path], period_ms)
    return {
        "ticks": len(ticks["track"]),
        "page_capture_path": data["capturePath"],
        "frame_ms": data["frameMs"],
        "ms_after_the_track_chunk_p50": {k: round(statistics.median(v), 1) if v else None for k, v in steps.items()},
        "ms_after_the_track_chunk_min_max": {k: [round(min(v), 1), round(max(v), 1)] if v else None for k, v in steps.items()},
        "context_latency_ms": {k: {name: round(ms, 1) for name, ms in v.items()} for k, v in data["latency"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="time measured (default 10)")
    parser.add_argument("--period", type=float, default=0.5, help="seconds between ticks (default 0.5)")
    args = parser.parse_args()
    if reason := missing_browser():
        raise SystemExit(f"capture path bench: {reason}")
    print(json.dumps(asyncio.run(measure(args)), indent=2))


if __name__ == "__main__":
    main()
