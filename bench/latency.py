#!/usr/bin/env python3
"""Browser latency benchmark: two headless pages (Chromium, Firefox or one of each) talk through duoduel.py.

usage: python bench/latency.py [--browsers chromium,firefox] [--link good|jitter|stalls|cut] [--seconds 20]
                               [--warmup 3] [--period 0.5] [--runs 1] [--room-members 3]
                               [--call webtransport,websocket,webrtc] [--path "delay=25,jitter=5,loss=2"]
                               [--record-arrivals DIR] [--compare-static OLD_DIR]

--link puts page a (the page and its /ws) behind bench/impair.py; page b talks to the server directly:
  good    no proxy: loopback.
  jitter  each direction 10 ms + uniform 0-30 ms, order kept as TCP keeps it (a's two legs of the call).
  cut     each direction 10 ms; 2 s into the call the link resets a's connection and refuses new ones
          for 3 s (a network gone for 3 s): the page resumes its call. `resume` gives, for each page, when
          it showed "Connected" again after the cut, and per direction how long after that the first frame
          arrived and the first tick (sent after the reconnection) was heard, with that tick's delay.
  stalls  each direction 10 ms; every 5 s (from 2 s into the call) nothing crosses for 300, 400, then 500 ms,
          and what was held arrives at once. Each direction's stall_recovery lists, per stall, the level of
          the delay before it, the worst after it, and how long after the stall's end the delay came back
          within 20 ms of that level: measured (ticks heard) and by the receiving page's own estimate.

--browsers names the engines of page a and page b (default chromium,chromium). Each page's microphone
is a click train (a 10 ms, 1 kHz tick every --period s): Chromium's fake capture device plays it from a
WAV; in Firefox a preload script replaces getUserMedia with a looping AudioBuffer of the same train
(Firefox's own fake device only plays a steady sine). After --warmup s of call, for --seconds s, the bench
measures per direction and prints one JSON object (with --runs N: every run, then the medians):

  to_output_node_ms acoustic: each tick's onset where the sender's microphone enters a reference audio graph (the
                    bench's own 'interactive' AudioContext in the sender's page: a MediaStreamAudioSourceNode on
                    the page's microphone stream into a capture worklet; the same for every call, WebRTC's too,
                    whichever path the page's own capture takes and whatever its context's latencyHint) -> the
                    same tick's onset in what the receiver plays from its partner (session.partnerOutput), at the
                    moment the receiver's graph renders it. Includes packetizing into 10 or 20 ms frames,
                    Opus encode, WebSocket send, the server relay, receive, decode, resampling, the jitter
                    buffer and rendering. Excludes the input device's latency and the browser's capture
                    processing before the track (Chromium's echo canceller runs on its fake device;
                    Firefox's replaced getUserMedia has none). A capture that reads the track itself
                    (Chromium's MediaStreamTrackProcessor, as WebRTC's own capture does) gets a sample
                    before a graph does; that lead is counted, since the reference is the same for all.
  mouth_to_ear_ms   to_output_node_ms + the output latency the receiving browser reports (Chromium:
                    outputLatency + baseLatency). Firefox's cannot be read without risking the freeze of
                    issue 11, so for a Firefox receiver it is null; output_latency_pulse_ms then gives what
                    PulseAudio reports for the browsers' playback streams (buffer + sink latency), to add.
  page_estimate_ms  what the receiving page itself shows as "≈ mouth-to-ear", over the measured span;
                    page_estimate_parts_ms gives the medians of what it adds up (capture to send, our path
                    and the partner's to the server, the jitter buffer's playout delay, the output latency).
  estimate_ms       a frame-by-frame breakdown: receive time - capture time of every frame (main thread,
                    before decoding), split at the moment the page hands the frame to the WebSocket into
                    capture_to_send (filling the 20 ms frame + worklet->main thread + Opus encoder) and
                    send_to_receive (sealing, WebSocket, server relay, WebSocket, main thread dispatch, opening):
                    the measuring hook gives each frame in clear, before the page seals it and once it is opened.
  dropouts          (concealed frames + underruns) / frames expected (50/s), from the receiver's jitter
                    buffer over the measured span; an underrun counts as one frame (a lower bound).
  kbit_s            frame bytes in clear (16-byte header + payload) received per second; the 19 to 28 bytes of
                    end-to-end encryption (docs/protocol.md), WebSocket and TCP/IP framing excluded.

--call names the calls to measure, alternating in each run: duoduel (over whichever transport the page picks),
webtransport (duoduel, the bench waiting until both pages say "over WebTransport"), websocket (duoduel.py
--no-webtransport: both pages over the WebSocket), webrtc. --call duoduel,webrtc alternates a duoduel call and a
plain WebRTC call (bench/webrtc.html, signalled by
bench/webrtc.py: getUserMedia -> RTCPeerConnection, Opus with the browser's defaults, its own jitter buffer
and concealment, the audio over UDP between the browsers) between the same two engines, in each of --runs;
the last object gives each call's medians, and `comparison` pools every direction of every run (medians of
p50, p95 and kbit/s, the mean and worst dropouts). The WebRTC call is measured with the same click train,
detector and tap (duoduel's capture worklet): the sender's onsets where its microphone enters its page's
audio graph (a MediaStreamAudioSourceNode; duoduel's capture worklet sits on one too), the receiver's in what
its page plays: the partner's track through a MediaStreamAudioSourceNode to the destination. Chromium feeds a
remote track's audio to Web Audio only while a media element plays it (detached, the node goes silent), so
the page keeps a muted <audio> on it. Its figures: mouth_to_ear_ms and to_output_node_ms as above; dropouts:
concealed samples / samples played (getStats inbound-rtp concealedSamples / totalSamplesReceived, which
includes them) over the measured span, the share of the played audio that was made up, as duoduel's is;
kbit_s: RTP payload + RTP headers received per second (UDP, SRTP and IP excluded); `webrtc` has NetEQ's
own figures (mean jitter-buffer delay and target, packets lost, concealment events, FEC, the round trip).

--path SPEC puts page a behind bench/netpath.py (needs root): a packet-level path between this network
namespace and one of its own, shaped the same both ways (SPEC: its options, e.g. delay=25,jitter=5,loss=2,
or burst_enter=1,burst_exit=30 for bursts; see bench/netpath.py). The servers listen on the path's address
here; page a's browser runs in the path's namespace, so its page, WebSocket and (WebRTC) UDP media cross
the path; page b's runs here. wire_kbit_s is then what each page sent into the path per second (IP
packets: headers, retransmissions, pings, acks and RTCP included). Firefox runs there too (its BiDi socket
is made in the namespace); its pref dom.securecontext.allowlist, and Chromium's
--unsafely-treat-insecure-origin-as-secure, make http://10.9.K.1 a secure context for the microphone.

--record-arrivals DIR writes, per run and direction, what the receiving page's playback worklet was handed,
through `session.measure.arrivals`: each frame's sequence number, the audio clock (in samples) when the worklet
took it, and its length, with the link, the engines and the load average in a header line. tests/js/traces/
keeps such recordings; `node bench/replay-traces.js` plays them through the jitter buffer.

--compare-static OLD_DIR measures two builds of the page side by side: in each run a call on a server whose page
is OLD_DIR (duoduel.py --static; e.g. `git archive main static | tar -x -C /tmp/old`, then /tmp/old/static;
"call": "duoduel-old") and one on this one ("duoduel"), the old first in odd runs and the new first in even ones
(of two calls in a row, the second measured 2 to 3 ms later on loopback with the same page twice), so that both
see the same machine. The last object gives each build's medians and pooled figures, as for --call. With
--call duoduel,webrtc the plain WebRTC call is measured in each run too (old, new, WebRTC; reversed in even runs).

--room-members K (K >= 3): K pages (a, b, c, ...; --browsers may name K engines, missing ones are
chromium) join one group room. All are muted but one speaker at a time, in turn: each speaks for --seconds
after --warmup s, so every onset a page plays is that speaker's, and the figures above come out for every
ordered pair (a->b, a->c, b->a, ...), each from the page's one member's stream among K-1 decoders, the
mix bus and its soft clip. The receiver's jitter-buffer figures are those of the member it plays loudest
(AudioSession.stats() in a group room), which is the speaker.

Both pages run on one machine, so their wall clocks (performance.timeOrigin + performance.now()) agree.
The bench only observes, through the session's public measuring hook (`session.measure.captured`, `.sent`,
`.received`, and `session.partnerOutput`, documented in static/audio.js) and the microphone stream the page's
getUserMedia returned (kept before Start). Its taps on that stream (in a context of its own) and after
`partnerOutput` are instances of the page's own capture worklet (their frames carry their context time), so nothing is loaded past the page's
Content-Security-Policy, in either engine. It changes no audio code.
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

from browser import find_chromium, missing_browser, write_click_train  # noqa: E402
from firefox import PulseAudio, find_firefox, missing_firefox  # noqa: E402
from pages import ChromiumPage, FirefoxPage, room_path  # noqa: E402

sys.path.insert(0, str(ROOT))
from bench.impair import Impairment, Link  # noqa: E402
from bench.netpath import NetPath, missing_netpath, shape_option  # noqa: E402

LISTENING = re.compile(r"listening on (https?)://[^ ]*:(\d+)/")
FRAME_MS = 20  # a page's frames unless its stats say otherwise (10 ms where its Opus encoder takes them)
QUANTUM = 128  # samples per render quantum
TARGETS = {"mouth_to_ear_p50_ms": 40, "dropouts": 0.005, "kbit_s": 40}
LINKS = ("good", "jitter", "stalls", "cut")
# What serves each call's pages: duoduel as it comes (WebTransport where the browser has it), duoduel with the
# transport named (the call fails if the page is on another), the plain WebRTC call, and "duoduel-old":
# duoduel.py serving --compare-static's page.
CALL_SERVERS = {"duoduel": ("duoduel.py",), "webtransport": ("duoduel.py",),
                "websocket": ("duoduel.py", "--no-webtransport"), "webrtc": ("bench/webrtc.py",),
                "duoduel-old": ("duoduel.py",)}
TRANSPORT_NAMES = {"webtransport": "WebTransport", "websocket": "WebSocket"}  # as the figures line says it
CUT_AFTER_S = 2.0
CUT_REFUSE_S = 3.0
STALL_EVERY_S = 5.0
STALL_MS = (300, 400, 500)
RECOVERED_WITHIN_MS = 20  # the delay is back when it is within this of its level before the stall

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

# Both calls' taps. tap(node, onsets, frames): onsets in what node outputs, each at the time of its sample in node's
# context; frames: [context end time, wall arrival]. The tap is the page's own capture worklet (its frames carry their
# context time): each frame's arrival on the main thread bounds when it was rendered; the smallest (arrival - context
# time) maps context time to wall time. referenceContext(): the sender's reference, in every call alike: where the
# microphone enters an audio graph of the bench's own (an 'interactive' AudioContext), not the page's, whose output
# buffer (latencyHint) moves the moment its graph takes the microphone in (Chromium: by tens of ms between 128-sample
# and 10 ms callbacks; bench/capture_path.py).
TAP_JS = """
function tap(node, onsets, frames) {
  const ctx = node.context;
  const detector = new OnsetDetector(ctx.sampleRate);
  const worklet = new AudioWorkletNode(ctx, 'capture-processor', {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], channelCount: 1, channelCountMode: 'explicit',
  });
  let tapped = 0;
  worklet.port.onmessage = (event) => {
    const data = event.data;
    if (!data || data.type !== 'frame') return;
    const arrival = performance.timeOrigin + performance.now();
    const samples = data.samples;
    const before = detector.onsets.length;
    detector.push(samples, tapped);
    for (const onset of detector.onsets.slice(before)) {
      onsets.push({time: data.time + (onset.index - tapped) / ctx.sampleRate, peak: onset.peak});
    }
    tapped += samples.length;
    frames.push([data.time + samples.length / ctx.sampleRate, arrival]);
    worklet.port.postMessage({type: 'recycle', buffer: samples.buffer}, [samples.buffer]);
  };
  node.connect(worklet);
  worklet.connect(ctx.destination);  // outputs silence; keeps the tap pulled
}

