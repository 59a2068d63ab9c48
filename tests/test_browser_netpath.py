"""Real calls across the packet-level path (bench/netpath.py) at 25 ms each way and 2 % random loss: duoduel's,
and the plain WebRTC call that bench/latency.py measures it against (bench/webrtc.html, bench/webrtc.py); and
copies of frames only where frames are lost: sent to a page that reports loss, whatever the sender's transport, in
a call and in a group room, and none on the same path without loss.

The server (duoduel, or the WebRTC page's signalling) runs here on the path's server address. Ann's Chromium runs
in the path's namespace, so her page, its WebSocket and her audio cross the forwarder, which drops one packet in
fifty both ways (TCP resends them; WebRTC conceals them); Bob's Chromium is on the server's side. http://10.9.K.1
is no secure context, so both browsers are told to treat the server's origin as one (the microphone needs it).
Each fake microphone plays a tone of its own, so the dominant frequency of what a page plays says whose voice
reached it. Skipped without Chromium or without namespaces and TUN devices, unless DUODUEL_REQUIRE_BROWSER=1 and
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
from pathlib import Path

import pytest

import duoduel
from bench.netpath import NetPath, Shape
from browser import PARTNER_SAMPLES_JS, dominant_hz, find_chromium, missing_browser, write_tone
from conftest import ROOT, running_server
from pages import ChromiumPage, Page, room_path, without_webtransport

TONES = {"ann": 440.0, "bob": 660.0, "cyd": 880.0}
HZ_TOLERANCE = 5.0
TIMEOUT_S = 20  # two browsers on a loaded 2-core machine, across a lossy path

# What the WebRTC page plays from its partner (call.output): an analyser's window, as PARTNER_SAMPLES_JS's.
WEBRTC_SAMPLES_JS = """() => {
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

# The addresses of the ICE candidate pair the WebRTC call's audio goes over.
SELECTED_PAIR_JS = """async () => {
  const report = await window.call.pc.getStats();
  for (const r of report.values()) {
    if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
      return [report.get(r.localCandidateId).address, report.get(r.remoteCandidateId).address];
    }
  }
  return null;
}"""


LOSSY = Shape(delay=25, loss=2)
CLEAN = Shape(delay=25)


@pytest.fixture
def path(netpath, request) -> NetPath:
    """25 ms each way (a 50 ms round trip) and 2 % random loss on every packet, both ways (or the shape a test
    gives by indirect parametrization)."""
    return netpath(getattr(request, "param", LOSSY), seed=20)


@pytest.fixture
def config(path: NetPath) -> duoduel.Config:
    """duoduel listens on the path's server address."""
    return duoduel.Config(host=path.server_address, port=0, room_size=2)


@pytest.fixture
def signalling(path: NetPath) -> Iterator[str]:
    """bench/webrtc.py on the path's server address; its origin."""
    popen = subprocess.Popen([sys.executable, str(ROOT / "bench" / "webrtc.py"), "--host", path.server_address,
                              "--port", "0"], stdout=subprocess.PIPE, text=True)
    port = re.search(r"listening on http://[^ ]*:(\d+)/", popen.stdout.readline())[1]
    yield f"http://{path.server_address}:{port}"
    popen.send_signal(signal.SIGTERM)
    popen.wait(10)
    popen.stdout.close()


@pytest.fixture
async def call(path: NetPath, tmp_path: Path) -> AsyncIterator:
    """call(origin, where="/", people=("ann", "bob"), websocket=()): Ann (behind the path) and the others (by the
    server) open the page at origin + where and press Start, those named in websocket on a page without WebTransport;
    their pages, once all say Connected. At the end the browsers are closed, after checking that no page threw."""
    if reason := missing_browser():
        if os.environ.get("DUODUEL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DUODUEL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    pages: list[Page] = []
    async with async_playwright() as playwright:

        async def start(origin: str, where: str = "/", people: tuple[str, ...] = ("ann", "bob"),
                        websocket: tuple[str, ...] = ()) -> list[Page]:
            flags = tuple(path.chromium_flags(origin))
            for person in people:
                executable = path.executable(find_chromium()) if person == "ann" else None
                tone = write_tone(tmp_path / f"{person}.wav", TONES[person])
                page = await ChromiumPage.launch(playwright, person, tone, flags=flags, executable=executable)
                pages.append(page)
                await page.goto(origin + where)
                if person in websocket:
                    await without_webtransport(page)
                await page.click("#start")
            for page in pages:
                await page.wait_for("() => document.getElementById('status').textContent === 'Connected'",
                                    timeout=TIMEOUT_S, what="Connected")
            return pages

        try:
            yield start
        finally:
            await asyncio.gather(*(page.close() for page in pages))
    errors = [f"{page}: {error}" for page in pages for error in page.errors]
    assert not errors, f"uncaught errors in the page: {errors}"


async def played_hz(page: Page, samples_js: str) -> float:
    """The frequency the page plays from its partner, once it is the partner's tone or time is up."""
    partner = TONES["bob" if page.name == "ann" else "ann"]
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        window = await page.evaluate(samples_js)
        hz = dominant_hz(window["samples"], window["rate"]) if window else 0.0
        if abs(hz - partner) <= HZ_TOLERANCE or asyncio.get_running_loop().time() > deadline:
            return hz
        await asyncio.sleep(0.2)


async def test_call_across_a_lossy_50_ms_path_is_heard_both_ways(server, path, call):
    """Ann behind 25 ms each way and 2 % loss, Bob by the server: each hears the other's tone, Ann's page
    measures the 50 ms round trip, and the path lost packets of the call both ways."""
    ann, bob = await call(server.origin)
    assert await played_hz(ann, PARTNER_SAMPLES_JS) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await played_hz(bob, PARTNER_SAMPLES_JS) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)

    # Each page's own figure: half the least round trip of its pings to the server.
    paths = {page.name: (await page.evaluate("() => window.duoduel.paths"))["pathMs"] for page in (ann, bob)}
    assert paths["ann"] >= 25 and paths["bob"] < 25, paths
    crossed = path.stats()
    for direction in ("up", "down"):
        assert crossed[direction]["delivered"] > 200 and crossed[direction]["lost"] > 0, crossed


async def test_plain_webrtc_call_across_the_path_is_heard_both_ways(path, signalling, call):
    """The bench's WebRTC page: each plays the other's tone, and Ann's audio goes from her address behind
    the path to Bob's across it (her selected ICE candidate pair)."""
    ann, bob = await call(signalling)
    assert await played_hz(ann, WEBRTC_SAMPLES_JS) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await played_hz(bob, WEBRTC_SAMPLES_JS) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
    assert await ann.evaluate(SELECTED_PAIR_JS) == [path.client_address, path.server_address]


def webtransport_server(path: NetPath, room_size: int = 2):
    """duoduel on the path's server address with WebTransport on (a free UDP port)."""
    return running_server(duoduel.Config(host=path.server_address, port=0, room_size=room_size, webtransport=True,
                                         webtransport_port=0))


async def test_call_over_webtransport_across_the_lossy_path_is_heard_both_ways(path, call):
    """The same path with WebTransport offered: Ann's page talks over WebTransport (the figures line says so), her
    audio crosses the path as datagrams, and each hears the other's tone despite the loss."""
    async with webtransport_server(path) as server:
        ann, bob = await call(server.origin)
        for page in (ann, bob):
            await page.wait_for(
                "() => window.duoduel.link?.kind === 'webtransport' && "
                "document.getElementById('stats').textContent.includes('over WebTransport')",
                timeout=TIMEOUT_S, what="the call over WebTransport, as the figures line says")
        assert await played_hz(ann, PARTNER_SAMPLES_JS) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
        assert await played_hz(bob, PARTNER_SAMPLES_JS) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
        paths = {page.name: (await page.evaluate("() => window.duoduel.paths"))["pathMs"] for page in (ann, bob)}
        assert paths["ann"] >= 25 and paths["bob"] < 25, paths
        addresses = {session.remote_address[0] for session in server.webtransport.sessions}
        assert path.client_address in addresses  # Ann's session comes from behind the path
        crossed = path.stats()
        for direction in ("up", "down"):
            assert crossed[direction]["delivered"] > 200 and crossed[direction]["lost"] > 0, crossed


async def test_call_over_webtransport_recovers_lost_datagrams_from_the_next_ones_copies(path, call):
    """Over WebTransport across the lossy path, each page reports the datagrams it loses, and once the other sends
    copies, recovers frames whose datagram was lost from the copy in the next one: over 10 s its playback counts
    recovered frames, and fewer frames it never played than it recovered."""
    async with webtransport_server(path) as server:
        ann, bob = await call(server.origin)
        for page in (ann, bob):
            await page.wait_for("() => document.getElementById('stats').textContent.includes('over WebTransport')",
                                timeout=TIMEOUT_S, what="the call over WebTransport")
            await page.wait_for("() => window.duoduel.copies.on", timeout=TIMEOUT_S, what="copies, on a loss report")
        counts = "() => window.duoduel.session.stats().playback"
        before = [await page.evaluate(counts) for page in (ann, bob)]
        await asyncio.sleep(10)  # about 1,000 frames each way: some twenty lost datagrams
        for page, then in zip((ann, bob), before):
            now = await page.evaluate(counts)
            recovered = now["recovered"] - then["recovered"]
            unplayed = now["lost"] + now["late"] - then["lost"] - then["late"]
            assert recovered > 0 and unplayed < recovered, (page, then, now)
        crossed = path.stats()
        assert crossed["up"]["lost"] > 0 and crossed["down"]["lost"] > 0, crossed


async def wait_over(page: Page, kind: str) -> None:
    """The page's link is of that kind ('webtransport' or 'websocket')."""
    await page.wait_for(f"() => window.duoduel.link?.kind === '{kind}'", timeout=TIMEOUT_S, what=f"the call over {kind}")


# What the page plays of one sender: its playout's counters (Playout.stats()), in a call (the partner) or a group
# room (the member in the given slot).
PLAYBACK_JS = "slot => (slot === null ? window.duoduel.session.stats() : window.duoduel.session.memberStats(slot))?.playback"


async def wait_recovered(page: Page, slot: int | None = None) -> None:
    """Wait until the page has played a frame of that sender (the partner, or the member in slot) from a copy."""
    await page.wait_for(f"slot => ({PLAYBACK_JS})(slot)?.recovered > 0", slot, timeout=TIMEOUT_S,
                        what=f"a frame recovered from a copy (slot {slot})")


async def test_websocket_senders_audio_to_a_webtransport_page_across_the_lossy_path_comes_with_copies(path, call):
    """Bob over the WebSocket by the server, Ann over WebTransport behind the lossy path: Ann's page loses some of
    Bob's datagrams and says so, Bob's page (whose own link loses nothing) then sends copies, and Ann's playback
    recovers frames from them."""
    async with webtransport_server(path) as server:
        ann, bob = await call(server.origin, websocket=("bob",))
        await wait_over(ann, "webtransport")
        await wait_over(bob, "websocket")
        await wait_recovered(ann)
        ann_copies = await ann.evaluate("() => window.duoduel.copies")
        bob_copies = await bob.evaluate("() => window.duoduel.copies")
        assert ann_copies["reported"] > 0, ann_copies
        assert bob_copies["reports"] > 0 and bob_copies["packed"] > 0, bob_copies
        assert path.stats()["down"]["lost"] > 0


@pytest.mark.parametrize("path", [CLEAN], indirect=True, ids=["clean"])
async def test_call_over_webtransport_across_a_clean_path_sends_no_copies(path, call):
    """The same 50 ms path without loss: both pages over WebTransport hear each other, nobody reports loss, and no
    frame is sent with a copy, for longer than the lossy path took to bring copies (a few seconds)."""
    async with webtransport_server(path) as server:
        ann, bob = await call(server.origin)
        for page in (ann, bob):
            await wait_over(page, "webtransport")
        assert await played_hz(ann, PARTNER_SAMPLES_JS) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
        assert await played_hz(bob, PARTNER_SAMPLES_JS) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
        await asyncio.sleep(8)  # an absence: watched for a while
        for page in (ann, bob):
            copies = await page.evaluate("() => window.duoduel.copies")
            playback = await page.evaluate(PLAYBACK_JS, None)
            assert copies == {"on": False, "packed": 0, "reports": 0, "reported": 0}, (page, copies, playback)
            assert playback["received"] > 500, (page, playback)


async def test_group_room_across_the_lossy_path_gets_copies_from_every_sender(path, call):
    """Ann behind the lossy path over WebTransport, Bob over the WebSocket and Cyd over WebTransport by the server, in
    one group room: Ann loses datagrams of both, says so, and recovers frames of each from the copies they then
    send."""
    async with webtransport_server(path, room_size=3) as server:
        ann, bob, cyd = await call(server.origin, room_path("lossy"), ("ann", "bob", "cyd"), websocket=("bob",))
        await wait_over(ann, "webtransport")
        await wait_over(bob, "websocket")
        await wait_over(cyd, "webtransport")
        for sender in (bob, cyd):
            slot = (await sender.evaluate("() => window.duoduel.group"))["slot"]
            await wait_recovered(ann, slot)
            copies = await sender.evaluate("() => window.duoduel.copies")
            assert copies["reports"] > 0 and copies["packed"] > 0, (sender, copies)
