#!/usr/bin/env python3
"""Browser latency benchmark: two headless Chromium pages talk through duoduel.py on loopback.

usage: python bench/latency.py [--seconds 20] [--warmup 3] [--period 0.5]

Each page's fake microphone is a click train (a 10 ms, 1 kHz tick every --period s). After --warmup s
of call, for --seconds s, the bench measures per direction and prints one JSON object:

  mouth_to_ear_ms   acoustic: each tick's onset as the sender's capture worklet saw it (the frame's
                    capture time from audio.js + the onset's offset in the frame) -> the same tick's
                    onset in what the receiver's playback worklet outputs, mapped to the time the output
                    device presents it with AudioContext.getOutputTimestamp(). Includes packetizing into
                    20 ms frames, Opus encode, WebSocket send, the server relay, receive, decode, resampling,
                    the jitter buffer, rendering and the output latency Chromium reports. Excludes the
                    input device's latency and the browser's capture processing (echo cancellation etc.)
                    before the audio graph, and any real sound card's latency beyond what Chromium reports.
  to_render_ms      the same, up to when the playback worklet rendered the onset (no output latency).
  estimate_ms       a frame-by-frame sum for comparison: receive time - capture time of every frame (main
                    thread, before decoding; split at the moment audio.js hands the frame to the WebSocket
                    into capture_to_send = filling the 20 ms frame + worklet->main thread + Opus encoder,
                    and send_to_receive = WebSocket, server relay, WebSocket, main thread dispatch;
                    sender_capture_to_main_thread = filling the frame + the worklet's post only) + the jitter buffer's current delay (stats().jitterMs - one
                    frame, i.e. what is buffered ahead of a frame when it arrives) + stats().outputLatencyMs.
  dropouts          (concealed frames + underruns) / frames expected (50/s), from the receiver's jitter
                    buffer over the measured span; an underrun counts as one frame (a lower bound).
  kbit_s            binary frame bytes (16-byte header + payload) received per second; WebSocket and
                    TCP/IP framing excluded.

Both pages run on one machine, so their wall clocks (performance.timeOrigin + performance.now()) agree.
The bench only observes, through the session's public measuring hook (`session.measure.captured`, `.sent`,
`.received`, and `session.partnerOutput`, documented in static/audio.js), and a tap worklet after
`partnerOutput` (loaded from a blob: URL, for which the bench's browser context bypasses the page's CSP); it changes
no audio code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import launch_args, missing_browser, write_click_train  # noqa: E402

LISTENING = re.compile(r"listening on (https?)://[^ ]*:(\d+)/")
FRAME_MS = 20
TARGETS = {"mouth_to_ear_p50_ms": 40, "dropouts": 0.005, "kbit_s": 40}

# Streaming onset detector, the same on both sides. A sample above TRIGGER (after REFRACTORY_S of
# quiet) opens a window; the onset is the first sample in it that reaches half the window's peak, so
# the figure does not depend on the gain (AGC) or on a little codec pre-echo before the tick.
DETECTOR_JS = """
class OnsetDetector {
  constructor(rate) {
    this.trigger = 0.01;
    this.window = Math.round(rate * 0.025);
    this.refractory = Math.round(rate * 0.25);
    this.buf = new Float32Array(this.window);
    this.fill = -1;
    this.start = 0;
    this.last = -Infinity;
    this.onsets = [];
  }
  push(samples, firstIndex) {
    for (let i = 0; i < samples.length; i++) {
      const n = firstIndex + i;
      const v = Math.abs(samples[i]);
      if (this.fill < 0) {
        if (!(v > this.trigger && n - this.last > this.refractory)) continue;
        this.fill = 0;
        this.start = n;
      }
      this.buf[this.fill++] = v;
      if (this.fill === this.window) {
        let max = 0;
        for (let j = 0; j < this.window; j++) if (this.buf[j] > max) max = this.buf[j];
        let k = 0;
        while (this.buf[k] < 0.5 * max) k++;
        this.onsets.push({index: this.start + k, peak: max});
        this.last = this.start + k;
        this.fill = -1;
      }
    }
  }
}
"""

TAP_PROCESSOR_JS = DETECTOR_JS + """
class BenchTapProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.detector = new OnsetDetector(sampleRate);
    this.posted = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.detector.push(channel, currentFrame);
    while (this.posted < this.detector.onsets.length) this.port.postMessage(this.detector.onsets[this.posted++]);
    return true;
  }
}
registerProcessor('bench-tap-processor', BenchTapProcessor);
"""

# Installed in each page after Start: observes what it sends and what it receives and plays.
INSTRUMENT_JS = (
    "async (tapSource) => {"
    + DETECTOR_JS
    + """
  const s = window.duoduel.session;
  const ctx = s.context;
  const wallNow = () => performance.timeOrigin + performance.now();
  const b = window.__bench = {
    rate: ctx.sampleRate, sentOnsets: [], heard: [], sent: [], toMain: [], frames: [], stats: [], codec: s.codec,
  };

  // Sender: onsets in the captured samples, timed by the capture time audio.js gives their frame.
  const detector = new OnsetDetector(ctx.sampleRate);
  let captured = 0;
  s.measure.captured = (samples, captureTime) => {
    const first = captured;
    const before = detector.onsets.length;
    detector.push(samples, first);
    b.toMain.push({capture: captureTime, t: wallNow()});
    captured += samples.length;
    for (const onset of detector.onsets.slice(before)) {
      b.sentOnsets.push({t: captureTime + (onset.index - first) / ctx.sampleRate * 1000, peak: onset.peak});
    }
  };

  // Sender, per frame: when audio.js hands it to the WebSocket, vs its capture time (the encoder's delay).
  s.measure.sent = (frame, captureTime) => b.sent.push({capture: captureTime, t: wallNow()});

  // Receiver, per frame: arrival on the main thread vs the capture time in the header.
  s.measure.received = (buffer) => {
    if (buffer.byteLength >= 16) {
      b.frames.push({t: wallNow(), capture: new DataView(buffer).getFloat64(8, true), bytes: buffer.byteLength});
    }
  };

  // Receiver, acoustic: onsets in what the page plays from its partner.
  const tapUrl = URL.createObjectURL(new Blob([tapSource], {type: 'text/javascript'}));
  await ctx.audioWorklet.addModule(tapUrl);
  const tap = new AudioWorkletNode(ctx, 'bench-tap-processor', {numberOfOutputs: 1, outputChannelCount: [1]});
  tap.port.onmessage = (event) => {
    const now = wallNow();
    const stamp = ctx.getOutputTimestamp();
    const t = event.data.index / ctx.sampleRate;
    b.heard.push({
      t: performance.timeOrigin + stamp.performanceTime + (t - stamp.contextTime) * 1000,
      rendered: now - (ctx.currentTime - t) * 1000,
      peak: event.data.peak,
    });
  };
  s.partnerOutput.connect(tap);
  tap.connect(ctx.destination);  // outputs silence; keeps the tap pulled

  // The jitter buffer's own figures, four times a second (the worklet posts them that often).
  setInterval(() => {
    const st = s.stats();
    b.stats.push({t: wallNow(), jitterMs: st.jitterMs, outputLatencyMs: st.outputLatencyMs,
      concealed: st.concealedFrames, lost: st.lostFrames, dropped: st.droppedFrames, underruns: st.underruns,
      partnerCodec: st.partnerCodec, kbpsOut: st.kbpsOut, raw: st.playback});
  }, 250);
  return {rate: ctx.sampleRate, codec: s.codec, baseLatency: ctx.baseLatency, outputLatency: ctx.outputLatency};
}"""
)


def start_server() -> tuple[subprocess.Popen, int]:
    """Run duoduel.py on a free loopback port; keep draining its log so it never blocks."""
    popen = subprocess.Popen(
        [sys.executable, str(ROOT / "duoduel.py"), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    for line in popen.stdout:
        if match := LISTENING.search(line):
            threading.Thread(target=popen.stdout.read, daemon=True).start()
            return popen, int(match[2])
    raise SystemExit(f"duoduel did not start: exit {popen.wait()}")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


def summary(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values),
            "min": round(min(values), 1) if values else None, "max": round(max(values), 1) if values else None}


def match_ticks(sent: list[dict], heard: list[dict], period_ms: float) -> list[tuple[dict, dict]]:
    """Pair each heard onset with the latest tick sent before it (ticks are period_ms apart); the
    first heard onset of a tick wins (concealment may replay a tick)."""
    pairs, used = [], set()
    times = [tick["t"] for tick in sent]
    for onset in heard:
        candidates = [i for i, t in enumerate(times) if t <= onset["t"] and onset["t"] - t < 0.8 * period_ms]
        if candidates and candidates[-1] not in used:
            used.add(candidates[-1])
            pairs.append((sent[candidates[-1]], onset))
    return pairs


def direction(sender: dict, receiver: dict, start: float, end: float, period_ms: float) -> dict:
    """Figures for sender -> receiver over [start, end) (wall ms)."""
    sent = [tick for tick in sender["sentOnsets"] if start <= tick["t"] < end]
    heard = [onset for onset in receiver["heard"] if start <= onset["t"] < end + 1000]
    pairs = match_ticks(sent, heard, period_ms)
    frames = [f for f in receiver["frames"] if start <= f["t"] < end]
    stats = [st for st in receiver["stats"] if start <= st["t"] < end]
    seconds = (end - start) / 1000
    transit = [f["t"] - f["capture"] for f in frames]
    sent_at = {f["capture"]: f["t"] for f in sender["sent"]}
    encode = [sent_at[f["capture"]] - f["capture"] for f in frames if f["capture"] in sent_at]
    to_main = [m["t"] - m["capture"] for m in sender["toMain"] if start <= m["capture"] < end]
    network = [f["t"] - sent_at[f["capture"]] for f in frames if f["capture"] in sent_at]
    jitter = [st["jitterMs"] for st in stats]
    output = stats[-1]["outputLatencyMs"] if stats else 0
    buffered_ahead = statistics.median(jitter) - FRAME_MS if jitter else 0
    first, last = stats[0], stats[-1]
    concealed = last["concealed"] - first["concealed"]
    underruns = last["underruns"] - first["underruns"]
    span_s = (last["t"] - first["t"]) / 1000
    expected = span_s * 1000 / FRAME_MS
    raw_first, raw_last = first["raw"] or {}, last["raw"] or {}
    delta = lambda key: (raw_last.get(key, 0) or 0) - (raw_first.get(key, 0) or 0)  # noqa: E731
    return {
        "codec": sender["codec"],
        "codec_received": last["partnerCodec"],
        "mouth_to_ear_ms": {**summary([h["t"] - s["t"] for s, h in pairs]), "ticks_sent": len(sent)},
        "to_render_ms": summary([h["rendered"] - s["t"] for s, h in pairs]),
        "estimate_ms": {
            "capture_to_receive": summary(transit),
            "of_which_capture_to_send": summary(encode),
            "of_which_send_to_receive": summary(network),
            "sender_capture_to_main_thread": summary(to_main),
            "jitter_buffer_ahead_median": round(buffered_ahead, 1),
            "output_latency": round(output, 1),
            "sum_p50": round(percentile(transit, 50) + buffered_ahead + output, 1) if transit else None,
            "sum_p95": round(percentile(transit, 95) + buffered_ahead + output, 1) if transit else None,
        },
        "dropouts": round((concealed + underruns) / expected, 4) if expected else None,
        "frames": {
            "expected": round(expected), "received": delta("received"), "concealed": concealed,
            "underruns": underruns, "lost": last["lost"] - first["lost"], "late": delta("late"),
            "dropped": last["dropped"] - first["dropped"], "resyncs": delta("resyncs"),
            "drops": delta("drops"), "inserts": delta("inserts"),
        },
        "kbit_s": round(sum(f["bytes"] for f in frames) * 8 / seconds / 1000, 1),
    }


async def run(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    popen, port = start_server()
    origin = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            wav = write_click_train(Path(folder) / "ticks.wav", period_s=args.period)
            async with async_playwright() as playwright:
                pages, info = [], []
                for name in ("a", "b"):
                    browser = await playwright.chromium.launch(**launch_args(wav))
                    # bypass_csp lets the tap worklet load from a blob: URL (worklet fetches miss page.route).
                    page = await browser.new_page(bypass_csp=True)
                    page.set_default_timeout(20_000)
                    await page.goto(origin + "/")
                    await page.click("#start")
                    await page.wait_for_function("() => window.duoduel.session !== null")
                    info.append(await page.evaluate(INSTRUMENT_JS, TAP_PROCESSOR_JS))
                    pages.append(page)
                for page in pages:
                    await page.wait_for_function(
                        "() => document.getElementById('status').textContent.includes('Connected')")
                start = time.time() * 1000 + args.warmup * 1000
                await asyncio.sleep(args.warmup + args.seconds)
                end = start + args.seconds * 1000
                await asyncio.sleep(1)  # ticks sent just before the end are heard after it
                data = [await page.evaluate("() => window.__bench") for page in pages]
                states = [await page.text_content("#status") for page in pages]
                for page in pages:
                    await page.context.browser.close()
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
    period_ms = args.period * 1000
    result = {
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "sample_rate": info[0]["rate"],
        "context_latency_s": {"base": info[0]["baseLatency"], "output": info[0]["outputLatency"]},
        "status_at_end": states,
        "a->b": direction(data[0], data[1], start, end, period_ms),
        "b->a": direction(data[1], data[0], start, end, period_ms),
        "targets": TARGETS,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="measured call time (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="call time ignored first (default 3)")
    parser.add_argument("--period", type=float, default=0.5, help="seconds between ticks (default 0.5)")
    args = parser.parse_args()
    if reason := missing_browser():
        raise SystemExit(f"latency bench: {reason}")
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
