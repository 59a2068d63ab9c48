"""Two people in real headless browsers, Chromium and Firefox: Start, hear each other, Mute, Next,
hang up, private rooms, a refused microphone.

Every page is a browser process of its own with a fake microphone playing a tone (a WAV for Chromium,
the fake device's frequency for Firefox), so what a page hears (the partner analyser, fed by exactly
what it plays) tells whose voice reached it. The tests speak to tests/pages.py's Page, so each one runs
in either engine; its parameter names the engines in order of the people ("firefox-chromium": Ann in
Firefox, Bob in Chromium). Every Firefox start must reach Connected and be heard: a start that freezes
one time in three cannot pass by luck across the dozen here. A page that stops answering fails its
test (PageStuck) instead of hanging the suite.

Skipped without Chromium and Playwright (the Firefox cases: without Firefox and PulseAudio), unless
DUODUEL_REQUIRE_BROWSER=1 (CI), which fails instead.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator

import pytest

import duoduel
from browser import PARTNER_RMS_JS, PARTNER_SAMPLES_JS, SAMPLE_RATE, dominant_hz, missing_browser, write_wav
from firefox import PageStuck, missing_firefox
from pages import Browsers, Page, WaitTimeout
from webkit import missing_webkit

TONES = {"ann": 440.0, "bob": 660.0, "cyd": 880.0}
HEARD = 0.005  # partner RMS above this: a tone comes through (it arrives near 0.04 after AGC)
SILENT = 0.001  # partner RMS below this: nothing comes through
HZ_TOLERANCE = 5.0  # analyser window of 32768 samples: bins of 1.5 Hz at 48 kHz
TIMEOUT_S = 15  # generous: two or three browsers share a loaded 2-core machine
REQUIRED = os.environ.get("DUODUEL_REQUIRE_BROWSER") == "1"
MISSING = {"chromium": missing_browser, "firefox": missing_firefox, "webkit": missing_webkit}


@pytest.fixture
def config() -> duoduel.Config:
    """Rooms of two: these are the two-person calls; group rooms are tests/test_browser_groups.py's."""
    return duoduel.Config(host="127.0.0.1", port=0, room_size=2)


def require(reason: str | None) -> None:
    """Skip when an engine cannot run here, or fail when CI says the browser tests must run."""
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"DUODUEL_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def engines(*combinations: str):
    """Parametrize a test by the engines of its people, e.g. engines("chromium-firefox", ...)."""
    return pytest.mark.parametrize("engines", [tuple(c.split("-")) for c in combinations], ids=combinations)


# Records every text #status shows, so a short-lived one ("Partner left") cannot be missed.
RECORD_STATUS_JS = """() => {
  window.__statusLog = [document.getElementById('status').textContent];
  new MutationObserver(() => window.__statusLog.push(document.getElementById('status').textContent))
    .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture
async def browsers(request, tmp_path) -> AsyncIterator[Browsers]:
    """Opens browsers of either engine; at the end closes them and checks no page threw."""
    require(missing_browser())
    from playwright.async_api import async_playwright

    def service(name: str):
        return request.getfixturevalue(name)

    async with async_playwright() as playwright:
        opened = Browsers(playwright, service, tmp_path)
        try:
            yield opened
        finally:
            await opened.close()
        assert not opened.errors, f"uncaught errors in the page: {opened.errors}"


@pytest.fixture
def open_page(server, browsers):
    """open_page(person, engine, path="/", hz=their tone): a fresh browser with that microphone, at the page."""

    async def open_(person: str, engine: str, path: str = "/", hz: float | None = -1.0) -> Page:
        require(MISSING[engine]())
        page = await browsers.launch(person, engine, TONES[person] if hz == -1.0 else hz)
        await page.goto(server.origin + path)
        await page.evaluate(RECORD_STATUS_JS)
        return page

    return open_


async def start(open_page, person: str, engine: str, path: str = "/") -> Page:
    """Open the page as this person and press Start."""
    page = await open_page(person, engine, path)
    await page.click("#start")
    return page


async def wait_status(page: Page, text: str) -> None:
    """Wait until #status shows text now."""
    try:
        await page.wait_for("text => document.getElementById('status').textContent.includes(text)", text)
    except WaitTimeout:
        raise WaitTimeout(f'{page}: the status never showed "{text}"; it shows "{await status(page)}"') from None


