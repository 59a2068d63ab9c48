"""One page interface over three engines: headless Chromium (Playwright), Firefox (WebDriver BiDi) and
WebKit (WebKitGTK's MiniBrowser through WebKitWebDriver on Xvfb); and, below it, what a person sees
and hears on duoduel's page (its status line, its member list, the tones it plays).

Tests talk to a Page and never to the engine, so a test written once runs in both:

    page = await browsers.open("ann", "firefox", origin + "/")
    await page.click("#start")
    await page.wait_for("() => window.duoduel.session !== null")

Every call into the page has a deadline: a page that stops answering (a frozen main thread) fails
the test with PageStuck and the engine's last words instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser import PARTNER_RMS_JS, PARTNER_SAMPLES_JS, dominant_hz, launch_args, missing_browser, write_tone
from firefox import DENIED_MICROPHONE, Firefox, PageStuck, PulseAudio, fake_microphone, missing_firefox
from webkit import WebKit, Xvfb, missing_webkit

ENGINES = ("chromium", "firefox", "webkit")
MISSING = {"chromium": missing_browser, "firefox": missing_firefox, "webkit": missing_webkit}  # why one cannot run here
EVALUATE_TIMEOUT_S = 15  # one call into a page; a live page answers in milliseconds
WAIT_TIMEOUT_S = 15  # how long a condition may take to come true (two or three browsers, 2 loaded cores)
POLL_S = 0.05
# The key of every private room the tests open, as its link's fragment carries it (static/e2ee.js: 16 bytes,
# 22 base64url characters); the server never sees it.
ROOM_KEY = "ZHVvZHVlbCB0ZXN0IGtleQ"


def room_path(name: str, key: str = ROOM_KEY) -> str:
    """The path of a private room's page, with its key: /r/NAME#KEY."""
    return f"/r/{name}#{key}"


class WaitTimeout(AssertionError):
    """A condition did not come true in time (the page itself answered)."""