async function referenceContext() {
  const reference = new AudioContext({latencyHint: 'interactive'});
  await reference.audioWorklet.addModule('/capture-processor.js');
  await reference.resume();
  return reference;
}
"""

# Run in each duoduel page before Start: keeps the page's microphone stream where INSTRUMENT_JS taps it.
KEEP_MICROPHONE_JS = """() => {
  const media = navigator.mediaDevices;
  const getUserMedia = media.getUserMedia.bind(media);
  media.getUserMedia = async (constraints) => (window.__benchMicrophone = await getUserMedia(constraints));
}"""

# Installed in each page after Start: observes what it sends and what it receives and plays.
INSTRUMENT_JS = (
    "async () => {"
    + DETECTOR_JS
    + TAP_JS
    + """
  const s = window.duoduel.session;
  const ctx = s.context;
  const wallNow = () => performance.timeOrigin + performance.now();
  const b = window.__bench = {
    rate: ctx.sampleRate, micOnsets: [], micFrames: [], heard: [], tapFrames: [], sent: [], toMain: [], frames: [],
    stats: [], codec: s.codec,
  };

  // Sender: onsets where the microphone enters the reference graph (TAP_JS), as for the WebRTC call, whatever
  // path the page's own capture takes (the capture worklet, or the microphone's track itself).
  const reference = await referenceContext();
  tap(reference.createMediaStreamSource(window.__benchMicrophone), b.micOnsets, b.micFrames);

  // Sender, per frame: when the main thread got it (capture to main thread), and when the page hands it to the
  // WebSocket, vs its capture time (the encoder's delay).
  s.measure.captured = (samples, captureTime) => b.toMain.push({capture: captureTime, t: wallNow()});
  s.measure.sent = (frame, captureTime) => b.sent.push({capture: captureTime, t: wallNow()});

  // Receiver, per frame: arrival on the main thread vs the capture time in the header.
  s.measure.received = (buffer) => {
    if (buffer.byteLength >= 16) {
      // An ArrayBuffer in a call; in a group room a view behind the slot byte.
      const view = new DataView(buffer.buffer || buffer, buffer.byteOffset || 0, buffer.byteLength);
      b.frames.push({t: wallNow(), capture: view.getFloat64(8, true), bytes: buffer.byteLength});
    }
  };

  // Receiver, acoustic: onsets in what the page plays from its partner.
  tap(s.partnerOutput, b.heard, b.tapFrames);

  // Every text the status line shows, with when: the cut bench finds the reconnection there.
  b.status = [{t: wallNow(), text: document.getElementById('status').textContent}];
  new MutationObserver(() => b.status.push({t: wallNow(), text: document.getElementById('status').textContent}))
    .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true});

  // The jitter buffer's figures and the page's own estimate, four times a second.
  const estimate = /mouth-to-ear (\\d+) ms/;
  setInterval(() => {
    const st = s.stats();
    const shown = estimate.exec(document.getElementById('stats').textContent);
    b.stats.push({t: wallNow(), jitterMs: st.jitterMs, outputLatencyMs: st.outputLatencyMs,
      concealed: st.concealedFrames, lost: st.lostFrames, dropped: st.droppedFrames, underruns: st.underruns,
      partnerCodec: st.partnerCodec, kbpsOut: st.kbpsOut, raw: st.playback, shown: shown ? Number(shown[1]) : null,
      encoderDrops: st.encoderDrops, decoderDrops: st.decoderDrops, captureToSendMs: st.captureToSendMs,
      ...window.duoduel.paths});
  }, 250);
  return {rate: ctx.sampleRate, codec: s.codec};
}"""
)


# Installed in each page of the plain WebRTC call (bench/webrtc.html) after Start. The same detector and the same
# tap (duoduel's capture worklet, served by bench/webrtc.py) as for duoduel: the sender's onsets where its
# microphone enters the page's audio graph, the receiver's where the page's graph plays the partner
# (call.output). WebRTC's own figures from getStats(), four times a second.
INSTRUMENT_WEBRTC_JS = (
    "async () => {"
    + DETECTOR_JS
    + TAP_JS
    + """
  const call = window.call;
  const ctx = call.context;
  const wallNow = () => performance.timeOrigin + performance.now();
  await ctx.audioWorklet.addModule('/capture-processor.js');
  const b = window.__bench = {rate: ctx.sampleRate, micOnsets: [], micFrames: [], heard: [], tapFrames: [], stats: []};

  const reference = await referenceContext();
  tap(reference.createMediaStreamSource(call.microphone), b.micOnsets, b.micFrames);
  const tapOutput = () => (call.output ? tap(call.output, b.heard, b.tapFrames) : setTimeout(tapOutput, 20));
  tapOutput();

  const gecko = /\\bGecko\\/\\d/.test(navigator.userAgent);  // Firefox's outputLatency may freeze the page (issue 11)
  setInterval(async () => {
    const st = {t: wallNow(), outputLatencyMs: gecko ? null : ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000};
    const codecs = {};
    (await call.pc.getStats()).forEach((r) => {
      if (r.type === 'codec') codecs[r.id] = `${r.mimeType} ${r.sdpFmtpLine || ''}`.trim();
      if (r.type === 'inbound-rtp' && r.kind === 'audio') st.inbound = r;
      if (r.type === 'outbound-rtp' && r.kind === 'audio') st.outbound = r;
      if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') st.rttMs = r.currentRoundTripTime * 1000;
    });
    st.codec = st.inbound ? codecs[st.inbound.codecId] : null;
    st.sentCodec = st.outbound ? codecs[st.outbound.codecId] : null;
    b.stats.push(st);
  }, 250);
  return {rate: ctx.sampleRate};
}"""
)


# With --record-arrivals: what each page's playback worklets take, through the session's measuring hook.
RECORD_ARRIVALS_JS = """() => {
  const b = window.__bench;
  b.arrivals = [];
  window.duoduel.session.measure.arrivals = (slot, rows, rate, playback) => {
    b.arrivalRate = rate;
    for (let i = 0; i < rows.length; i += 3) b.arrivals.push([playback, rows[i], rows[i + 1], rows[i + 2]]);
  };
}"""


def start_server(script: str = "duoduel.py", host: str = "127.0.0.1", *options: str) -> tuple[subprocess.Popen, int]:
    """Run duoduel.py (or bench/webrtc.py) on a free port with these options; keep draining its log so it never
    blocks."""
    popen = subprocess.Popen(
        [sys.executable, str(ROOT / script), "--host", host, "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    for line in popen.stdout:
        if match := LISTENING.search(line):
            threading.Thread(target=popen.stdout.read, daemon=True).start()
            return popen, int(match[2])
    raise SystemExit(f"{script} did not start: exit {popen.wait()}")


def write_arrivals(path: Path, receiver: dict, meta: dict) -> None:
    """One receiver's arrivals as a trace (tests/js/traces/README.md): a JSON header, then one CSV row per frame
    with the audio clock counted from the render quantum of the first arrival."""
    rows = receiver.get("arrivals") or []
    if not rows:
        return
    base = int(rows[0][2]) // QUANTUM * QUANTUM
    frame_ms = (receiver["stats"][-1]["raw"] or {}).get("frameMs") or FRAME_MS
    header = {**meta, "sampleRate": receiver["arrivalRate"], "quantum": QUANTUM, "frameMs": frame_ms}
    lines = ["# " + json.dumps(header), "playback,seq,clock,samples"]
    lines += [f"{int(playback)},{int(seq)},{int(clock) - base},{int(samples)}" for playback, seq, clock, samples in rows]
    path.write_text("\n".join(lines) + "\n")


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


def estimate_parts(stats: list[dict]) -> dict:
    """Medians of what the page's estimate adds up, over the samples where it showed one."""
    shown = [st for st in stats if st["shown"] is not None]
    parts = {"capture_to_send": "captureToSendMs", "path": "pathMs", "partner_path": "partnerPathMs",
             "jitter_buffer": "jitterMs", "output": "outputLatencyMs"}
    medians = {}
    for name, key in parts.items():
        values = [st[key] for st in shown if isinstance(st.get(key), (int, float))]
        medians[name] = round(statistics.median(values), 1) if values else None
    return medians


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


