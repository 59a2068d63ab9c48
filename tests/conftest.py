"""Fixtures and helpers: a real duoduel server on an ephemeral port, real clients, raw HTTP, real browsers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duoduel  # noqa: E402


@dataclass
class Running:
    """A server under test: where to reach it."""

    host: str
    port: int
    scheme: str = "http"
    webtransport: Any = None  # the server's core.webtransport.Endpoint when it serves /wt (config.webtransport)

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def ws_url(self, query: str = "") -> str:
        ws = "wss" if self.scheme == "https" else "ws"
        return f"{ws}://{self.host}:{self.port}/ws{query}"


@pytest.fixture
def config() -> duoduel.Config:
    """The configuration the server fixture starts with; tests may override this fixture."""
    return duoduel.Config(host="127.0.0.1", port=0)


@contextlib.asynccontextmanager
async def running_server(config: duoduel.Config) -> AsyncIterator[Running]:
    """Run duoduel in this event loop on an ephemeral port."""
    async with duoduel.make_server(config) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        yield Running(config.host, port, webtransport=ws_server.webtransport)


@pytest.fixture
async def server(config: duoduel.Config) -> AsyncIterator[Running]:
    """A server with the default limits."""
    async with running_server(config) as running:
        yield running


async def receive_json(websocket: ClientConnection, timeout: float = 5) -> dict:
    """Read the next message, which must be a JSON control message."""
    message = await asyncio.wait_for(websocket.recv(), timeout)
    assert isinstance(message, str), f"expected a control message, got {message!r:.80}"
    return json.loads(message)


async def join(running: Running, query: str = "", **kwargs) -> tuple[ClientConnection, dict]:
    """Connect a client and return it with the first message the server sent it."""
    websocket = await connect(running.ws_url(query), **kwargs)
    return websocket, await receive_json(websocket)


async def join_pair(running: Running, query: str = "") -> tuple[ClientConnection, ClientConnection]:
    """Connect two clients that end up paired with each other."""
    first, told = await join(running, query)
    assert told == {"type": "waiting"}
    second, told = await join(running, query)
    assert told == {"type": "connected"}
    assert await receive_json(first) == {"type": "connected"}
    return first, second


async def round_trip(websocket: ClientConnection, t: float = 1) -> list:
    """Ping through the server; return what arrived before the pong (everything sent to us before it)."""
    await websocket.send(json.dumps({"type": "ping", "t": t}))
    before = []
    while True:
        message = await asyncio.wait_for(websocket.recv(), 5)
        if isinstance(message, str) and json.loads(message) == {"type": "pong", "t": t}:
            return before
        before.append(message)


@dataclass
class HTTPReply:
    status: int
    headers: dict[str, str]
    body: bytes


async def http_request(
    running: Running,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    ssl=None,
) -> HTTPReply:
    """Send one raw HTTP/1.1 request, the path exactly as given, and read the reply."""
    reader, writer = await asyncio.open_connection(running.host, running.port, ssl=ssl)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {running.host}:{running.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    reply_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        reply_headers[name.strip().lower()] = value.strip()
    return HTTPReply(int(status_line.split()[1]), reply_headers, body)


async def health(running: Running) -> dict:
    """What /healthz says now."""
    reply = await http_request(running, "/healthz")
    assert reply.status == 200
    return json.loads(reply.body)


async def until(condition: Callable[[], Awaitable[object]], what: str, timeout: float = 5) -> object:
    """Await condition() every 20 ms until it is true, and return it; fail at the deadline, saying what never happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await condition()):
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.02)
    return result


