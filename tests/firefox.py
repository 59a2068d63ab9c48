"""Stock Firefox driven over WebDriver BiDi, for tests/ and bench/: no geckodriver, no Playwright build.

    async with PulseAudio() as pulse:                       # Firefox needs a sound server to play
        firefox = await Firefox.launch(prefs=fake_microphone(440), env=pulse.env)
        await firefox.add_preload_script("() => { window.early = true; }")
        await firefox.navigate("http://127.0.0.1:8080/")
        title = await firefox.evaluate("() => document.title")
        await firefox.close()

Firefox starts with a fresh profile whose user.js holds the prefs, prints
"WebDriver BiDi listening on ws://127.0.0.1:PORT" on stderr, and takes JSON commands on PORT/session
(https://w3c.github.io/webdriver-bidi/). Its stderr is read all the time (a full pipe would block it),
and every command has a timeout: a page whose main thread stops answering raises PageStuck, with the
command and Firefox's last words, instead of hanging the caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FIREFOX_CANDIDATES = ("/usr/bin/firefox-esr", "/usr/bin/firefox")
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 15
STDERR_LINES_KEPT = 40

# A fresh profile's prefs: a fake microphone granted without a prompt, audio allowed to play without
# a click, and nothing that reaches for the network on start.
BASE_PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,  # allowed
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "extensions.update.enabled": False,
}


class PageStuck(AssertionError):
    """The page (or Firefox) did not answer a command in time."""


class ScriptError(AssertionError):
    """A script evaluated in the page threw."""


def find_firefox() -> str | None:
    """Path of a Firefox binary, or None."""
    for candidate in FIREFOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("firefox-esr") or shutil.which("firefox")


def missing_firefox() -> str | None:
    """Why Firefox tests cannot run here, or None when they can."""
    if find_firefox() is None:
        return "Firefox not found (firefox-esr or firefox on PATH)"
    if shutil.which("pulseaudio") is None:
        return "PulseAudio not found (Firefox's AudioContext needs a sound server)"
    return None


def fake_microphone(hz: float = 1000.0) -> dict[str, Any]:
    """Prefs for a fake microphone that plays a continuous sine at hz (integer Hz, about -20 dBFS)."""
    return {"media.navigator.audio.fake_frequency": round(hz)}


# The microphone refused as when a person clicks "Block": getUserMedia rejects with NotAllowedError.
DENIED_MICROPHONE: dict[str, Any] = {
    "media.navigator.permission.disabled": False,
    "permissions.default.microphone": 2,
}


def write_user_js(profile: Path, prefs: dict[str, Any]) -> None:
    """Write prefs as the profile's user.js, which Firefox reads on start."""
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in prefs.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")


# Wrapped around every evaluated function: values travel as one JSON string each way (a 32768-sample
# window is a short string, not 32768 BiDi remote values). undefined comes back as null.
CALL_WRAPPER = """async function (__argJson) {
  const __value = await (%s)(JSON.parse(__argJson));
  return __value === undefined ? 'null' : JSON.stringify(__value);
}"""


# What Firefox logs, as a script error, when a WebSocket handshake is refused (a 403 or 429): the page's onclose
# handles it, so it is no uncaught error of the page.
REFUSED_WEBSOCKET = re.compile(r"Firefox can.t establish a connection to the server at wss?://")


@dataclass
class LogEntry:
    """A console message or an uncaught exception (type 'javascript') from the page."""

    type: str
    level: str
    text: str


