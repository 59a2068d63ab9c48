#!/usr/bin/env python3
"""What a lost Opus frame can be replaced with in each engine: in-band FEC, a redundant copy, or concealment.

usage: python bench/opus_fec.py [--engines chromium,firefox] [--seconds 4] [--every 10]

Each engine loads the page from duoduel.py (on CPU 1; the browser on CPU 0) and, with WebCodecs as the page uses
it (its encoder's config, mono 48 kHz, 28 kbit/s constant, 20 ms), encodes --seconds of a voiced test signal
(harmonics of a gliding 120 to 220 Hz pitch, syllable-like envelope) twice: as the page does, and with
useinbandfec and packetlossperc 10. It says whether the engine takes those options, and then decodes each stream
in its own AudioDecoder twice: whole, and with every --every-th packet left out, as a lost datagram would be.
WebCodecs has no call to decode a packet's FEC and no call to say a packet is missing: the bench counts what
the decoder puts out for the stream with gaps (fewer samples: it neither conceals nor uses the FEC).

Then, in Python with libopus (tests/opus.py's library), the same lost frames are replaced three ways on the
engine's own packets, each against the frame as the whole stream decodes it (the reference):
  copy         the frame's own packet, as a redundant copy in the next datagram brings it (RFC 2198, RED);
  fec          libopus's decode_fec=1 on the next packet: the LBRR data in-band FEC puts there, which only a
               decoder with that call can reach, and a browser's WebCodecs decoder has none;
  conceal      libopus's packet loss concealment, which is what a decoder with no FEC does at best.
It prints, per engine, JSON: the options taken, bytes per packet with and without FEC, the browser decoder's
samples for the stream with gaps, and the SNR (dB, median over the lost frames) of each replacement against the
reference (99: identical).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

RATE = 48000
FRAME = RATE // 50

# In the page: encode the signal with and without FEC, and decode each whole and with gaps.
MEASURE_JS = """async ([signal, every]) => {
  const { opusConfigCandidates } = await import('/encoder.js');
  const samples = Float32Array.from(signal);
  const base = opusConfigCandidates(48000)[0];
  const fecConfig = { ...base, opus: { ...base.opus, useinbandfec: true, packetlossperc: 10 } };
  const support = async (config) => {
    try {
      const { supported, config: accepted } = await AudioEncoder.isConfigSupported(config);
      return { supported, useinbandfec: accepted?.opus?.useinbandfec ?? null,
               packetlossperc: accepted?.opus?.packetlossperc ?? null };
    } catch (error) {
      return { supported: false, error: String(error) };
    }
  };
  const encode = async (config) => {
    const packets = [];
    const encoder = new AudioEncoder({
      output: (chunk) => { const b = new Uint8Array(chunk.byteLength); chunk.copyTo(b); packets.push(Array.from(b)); },
      error: (e) => { throw e; },
    });
    encoder.configure(config);
    for (let at = 0; at + 960 <= samples.length; at += 960) {
      encoder.encode(new AudioData({ format: 'f32-planar', sampleRate: 48000, numberOfFrames: 960,
        numberOfChannels: 1, timestamp: at / 48 * 1000, data: samples.slice(at, at + 960) }));
    }
    await encoder.flush();
    encoder.close();
    return packets;
  };
  const decode = async (packets) => {
    let total = 0;
    let outputs = 0;
    const decoder = new AudioDecoder({ output: (a) => { total += a.numberOfFrames; outputs++; a.close(); },
      error: (e) => { throw e; } });
    decoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
    packets.forEach((p, i) => {
      if (p !== null) decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: i * 20000, data: new Uint8Array(p) }));
    });
    await decoder.flush();
    decoder.close();
    return { samples: total, outputs };
  };
  const result = { userAgent: navigator.userAgent, support: { plain: await support(base), fec: await support(fecConfig) } };
  for (const [name, config] of [['plain', base], ['fec', fecConfig]]) {
    if (!result.support[name].supported) continue;
    const packets = await encode(config);
    const gapped = packets.map((p, i) => (i % every === every - 1 ? null : p));
    result[name] = { packets, whole: await decode(packets), gapped: await decode(gapped),
                     left_out: gapped.filter((p) => p === null).length };
  }
  return result;
}"""


def test_signal(seconds: float) -> np.ndarray:
    """A voiced, speech-like signal: harmonics of a gliding pitch under a syllable envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 170 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(h * phase) / h for h in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    return (0.25 * voice * envelope).astype(np.float32)


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    power = float(np.sum(reference ** 2))
    return 99.0 if noise == 0 else round(10 * np.log10(power / noise), 1)