def increase(counts: list[int]) -> int:
    """How much a counter went up over the samples; a counter that restarts from 0 (the partner's playback
    was made anew, after Next or a resume) adds what it counted since."""
    return sum(b - a if b >= a else b for a, b in zip(counts, counts[1:]))


def gaps(capture_times: list[float], frame_ms: float = FRAME_MS) -> int:
    """Frames missing from a sequence of frames of frame_ms, judged by their capture times (with DTX, the frames of
    the pauses too)."""
    ordered = sorted(capture_times)
    return sum(max(0, round((b - a) / frame_ms) - 1) for a, b in zip(ordered, ordered[1:]))


def first_change(stats: list[dict], counter) -> float | None:
    """Seconds from the receiver's first playing sample to the first sample where counter(st) > 0."""
    playing = [st for st in stats if st["partnerCodec"]]
    for st in playing:
        if counter(st) > 0:
            return round((st["t"] - playing[0]["t"]) / 1000, 2)
    return None


def wall_onsets(onsets: list[dict], frames: list[list[float]]) -> list[dict]:
    """Onsets at context times, at wall-clock ms: by the least (main-thread arrival - context time) of the
    tap's frames within 5 s, as the page's capture clock maps them."""
    out = []
    for onset in onsets:
        near = [arrival - end * 1000 for end, arrival in frames if abs(end - onset["time"]) < 5]
        if near:
            out.append({"t": onset["time"] * 1000 + min(near), "peak": onset["peak"]})
    return out


