"""A real call across the packet-level path (bench/netpath.py): 25 ms each way and 2 % random loss.

The server runs here on the path's server address; Ann's Chromium runs in the path's namespace, so the page,
its WebSocket and every TCP segment of her call cross the forwarder, which drops one packet in fifty and TCP
resends it; Bob's Chromium is on the server's side. http://10.9.K.1 is no secure context, so both browsers are
told to treat the server's origin as one (the microphone needs it). Each fake microphone plays a tone of its
own, so the dominant frequency of what a page plays says whose voice reached it.
Skipped without Chromium or without namespaces and TUN devices, unless DUODUEL_REQUIRE_BROWSER=1 and
DUODUEL_REQUIRE_NETNS=1 (CI), which fail instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

import duoduel
from bench.netpath import NetPath, Shape
from browser import PARTNER_RMS_JS, PARTNER_SAMPLES_JS, dominant_hz, find_chromium, missing_browser, write_tone
from pages import ChromiumPage, Page

TONES = {"ann": 440.0, "bob": 660.0}
HEARD = 0.005  # partner RMS above this: a tone comes through
HZ_TOLERANCE = 5.0
HEARING_TIMEOUT_S = 20  # two browsers on a loaded 2-core machine, across a lossy path


@pytest.fixture
def path(netpath) -> NetPath:
    """25 ms each way (a 50 ms round trip) and 2 % random loss on every packet, both ways."""
    return netpath(Shape(delay=25, loss=2), seed=20)


@pytest.fixture
def config(path: NetPath) -> duoduel.Config:
    """The server listens on the path's server address."""
    return duoduel.Config(host=path.server_address, port=0, room_size=2)


@pytest.fixture
async def pages(tmp_path) -> AsyncIterator[list[Page]]:
    """The pages opened by the test; closed at the end, after checking none threw."""
    if reason := missing_browser():
        if os.environ.get("DUODUEL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DUODUEL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    opened: list[Page] = []
    yield opened
    await asyncio.gather(*(page.close() for page in opened))
    errors = [f"{page}: {error}" for page in opened for error in page.errors]
    assert not errors, f"uncaught errors in the page: {errors}"


async def wait_hearing(page: Page, person: str) -> float:
    """Wait until the page plays that person's tone (the analyser window holds it alone); return the Hz."""
    await page.wait_for(f"() => ({PARTNER_RMS_JS})() > {HEARD}", timeout=HEARING_TIMEOUT_S, what="a voice")
    deadline = asyncio.get_running_loop().time() + HEARING_TIMEOUT_S
    while True:
        window = await page.evaluate(PARTNER_SAMPLES_JS)
        hz = dominant_hz(window["samples"], window["rate"])
        if abs(hz - TONES[person]) <= HZ_TOLERANCE or asyncio.get_running_loop().time() > deadline:
            return hz
        await asyncio.sleep(0.2)


async def test_call_across_a_lossy_50_ms_path_is_heard_both_ways(server, path, pages, tmp_path):
    """Ann behind 25 ms each way and 2 % loss, Bob by the server: each hears the other's tone, Ann's page
    measures the 50 ms round trip, and the path lost packets of the call both ways."""
    from playwright.async_api import async_playwright

    flags = tuple(path.chromium_flags(server.origin))
    async with async_playwright() as playwright:
        for person, executable in (("ann", path.executable(find_chromium())), ("bob", None)):
            tone = write_tone(tmp_path / f"{person}.wav", TONES[person])
            page = await ChromiumPage.launch(playwright, person, tone, flags=flags, executable=executable)
            pages.append(page)
            await page.goto(server.origin + "/")
            await page.click("#start")
        ann, bob = pages
        for page in pages:
            await page.wait_for("() => document.getElementById('status').textContent === 'Connected'",
                                timeout=HEARING_TIMEOUT_S, what="Connected")
        assert await wait_hearing(ann, "bob") == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
        assert await wait_hearing(bob, "ann") == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)

        # Each page's own figure: half the least round trip of its pings to the server.
        paths = {page.name: (await page.evaluate("() => window.duoduel.paths"))["pathMs"] for page in pages}
        assert paths["ann"] >= 25 and paths["bob"] < 25, paths
        crossed = path.stats()
        for direction in ("up", "down"):
            assert crossed[direction]["delivered"] > 200 and crossed[direction]["lost"] > 0, crossed
        await asyncio.gather(*(page.close() for page in pages))  # inside Playwright's context
