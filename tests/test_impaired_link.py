"""A real call over an impaired link: one page's whole origin (the page and its /ws) behind bench/impair.py.

Ann loads the page from the proxy, so everything she sends and receives crosses a link with 10 ms + 0-30 ms
of jitter each way (order kept, as TCP keeps it) and, mid-call, a 400 ms stall in both directions; Bob
talks to the server directly. Each fake microphone plays a tone of its own, so the dominant frequency of
what a page plays says whose voice reached it. The Origin check compares Origin with Host, and both name
the proxy's address, so the handshake through the proxy is an ordinary same-origin one.
Skipped without Chromium or Playwright, unless DUODUEL_REQUIRE_BROWSER=1 (CI), which fails instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.impair import Impairment, Link
from browser import PARTNER_RMS_JS, PARTNER_SAMPLES_JS, dominant_hz, launch_args, missing_browser, write_tone

TONES = {"ann": 440.0, "bob": 660.0}
HEARD = 0.005  # partner RMS above this: a tone comes through
HZ_TOLERANCE = 5.0
TIMEOUT_MS = 20_000  # generous: two browsers on a loaded 2-core machine, and a jittery link

MISSING = missing_browser()


@pytest.fixture(autouse=True)
def require_browser():
    """Skip without a browser, or fail when CI says the browser tests must run."""
    if MISSING is None:
        return
    if os.environ.get("DUODUEL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DUODUEL_REQUIRE_BROWSER=1 but {MISSING}")
    pytest.skip(MISSING)


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {name: write_tone(folder / f"{name}.wav", hz) for name, hz in TONES.items()}


@pytest.fixture
async def link(server) -> AsyncIterator[Impairment]:
    """The jittery link in front of the server (two such links make a call's path: Ann's and the relay's)."""
    def jittery() -> Link:
        return Link(delay_ms=10, jitter_ms=30)

    async with Impairment(server.host, server.port, up=jittery(), down=jittery(), seed=13) as proxy:
        yield proxy


@pytest.fixture
async def open_page(tones) -> AsyncIterator:
    """open_page(person, origin): a fresh browser whose microphone is that person's tone, at that origin."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browsers = []
        errors: list[str] = []

        async def open_(person: str, origin: str):
            browser = await playwright.chromium.launch(**launch_args(tones[person]))
            browsers.append(browser)
            page = await browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda error: errors.append(f"{person}: {error}"))
            await page.goto(origin + "/")
            return page

        yield open_
        for browser in browsers:
            await browser.close()
        assert not errors, f"uncaught errors in the page: {errors}"


async def wait_status(page, text: str) -> None:
    """Wait until #status shows text."""
    await page.wait_for_function(
        "text => document.getElementById('status').textContent.includes(text)", arg=text, polling=50
    )


async def wait_hearing(page, person: str) -> float:
    """Wait until the page plays that person's tone (its analyser window holds only that tone); return the Hz."""
    await page.wait_for_function(f"() => ({PARTNER_RMS_JS})() > {HEARD}", polling=100)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_MS / 1000
    while True:
        window = await page.evaluate(PARTNER_SAMPLES_JS)
        hz = dominant_hz(window["samples"], window["rate"])
        if abs(hz - TONES[person]) <= HZ_TOLERANCE or loop.time() > deadline:
            return hz
        await asyncio.sleep(0.2)


async def glitches(page) -> int:
    """Frames the page's jitter buffer could not play as they came: concealed, skipped, or underruns."""
    stats = await page.evaluate("() => window.duoduel.session.stats()")
    return stats["concealedFrames"] + stats["droppedFrames"] + stats["underruns"]


async def test_call_over_a_jittery_stalling_link_keeps_both_voices(server, link, open_page):
    """Ann's page and socket cross the jittery link: both hear each other; a 400 ms stall both ways
    disturbs the audio (the buffers conceal and skip) but the call goes on and both hear each other again."""
    ann = await open_page("ann", f"http://127.0.0.1:{link.port}")
    await ann.click("#start")
    await wait_status(ann, "Waiting for a partner")
    bob = await open_page("bob", server.origin)
    await bob.click("#start")
    await wait_status(ann, "Connected")
    await wait_status(bob, "Connected")
    assert await wait_hearing(ann, "bob") == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await wait_hearing(bob, "ann") == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)

    before = [await glitches(page) for page in (ann, bob)]
    link.stall(0.4)
    await asyncio.sleep(2.0)  # the stall, the burst, and the analyser window (0.7 s) filled after it
    after = [await glitches(page) for page in (ann, bob)]
    assert all(b > a for a, b in zip(before, after)), f"the stall did not reach the audio: {before} -> {after}"

    assert await wait_hearing(ann, "bob") == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await wait_hearing(bob, "ann") == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
    for page in (ann, bob):
        assert await page.text_content("#status") == "Connected"