def map_heard(receiver: dict, output_latency_ms: float | None) -> list[dict]:
    """Wall-clock times of the receiver's heard onsets: rendered (at the output node) and, where the
    output latency is known, t (at the ear). Context time maps to wall time by the smallest
    (main-thread arrival - context time) of the tap's frames within 5 s, as the page's capture clock does."""
    return [{"rendered": onset["t"], "peak": onset["peak"],
             "t": onset["t"] + (output_latency_ms if output_latency_ms is not None else 0)}
            for onset in wall_onsets(receiver["heard"], receiver["tapFrames"])]


def stall_recovery(sender: dict, receiver: dict, output: float | None, stalls: list[tuple[float, float]],
                   period_ms: float) -> list[dict]:
    """Per stall (wall ms of its start, its length): the delay's level in the 2 s before it, its worst in
    the 2 s after, and the seconds from the stall's end to the first tick sent after it whose delay is back
    within RECOVERED_WITHIN_MS of that level; the same from the page's own estimate (sampled every 250 ms)."""
    pairs = match_ticks(sender["sentOnsets"], map_heard(receiver, output), period_ms)
    delays = [(tick["t"], onset["t"] - tick["t"]) for tick, onset in pairs]
    shown = [(st["t"], st["shown"]) for st in receiver["stats"] if st["shown"] is not None]
    out = []
    for begin, length in stalls:
        finish = begin + length
        row = {"stall_ms": length}
        for name, series in (("measured", delays), ("page", shown)):
            before = [d for t, d in series if begin - 2000 <= t < begin]
            after = [(t, d) for t, d in series if t >= finish]
            if not before or not after:
                row[name] = None
                continue
            level = statistics.median(before)
            back = next((t for t, d in after if d <= level + RECOVERED_WITHIN_MS), None)
            row[name] = {
                "before_ms": round(level, 1),
                "worst_after_ms": round(max(d for t, d in series if begin <= t < finish + 2000), 1)
                if any(begin <= t < finish + 2000 for t, _ in series) else None,
                "recovered_after_s": round((back - finish) / 1000, 2) if back is not None else None,
            }
        out.append(row)
    return out


def resumed(pages: list[dict], cut_at: float, output: list[float | None], period_ms: float) -> dict:
    """After a cut at cut_at (wall ms): when each page showed "Connected" again, and per direction how long
    after page a's reconnection the first frame arrived and the first tick sent after it was heard."""
    back = {}
    for name, page in zip("ab", pages):
        again = [entry["t"] for entry in page["status"] if entry["t"] > cut_at and entry["text"] == "Connected"]
        back[name] = round((again[0] - cut_at) / 1000, 2) if again else None
    out = {"connected_again_s_after_cut": back}
    if back["a"] is None:
        return out
    reconnected = cut_at + back["a"] * 1000
    for key, sender, receiver, latency in (("a->b", pages[0], pages[1], output[1]), ("b->a", pages[1], pages[0], output[0])):
        frames = [f["t"] for f in receiver["frames"] if f["t"] > reconnected]
        ticks = [tick for tick in sender["sentOnsets"] if tick["t"] > reconnected]
        pairs = match_ticks(ticks, map_heard(receiver, latency), period_ms)
        out[key] = {
            "first_frame_ms_after_reconnection": round(frames[0] - reconnected, 1) if frames else None,
            "first_tick_heard_ms_after_reconnection": round(pairs[0][1]["t"] - reconnected, 1) if pairs else None,
            "that_tick_sent_ms_after_reconnection": round(pairs[0][0]["t"] - reconnected, 1) if pairs else None,
            "that_tick_mouth_to_ear_ms": round(pairs[0][1]["t"] - pairs[0][0]["t"], 1) if pairs else None,
        }
    return out