async def wait_status_seen(page: Page, text: str) -> None:
    """Wait until #status has shown text at some point since the page loaded."""
    await page.wait_for("text => window.__statusLog.some(t => t.includes(text))", text,
                        what=f'status "{text}" at some point')


async def status(page: Page) -> str:
    return await page.text("#status")


async def wait_rms(page: Page, above: float | None = None, below: float | None = None) -> None:
    """Wait until what the page plays from its partner is louder than above / quieter than below."""
    check = f"""([above, below]) => {{
      const rms = ({PARTNER_RMS_JS})();
      return above !== null ? rms > above : rms < below;
    }}"""
    await page.wait_for(check, [above, below], what=f"partner RMS {'>' if above else '<'} {above or below}")


async def heard_hz(page: Page) -> float:
    """The dominant frequency of what the page plays from its partner."""
    window = await page.evaluate(PARTNER_SAMPLES_JS)
    return dominant_hz(window["samples"], window["rate"])


async def wait_hearing(page: Page, hz: float) -> float:
    """Wait until the page plays a tone of hz, alone (the analyser window has forgotten anyone before);
    return the frequency heard."""
    await wait_rms(page, above=HEARD)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while True:
        heard = await heard_hz(page)
        if abs(heard - hz) <= HZ_TOLERANCE or loop.time() > deadline:
            return heard
        await asyncio.sleep(0.2)


async def start_call(open_page, first: tuple[str, str], second: tuple[str, str], path: str = "/"):
    """Two people (person, engine) press Start one after the other and get paired."""
    one = await start(open_page, *first, path)
    await wait_status(one, "Waiting for a partner")
    two = await start(open_page, *second, path)
    await wait_status(one, "Connected")
    await wait_status(two, "Connected")
    return one, two


