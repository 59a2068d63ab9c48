"""WebKit (the engine of Safari and of every iPhone browser) for tests: Debian's WebKitGTK MiniBrowser
driven by WebKitWebDriver (W3C WebDriver, HTTP) on an Xvfb display.

    with Xvfb() as display:                                   # MiniBrowser needs an X display
        webkit = await WebKit.launch(env={**display.env, **pulse.env})
        await webkit.navigate("http://127.0.0.1:8080/")
        title = await webkit.evaluate("() => document.title")
        await webkit.click("#start")                          # a real click: a user gesture
        await webkit.close()

WebKitGTK exposes a mock microphone (a 150 Hz hum with 500/1500 Hz bips); install_tone() replaces
getUserMedia with a pure tone instead, before the page asks for it. Every command has a deadline: a page
that stops answering raises PageStuck instead of hanging the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from firefox import PageStuck, ScriptError
from ports import free_port

DRIVER = "WebKitWebDriver"
MINIBROWSER_GLOB = "/usr/lib/*/webkit2gtk-4.*/MiniBrowser"
START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 15
# WebKitGTK settings (MiniBrowser takes every WebKitSettings property as an option) and features.
BROWSER_ARGS = (
    "--automation",
    "--enable-media-stream=true",
    "--enable-mock-capture-devices=true",
    "--enable-webaudio=true",
    "--autoplay-policy=allow",
    "--media-playback-requires-user-gesture=false",
    "--features=+MockCaptureDevices,-MockCaptureDevicesPrompt",
)


def find_minibrowser() -> str | None:
    found = sorted(glob.glob(MINIBROWSER_GLOB))
    return found[-1] if found else None


def missing_webkit() -> str | None:
    """Why WebKit tests cannot run here, or None when they can."""
    if shutil.which(DRIVER) is None or find_minibrowser() is None:
        return "WebKitGTK's WebKitWebDriver and MiniBrowser not found (Debian: webkit2gtk-driver)"
    if shutil.which("Xvfb") is None:
        return "Xvfb not found (Debian: xvfb): MiniBrowser needs an X display"
    if shutil.which("pulseaudio") is None:
        return "PulseAudio not found (WebKitGTK plays through GStreamer's pulsesink)"
    return None


# A pure tone at hz in place of the microphone, from an oscillator in a context of the page's own.
TONE_MICROPHONE_JS = """(hz) => {
  navigator.mediaDevices.getUserMedia = async () => {
    const ctx = new AudioContext();
    const oscillator = new OscillatorNode(ctx, {frequency: hz});
    const gain = new GainNode(ctx, {gain: 0.1});
    const destination = ctx.createMediaStreamDestination();
    oscillator.connect(gain).connect(destination);
    oscillator.start();
    await ctx.resume();
    return destination.stream;
  };
}"""

# Runs fn(arg) and reports through WebDriver's async-script callback, as JSON either way.
ASYNC_WRAPPER = """const done = arguments[arguments.length - 1];
Promise.resolve().then(() => (%s)(JSON.parse(arguments[0])))
  .then((value) => done(JSON.stringify({value: value === undefined ? null : value})),
        (error) => done(JSON.stringify({error: String(error && error.stack || error)})));"""


@dataclass
class WebKit:
    """One MiniBrowser, through a WebKitWebDriver of its own."""

    driver: subprocess.Popen
    base: str
    session: str = ""
    name: str = "webkit"

    @classmethod
    async def launch(cls, env: dict[str, str], name: str = "webkit") -> WebKit:
        """Start WebKitWebDriver and a MiniBrowser session (DISPLAY and XDG_RUNTIME_DIR come with env)."""
        port = free_port()
        driver = subprocess.Popen([DRIVER, f"--port={port}"], env={**os.environ, **env},
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        webkit = cls(driver, f"http://127.0.0.1:{port}", name=name)
        try:
            await webkit._wait_for_driver()
            reply = await webkit.command("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "MiniBrowser",
                "webkitgtk:browserOptions": {"binary": find_minibrowser(), "args": list(BROWSER_ARGS)},
            }}}, timeout=START_TIMEOUT_S, in_session=False)
            webkit.session = reply["sessionId"]
        except BaseException:
            await webkit.close()
            raise
        return webkit

    async def _wait_for_driver(self) -> None:
        for _ in range(START_TIMEOUT_S * 20):
            if self.driver.poll() is not None:
                raise RuntimeError(f"{DRIVER} exited with {self.driver.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(self.base.rsplit(":", 1)[1])), 1):
                return
            await asyncio.sleep(0.05)
        raise PageStuck(f"{self.name}: {DRIVER} did not listen in {START_TIMEOUT_S} s")

    def _request(self, method: str, url: str, body: Any, timeout: float) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    async def command(self, method: str, path: str, body: Any = None, timeout: float = COMMAND_TIMEOUT_S,
                      in_session: bool = True) -> Any:
        """One WebDriver command; its value. PageStuck when no answer comes in time."""
        url = self.base + (f"/session/{self.session}" if in_session else "") + path
        try:
            # The driver's own script timeout cannot fire while the page's main thread is busy: our deadline
            # comes a second after it, and the request's thread gives up by itself a little later.
            reply = await asyncio.wait_for(asyncio.to_thread(self._request, method, url, body, timeout + 5),
                                           timeout + 1)
        except (asyncio.TimeoutError, TimeoutError, socket.timeout):
            raise PageStuck(f"{self.name}: no answer to {method} {path} in {timeout:g} s: the page stopped answering") from None
        value = reply.get("value")
        if isinstance(value, dict) and "error" in value:
            if value["error"] == "script timeout":
                raise PageStuck(f"{self.name}: a script got no answer in {timeout:g} s: the page stopped answering")
            raise (ScriptError if path.startswith("/execute") else RuntimeError)(
                f"{self.name}: {method} {path} failed: {value['error']}: {value.get('message')}")
        return value

    async def navigate(self, url: str) -> None:
        await self.command("POST", "/url", {"url": url}, timeout=30)

    async def evaluate(self, function: str, arg: Any = None, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """Call function (JS source, maybe async) with arg in the page; return its JSON-able result."""
        await self.command("POST", "/timeouts", {"script": round(timeout * 1000)})
        raw = await self.command("POST", "/execute/async", {"script": ASYNC_WRAPPER % function,
                                                            "args": [json.dumps(arg)]}, timeout=timeout)
        result = json.loads(raw)
        if "error" in result:
            raise ScriptError(f"{self.name}: the page threw: {result['error']}")
        return result["value"]

    async def click(self, selector: str) -> None:
        """A real click on the element (WebDriver Element Click): a user gesture for the page."""
        element = await self.command("POST", "/element", {"using": "css selector", "value": selector})
        await self.command("POST", f"/element/{next(iter(element.values()))}/click", {})

    async def install_tone(self, hz: float) -> None:
        """From now on the page's getUserMedia gives a pure tone at hz."""
        await self.evaluate(TONE_MICROPHONE_JS, hz)

    async def close(self) -> None:
        if self.session and self.driver.poll() is None:
            with contextlib.suppress(Exception):
                await self.command("DELETE", "", timeout=10)
            self.session = ""
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(self.driver.wait), 10)
            except asyncio.TimeoutError:
                self.driver.kill()
                self.driver.wait()


@dataclass
class Xvfb:
    """A virtual X display for MiniBrowser, on the first free display number."""

    process: subprocess.Popen | None = None
    display: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display}

    def start(self, timeout: float = 10) -> Xvfb:
        read, write = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as pipe:  # Xvfb writes the display number once it accepts clients
            number = pipe.readline().strip()
        if not number:
            self.stop()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Xvfb:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