def direction(sender: dict, receiver: dict, start: float, end: float, period_ms: float,
              stalls: list[tuple[float, float]] | None = None) -> dict:
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
    playout = statistics.median(jitter) if jitter else 0
    shown = [st["shown"] for st in stats if st["shown"] is not None]
    first, last = stats[0], stats[-1]
    concealed = increase([st["concealed"] for st in stats])
    underruns = increase([st["underruns"] for st in stats])
    span_s = (last["t"] - first["t"]) / 1000
    frame_ms = (last["raw"] or {}).get("frameMs") or FRAME_MS  # the sender's, as the receiver's playout plays them
    expected = span_s * 1000 / frame_ms
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
        "page_estimate_parts_ms": estimate_parts(stats),
        "estimate_ms": {
            "capture_to_receive": summary(transit),
            "of_which_capture_to_send": summary(encode),
            "of_which_send_to_receive": summary(network),
            "sender_capture_to_main_thread": summary(to_main),
            "playout_delay_median": round(playout, 1),
        },
        "jitter_buffer": {
            "target_ms": summary([(st["raw"] or {}).get("targetMs", 0) for st in stats]),
            "peak_lateness_ms": summary([(st["raw"] or {}).get("peakLatenessMs", 0) for st in stats]),
            "arrival_jitter_ms": summary([(st["raw"] or {}).get("arrivalJitterMs", 0) for st in stats]),
        },
        "dropouts": round((concealed + underruns) / expected, 4) if expected else None,
        "frames": {
            "expected": round(expected), "received": delta("received"), "concealed": concealed,
            "underruns": underruns, "lost": increase([st["lost"] for st in stats]), "late": delta("late"),
            # Frames that came only as a copy in a later one's message, and frames that came during their turn's
            # concealment and played the rest of it (counted neither lost nor late; their concealment counts).
            "recovered": delta("recovered"), "cut_short": delta("cutShort"),
            "dropped": increase([st["dropped"] for st in stats]), "resyncs": delta("resyncs"),
            "drops": delta("drops"), "inserts": delta("inserts"),
            # Where missing frames went missing: never captured, never sent, or lost on the way.
            "not_captured": gaps([m["capture"] for m in sender["toMain"] if start <= m["capture"] < end], frame_ms),
            "not_sent": gaps([f["capture"] for f in sender["sent"] if start <= f["capture"] < end], frame_ms),
            "not_received": gaps([f["capture"] for f in frames], frame_ms),
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
        "frame_ms": frame_ms,
        "kbit_s": round(sum(f["bytes"] for f in frames) * 8 / seconds / 1000, 1),
        "stall_recovery": stall_recovery(sender, receiver, output, stalls or [], period_ms),
    }


def webrtc_direction(sender: dict, receiver: dict, start: float, end: float, period_ms: float) -> dict:
    """Figures for sender -> receiver over [start, end) (wall ms) in the plain WebRTC call, with the keys of
    direction()'s that apply. dropouts: concealed samples / samples played (getStats inbound-rtp
    concealedSamples / totalSamplesReceived, which counts the concealed ones too) over the span: the share of
    the played audio that was made up, as duoduel's (concealed frames + underruns) / frames expected is."""
    stats = [st for st in receiver["stats"] if start <= st["t"] < end and st.get("inbound")]
    sent_stats = [st for st in sender["stats"] if start <= st["t"] < end and st.get("outbound")]
    latencies = [st["outputLatencyMs"] for st in stats if st["outputLatencyMs"] is not None]
    output = statistics.median(latencies) if latencies else None
    sent = [tick for tick in wall_onsets(sender["micOnsets"], sender["micFrames"]) if start <= tick["t"] < end]
    heard = [onset for onset in map_heard(receiver, output) if start <= onset["rendered"] < end + 1000]
    pairs = match_ticks(sent, heard, period_ms)
    to_node = [h["rendered"] - s["t"] for s, h in pairs]
    if len(stats) < 2:
        return {"codec": None, "mouth_to_ear_ms": None, "to_output_node_ms": {**summary(to_node), "ticks_sent": len(sent)},
                "output_latency_ms": None, "page_estimate_ms": summary([]), "dropouts": None, "frames": {"lost": None},
                "kbit_s": None, "stall_recovery": [], "webrtc": {"error": "no inbound audio in getStats"}}
    first, last = stats[0]["inbound"], stats[-1]["inbound"]
    delta = lambda key: (last.get(key) or 0) - (first.get(key) or 0)  # noqa: E731
    seconds = (stats[-1]["t"] - stats[0]["t"]) / 1000
    emitted = delta("jitterBufferEmittedCount")
    return {
        "codec": sent_stats[-1]["sentCodec"] if sent_stats else None,
        "codec_received": stats[-1]["codec"],
        "mouth_to_ear_ms": ({**summary([h["t"] - s["t"] for s, h in pairs]), "ticks_sent": len(sent)}
                            if output is not None else None),
        "to_output_node_ms": {**summary(to_node), "ticks_sent": len(sent)},
        "output_latency_ms": round(output, 1) if output is not None else None,
        "page_estimate_ms": summary([]),  # the plain page shows none
        "dropouts": round(delta("concealedSamples") / delta("totalSamplesReceived"), 4)
        if delta("totalSamplesReceived") else None,
        "frames": {"lost": delta("packetsLost")},
        # RTP payload and headers received per second (UDP, SRTP and IP excluded), as duoduel's kbit_s counts
        # its frames' payload and header (WebSocket, TCP and IP excluded).
        "kbit_s": round((delta("bytesReceived") + delta("headerBytesReceived")) * 8 / seconds / 1000, 1),
        "stall_recovery": [],
        "webrtc": {
            "packets_received": delta("packetsReceived"), "packets_lost": delta("packetsLost"),
            "concealed_samples": delta("concealedSamples"), "silent_concealed_samples": delta("silentConcealedSamples"),
            "concealment_events": delta("concealmentEvents"), "total_samples_received": delta("totalSamplesReceived"),
            "inserted_for_deceleration": delta("insertedSamplesForDeceleration"),
            "removed_for_acceleration": delta("removedSamplesForAcceleration"),
            "fec_packets_received": delta("fecPacketsReceived"),
            # NetEQ's mean delay over the span: what its jitter buffer held each sample before playing it.
            "jitter_buffer_delay_ms": round(delta("jitterBufferDelay") / emitted * 1000, 1) if emitted else None,
            "jitter_buffer_target_ms": round(delta("jitterBufferTargetDelay") / emitted * 1000, 1) if emitted else None,
            "rtt_ms": summary([st["rttMs"] for st in stats if isinstance(st.get("rttMs"), (int, float))]),
        },
    }


