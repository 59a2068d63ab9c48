#!/usr/bin/env python3
"""Browser latency benchmark: two headless pages (Chromium, Firefox or one of each) talk through duoduel.py.

usage: python bench/latency.py [--browsers chromium,firefox] [--seconds 20] [--warmup 3] [--period 0.5] [--runs 1]

--browsers names the engines of page a and page b (default chromium,chromium). Each page's microphone
is a click train (a 10 ms, 1 kHz tick every --period s): Chromium's fake capture device plays it from a
WAV; in Firefox a preload script replaces getUserMedia with a looping AudioBuffer of the same train
(Firefox's own fake device only plays a steady sine). After --warmup s of call, for --seconds s, the bench
measures per direction and prints one JSON object (with --runs N: every run, then the medians):

  to_output_node_ms acoustic: each tick's onset as the sender's capture worklet saw it (the frame's
                    capture time from the page's capture clock + the onset's offset in the frame) -> the
                    same tick's onset in what the receiver plays from its partner (session.partnerOutput),
                    at the moment the receiver's graph renders it. Includes packetizing into 20 ms frames,
                    Opus encode, WebSocket send, the server relay, receive, decode, resampling, the jitter
                    buffer and rendering. Excludes the input device's latency and the browser's capture
                    processing before the audio graph (Chromium's echo canceller runs on its fake device;
                    Firefox's replaced getUserMedia has none).
  mouth_to_ear_ms   to_output_node_ms + the output latency the receiving browser reports (Chromium:
                    outputLatency + baseLatency). Firefox's cannot be read without risking the freeze of
                    issue 11, so for a Firefox receiver it is null; output_latency_pulse_ms then gives what
                    PulseAudio reports for the browsers' playback streams (buffer + sink latency), to add.
  page_estimate_ms  what the receiving page itself shows as "≈ mouth-to-ear", over the measured span.
  estimate_ms       a frame-by-frame breakdown: receive time - capture time of every frame (main thread,
                    before decoding), split at the moment the page hands the frame to the WebSocket into
                    capture_to_send (filling the 20 ms frame + worklet->main thread + Opus encoder) and
                    send_to_receive (WebSocket, server relay, WebSocket, main thread dispatch).
  dropouts          (concealed frames + underruns) / frames expected (50/s), from the receiver's jitter
                    buffer over the measured span; an underrun counts as one frame (a lower bound).
  kbit_s            binary frame bytes (16-byte header + payload) received per second; WebSocket and
                    TCP/IP framing excluded.

Both pages run on one machine, so their wall clocks (performance.timeOrigin + performance.now()) agree.
The bench only observes, through the session's public measuring hook (`session.measure.captured`, `.sent`,
`.received`, and `session.partnerOutput`, documented in static/audio.js). Its tap after `partnerOutput` is
a second instance of the page's own capture worklet (its frames carry their context time), so nothing is
loaded past the page's Content-Security-Policy, in either engine. It changes no audio code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from browser import missing_browser, write_click_train  # noqa: E402
from firefox import PulseAudio, missing_firefox  # noqa: E402
from pages import ChromiumPage, FirefoxPage  # noqa: E402

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

# Firefox's microphone for the bench: the click train of tests/browser.py's write_click_train, looped
# from an AudioBuffer in a context of its own, in place of getUserMedia (run before the page's scripts).
CLICK_MICROPHONE_JS = """() => {
  const PERIOD_S = %(period)s, HZ = 1000, TICK_S = 0.01, AMPLITUDE = 0.8;
  navigator.mediaDevices.getUserMedia = async () => {
    const ctx = new AudioContext();
    const rate = ctx.sampleRate;
    const buffer = ctx.createBuffer(1, Math.round(PERIOD_S * rate), rate);
    const data = buffer.getChannelData(0);
    const tick = Math.round(TICK_S * rate);
    for (let i = 0; i < tick; i++) {
      const window = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / tick);
      data[i] = AMPLITUDE * window * Math.sin(2 * Math.PI * HZ * i / rate);
    }
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.loop = true;
    const destination = ctx.createMediaStreamDestination();
    source.connect(destination);
    source.start();
    await ctx.resume();
    return destination.stream;
  };
}"""

# Installed in each page after Start: observes what it sends and what it receives and plays.
INSTRUMENT_JS = (
    "async () => {"
    + DETECTOR_JS
    + """
  const s = window.duoduel.session;
  const ctx = s.context;
  const wallNow = () => performance.timeOrigin + performance.now();
  const b = window.__bench = {
    rate: ctx.sampleRate, sentOnsets: [], heard: [], tapFrames: [], sent: [], toMain: [], frames: [], stats: [],
    codec: s.codec,
  };

  // Sender: onsets in the captured samples, timed by the capture time the page gives their frame.
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

  // Sender, per frame: when the page hands it to the WebSocket, vs its capture time (the encoder's delay).
  s.measure.sent = (frame, captureTime) => b.sent.push({capture: captureTime, t: wallNow()});

  // Receiver, per frame: arrival on the main thread vs the capture time in the header.
  s.measure.received = (buffer) => {
    if (buffer.byteLength >= 16) {
      b.frames.push({t: wallNow(), capture: new DataView(buffer).getFloat64(8, true), bytes: buffer.byteLength});
    }
  };

  // Receiver, acoustic: onsets in what the page plays from its partner. The tap is the page's own capture
  // worklet: 20 ms frames with the context time of their first sample. Each frame's arrival on the main
  // thread bounds when it was rendered; the smallest (arrival - context time) maps context time to wall time.
  const tapDetector = new OnsetDetector(ctx.sampleRate);
  const tap = new AudioWorkletNode(ctx, 'capture-processor', {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], channelCount: 1, channelCountMode: 'explicit',
  });
  let tapped = 0;
  tap.port.onmessage = (event) => {
    const data = event.data;
    if (!data || data.type !== 'frame') return;
    const arrival = wallNow();
    const samples = data.samples;
    const before = tapDetector.onsets.length;
    tapDetector.push(samples, tapped);
    for (const onset of tapDetector.onsets.slice(before)) {
      b.heard.push({time: data.time + (onset.index - tapped) / ctx.sampleRate, peak: onset.peak});
    }
    tapped += samples.length;
    b.tapFrames.push([data.time + samples.length / ctx.sampleRate, arrival]);
    tap.port.postMessage({type: 'recycle', buffer: samples.buffer}, [samples.buffer]);
  };
  s.partnerOutput.connect(tap);
  tap.connect(ctx.destination);  // outputs silence; keeps the tap pulled

  // The jitter buffer's figures and the page's own estimate, four times a second.
  const estimate = /mouth-to-ear (\\d+) ms/;
  setInterval(() => {
    const st = s.stats();
    const shown = estimate.exec(document.getElementById('stats').textContent);
    b.stats.push({t: wallNow(), jitterMs: st.jitterMs, outputLatencyMs: st.outputLatencyMs,
      concealed: st.concealedFrames, lost: st.lostFrames, dropped: st.droppedFrames, underruns: st.underruns,
      partnerCodec: st.partnerCodec, kbpsOut: st.kbpsOut, raw: st.playback, shown: shown ? Number(shown[1]) : null,
      encoderDrops: st.encoderDrops, decoderDrops: st.decoderDrops});
  }, 250);
  return {rate: ctx.sampleRate, codec: s.codec};
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