@engines("chromium-chromium", "chromium-firefox", "firefox-firefox", "chromium-webkit", "webkit-firefox")
async def test_call_each_page_hears_the_other_tone_over_opus(open_page, engines):
    """Both press Start: both show Connected, each hears the other's voice (not its own), sent as Opus over
    a WebSocket, as the figures line says."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]))
    assert await wait_hearing(ann, TONES["bob"]) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await wait_hearing(bob, TONES["ann"]) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
    for page in (ann, bob):
        stats = await page.evaluate("() => window.duoduel.session.stats()")
        assert (stats["codec"], stats["partnerCodec"]) == ("opus", "opus"), stats
        await page.wait_for("() => /opus.*over WebSocket/.test(document.getElementById('stats').textContent)",
                            what="the figures line to name the codec and the link")
    assert await status(ann) == await status(bob) == "Connected"


# Whether this browser's Opus encoder takes 10 ms frames (the page then sends them; 20 ms otherwise).
TAKES_10_MS_JS = """async () => {
  if (typeof AudioEncoder === 'undefined') return false;
  const config = {codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 28000, opus: {frameDuration: 10000}};
  try { return (await AudioEncoder.isConfigSupported(config)).supported; } catch { return false; }
}"""


def write_talk_spurts(path, hz: float, talk_s: float = 1.0, pause_s: float = 1.0, spurts: int = 2):
    """A microphone that talks (a sine at hz) for talk_s, then is silent for pause_s, and again."""
    talk, pause = round(talk_s * SAMPLE_RATE), round(pause_s * SAMPLE_RATE)
    spurt = [0.5 * math.sin(2 * math.pi * hz * i / SAMPLE_RATE) for i in range(talk)] + [0.0] * pause
    return write_wav(path, spurt * spurts)


async def test_call_with_pauses_in_dtx_is_heard_both_ways_and_its_silence_is_no_loss(browsers, server, tmp_path):
    """Both talk in spurts with pauses, in Chromium: each hears the other, in 10 ms frames where the encoder takes
    them, and with DTX the pauses go unsent (hundreds of frames), while the partner counts no frame lost, as the
    figures line says."""
    require(missing_browser())
    pages = []
    for person in ("ann", "bob"):
        page = await browsers.launch(person, "chromium", None, wav=write_talk_spurts(tmp_path / f"{person}.wav", TONES[person]))
        await page.goto(server.origin + "/")
        await page.evaluate(RECORD_STATUS_JS)
        await page.click("#start")
        pages.append(page)
    ann, bob = pages
    await wait_status(ann, "Connected")
    await wait_status(bob, "Connected")
    assert await wait_hearing(ann, TONES["bob"]) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await wait_hearing(bob, TONES["ann"]) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
    frame_ms = 10 if await ann.evaluate(TAKES_10_MS_JS) else 20
    for page in (ann, bob):
        # Three pauses each: the encoder leaves out all but a frame now and then of each.
        await page.wait_for("() => window.duoduel.session.stats().dtxFrames > 3 * 600 / window.duoduel.session.stats().frameMs",
                            what="the pauses left out", timeout=TIMEOUT_S)
    for page in (ann, bob):
        stats = await page.evaluate("() => window.duoduel.session.stats()")
        assert (stats["codec"], stats["frameMs"], stats["dtx"]) == ("opus", frame_ms, True), stats
        assert stats["playback"]["frameMs"] == frame_ms, "the partner's frame duration, learnt from its frames"
        assert stats["lostFrames"] == 0, stats
        line = await page.text("#stats")
        assert f"out opus {frame_ms} ms DTX" in line and "lost 0" in line, line


@engines("chromium-chromium", "firefox-firefox", "webkit-chromium")
async def test_mute_silences_this_page_for_the_partner_only(open_page, engines):
    """Mute: the partner hears silence within a second or so, while this page still hears them; unmute: back."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]))
    await wait_hearing(bob, TONES["ann"])
    await ann.click("#mute")
    assert await ann.attribute("#mute", "aria-pressed") == "true"
    loop = asyncio.get_running_loop()
    muted_at = loop.time()
    await wait_rms(bob, below=SILENT)
    # The analyser holds 0.74 s (32768 samples at 44.1 kHz), concealment fades within 60 ms.
    assert loop.time() - muted_at < 3
    # Ann still hears Bob (polled: one window may hold the jitter buffer skipping a few ms, which shifts the peak).
    assert await wait_hearing(ann, TONES["bob"]) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    await ann.click("#mute")
    assert await ann.attribute("#mute", "aria-pressed") == "false"
    assert await wait_hearing(bob, TONES["ann"]) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
    assert await status(ann) == await status(bob) == "Connected"


@engines("chromium-chromium-chromium", "firefox-chromium-firefox")
async def test_next_pairs_with_the_person_waiting(open_page, engines):
    """Ann talks with Bob while Cyd waits; Ann presses Next: Ann and Cyd talk, Bob sees "Partner left"."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]))
    cyd = await start(open_page, "cyd", engines[2])
    await wait_status(cyd, "Waiting for a partner")
    await wait_hearing(ann, TONES["bob"])
    await ann.click("#next")
    await wait_status_seen(bob, "Partner left")
    await wait_status(cyd, "Connected")
    await wait_status(ann, "Connected")
    assert await wait_hearing(ann, TONES["cyd"]) == pytest.approx(TONES["cyd"], abs=HZ_TOLERANCE)
    assert await wait_hearing(cyd, TONES["ann"]) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)
    # Alone in the lobby, Bob looks for someone new by himself.
    await wait_status(bob, "Waiting for a partner")


@engines("chromium-chromium", "chromium-firefox")
async def test_closing_a_page_shows_partner_left_to_the_other(open_page, engines):
    """Bob closes his browser: Ann sees "Partner left", hears silence, and is back looking for someone."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]))
    await wait_hearing(ann, TONES["bob"])
    await bob.close()
    await wait_status_seen(ann, "Partner left")
    await wait_rms(ann, below=SILENT)
    await wait_status(ann, "Waiting for a partner")