def pulse_output_latency(pulse) -> list[float]:
    """Latency PulseAudio reports for each playback stream (buffer + sink), ms."""
    listing = subprocess.run(["pactl", "list", "sink-inputs"], env={**os.environ, **pulse.env},
                             capture_output=True, text=True, timeout=10).stdout
    buffer = [int(n) for n in re.findall(r"Buffer Latency: (\d+) usec", listing)]
    sink = [int(n) for n in re.findall(r"Sink Latency: (\d+) usec", listing)]
    return [round((b + k) / 1000, 1) for b, k in zip(buffer, sink)]


def impaired_link(kind: str, port: int) -> Impairment | None:
    """The link in front of page a, or None for a good network (loopback)."""
    if kind == "good":
        return None
    jitter = 30.0 if kind == "jitter" else 0.0  # stalls and cut: a steady 10 ms
    return Impairment("127.0.0.1", port, up=Link(delay_ms=10, jitter_ms=jitter),
                      down=Link(delay_ms=10, jitter_ms=jitter), seed=1)


async def stall_now_and_then(link: Impairment, first_s: float, stalls: list[tuple[float, float]]) -> None:
    """Stall both directions every STALL_EVERY_S s, lengths cycling through STALL_MS; note each (wall ms, ms)."""
    await asyncio.sleep(first_s)
    for number in range(10_000):
        length = STALL_MS[number % len(STALL_MS)]
        stalls.append((time.time() * 1000, length))
        link.stall(length / 1000)
        await asyncio.sleep(STALL_EVERY_S)


async def cut_once(link: Impairment, after_s: float, cuts: list[tuple[float, float]]) -> None:
    """Reset every connection through the link after after_s, and refuse new ones for CUT_REFUSE_S."""
    await asyncio.sleep(after_s)
    cuts.append((time.time() * 1000, CUT_REFUSE_S * 1000))
    link.cut(refuse_for=CUT_REFUSE_S)


async def open_page(engine: str, name: str, origin: str, wav: Path, period: float, playwright, pulse,
                    path: str = "/", netpath: NetPath | None = None, behind: bool = False):
    """A page of that engine whose microphone plays the click train, at the lobby (or path); with a netpath,
    its origin counts as secure, and a page behind it runs in the path's namespace."""
    if engine == "chromium":
        executable = netpath.executable(find_chromium()) if netpath and behind else None
        flags = tuple(netpath.chromium_flags(origin)) if netpath else ()
        page = await ChromiumPage.launch(playwright, name, wav, flags=flags, executable=executable)
    else:
        # Real addresses in WebRTC's host candidates (not mDNS names), as Chromium's with the microphone granted.
        prefs = {"media.peerconnection.ice.obfuscate_host_addresses": False}
        where = {}
        if netpath:
            prefs["dom.securecontext.allowlist"] = netpath.server_address
        if netpath and behind:
            where = {"executable": netpath.executable(find_firefox()), "new_socket": netpath.socket}
        page = await FirefoxPage.launch(pulse, name, 1000, preload=CLICK_MICROPHONE_JS % {"period": period},
                                        prefs=prefs, **where)
    await page.goto(origin + path)
    return page


async def speak_in_turn(pages, args: argparse.Namespace) -> list[tuple[float, float]]:
    """Group room: mute every page, then unmute each in turn for warmup + seconds; its (start, end) wall ms."""
    for page in pages:
        await page.click("#mute")
    windows = []
    for page in pages:
        await page.click("#mute")
        start = time.time() * 1000 + args.warmup * 1000
        await asyncio.sleep(args.warmup + args.seconds)
        windows.append((start, start + args.seconds * 1000))
        await page.click("#mute")
        await asyncio.sleep(1)  # ticks sent just before the end are heard after it
    return windows