def gaps(capture_times: list[float]) -> int:
    """Frames missing from a sequence of 20 ms frames, judged by their capture times."""
    ordered = sorted(capture_times)
    return sum(max(0, round((b - a) / FRAME_MS) - 1) for a, b in zip(ordered, ordered[1:]))


def first_change(stats: list[dict], counter) -> float | None:
    """Seconds from the receiver's first playing sample to the first sample where counter(st) > 0."""
    playing = [st for st in stats if st["partnerCodec"]]
    for st in playing:
        if counter(st) > 0:
            return round((st["t"] - playing[0]["t"]) / 1000, 2)
    return None


def map_heard(receiver: dict, output_latency_ms: float | None) -> list[dict]:
    """Wall-clock times of the receiver's heard onsets: rendered (at the output node) and, where the
    output latency is known, t (at the ear). Context time maps to wall time by the smallest
    (main-thread arrival - context time) of the tap's frames within 5 s, as the page's capture clock does."""
    frames = receiver["tapFrames"]
    heard = []
    for onset in receiver["heard"]:
        near = [arrival - end * 1000 for end, arrival in frames if abs(end - onset["time"]) < 5]
        if not near:
            continue
        rendered = onset["time"] * 1000 + min(near)
        heard.append({"rendered": rendered, "peak": onset["peak"],
                      "t": rendered + (output_latency_ms if output_latency_ms is not None else 0)})
    return heard


