"""The plain WebRTC call that bench/latency.py measures duoduel against (bench/webrtc.html, bench/webrtc.py),
across the packet-level path at 25 ms each way and 2 % loss, as the bench runs it.

Ann's Chromium runs in the path's namespace and Bob's here, both at the signalling server on the path's
address; each fake microphone plays a tone of its own. The call must be heard both ways (what the page plays,
call.output, holds the other's tone), and the audio must go between the browsers across the path: Ann's
selected ICE candidate pair joins her address in the namespace to Bob's across the path.
Skipped without Chromium or without namespaces and TUN devices, unless DUODUEL_REQUIRE_BROWSER=1 and
DUODUEL_REQUIRE_NETNS=1 (CI), which fail instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from bench.netpath import NetPath, Shape
from browser import dominant_hz, find_chromium, missing_browser, write_tone
from conftest import ROOT
from pages import ChromiumPage, Page

TONES = {"ann": 440.0, "bob": 660.0}
HZ_TOLERANCE = 5.0
TIMEOUT_S = 20  # two browsers on a loaded 2-core machine, across a lossy path

# What the page plays from its partner: the analyser's window (32768 samples, 0.7 s at 48 kHz).
PLAYED_JS = """() => {
  const call = window.call;
  if (!call || !call.output) return null;
  if (!call.analyser) {
    call.analyser = call.context.createAnalyser();
    call.analyser.fftSize = 32768;
    call.output.connect(call.analyser);
  }
  const samples = new Float32Array(call.analyser.fftSize);
  call.analyser.getFloatTimeDomainData(samples);
  return {rate: call.context.sampleRate, samples: Array.from(samples)};
}"""

# The addresses of the candidate pair the call's audio goes over.
SELECTED_PAIR_JS = """async () => {
  const report = await window.call.pc.getStats();
  for (const r of report.values()) {
    if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
      return [report.get(r.localCandidateId).address, report.get(r.remoteCandidateId).address];
    }
  }
  return null;
}"""


@pytest.fixture
def path(netpath) -> NetPath:
    return netpath(Shape(delay=25, loss=2), seed=21)


@pytest.fixture
def signalling(path: NetPath) -> Iterator[str]:
    """bench/webrtc.py on the path's address; its origin."""
    popen = subprocess.Popen([sys.executable, str(ROOT / "bench" / "webrtc.py"), "--host", path.server_address,
                              "--port", "0"], stdout=subprocess.PIPE, text=True)
    port = re.search(r"listening on http://[^ ]*:(\d+)/", popen.stdout.readline())[1]
    yield f"http://{path.server_address}:{port}"
    popen.send_signal(signal.SIGTERM)
    popen.wait(10)
    popen.stdout.close()


@pytest.fixture
async def pages() -> AsyncIterator[list[Page]]:
    """The pages opened by the test; closed at the end, after checking none threw."""
    if reason := missing_browser():
        if os.environ.get("DUODUEL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DUODUEL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    opened: list[Page] = []
    yield opened
    errors = [f"{page}: {error}" for page in opened for error in page.errors]
    assert not errors, f"uncaught errors in the page: {errors}"


async def played_hz(page: Page) -> float:
    """The frequency the page plays from its partner, once it plays that partner's tone or time is up."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    partner = "bob" if page.name == "ann" else "ann"
    while True:
        window = await page.evaluate(PLAYED_JS)
        hz = dominant_hz(window["samples"], window["rate"]) if window else 0.0
        if abs(hz - TONES[partner]) <= HZ_TOLERANCE or asyncio.get_running_loop().time() > deadline:
            return hz
        await asyncio.sleep(0.2)


async def test_plain_webrtc_call_across_the_path_is_heard_both_ways(path, signalling, pages, tmp_path):
    """Each page plays the other's tone, and Ann's audio goes from her address behind the path to Bob's."""
    from playwright.async_api import async_playwright

    flags = tuple(path.chromium_flags(signalling))
    async with async_playwright() as playwright:
        for person, executable in (("ann", path.executable(find_chromium())), ("bob", None)):
            tone = write_tone(tmp_path / f"{person}.wav", TONES[person])
            page = await ChromiumPage.launch(playwright, person, tone, flags=flags, executable=executable)
            pages.append(page)
            await page.goto(signalling + "/")
            await page.click("#start")
        ann, bob = pages
        try:
            for page in pages:
                await page.wait_for("() => document.getElementById('status').textContent === 'Connected'",
                                    timeout=TIMEOUT_S, what="Connected")
            assert await played_hz(ann) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
            assert await played_hz(bob) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
            assert await ann.evaluate(SELECTED_PAIR_JS) == [path.client_address, path.server_address]
        finally:
            await asyncio.gather(*(page.close() for page in pages))