@engines("chromium-chromium", "firefox-chromium")
async def test_private_room_call_hears_each_other(open_page, engines):
    """Both open /r/test-room-1 and press Start: they are paired in the room and hear each other."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]), "/r/test-room-1")
    for page in (ann, bob):
        assert await page.evaluate("() => window.duoduel.room") == "test-room-1"
        assert (await page.text("#room-link")).endswith("/r/test-room-1")
        assert await page.is_hidden("#next"), "a room has nobody else to find"
    assert await wait_hearing(ann, TONES["bob"]) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
    assert await wait_hearing(bob, TONES["ann"]) == pytest.approx(TONES["ann"], abs=HZ_TOLERANCE)


@engines("chromium", "firefox")
async def test_refused_microphone_shows_one_line_saying_what_to_do(open_page, engines):
    """The person (or the browser) refuses the microphone: one line says how to allow it, Start works again."""
    ann = await open_page("ann", engines[0], hz=None)
    await ann.click("#start")
    await ann.wait_for("() => !document.getElementById('error').hidden", what="the error line")
    error = await ann.text("#error")
    assert error == "Microphone blocked: allow it in the address bar, then press Start again."
    assert await status(ann) == "Press Start to talk"
    assert await ann.evaluate("() => document.getElementById('start').disabled") is False
    assert await ann.evaluate("() => window.duoduel.session") is None


async def test_start_waits_for_the_page_script_and_then_one_click_starts(server, browsers):
    """While the page's script is held back (a slow link), Start is disabled and the status says the page is
    loading; after 10 s a line says the script has not come. Once it comes, the first click on Start starts."""
    ann = await browsers.launch("ann", "chromium", TONES["ann"])
    release = await ann.hold_requests("**/app.js")
    await ann.goto(server.origin + "/", wait_until="commit")
    await ann.wait_for("() => document.getElementById('start') !== null", what="the Start button")
    assert await ann.evaluate("() => document.getElementById('start').disabled"), "a click now would do nothing"
    assert await status(ann) == "Loading the page…"
    await ann.wait_for("() => getComputedStyle(document.getElementById('loading')).visibility === 'visible'",
                       what="the line saying the script has not loaded")
    release()
    await ann.click("#start")
    await wait_status(ann, "Waiting for a partner")
    assert await ann.is_hidden("#loading")


FIREFOX_STARTS = (550.0, 770.0, 990.0)


async def test_firefox_starts_every_time_in_a_row(open_page):
    """Bob (Chromium) waits in a room; three Firefox starts in a row each connect, hear Bob and are heard.

    A Firefox page that froze on start would show "Starting the microphone…" or "Connecting…" for good
    while Bob shows Connected and hears nothing: each start must get through both."""
    bob = await start(open_page, "bob", "chromium", "/r/firefox-starts")
    await wait_status(bob, "Waiting for a partner")
    for hz in FIREFOX_STARTS:
        ann = await open_page("ann", "firefox", "/r/firefox-starts", hz=hz)
        await ann.click("#start")
        await wait_status(ann, "Connected")
        await wait_status(bob, "Connected")
        assert await wait_hearing(bob, hz) == pytest.approx(hz, abs=HZ_TOLERANCE), f"Firefox start at {hz:g} Hz"
        assert await wait_hearing(ann, TONES["bob"]) == pytest.approx(TONES["bob"], abs=HZ_TOLERANCE)
        await ann.close()
        await wait_status(bob, "Waiting for a partner")


@engines("chromium", "firefox", "webkit")
async def test_a_page_that_stops_answering_fails_the_test_instead_of_hanging(open_page, engines):
    """A page whose main thread never returns (as Firefox's did in getOutputTimestamp) raises PageStuck
    within the evaluation's timeout, naming the page."""
    ann = await open_page("ann", engines[0])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PageStuck, match="ann .*stopped answering"):
        await ann.evaluate("() => { for (;;) {} }", timeout=2)
    assert loop.time() - started < 5