def direction(sender: dict, receiver: dict, start: float, end: float, period_ms: float) -> dict:
    """Figures for sender -> receiver over [start, end) (wall ms)."""
    stats = [st for st in receiver["stats"] if start <= st["t"] < end]
    output = statistics.median([st["outputLatencyMs"] for st in stats]) if stats and stats[-1]["outputLatencyMs"] is not None else None
    sent = [tick for tick in sender["sentOnsets"] if start <= tick["t"] < end]
    heard = [onset for onset in map_heard(receiver, output) if start <= onset["rendered"] < end + 1000]
    pairs = match_ticks(sent, heard, period_ms)
    frames = [f for f in receiver["frames"] if start <= f["t"] < end]
    seconds = (end - start) / 1000
    transit = [f["t"] - f["capture"] for f in frames]
    sent_at = {f["capture"]: f["t"] for f in sender["sent"]}
    encode = [sent_at[f["capture"]] - f["capture"] for f in frames if f["capture"] in sent_at]
    to_main = [m["t"] - m["capture"] for m in sender["toMain"] if start <= m["capture"] < end]
    network = [f["t"] - sent_at[f["capture"]] for f in frames if f["capture"] in sent_at]
    jitter = [st["jitterMs"] for st in stats]
    buffered_ahead = statistics.median(jitter) - FRAME_MS if jitter else 0
    shown = [st["shown"] for st in stats if st["shown"] is not None]
    first, last = stats[0], stats[-1]
    concealed = last["concealed"] - first["concealed"]
    underruns = last["underruns"] - first["underruns"]
    span_s = (last["t"] - first["t"]) / 1000
    expected = span_s * 1000 / FRAME_MS
    raw_first, raw_last = first["raw"] or {}, last["raw"] or {}
    delta = lambda key: (raw_last.get(key, 0) or 0) - (raw_first.get(key, 0) or 0)  # noqa: E731
    to_node = [h["rendered"] - s["t"] for s, h in pairs]
    return {
        "codec": sender["codec"],
        "codec_received": last["partnerCodec"],
        "mouth_to_ear_ms": ({**summary([h["t"] - s["t"] for s, h in pairs]), "ticks_sent": len(sent)}
                            if output is not None else None),
        "to_output_node_ms": {**summary(to_node), "ticks_sent": len(sent)},
        "output_latency_ms": round(output, 1) if output is not None else None,
        "page_estimate_ms": summary(shown),
        "estimate_ms": {
            "capture_to_receive": summary(transit),
            "of_which_capture_to_send": summary(encode),
            "of_which_send_to_receive": summary(network),
            "sender_capture_to_main_thread": summary(to_main),
            "jitter_buffer_ahead_median": round(buffered_ahead, 1),
        },
        "jitter_buffer": {
            "target_ms": summary([(st["raw"] or {}).get("targetMs", 0) for st in stats]),
            "peak_lateness_ms": summary([(st["raw"] or {}).get("peakLatenessMs", 0) for st in stats]),
            "arrival_jitter_ms": summary([(st["raw"] or {}).get("arrivalJitterMs", 0) for st in stats]),
        },
        "dropouts": round((concealed + underruns) / expected, 4) if expected else None,
        "frames": {
            "expected": round(expected), "received": delta("received"), "concealed": concealed,
            "underruns": underruns, "lost": last["lost"] - first["lost"], "late": delta("late"),
            "dropped": last["dropped"] - first["dropped"], "resyncs": delta("resyncs"),
            "drops": delta("drops"), "inserts": delta("inserts"),
            # Where missing frames went missing: never captured, never sent, or lost on the way.
            "not_captured": gaps([m["capture"] for m in sender["toMain"] if start <= m["capture"] < end]),
            "not_sent": gaps([f["capture"] for f in sender["sent"] if start <= f["capture"] < end]),
            "not_received": gaps([f["capture"] for f in frames]),
        },
        # The page's counters from the partner's first frame to the end, warm-up included.
        "whole_call": {
            "lost": receiver["stats"][-1]["lost"], "late": (receiver["stats"][-1]["raw"] or {}).get("late"),
            "concealed": receiver["stats"][-1]["concealed"], "underruns": receiver["stats"][-1]["underruns"],
            "sender_encoder_drops": sender["stats"][-1].get("encoderDrops"),
            "receiver_decoder_drops": receiver["stats"][-1].get("decoderDrops"),
            # Seconds after the partner's first frame of the first late frame and the first decoder drop.
            "first_late_s": first_change(receiver["stats"], lambda st: (st["raw"] or {}).get("late") or 0),
            "first_decoder_drop_s": first_change(receiver["stats"], lambda st: st.get("decoderDrops") or 0),
        },
        "kbit_s": round(sum(f["bytes"] for f in frames) * 8 / seconds / 1000, 1),
    }


def pulse_output_latency(pulse) -> list[float]:
    """Latency PulseAudio reports for each playback stream (buffer + sink), ms."""
    listing = subprocess.run(["pactl", "list", "sink-inputs"], env={**os.environ, **pulse.env},
                             capture_output=True, text=True, timeout=10).stdout
    buffer = [int(n) for n in re.findall(r"Buffer Latency: (\d+) usec", listing)]
    sink = [int(n) for n in re.findall(r"Sink Latency: (\d+) usec", listing)]
    return [round((b + k) / 1000, 1) for b, k in zip(buffer, sink)]


