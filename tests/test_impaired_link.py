"""A real call over an impaired link: one page's whole origin (the page and its /ws) behind bench/impair.py.

Ann loads the page from the proxy, so everything she sends and receives crosses a link with 10 ms + 0-30 ms
of jitter each way (order kept, as TCP keeps it) and, mid-call, a 400 ms stall in both directions; Bob
talks to the server directly. Each fake microphone plays a tone of its own, so the dominant frequency of
what a page plays says whose voice reached it. The Origin check compares Origin with Host, and both name
the proxy's address, so the handshake through the proxy is an ordinary same-origin one.
The pages are tests/pages.py's Page. Skipped without Chromium or Playwright, unless DUODUEL_REQUIRE_BROWSER=1
(CI), which fails instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.impair import Impairment, Link
from conftest import open_at
from pages import TONES, status, wait_hearing, wait_status


@pytest.fixture
async def link(server) -> AsyncIterator[Impairment]:
    """The jittery link in front of the server (two such links make a call's path: Ann's and the relay's)."""
    def jittery() -> Link:
        return Link(delay_ms=10, jitter_ms=30)

    async with Impairment(server.host, server.port, up=jittery(), down=jittery(), seed=13) as proxy:
        yield proxy


# Frames the page's jitter buffer could not play as they came: concealed, skipped, or underruns.
GLITCHES_JS = """() => {
  const s = window.duoduel.session.stats();
  return s.concealedFrames + s.droppedFrames + s.underruns;
}"""


async def test_call_over_a_jittery_stalling_link_keeps_both_voices(server, link, browsers):
    """Ann's page and socket cross the jittery link: both hear each other; a 400 ms stall both ways
    disturbs the audio (the buffers conceal and skip) but the call goes on and both hear each other again."""
    ann = await open_at(browsers, "ann", "chromium", f"http://127.0.0.1:{link.port}/")
    await ann.click("#start")
    await wait_status(ann, "Waiting for a partner")
    bob = await open_at(browsers, "bob", "chromium", server.origin + "/")
    await bob.click("#start")
    await wait_status(ann, "Connected")
    await wait_status(bob, "Connected")
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])

    before = [await page.evaluate(GLITCHES_JS) for page in (ann, bob)]
    link.stall(0.4)
    for page, glitches in zip((ann, bob), before):
        await page.wait_for(f"(before) => ({GLITCHES_JS})() > before", glitches,
                            what=f"the stall to reach the audio (glitches past {glitches})")

    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    for page in (ann, bob):
        assert await status(page) == "Connected"