def replacements(packets: list[bytes], every: int) -> dict:
    """SNR of each way of replacing the lost frames, against the whole stream's decode of them."""
    from opus import _LIB, MAX_FRAME_SAMPLES, OpusDecoder

    with OpusDecoder(RATE) as whole:
        reference = [whole.decode(p) for p in packets]
    lost = [i for i in range(len(packets) - 1) if i % every == every - 1]
    figures: dict[str, list[float]] = {"copy": [], "fec": [], "conceal": []}
    for way in figures:
        with OpusDecoder(RATE) as decoder:
            for i, packet in enumerate(packets):
                if i not in lost:
                    out = decoder.decode(packet)
                elif way == "copy":
                    out = decoder.decode(packet)
                elif way == "conceal":
                    out = decoder.decode(None)
                else:
                    pcm = (ctypes.c_float * MAX_FRAME_SAMPLES)()
                    following = packets[i + 1]
                    count = _LIB.opus_decode_float(decoder._state, following, len(following), pcm, FRAME, 1)
                    out = np.ctypeslib.as_array(pcm)[:max(count, 0)].copy()
                if i in lost:
                    figures[way].append(snr_db(reference[i], out) if len(out) == len(reference[i]) else -99.0)
    return {way: round(statistics.median(values), 1) for way, values in figures.items()}


async def measure(engines: list[str], seconds: float, every: int, origin: str) -> None:
    from playwright.async_api import async_playwright
    from firefox import PulseAudio
    from pages import Browsers

    signal = test_signal(seconds)
    services: dict[str, object] = {}

    def service(name: str):
        if name not in services:
            services[name] = PulseAudio().start()
        return services[name]

    try:
        async with async_playwright() as playwright:
            for engine in engines:
                browsers = Browsers(playwright, service, Path(tempfile.mkdtemp(prefix="duoduel-fec-bench-")))
                try:
                    page = await browsers.launch("bench", engine, 440.0)
                    await page.goto(origin + "/")
                    data = await page.evaluate(MEASURE_JS, [signal.tolist(), every], timeout=120)
                finally:
                    await browsers.close()
                result = {"engine": engine, "browser": data["userAgent"], "options_taken": data["support"]}
                for name in ("plain", "fec"):
                    if name not in data:
                        continue
                    packets = [bytes(p) for p in data[name]["packets"]]
                    result[name] = {
                        "bytes_per_packet": round(statistics.mean(len(p) for p in packets), 1),
                        "browser_decoder_whole_samples": data[name]["whole"]["samples"],
                        "browser_decoder_with_gaps_samples": data[name]["gapped"]["samples"],
                        "packets_left_out": data[name]["left_out"],
                        "lost_frame_snr_db": replacements(packets, every),
                    }
                print(json.dumps(result), flush=True)
    finally:
        for running in services.values():
            running.stop()


def main() -> None:
    from latency import start_server

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="chromium,firefox", help="comma-separated (default chromium,firefox)")
    parser.add_argument("--seconds", type=float, default=4, help="signal length (default 4)")
    parser.add_argument("--every", type=int, default=10, help="leave out every Nth packet (default 10)")
    args = parser.parse_args()
    popen, port = start_server()
    os.sched_setaffinity(popen.pid, {1})
    os.sched_setaffinity(0, {0})  # the browsers inherit CPU 0
    try:
        asyncio.run(measure([e.strip() for e in args.engines.split(",")], args.seconds, args.every,
                            f"http://127.0.0.1:{port}"))
    finally:
        popen.terminate()
        popen.wait(10)


if __name__ == "__main__":
    main()
