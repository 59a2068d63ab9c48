"""Headless Chromium with a fake microphone, shared by tests/test_browser.py and bench/latency.py.

Each page gets a browser process of its own: Chromium's fake capture device plays one WAV file
(looped) per process, so two people with two different voices need two processes.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import wave
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium",)
SAMPLE_RATE = 48000

# Flags that work headless on a machine without a GPU, a sound card or a network profile.
BASE_FLAGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Two pages share two cores: a hidden or idle page must not be throttled.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if find_chromium() is None:
        return "Chromium not found (/usr/bin/chromium or chromium on PATH)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


def write_wav(path: Path, samples: list[float], rate: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM."""
    data = struct.pack(f"<{len(samples)}h", *(round(max(-1.0, min(1.0, s)) * 32767) for s in samples))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return path


def write_tone(path: Path, hz: float, seconds: float = 4.0, amplitude: float = 0.5) -> Path:
    """A sine tone that loops without a click: a whole number of periods fits the file."""
    n = round(seconds * SAMPLE_RATE)
    hz = round(hz * seconds) / seconds  # whole cycles per file
    return write_wav(path, [amplitude * math.sin(2 * math.pi * hz * i / SAMPLE_RATE) for i in range(n)])


def write_click_train(path: Path, period_s: float = 0.5, seconds: float = 4.0, hz: float = 1000.0,
                      tick_s: float = 0.01, amplitude: float = 0.8) -> Path:
    """A tick (a short Hann-windowed tone burst) every period_s, silence in between."""
    n = round(seconds * SAMPLE_RATE)
    period = round(period_s * SAMPLE_RATE)
    tick = round(tick_s * SAMPLE_RATE)
    samples = [0.0] * n
    for start in range(0, n, period):
        for i in range(min(tick, n - start)):
            window = 0.5 - 0.5 * math.cos(2 * math.pi * i / tick)
            samples[start + i] = amplitude * window * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)
    return write_wav(path, samples)


def launch_args(wav: Path) -> dict:
    """Keyword arguments for playwright's chromium.launch() with this WAV as the microphone."""
    return {
        "executable_path": find_chromium(),
        "headless": True,
        "args": [*BASE_FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
    }


# Page-side snippets (evaluated with page.evaluate / page.wait_for_function).

# RMS of what the page plays from its partner, over the analyser's window (about 0.7 s at 48 kHz).
PARTNER_RMS_JS = """() => {
  const s = window.duoduel && window.duoduel.session;
  if (!s) return 0;
  const a = s.partnerAnalyser;
  const buf = new Float32Array(a.fftSize);
  a.getFloatTimeDomainData(buf);
  let sum = 0;
  for (const v of buf) sum += v * v;
  return Math.sqrt(sum / buf.length);
}"""

# What the page plays from its partner, the analyser's whole window, with the context's rate.
PARTNER_SAMPLES_JS = """() => {
  const s = window.duoduel.session;
  const a = s.partnerAnalyser;
  const buf = new Float32Array(a.fftSize);
  a.getFloatTimeDomainData(buf);
  return {rate: s.context.sampleRate, samples: Array.from(buf)};
}"""


def dominant_hz(samples, rate: float) -> float:
    """Frequency of the strongest spectral peak (Hann window, parabolic interpolation)."""
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:])) + 1
    if 1 <= k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
        if a - 2 * b + c < 0:  # a true peak, not silence
            k += 0.5 * (a - c) / (a - 2 * b + c)
    return k * rate / len(x)