async def run(args: argparse.Namespace, call: str = "duoduel", netpath: NetPath | None = None, number: int = 1) -> dict:
    from playwright.async_api import async_playwright

    host = netpath.server_address if netpath is not None else "127.0.0.1"
    script, *options = CALL_SERVERS[call]
    if call == "duoduel-old":
        options.extend(["--static", str(args.compare_static)])
    popen, port = start_server(script, host, *options)
    origin = f"http://{host}:{port}"
    link = impaired_link(args.link, port)
    if link is not None:
        await link.start()
    origins = (f"http://127.0.0.1:{link.port}" if link is not None else origin, origin)
    stalls: list[tuple[float, float]] = []
    stalling = None
    pulse = PulseAudio().start() if "firefox" in args.browsers else None
    pages = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            wav = write_click_train(Path(folder) / "ticks.wav", period_s=args.period)
            async with async_playwright() as playwright:
                info = []
                names = "abcdefgh"[:max(2, args.room_members)]
                path = room_path("bench-latency") if args.room_members > 2 else "/"
                page_origins = origins + (origin,) * (len(names) - 2)
                for engine, name, page_origin in zip(args.browsers, names, page_origins):
                    page = await open_page(engine, name, page_origin, wav, args.period, playwright, pulse, path,
                                           netpath, behind=name == "a")
                    pages.append(page)
                    if call != "webrtc":
                        await page.evaluate(KEEP_MICROPHONE_JS)
                    await page.click("#start")
                    if call == "webrtc":
                        await page.wait_for("() => Boolean(window.call)", what="the call")
                        info.append(await page.evaluate(INSTRUMENT_WEBRTC_JS))
                        continue
                    await page.wait_for("() => window.duoduel.session !== null", what="the session")
                    info.append(await page.evaluate(INSTRUMENT_JS))
                    if args.record_arrivals:
                        await page.evaluate(RECORD_ARRIVALS_JS)
                for page in pages:
                    await page.wait_for("() => document.getElementById('status').textContent.includes('Connected')",
                                        what="Connected")
                if call in TRANSPORT_NAMES:
                    for page in pages:
                        await page.wait_for("(name) => document.getElementById('stats').textContent.includes(name)",
                                            f"over {TRANSPORT_NAMES[call]}", what=f"the call over {TRANSPORT_NAMES[call]}")
                if args.room_members > 2:
                    pulse_latency = pulse_output_latency(pulse) if pulse else []
                    windows = await speak_in_turn(pages, args)
                    data = [await page.evaluate("() => window.__bench", timeout=30) for page in pages]
                    states = [await page.text("#status") for page in pages]
                else:
                    start = time.time() * 1000 + args.warmup * 1000
                    if args.link == "stalls":
                        stalling = asyncio.create_task(stall_now_and_then(link, args.warmup + 2, stalls))
                    if args.link == "cut":
                        stalling = asyncio.create_task(cut_once(link, args.warmup + CUT_AFTER_S, stalls))
                    await asyncio.sleep(args.warmup)
                    crossed = [netpath.stats()] if netpath is not None else []
                    await asyncio.sleep(args.seconds / 2)
                    pulse_latency = pulse_output_latency(pulse) if pulse else []
                    await asyncio.sleep(args.seconds / 2)
                    if netpath is not None:
                        crossed.append(netpath.stats())
                    end = start + args.seconds * 1000
                    await asyncio.sleep(1)  # ticks sent just before the end are heard after it
                    data = [await page.evaluate("() => window.__bench", timeout=30) for page in pages]
                    states = [await page.text("#status") for page in pages]
    finally:
        if stalling is not None:
            stalling.cancel()
        await asyncio.gather(*(page.close() for page in pages))
        if link is not None:
            await link.close()
        if pulse:
            pulse.stop()
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
    period_ms = args.period * 1000
    if call != "webrtc":
        for page in data:  # the ticks sent, at wall-clock ms, as webrtc_direction() times them
            page["sentOnsets"] = wall_onsets(page["micOnsets"], page["micFrames"])
    if args.room_members > 2:
        result = {"browsers": dict(zip(names, args.browsers)), "room_members": args.room_members,
                  "seconds_per_speaker": args.seconds, "warmup_s": args.warmup, "sample_rate": info[0]["rate"],
                  "output_latency_pulse_ms": pulse_latency, "status_at_end": states, "targets": TARGETS}
        for i, (start, end) in enumerate(windows):
            for j in range(len(pages)):
                if j != i:
                    result[f"{names[i]}->{names[j]}"] = direction(data[i], data[j], start, end, period_ms)
        return result
    if args.record_arrivals and call != "webrtc":
        record_arrivals(args, call, number, data)
    if call == "webrtc":
        figures = {"a->b": webrtc_direction(data[0], data[1], start, end, period_ms),
                   "b->a": webrtc_direction(data[1], data[0], start, end, period_ms)}
    else:
        figures = {"a->b": direction(data[0], data[1], start, end, period_ms, stalls if args.link == "stalls" else []),
                   "b->a": direction(data[1], data[0], start, end, period_ms, stalls if args.link == "stalls" else [])}
    if len(crossed) == 2:
        # Page a is behind the path: what it sends goes up, what it receives comes down.
        for key, way in (("a->b", "up"), ("b->a", "down")):
            sent = crossed[1][way]["bytes"] - crossed[0][way]["bytes"]
            figures[key]["wire_kbit_s"] = round(sent * 8 / args.seconds / 1000, 1)
    latencies = [figures["b->a"]["output_latency_ms"], figures["a->b"]["output_latency_ms"]]
    return {
        **({"resume": resumed(data, stalls[0][0], latencies, period_ms)} if args.link == "cut" and stalls else {}),
        "call": call,
        "browsers": dict(zip("ab", args.browsers)),
        "link": args.link,
        "path": {"up": str(netpath.up), "down": str(netpath.down)} if netpath is not None else None,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "sample_rate": info[0]["rate"],
        "output_latency_pulse_ms": pulse_latency,
        "status_at_end": states,
        **figures,
        "targets": TARGETS,
    }


def record_arrivals(args: argparse.Namespace, call: str, number: int, data: list[dict]) -> None:
    """--record-arrivals: each direction's trace, named by link, engines, direction and run."""
    args.record_arrivals.mkdir(parents=True, exist_ok=True)
    engines = dict(zip("ab", args.browsers))
    for key, sender, receiver in (("a->b", "a", "b"), ("b->a", "b", "a")):
        meta = {"link": args.link, **({"path": args.path, "call": call} if args.path else {}),
                "direction": key, "sender": engines[sender], "receiver": engines[receiver],
                "seconds": args.seconds, "warmup_s": args.warmup, "run": number, "recorded": time.strftime("%Y-%m-%d"),
                "load_average": [round(x, 2) for x in os.getloadavg()]}
        build = "old-" if call == "duoduel-old" else ""
        name = f"{build}{args.link}-{engines[sender]}-{engines[receiver]}-{sender}{receiver}-{number}.csv"
        write_arrivals(args.record_arrivals / name, data["ab".index(receiver)], meta)


def headline(result: dict) -> dict:
    """The figures of docs/performance.md's table, per direction."""
    rows = {}
    for key in [k for k in result if "->" in k]:
        d = result[key]
        engines = f"{result['browsers'][key[0]]}->{result['browsers'][key[-1]]}"
        ear = d["mouth_to_ear_ms"] or {}
        rows[f"{key} {engines}"] = {
            **({"audio_back": result["resume"].get(key)} if "resume" in result else {}),
            "to_output_node_p50": d["to_output_node_ms"]["p50"], "to_output_node_p95": d["to_output_node_ms"]["p95"],
            "output_latency": d["output_latency_ms"],
            "mouth_to_ear_p50": ear.get("p50"), "mouth_to_ear_p95": ear.get("p95"),
            "page_estimate_p50": d["page_estimate_ms"]["p50"],
            "dropouts": d["dropouts"], "lost": d["frames"]["lost"], "concealed": d["frames"].get("concealed"),
            "underruns": d["frames"].get("underruns"), "kbit_s": d["kbit_s"],
            "wire_kbit_s": d.get("wire_kbit_s"),
            "stall_recovered_after_s": [(row["measured"] or {}).get("recovered_after_s") for row in d["stall_recovery"]],
            "page_stall_recovered_after_s": [(row["page"] or {}).get("recovered_after_s") for row in d["stall_recovery"]],
        }
    return rows