async def metric(running: Running, name: str) -> float:
    """Read one sample from /metrics."""
    text = (await http_request(running, "/metrics")).body.decode()
    match = re.search(rf"^duoduel_{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


FRAME = bytes(1920)  # 20 ms of PCM16 at 48 kHz


async def frozen_client(running: Running, query: str = "") -> ClientConnection:
    """A client that stops reading: tiny kernel receive buffer, and websockets stops after one queued message."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((running.host, running.port))
    sock.setblocking(False)
    return await connect(running.ws_url(query), sock=sock, max_queue=1)


async def settle(running: Running, **expected: int) -> dict:
    """Wait until /healthz shows the expected counts (the server notices a close asynchronously)."""
    for _ in range(200):
        state = await health(running)
        if all(state[key] == value for key, value in expected.items()):
            return state
        await asyncio.sleep(0.01)
    raise AssertionError(f"server state stayed {state}, expected {expected}")


@dataclass
class Process:
    """duoduel.py running as a command, as a user starts it."""

    popen: subprocess.Popen
    port: int
    scheme: str
    started: list[str]  # what it printed up to the line saying it listens

    @property
    def running(self) -> Running:
        return Running("127.0.0.1", self.port, self.scheme)


LISTENING = re.compile(r"listening on (https?)://[^ ]*:(\d+)/")


@pytest.fixture
def start_process() -> Iterator:
    """Start duoduel.py as a subprocess on an ephemeral port; stop whatever is left at the end."""
    started: list[subprocess.Popen] = []

    def start(*args: str, python: Sequence[str] = ()) -> Process:
        popen = subprocess.Popen(
            [sys.executable, *python, str(ROOT / "duoduel.py"), "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        started.append(popen)
        said = []
        for line in popen.stdout:
            said.append(line)
            if match := LISTENING.search(line):
                return Process(popen, int(match[2]), match[1], said)
        raise AssertionError(f"duoduel did not start: exit {popen.wait()}")

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
        popen.wait()
        popen.stdout.close()


def run_command(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a command in the repository and capture what it prints."""
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30, env=os.environ, **kwargs)


@pytest.fixture(scope="session")
def pulse_audio() -> Iterator:
    """A private PulseAudio server with a null sink for the whole session: Firefox's audio output."""
    from firefox import PulseAudio

    pulse = PulseAudio().start()
    yield pulse
    pulse.stop()


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator:
    """A virtual X display for the whole session: WebKitGTK's MiniBrowser needs one."""
    from webkit import Xvfb

    display = Xvfb().start()
    yield display
    display.stop()


# Real browsers (tests/pages.py): skipped where an engine is missing, unless CI requires them.

REQUIRED = os.environ.get("DUODUEL_REQUIRE_BROWSER") == "1"


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


@pytest.fixture
async def browsers(request, tmp_path) -> AsyncIterator:
    """Opens browsers of any engine (a pages.Browsers); at the end closes them and checks no page threw."""
    from browser import missing_browser
    from pages import Browsers

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


async def open_at(browsers, person: str, engine: str, url: str, hz: float | None = -1.0):
    """A fresh browser of that engine at url, its microphone the person's tone (or hz; None: refused)."""
    from pages import MISSING, TONES

    require(MISSING[engine]())
    return await browsers.open(person, engine, url, TONES[person] if hz == -1.0 else hz)


@pytest.fixture
def open_page(server, browsers):
    """open_page(person, engine, path="/", hz=their tone): open_at() the server's page."""

    async def open_(person: str, engine: str, path: str = "/", hz: float | None = -1.0):
        return await open_at(browsers, person, engine, server.origin + path, hz)

    return open_


@pytest.fixture
def netpath() -> Iterator:
    """netpath(shape, up=, down=, seed=): a packet-level path (bench/netpath.py) between this namespace
    (servers: bind path.server_address) and one of its own (clients: path.socket(), path.executable()),
    removed at the end of the test. Skipped where namespaces or TUN devices are unavailable; under
    DUODUEL_REQUIRE_NETNS=1 (CI) that fails instead."""
    from bench.netpath import NetPath, PathUnavailable, missing_netpath

    def unavailable(reason: str) -> None:
        if os.environ.get("DUODUEL_REQUIRE_NETNS") == "1":
            pytest.fail(f"DUODUEL_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)

    if reason := missing_netpath():
        unavailable(reason)
    paths: list[NetPath] = []

    def start(shape=None, **kwargs) -> NetPath:
        path = NetPath(shape, **kwargs)
        paths.append(path)
        try:
            return path.start()
        except PathUnavailable as error:  # e.g. a container that may not make namespaces
            unavailable(f"netpath could not start: {error}")

    yield start
    for path in paths:
        path.close()
