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
import re

import pytest

import duoduel
from browser import PARTNER_RMS_JS, SAMPLE_RATE, write_wav
from conftest import engines, require
from firefox import PageStuck
from pages import (MISSING, SILENT, TIMEOUT_S, TONES, Page, record_sends, room_path, sends, status, talk_spurts_microphone,
                   wait_hearing, wait_rms, wait_status, wait_status_seen)


@pytest.fixture
def config() -> duoduel.Config:
    """Rooms of two: these are the two-person calls; group rooms are tests/test_browser_groups.py's."""
    return duoduel.Config(host="127.0.0.1", port=0, room_size=2)


async def start(open_page, person: str, engine: str, path: str = "/") -> Page:
    """Open the page as this person and press Start."""
    page = await open_page(person, engine, path)
    await page.click("#start")
    return page


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
    """Both press Start: both show Connected and the same safety code, each hears the other's voice (not its
    own), sent as Opus over a WebSocket and end-to-end encrypted, as the figures line says."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]))
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    for page in (ann, bob):
        stats = await page.evaluate("() => window.duoduel.session.stats()")
        assert (stats["codec"], stats["partnerCodec"]) == ("opus", "opus"), stats
        await page.wait_for("() => /opus.*over WebSocket · end-to-end encrypted/"
                            ".test(document.getElementById('stats').textContent)",
                            what="the figures line to name the codec, the link and the encryption")
    codes = [await page.text("#safety-code") for page in (ann, bob)]
    assert re.fullmatch(r"\d{3} \d{3}", codes[0]) and codes[0] == codes[1], codes
    assert not await ann.is_hidden("#safety")
    assert await status(ann) == await status(bob) == "Connected"


@engines("chromium-chromium", "chromium-firefox")
async def test_call_from_chromium_captures_from_the_microphone_track_and_is_heard_both_ways(open_page, engines):
    """A Chromium page captures from its microphone's track (MediaStreamTrackProcessor), not through Web Audio, its
    meter shows its voice, and each page hears the other's; Firefox keeps the capture worklet."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]))
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    for page, engine in ((ann, engines[0]), (bob, engines[1])):
        stats = await page.evaluate("() => window.duoduel.session.stats()")
        assert stats["capturePath"] == ("track" if engine == "chromium" else "worklet"), stats
        await page.wait_for("() => window.duoduel.session.levels().mic > 0.01", what="the microphone meter to move")


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


async def test_call_in_talk_spurts_is_heard_both_ways_in_10_ms_frames_where_the_encoder_takes_them(browsers, server,
                                                                                                  tmp_path):
    """Both talk in spurts with pauses, in Chromium: each hears the other, in 10 ms frames where the encoder takes
    them (20 ms otherwise), the partner's playback plays them as such, and the figures line names the frame length."""
    pages = []
    for person in ("ann", "bob"):
        page = await browsers.launch(person, "chromium", None, wav=write_talk_spurts(tmp_path / f"{person}.wav", TONES[person]))
        await page.goto(server.origin + "/")
        await page.click("#start")
        pages.append(page)
    ann, bob = pages
    await wait_status(ann, "Connected")
    await wait_status(bob, "Connected")
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    frame_ms = 10 if await ann.evaluate(TAKES_10_MS_JS) else 20
    for page in (ann, bob):  # 4 s more of the partner's frames: two more pauses
        await page.wait_for("n => window.duoduel.session.stats().playback.received > n",
                            (await page.evaluate("() => window.duoduel.session.stats().playback.received")) + 4000 // frame_ms,
                            what="4 s more of the partner's frames", timeout=TIMEOUT_S)
    for page in (ann, bob):
        stats = await page.evaluate("() => window.duoduel.session.stats()")
        assert (stats["codec"], stats["frameMs"]) == ("opus", frame_ms), stats
        assert stats["playback"]["frameMs"] == frame_ms, "the partner's frame length, learnt from its frames"
        line = await page.text("#stats")
        assert f"out opus {frame_ms} ms" in line, line


# What a page counts of its partner's frames (played, lost, concealed, ...) and of its own (sent or left out).
CALL_COUNTS_JS = """() => {
  const s = window.duoduel.session.stats();
  return {received: s.playback.received, lost: s.lostFrames, concealed: s.concealedFrames, underruns: s.underruns,
          decoderDrops: s.decoderDrops, encoderDrops: s.encoderDrops, dtx: s.dtx, dtxFrames: s.dtxFrames,
          frameMs: s.frameMs};
}"""