def pooled(runs: list[dict]) -> dict:
    """One call's figures over every direction of every run: the medians of the p50s, p95s and kbit/s, the
    mean and the worst of the dropouts, the concealed frames and underruns in all (the comparison table's columns)."""
    rows = [row for run in runs for row in headline(run).values()]

    def column(name: str) -> list[float]:
        return [row[name] for row in rows if row[name] is not None]

    def median(name: str) -> float | None:
        return round(statistics.median(column(name)), 1) if column(name) else None

    return {"directions": len(rows), "mouth_to_ear_p50": median("mouth_to_ear_p50"),
            "mouth_to_ear_p95": median("mouth_to_ear_p95"), "to_output_node_p50": median("to_output_node_p50"),
            "dropouts_mean": round(statistics.mean(column("dropouts")), 4) if column("dropouts") else None,
            "dropouts_worst": max(column("dropouts"), default=None),
            "concealed": sum(column("concealed")) if column("concealed") else None,
            "underruns": sum(column("underruns")) if column("underruns") else None,
            "kbit_s": median("kbit_s"), "wire_kbit_s": median("wire_kbit_s")}


def medians(runs: list[dict]) -> dict:
    """Median of every headline figure over the runs."""
    tables = [headline(run) for run in runs]
    out = {}
    for row in tables[0]:
        out[row] = {}
        for column in tables[0][row]:
            values = [t[row][column] for t in tables if t[row][column] is not None]
            if values and isinstance(values[0], list):  # one figure per stall: every run's, in order
                out[row][column] = [value for run in values for value in run]
                continue
            if values and isinstance(values[0], dict):  # the cut's figures: every run's
                out[row][column] = values
                continue
            out[row][column] = round(statistics.median(values), 4 if column == "dropouts" else 1) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browsers", default="chromium,chromium",
                        help="engines of page a and page b: chromium or firefox (default chromium,chromium)")
    parser.add_argument("--link", choices=LINKS, default="good",
                        help="page a's link: good (loopback), jitter or stalls, through bench/impair.py (default good)")
    parser.add_argument("--seconds", type=float, default=20, help="measured call time (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="call time ignored first (default 3)")
    parser.add_argument("--period", type=float, default=0.5, help="seconds between ticks (default 0.5)")
    parser.add_argument("--runs", type=int, default=1, help="calls to measure; more than one adds medians")
    parser.add_argument("--room-members", type=int, default=2,
                        help="3 to 8: that many pages in one group room, speaking in turn (default 2: a call)")
    parser.add_argument("--call", default="duoduel",
                        help="duoduel, webrtc (bench/webrtc.html), or both, e.g. duoduel,webrtc: alternating in each run")
    parser.add_argument("--path", type=shape_option, default=None,
                        help='page a behind bench/netpath.py, the same both ways, e.g. "delay=25,jitter=5,loss=2" (root)')
    parser.add_argument("--record-arrivals", type=Path, metavar="DIR",
                        help="write, per run and direction, the frames the receiver's playback worklet took (seq, "
                             "audio clock, length) to DIR as a trace for tests/js/traces (a call of two only)")
    parser.add_argument("--compare-static", type=Path, metavar="OLD_DIR",
                        help="in each run, also a call whose page is OLD_DIR (duoduel.py --static), the order "
                             "alternating: the old build of the page against this one (e.g. an export of main's static/)")
    args = parser.parse_args()
    calls = [name.strip() for name in args.call.split(",")]
    if not set(calls) <= set(CALL_SERVERS) - {"duoduel-old"}:
        raise SystemExit("latency bench: --call takes webtransport, websocket, duoduel or webrtc, or several: webtransport,websocket,webrtc")
    if args.compare_static is not None:
        if "duoduel" not in calls:
            raise SystemExit("latency bench: --compare-static compares two duoduel pages: --call must name duoduel")
        calls = ["duoduel-old"] + calls  # with webrtc too: old, new and WebRTC in each run
    if ("webrtc" in calls or args.path is not None) and (args.link != "good" or args.room_members > 2):
        raise SystemExit("latency bench: --call webrtc and --path are for a call of two; leave out --link and --room-members")
    if args.path is not None and (reason := missing_netpath()):
        raise SystemExit(f"latency bench: --path: {reason}")
    args.browsers = [name.strip() for name in args.browsers.split(",")]
    if args.room_members > 2:
        args.browsers = (args.browsers + ["chromium"] * args.room_members)[:args.room_members]
    elif len(args.browsers) != 2:
        raise SystemExit("latency bench: --browsers takes two of chromium, firefox, e.g. chromium,firefox")
    if not 2 <= args.room_members <= 8 or not set(args.browsers) <= {"chromium", "firefox"}:
        raise SystemExit("latency bench: --room-members takes 2 to 8, --browsers chromium or firefox for each page")
    if args.room_members > 2 and args.link != "good":
        raise SystemExit("latency bench: --link is for a call of two; leave it out with --room-members")
    if reason := missing_browser() or ("firefox" in args.browsers and missing_firefox()):
        raise SystemExit(f"latency bench: {reason}")
    netpath = NetPath(args.path, seed=1).start() if args.path is not None else None
    runs = []
    try:
        for number in range(1, args.runs + 1):
            # The old page first in odd runs, second in even ones (the second call of a pair is measured later).
            for call in calls if number % 2 or args.compare_static is None else calls[::-1]:
                runs.append(asyncio.run(run(args, call, netpath, number)))
                print(json.dumps(runs[-1], indent=2), flush=True)
    finally:
        if netpath is not None:
            netpath.close()
    if len(calls) == 1:
        print(json.dumps({"runs": len(runs), "headline": headline(runs[0]) if len(runs) == 1 else medians(runs)},
                         indent=2))
        return
    by_call = {call: [run for run in runs if run["call"] == call] for call in calls}
    print(json.dumps({"runs": len(runs), "path": runs[0]["path"],
                      "headline": {call: medians(done) for call, done in by_call.items()},
                      "comparison": {call: pooled(done) for call, done in by_call.items()}}, indent=2))


if __name__ == "__main__":
    main()