@dataclass
class Firefox:
    """One Firefox process with one tab, driven over a BiDi session."""

    process: asyncio.subprocess.Process
    profile: Path
    websocket: ClientConnection | None = None
    context: str = ""
    name: str = "firefox"
    stderr_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=STDERR_LINES_KEPT))
    log: list[LogEntry] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, asyncio.Future] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    async def launch(cls, prefs: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                     name: str = "firefox", executable: str | None = None,
                     new_socket: Callable[[], socket.socket] | None = None) -> Firefox:
        """Start headless Firefox on a fresh profile and open a BiDi session on its first tab. executable runs
        in place of Firefox's binary (e.g. NetPath.executable: in a namespace), and new_socket makes the
        socket that reaches its BiDi port (there, its 127.0.0.1 is the namespace's)."""
        binary = executable or find_firefox()
        if binary is None:
            raise RuntimeError(missing_firefox())
        profile = Path(tempfile.mkdtemp(prefix="duoduel-firefox-"))
        write_user_js(profile, {**BASE_PREFS, **(prefs or {})})
        process = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-remote", "--profile", str(profile), "--remote-debugging-port=0",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1", **(env or {})},
            start_new_session=True,  # its content processes go with it when we kill the group
        )
        firefox = cls(process, profile, name=name)
        try:
            url = await asyncio.wait_for(firefox._read_stderr_until_listening(), START_TIMEOUT_S)
            firefox._tasks.append(asyncio.create_task(firefox._drain_stderr()))
            sock = None
            if new_socket is not None:
                sock = new_socket()
                sock.setblocking(False)
                host, port = re.match(r"ws://([^:/]+):(\d+)", url).groups()
                await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
            firefox.websocket = await connect(url + "/session", max_size=None, open_timeout=START_TIMEOUT_S, sock=sock)
            firefox._tasks.append(asyncio.create_task(firefox._dispatch()))
            await firefox.command("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
            tree = await firefox.command("browsingContext.getTree", {"maxDepth": 0})
            firefox.context = tree["contexts"][0]["context"]
            await firefox.command("session.subscribe", {"events": ["log.entryAdded"]})
        except BaseException as error:
            await firefox.close()
            if isinstance(error, asyncio.TimeoutError):
                raise PageStuck(f"{name}: Firefox did not start in {START_TIMEOUT_S} s; "
                                f"stderr: {firefox.last_words()}") from None
            raise
        return firefox

    # --- the process ---

    async def _read_stderr_until_listening(self) -> str:
        while line := await self.process.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            if match := LISTENING.search(text):
                return match[1]
        raise RuntimeError(f"{self.name}: Firefox exited (code {await self.process.wait()}) before listening; "
                           f"stderr: {self.last_words()}")

    async def _drain_stderr(self) -> None:
        while line := await self.process.stderr.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    def last_words(self) -> str:
        """Firefox's last lines on stderr, for failure messages."""
        return " | ".join(self.stderr_tail) or "(nothing)"

    # --- the protocol ---

    async def _dispatch(self) -> None:
        """Route replies to their commands and keep the page's log."""
        try:
            async for raw in self.websocket:
                message = json.loads(raw)
                if "id" in message:
                    future = self._waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("method") == "log.entryAdded":
                    params = message["params"]
                    self.log.append(LogEntry(params.get("type", ""), params.get("level", ""), params.get("text", "")))
        except ConnectionClosed:
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: Firefox closed the BiDi connection"))

    async def command(self, method: str, params: dict, timeout: float = COMMAND_TIMEOUT_S) -> dict:
        """Send one BiDi command and return its result; PageStuck if no answer comes within timeout."""
        id_ = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[id_] = future
        await self.websocket.send(json.dumps({"id": id_, "method": method, "params": params}))
        try:
            reply = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self._waiting.pop(id_, None)
            raise PageStuck(f"{self.name}: no answer to {method} in {timeout:g} s: the page stopped answering; "
                            f"Firefox's stderr: {self.last_words()}") from None
        if reply.get("type") == "error":
            # Firefox answers some page exceptions with an error instead of an "exception" result.
            raise (ScriptError if method.startswith("script.") else RuntimeError)(f"{self.name}: {method} failed: {reply.get('error')}: {reply.get('message')}")
        return reply["result"]

    # --- what tests use ---

    async def navigate(self, url: str, timeout: float = COMMAND_TIMEOUT_S) -> None:
        """Load url in the tab and wait for its load event."""
        await self.command("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"},
                           timeout)

    async def add_preload_script(self, function: str) -> None:
        """Run function (source of a JS function) in every document before its own scripts."""
        await self.command("script.addPreloadScript", {"functionDeclaration": function})

    async def evaluate(self, function: str, arg: Any = None, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """Call function (source of a JS function, maybe async) with arg in the page, as if the person had
        just clicked (user activation); return its JSON-able result. PageStuck after timeout."""
        result = await self.command("script.callFunction", {
            "functionDeclaration": CALL_WRAPPER % function,
            "arguments": [{"type": "string", "value": json.dumps(arg)}],
            "target": {"context": self.context},
            "awaitPromise": True,
            "userActivation": True,
            "resultOwnership": "none",
        }, timeout)
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise ScriptError(f"{self.name}: the page threw: {details.get('text')}")
        return json.loads(result["result"]["value"])

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions in the page so far (not Firefox's note of a refused WebSocket, which the page handles)."""
        return [entry.text for entry in self.log if entry.type == "javascript" and not REFUSED_WEBSOCKET.match(entry.text)]

    async def close(self) -> None:
        """Close Firefox (politely, then by force) and delete its profile."""
        if self.websocket is not None and self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.command("browser.close", {}, timeout=5)
        if self.websocket is not None:
            with contextlib.suppress(Exception):
                await self.websocket.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        shutil.rmtree(self.profile, ignore_errors=True)


@dataclass
class PulseAudio:
    """A private PulseAudio server with one null sink: an audio output for headless Firefox.

    Without a sound server Firefox's AudioContext stays 'suspended' and resume() never settles.
    The server lives in its own XDG_RUNTIME_DIR (mode 700); pass env to every Firefox.
    """

    runtime_dir: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def start(self, timeout: float = 10) -> PulseAudio:
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="duoduel-pulse-"))
        self.runtime_dir.chmod(0o700)
        self.process = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--log-target=stderr",
             "--load=module-null-sink sink_name=fake rate=48000",
             "--load=module-native-protocol-unix auth-anonymous=1"],
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        native = self.runtime_dir / "pulse" / "native"
        for _ in range(round(timeout / 0.05)):
            if self.process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.process.returncode}")
            if native.exists():
                with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
                    probe.connect(str(native))
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pulseaudio did not open {native} in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    async def __aenter__(self) -> PulseAudio:
        return self.start()

    async def __aexit__(self, *exc) -> None:
        self.stop()