class Page:
    """A tab in a browser of its own, whatever the engine. Subclasses provide _evaluate and goto."""

    engine = ""

    def __init__(self, name: str):
        self.name = name  # the person, for messages

    def __repr__(self) -> str:
        return f"{self.name} ({self.engine})"

    async def _evaluate(self, function: str, arg: Any, timeout: float) -> Any:
        raise NotImplementedError

    async def goto(self, url: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions in the page so far."""
        raise NotImplementedError

    async def evaluate(self, function: str, arg: Any = None, timeout: float = EVALUATE_TIMEOUT_S) -> Any:
        """Call function (JS source, maybe async) with arg in the page; return its JSON-able result."""
        return await self._evaluate(function, arg, timeout)

    async def wait_for(self, function: str, arg: Any = None, timeout: float = WAIT_TIMEOUT_S,
                       what: str | None = None) -> Any:
        """Poll function(arg) until it returns something truthy, and return that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(function, arg)
            if value:
                return value
            if loop.time() > deadline:
                raise WaitTimeout(f"{self}: waited {timeout:g} s for {what or function}")
            await asyncio.sleep(POLL_S)

    async def click(self, selector: str) -> None:
        """Click a visible, enabled element, as a person would (counts as a user gesture)."""
        await self.wait_for(
            """(selector) => {
              const el = document.querySelector(selector);
              return el !== null && !el.disabled && el.offsetParent !== null;
            }""", selector, what=f"{selector} to be visible and enabled")
        await self._click(selector)

    async def _click(self, selector: str) -> None:
        await self.evaluate("(selector) => { document.querySelector(selector).click(); }", selector)

    async def text(self, selector: str) -> str:
        return await self.evaluate("(selector) => document.querySelector(selector).textContent", selector)

    async def attribute(self, selector: str, name: str) -> str | None:
        return await self.evaluate("([selector, name]) => document.querySelector(selector).getAttribute(name)",
                                   [selector, name])

    async def is_hidden(self, selector: str) -> bool:
        return await self.evaluate(
            "(selector) => { const el = document.querySelector(selector); return !el || el.offsetParent === null; }",
            selector)


class ChromiumPage(Page):
    """A Playwright page in a Chromium process of its own."""

    engine = "chromium"

    def __init__(self, name: str, browser, page):
        super().__init__(name)
        self._browser = browser
        self._page = page
        self._errors: list[str] = []
        page.on("pageerror", lambda error: self._errors.append(str(error)))

    @classmethod
    async def launch(cls, playwright, name: str, microphone: Path | None, bypass_csp: bool = False,
                     flags: tuple[str, ...] = (), executable: str | None = None) -> ChromiumPage:
        """A fresh Chromium whose fake microphone plays this WAV (None: the microphone is refused), with
        these flags more; executable runs in place of Chromium's (e.g. NetPath.executable: in a namespace)."""
        args = launch_args(microphone) if microphone else launch_args(Path("/dev/null"))
        args["args"] += flags
        if executable is not None:
            args["executable_path"] = executable
        if microphone is None:
            # No fake "allow" UI: the permission request is refused, as when a person clicks Block.
            args["args"] = [flag for flag in args["args"] if flag != "--use-fake-ui-for-media-stream"]
            args["args"].append("--deny-permission-prompts")
        browser = await playwright.chromium.launch(**args)
        page = await browser.new_page(bypass_csp=bypass_csp)
        page.set_default_timeout(WAIT_TIMEOUT_S * 1000)
        return cls(name, browser, page)

    async def _evaluate(self, function: str, arg: Any, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(self._page.evaluate(function, arg), timeout)
        except asyncio.TimeoutError:
            raise PageStuck(f"{self}: no answer to an evaluation in {timeout:g} s: the page stopped answering") from None

    async def _click(self, selector: str) -> None:
        await self._page.click(selector)

    async def goto(self, url: str, wait_until: str = "load") -> None:
        """Load url; wait_until="commit" returns as soon as the page has begun to arrive, its scripts maybe not."""
        await self._page.goto(url, wait_until=wait_until)

    async def cookies(self) -> dict[str, str]:
        """The cookies the browser keeps for the page, HttpOnly ones included (which the page's scripts cannot read)."""
        return {cookie["name"]: cookie["value"] for cookie in await self._page.context.cookies()}

    async def hold_requests(self, pattern: str) -> Callable[[], None]:
        """Hold back the page's requests for URLs matching the glob, as a slow link would, until the returned
        release() is called; then they go on to the server."""
        released = asyncio.Event()

        async def hold(route) -> None:
            await released.wait()
            await route.continue_()

        await self._page.route(pattern, hold)
        return released.set

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._browser.close(), 15)

    @property
    def errors(self) -> list[str]:
        return self._errors


class FirefoxPage(Page):
    """The tab of a Firefox process of its own, over WebDriver BiDi."""

    engine = "firefox"

    def __init__(self, name: str, firefox: Firefox):
        super().__init__(name)
        self.firefox = firefox

    @classmethod
    async def launch(cls, pulse: PulseAudio, name: str, hz: float | None, preload: str | None = None,
                     prefs: dict[str, Any] | None = None, **where: Any) -> FirefoxPage:
        """A fresh Firefox whose fake microphone plays a sine at hz (None: the microphone is refused);
        preload (JS function source) runs in every document first, e.g. to replace getUserMedia; prefs are
        more prefs; where: Firefox.launch's executable and new_socket, to run it elsewhere (a namespace)."""
        prefs = {**(fake_microphone(hz) if hz is not None else {**fake_microphone(), **DENIED_MICROPHONE}), **(prefs or {})}
        firefox = await Firefox.launch(prefs=prefs, env=pulse.env, name=f"{name} (firefox)", **where)
        if preload is not None:
            await firefox.add_preload_script(preload)
        return cls(name, firefox)

    async def _evaluate(self, function: str, arg: Any, timeout: float) -> Any:
        return await self.firefox.evaluate(function, arg, timeout)

    async def goto(self, url: str) -> None:
        await self.firefox.navigate(url)

    async def close(self) -> None:
        await self.firefox.close()

    @property
    def errors(self) -> list[str]:
        return self.firefox.errors


class WebKitPage(Page):
    """MiniBrowser's page through a WebKitWebDriver of its own; the microphone is a tone put in place of
    getUserMedia after each navigation (WebKitGTK's own mock device is a hum with bips)."""

    engine = "webkit"

    def __init__(self, name: str, webkit: WebKit, hz: float | None):
        super().__init__(name)
        self.webkit = webkit
        self._hz = hz

    @classmethod
    async def launch(cls, pulse: PulseAudio, display: Xvfb, name: str, hz: float | None) -> WebKitPage:
        webkit = await WebKit.launch({**pulse.env, **display.env}, name=f"{name} (webkit)")
        return cls(name, webkit, hz)

    async def _evaluate(self, function: str, arg: Any, timeout: float) -> Any:
        return await self.webkit.evaluate(function, arg, timeout)

    async def _click(self, selector: str) -> None:
        await self.webkit.click(selector)

    async def goto(self, url: str) -> None:
        await self.webkit.navigate(url)
        if self._hz is not None:
            await self.webkit.install_tone(self._hz)

    async def close(self) -> None:
        await self.webkit.close()

    @property
    def errors(self) -> list[str]:
        return []  # WebDriver classic has no log of uncaught exceptions


class Browsers:
    """Opens pages in any engine, each in a browser process of its own; closes them all at the end."""

    def __init__(self, playwright, service: Callable[[str], Any], folder: Path):
        self._playwright = playwright
        # service("pulse_audio") or service("xvfb_display"), started on first use: Chromium alone needs neither.
        self._service = service
        self._folder = folder
        self.pages: list[Page] = []
        self.chromium_flags: list[str] = []  # given to every Chromium launched from then on

    async def launch(self, name: str, engine: str, hz: float | None, wav: Path | None = None,
                     preload: str | None = None) -> Page:
        """A browser of that engine whose microphone plays a sine at hz (None: microphone refused), or in Chromium
        the WAV file given; in Firefox, preload (JS function source) runs first in every document (e.g.
        talk_spurts_microphone())."""
        if engine == "chromium":
            if wav is None and hz is not None:
                wav = write_tone(self._folder / f"{name}-{hz:g}.wav", hz)
            page = await ChromiumPage.launch(self._playwright, name, wav, flags=self.chromium_flags)
        elif engine == "firefox":
            page = await FirefoxPage.launch(self._service("pulse_audio"), name, hz, preload=preload)
        elif engine == "webkit":
            page = await WebKitPage.launch(self._service("pulse_audio"), self._service("xvfb_display"), name, hz)
        else:
            raise ValueError(f"unknown engine {engine!r}: use one of {ENGINES}")
        self.pages.append(page)
        return page

    async def open(self, name: str, engine: str, url: str, hz: float | None) -> Page:
        """launch(), then go to url and record every text #status shows from then on (see wait_status_seen)."""
        page = await self.launch(name, engine, hz)
        await page.goto(url)
        await page.evaluate(RECORD_STATUS_JS)
        return page

    async def close(self) -> None:
        await asyncio.gather(*(page.close() for page in self.pages))

    @property
    def errors(self) -> list[str]:
        return [f"{page}: {error}" for page in self.pages for error in page.errors]


# What a person sees and hears on duoduel's page. Every wait fails at its deadline (WaitTimeout), saying what the
# page shows or plays instead.

TONES = {"ann": 440.0, "bob": 660.0, "cyd": 880.0}  # each person's microphone
HEARD = 0.005  # partner RMS above this: a tone comes through (it arrives near 0.04 after AGC)
SILENT = 0.001  # partner RMS below this: nothing comes through
HZ_TOLERANCE = 5.0  # analyser window of 32768 samples: bins of 1.5 Hz at 48 kHz
TIMEOUT_S = 15  # generous: two or three browsers share a loaded 2-core machine
# A tone counts as heard when its band stands within 26 dB of the strongest tone's: the ones played are
# 10^4..10^5 above the spectrum's median, a page's own tone (Opus artefacts, never sent back) below 10^3.
LOUDEST_RATIO = 0.05
SPECTRUM_POLL_S = 0.2  # a look at the spectrum carries the analyser's 32768 samples out of the page: not too often

# Records every text #status shows, so a short-lived one ("Partner left") cannot be missed.
RECORD_STATUS_JS = """() => {
  window.__statusLog = [document.getElementById('status').textContent];
  new MutationObserver(() => window.__statusLog.push(document.getElementById('status').textContent))
    .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true});
}"""


# Records when the page sends each audio frame and how big it is, sealed as it goes on the wire (from the call's
# next WebSocket on): what the relay sees of it.
RECORD_SENDS_JS = """() => {
  window.__sends = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data !== 'string') window.__sends.push([performance.now(), data.byteLength]);
    return send.call(this, data);
  };
}"""


async def record_sends(page: Page) -> None:
    """From now on, note every audio frame the page sends over a WebSocket (see sends())."""
    await page.evaluate(RECORD_SENDS_JS)


async def sends(page: Page) -> list[tuple[float, int]]:
    """The (page time in ms, bytes) of every audio frame sent since record_sends()."""
    return [tuple(send) for send in await page.evaluate("() => window.__sends")]


def talk_spurts_microphone(hz: float, talk_s: float, pause_s: float) -> str:
    """A Firefox preload script: the page's microphone is a sine at hz for talk_s, then silence for pause_s, looped
    (Firefox's fake microphone is a sine without pauses)."""
    return """() => {
  const HZ = %r, TALK_S = %r, PAUSE_S = %r;
  if (!navigator.mediaDevices) return; // a document that is no secure context (about:blank) has no microphone
  navigator.mediaDevices.getUserMedia = async () => {
    const ctx = new AudioContext();
    const rate = ctx.sampleRate;
    const buffer = ctx.createBuffer(1, Math.round((TALK_S + PAUSE_S) * rate), rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < Math.round(TALK_S * rate); i++) data[i] = 0.5 * Math.sin(2 * Math.PI * HZ * i / rate);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.loop = true;
    const destination = ctx.createMediaStreamDestination();
    source.connect(destination);
    source.start();
    await ctx.resume();
    return destination.stream;
  };
}""" % (hz, talk_s, pause_s)


async def without_webtransport(page: Page) -> None:
    """Make the page one of a browser without WebTransport (as WebKitGTK is): its next link is a WebSocket."""
    await page.evaluate("() => { delete window.WebTransport; }")


async def status(page: Page) -> str:
    return await page.text("#status")


async def wait_status(page: Page, text: str) -> None:
    """Wait until #status shows text now."""
    try:
        await page.wait_for("text => document.getElementById('status').textContent.includes(text)", text)
    except WaitTimeout:
        raise WaitTimeout(f'{page}: the status never showed "{text}"; it shows "{await status(page)}"') from None


async def forget_status(page: Page) -> None:
    """Start the page's record of what #status showed afresh, from what it shows now."""
    await page.evaluate("() => { window.__statusLog = [document.getElementById('status').textContent]; }")


async def wait_status_seen(page: Page, text: str) -> None:
    """Wait until #status has shown text at some point since the page loaded (or since its record was reset)."""
    await page.wait_for("text => window.__statusLog.some(t => t.includes(text))", text,
                        what=f'status "{text}" at some point')


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


async def wait_hearing(page: Page, hz: float, timeout: float = TIMEOUT_S) -> None:
    """Wait until the page plays a tone of hz, alone (the analyser window has forgotten anyone before)."""
    await wait_rms(page, above=HEARD)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while abs((heard := await heard_hz(page)) - hz) > HZ_TOLERANCE:
        if loop.time() > deadline:
            raise WaitTimeout(f"{page}: plays {heard:.1f} Hz, not {hz:g} Hz, after {timeout:g} s")
        await asyncio.sleep(SPECTRUM_POLL_S)


def tone_peaks(samples, rate: float) -> dict[float, float]:
    """For each test tone, how far its band (±5 Hz) stands above the median of the spectrum."""
    import numpy as np

    x = np.asarray(samples, dtype=np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    floor = float(np.median(spectrum[1:])) + 1e-12
    hz = np.fft.rfftfreq(len(x), 1 / rate)
    return {tone: float(spectrum[(hz > tone - 5) & (hz < tone + 5)].max()) / floor for tone in TONES.values()}


async def tones_heard(page: Page) -> set[float]:
    """The test tones that stand out in what the page plays now."""
    if await page.evaluate(PARTNER_RMS_JS) < HEARD:
        return set()
    window = await page.evaluate(PARTNER_SAMPLES_JS)
    peaks = tone_peaks(window["samples"], window["rate"])
    loudest = max(peaks.values())
    return {tone for tone, ratio in peaks.items() if ratio > LOUDEST_RATIO * loudest}


async def wait_tones(page: Page, *names: str) -> None:
    """Wait until the page plays exactly these people's tones (and nobody else's)."""
    wanted = {TONES[name] for name in names}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while (heard := await tones_heard(page)) != wanted:
        if loop.time() > deadline:
            raise WaitTimeout(f"{page}: plays tones {sorted(heard)} Hz, not {sorted(wanted)} Hz ({' and '.join(names)})")
        await asyncio.sleep(SPECTRUM_POLL_S)


async def member_names(page: Page) -> list[str]:
    return await page.evaluate(
        "() => [...document.querySelectorAll('#members .member-name')].map((el) => el.textContent)")


async def wait_members(page: Page, names: list[str]) -> None:
    """Wait until the page's member list shows exactly these labels, in slot order."""
    try:
        await page.wait_for(
            "(names) => JSON.stringify([...document.querySelectorAll('#members .member-name')]"
            ".map((el) => el.textContent)) === JSON.stringify(names)", names, timeout=TIMEOUT_S)
    except WaitTimeout:
        raise WaitTimeout(f"{page}: the member list shows {await member_names(page)}, not {names}") from None