async def open_page(engine: str, name: str, origin: str, wav: Path, period: float, playwright, pulse):
    """A page of that engine whose microphone plays the click train, at the lobby."""
    if engine == "chromium":
        page = await ChromiumPage.launch(playwright, name, wav)
    else:
        page = await FirefoxPage.launch(pulse, name, 1000, preload=CLICK_MICROPHONE_JS % {"period": period})
    await page.goto(origin + "/")
    return page


async def run(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    popen, port = start_server()
    origin = f"http://127.0.0.1:{port}"
    pulse = PulseAudio().start() if "firefox" in args.browsers else None
    pages = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            wav = write_click_train(Path(folder) / "ticks.wav", period_s=args.period)
            async with async_playwright() as playwright:
                info = []
                for engine, name in zip(args.browsers, ("a", "b")):
                    page = await open_page(engine, name, origin, wav, args.period, playwright, pulse)
                    pages.append(page)
                    await page.click("#start")
                    await page.wait_for("() => window.duoduel.session !== null", what="the session")
                    info.append(await page.evaluate(INSTRUMENT_JS))
                for page in pages:
                    await page.wait_for("() => document.getElementById('status').textContent.includes('Connected')",
                                        what="Connected")
                start = time.time() * 1000 + args.warmup * 1000
                await asyncio.sleep(args.warmup + args.seconds / 2)
                pulse_latency = pulse_output_latency(pulse) if pulse else []
                await asyncio.sleep(args.seconds / 2)
                end = start + args.seconds * 1000
                await asyncio.sleep(1)  # ticks sent just before the end are heard after it
                data = [await page.evaluate("() => window.__bench", timeout=30) for page in pages]
                states = [await page.text("#status") for page in pages]
    finally:
        await asyncio.gather(*(page.close() for page in pages))
        if pulse:
            pulse.stop()
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
    period_ms = args.period * 1000
    return {
        "browsers": dict(zip("ab", args.browsers)),
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "sample_rate": info[0]["rate"],
        "output_latency_pulse_ms": pulse_latency,
        "status_at_end": states,
        "a->b": direction(data[0], data[1], start, end, period_ms),
        "b->a": direction(data[1], data[0], start, end, period_ms),
        "targets": TARGETS,
    }


def headline(result: dict) -> dict:
    """The figures of the README's table, per direction."""
    rows = {}
    for key in ("a->b", "b->a"):
        d = result[key]
        engines = f"{result['browsers'][key[0]]}->{result['browsers'][key[-1]]}"
        ear = d["mouth_to_ear_ms"] or {}
        rows[f"{key} {engines}"] = {
            "to_output_node_p50": d["to_output_node_ms"]["p50"], "to_output_node_p95": d["to_output_node_ms"]["p95"],
            "output_latency": d["output_latency_ms"],
            "mouth_to_ear_p50": ear.get("p50"), "mouth_to_ear_p95": ear.get("p95"),
            "page_estimate_p50": d["page_estimate_ms"]["p50"],
            "dropouts": d["dropouts"], "lost": d["frames"]["lost"], "kbit_s": d["kbit_s"],
        }
    return rows


def medians(runs: list[dict]) -> dict:
    """Median of every headline figure over the runs."""
    tables = [headline(run) for run in runs]
    out = {}
    for row in tables[0]:
        out[row] = {}
        for column in tables[0][row]:
            values = [t[row][column] for t in tables if t[row][column] is not None]
            out[row][column] = round(statistics.median(values), 4 if column == "dropouts" else 1) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browsers", default="chromium,chromium",
                        help="engines of page a and page b: chromium or firefox (default chromium,chromium)")
    parser.add_argument("--seconds", type=float, default=20, help="measured call time (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="call time ignored first (default 3)")
    parser.add_argument("--period", type=float, default=0.5, help="seconds between ticks (default 0.5)")
    parser.add_argument("--runs", type=int, default=1, help="calls to measure; more than one adds medians")
    args = parser.parse_args()
    args.browsers = [name.strip() for name in args.browsers.split(",")]
    if len(args.browsers) != 2 or not set(args.browsers) <= {"chromium", "firefox"}:
        raise SystemExit("latency bench: --browsers takes two of chromium, firefox, e.g. chromium,firefox")
    if reason := missing_browser() or ("firefox" in args.browsers and missing_firefox()):
        raise SystemExit(f"latency bench: {reason}")
    runs = []
    for _ in range(args.runs):
        runs.append(asyncio.run(run(args)))
        print(json.dumps(runs[-1], indent=2), flush=True)
    print(json.dumps({"runs": len(runs), "headline": headline(runs[0]) if len(runs) == 1 else medians(runs)},
                     indent=2))


if __name__ == "__main__":
    main()
