"""Real parts for the shared-lobby tests: a redis-server, duoduel processes that share it, page-like clients."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from conftest import ROOT, Running, receive_json
from ports import free_port, wait_for_port

CALL_UNKNOWN = {"type": "error", "reason": "call token unknown, already used or expired: looking for a partner here instead"}


@dataclass
class RedisServer:
    """redis-server on a free loopback port, without persistence; stop() and start() keep the port."""

    directory: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is missing: apt-get install redis-server (.ci/run does)"
        log = self.directory / "redis.log"
        self.popen = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        log.touch()
        wait_for_port(self.port, self.popen, log)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def client(self):
        """A plain (blocking) client to look inside, as an operator would with redis-cli."""
        import redis

        return redis.Redis(port=self.port, decode_responses=True)


@dataclass
class Duoduel:
    """One duoduel process of the shared lobby."""

    port: int
    popen: subprocess.Popen
    log: Path
    public_url: str

    @property
    def running(self) -> Running:
        return Running("127.0.0.1", self.port)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()


def start_duoduel(directory: Path, *args: str, port: int | None = None, public_url: str | None = None) -> Duoduel:
    """Start duoduel.py as a user would, its output in a file (a pipe nobody reads would fill and stall it)."""
    port = port or free_port()
    public_url = public_url or f"http://127.0.0.1:{port}"
    log = directory / f"duoduel-{port}.log"
    with log.open("w") as out:
        popen = subprocess.Popen(
            [sys.executable, str(ROOT / "duoduel.py"), "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    wait_for_port(port, popen, log)
    return Duoduel(port, popen, log, public_url)


def start_shared(directory: Path, redis_url: str, *args: str, port: int | None = None, public_url: str | None = None) -> Duoduel:
    """Start a duoduel process in the shared lobby of this Redis."""
    port = port or free_port()
    public_url = public_url or f"http://127.0.0.1:{port}"
    return start_duoduel(directory, "--redis", redis_url, "--public-url", public_url, *args, port=port, public_url=public_url)


@dataclass
class Arrival:
    """A page-like client after it has arrived: its socket, what it was told, where it ended, how often it moved."""

    websocket: ClientConnection
    told: dict
    url: str
    moves: int = 0
    errors: list = field(default_factory=list)
    options: dict = field(default_factory=dict)  # connect()'s options, for the next move


async def arrive(url: str, max_moves: int = 3, **kwargs) -> Arrival:
    """Connect as the page does: follow {"type": "moved"} at once, note errors, return at the first other news."""
    moves, errors = 0, []
    websocket = await connect(url, **kwargs)
    while True:
        told = await receive_json(websocket)
        if told.get("type") == "error":
            errors.append(told)
            continue
        if told.get("type") != "moved":
            return Arrival(websocket, told, url, moves, errors, kwargs)
        assert moves < max_moves, f"moved more than {max_moves} times"
        moves += 1
        await websocket.close()
        url = told["url"]
        websocket = await connect(url, **kwargs)


async def arrive_like_page(url: str, deadline: float) -> Arrival:
    """Arrive, and if a move leads to a process that is gone, start over at the first address, as the page does."""
    while True:
        try:
            return await arrive(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def until_connected(arrival: Arrival, timeout: float = 10) -> None:
    """Read until the server says the call started (a waiter is told when its partner arrives).

    A waiter put back in line (its newcomer never came) may be moved too: follow, as the page does.
    """
    while arrival.told != {"type": "connected"}:
        arrival.told = await receive_json(arrival.websocket, timeout)
        if arrival.told.get("type") == "moved":
            await arrival.websocket.close()
            moved = await arrive(arrival.told["url"], **arrival.options)
            arrival.websocket, arrival.told, arrival.url = moved.websocket, moved.told, moved.url
            arrival.moves += 1 + moved.moves
            arrival.errors += moved.errors


async def health_of(running: Running) -> dict:
    """/healthz of a process, read with a plain HTTP request."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {running.host}:{running.port}\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return json.loads(raw.partition(b"\r\n\r\n")[2])