async def through_a_pause(page: Page, partner: Page, tries: int = 3) -> tuple[dict, dict, dict, dict]:
    """Both pages' counts (CALL_COUNTS_JS) at two moments of a pause of the partner's, as the page hears it: silence
    at the first, two of the pause's frames received by the second, and nothing else (no talk spurt began)."""
    for _ in range(tries):
        await wait_rms(page, below=SILENT)  # the analyser's last 0.74 s are silent: into the partner's pause
        was, partner_was = await page.evaluate(CALL_COUNTS_JS), await partner.evaluate(CALL_COUNTS_JS)
        await page.wait_for("n => window.duoduel.session.stats().playback.received >= n", was["received"] + 2,
                            what="two frames of the partner's pause (one every 400 ms)")
        now, partner_now = await page.evaluate(CALL_COUNTS_JS), await partner.evaluate(CALL_COUNTS_JS)
        if now["received"] == was["received"] + 2 and await page.evaluate(PARTNER_RMS_JS) < SILENT:
            return was, now, partner_was, partner_now
        await wait_rms(page, above=SILENT)  # the pause ended meanwhile: try the next one
    raise AssertionError(f"{page}: no pause of {partner}'s heard in {tries} tries")


@engines("chromium-chromium", "firefox-chromium")
async def test_call_with_pauses_sends_little_in_a_pause_and_the_partner_hears_silence_not_loss(browsers, server,
                                                                                              tmp_path, engines):
    """Both talk 0.5 s and pause 3 s: each hears the other, and through the other's pause hears silence with no
    frame counted lost, concealed or dropped and no underrun, while the other counts the frames it leaves out as
    DTX, not as encoder drops, and sends a pause's first 200 ms, then a frame every 400 ms."""
    pages = []
    for person, engine in zip(("ann", "bob"), engines):
        require(MISSING[engine]())
        if engine == "firefox":
            page = await browsers.launch(person, engine, TONES[person],
                                         preload=talk_spurts_microphone(TONES[person], talk_s=0.5, pause_s=3.0))
        else:
            wav = write_talk_spurts(tmp_path / f"{person}.wav", TONES[person], talk_s=0.5, pause_s=3.0)
            page = await browsers.launch(person, engine, None, wav=wav)
        await page.goto(server.origin + "/")
        await record_sends(page)
        await page.click("#start")
        pages.append(page)
    ann, bob = pages
    for page, partner in ((ann, "bob"), (bob, "ann")):
        await wait_status(page, "Connected")
        await wait_hearing(page, TONES[partner])
    for page, partner in ((ann, bob), (bob, ann)):
        was, now, partner_was, partner_now = await through_a_pause(page, partner)
        for counter in ("lost", "concealed", "underruns", "decoderDrops"):
            assert now[counter] == was[counter], (page, counter, was, now)
        left_out = partner_now["dtxFrames"] - partner_was["dtxFrames"]
        # The two frames came at least about a refresh period (400 ms) apart: the partner left out what lay between.
        assert partner_now["dtx"] and left_out >= 200 // partner_now["frameMs"], (partner, partner_was, partner_now)
        assert partner_now["encoderDrops"] == partner_was["encoderDrops"], "frames left out are not encoder drops"
    for page, partner in ((ann, "bob"), (bob, "ann")):
        await wait_hearing(page, TONES[partner])  # and the next spurt comes through
    for page in (ann, bob):
        frame_ms = (await page.evaluate(CALL_COUNTS_JS))["frameMs"]
        times = [t for t, _ in await sends(page)]
        gaps = [b - a for a, b in zip(times, times[1:]) if b - a > 2.5 * frame_ms]
        # Each 3.5 s: 0.5 s of talk and 200 ms of hangover sent, then 7 frames, one every 400 ms.
        assert len(times) < 0.4 * (times[-1] - times[0]) / frame_ms, (page, len(times))
        assert sum(350 < gap < 450 for gap in gaps) >= 5, (page, [round(gap) for gap in gaps])
        assert max(gaps) < 600, "never longer without a frame than the refresh period (and the page's scheduling)"


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
    await wait_hearing(ann, TONES["bob"])
    await ann.click("#mute")
    assert await ann.attribute("#mute", "aria-pressed") == "false"
    await wait_hearing(bob, TONES["ann"])
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
    await wait_hearing(ann, TONES["cyd"])
    await wait_hearing(cyd, TONES["ann"])
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
    """Both open /r/test-room-1#KEY and press Start: they are paired in the room and hear each other."""
    ann, bob = await start_call(open_page, ("ann", engines[0]), ("bob", engines[1]), room_path("test-room-1"))
    for page in (ann, bob):
        assert await page.evaluate("() => window.duoduel.room") == "test-room-1"
        assert (await page.text("#room-link")).endswith(room_path("test-room-1"))
        assert await page.is_hidden("#safety"), "a room's key is in its link: no code to compare"
        assert await page.is_hidden("#next"), "a room has nobody else to find"
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])


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
    bob = await start(open_page, "bob", "chromium", room_path("firefox-starts"))
    await wait_status(bob, "Waiting for a partner")
    for hz in FIREFOX_STARTS:
        ann = await open_page("ann", "firefox", room_path("firefox-starts"), hz=hz)
        await ann.click("#start")
        await wait_status(ann, "Connected")
        await wait_status(bob, "Connected")
        await wait_hearing(bob, hz)  # this start's tone
        await wait_hearing(ann, TONES["bob"])
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
