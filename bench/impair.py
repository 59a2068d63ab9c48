#!/usr/bin/env python3
"""An impaired link for tests and benchmarks: a TCP proxy that delays, jitters, stalls, throttles and cuts.

usage: python bench/impair.py --target 127.0.0.1:8080 [--listen 127.0.0.1:0] [--delay 10] [--jitter 30]
                              [--stall-every 5] [--stall-ms 300] [--rate-kbps 256] [--seed 1]

Point a browser (or bench/latency.py, or a test) at the address it prints instead of the server's: the
page, its /ws and everything else then cross the impaired link. SIGUSR1 cuts every connection at once
(both sides get a TCP reset), as a network change would.

What each direction of the link does to the bytes, in order:
  delay + jitter   a chunk read from one side is due delay + uniform(0, jitter) ms later, but never before
                   the chunk ahead of it: TCP delivers in order, so a late segment holds back the ones
                   behind it (head-of-line blocking) and order is kept.
  stalls           every stall_every s nothing is delivered for stall_ms; what was held then arrives at
                   once, as after a TCP retransmission.
  rate cap         a chunk takes len * 8 / rate s to cross; one cap per direction, shared by every
                   connection through the proxy, as one access link is.
  bound            at most max_held_bytes (64 KiB) wait in each direction of a connection (and at most
                   16 KiB more in asyncio's reader). Past that the proxy stops reading: the sender's
                   kernel buffers fill and its writes block, which is TCP's own backpressure on a
                   congested link. The proxy's sockets have small kernel buffers too, so what waits is
                   visible here, not hidden in the kernel.

As a library (all knobs of a Link may be changed while it runs; the next chunk sees them):

    async with Impairment("127.0.0.1", port, up=Link(delay_ms=10, jitter_ms=30)) as proxy:
        connect(f"ws://127.0.0.1:{proxy.port}/ws")
        proxy.stall(0.4)      # both directions, now
        proxy.down.rate_kbps = 64
        proxy.cut()           # reset every connection through the proxy
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field

__all__ = ["Impairment", "Link", "main"]

CHUNK_BYTES = 16 * 1024  # most bytes read from a socket at once
RATE_PIECE_S = 0.005  # with a rate cap, read pieces that take about this long to cross
MAX_HELD_BYTES = 64 * 1024  # per direction and connection (about 10 s of Opus audio)
SOCKET_BUFFER = 16 * 1024  # the proxy's kernel buffers (Linux doubles this)
# asyncio's StreamReader keeps reading into its own buffer until it holds twice its limit: keep that small too.
READER_LIMIT = SOCKET_BUFFER // 2
IDLE_POLL_S = 0.05  # how often a stall schedule with no period looks at its knobs again


@dataclass
class Link:
    """One direction of the link: its knobs, and the state shared by the connections crossing it."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform in [0, jitter_ms], added to delay_ms per chunk
    stall_every_s: float = 0.0  # 0: no periodic stalls
    stall_ms: float = 0.0
    rate_kbps: float = 0.0  # 0: no cap
    held_until: float = 0.0  # loop time until which nothing crosses (a stall)
    free_at: float = 0.0  # loop time at which the link is free to send the next chunk (rate cap)
    stalls: int = 0  # stalls so far, periodic or on demand

    def hold(self, seconds: float) -> None:
        """Deliver nothing for this long from now (the data keeps coming in, up to the bound)."""
        now = asyncio.get_running_loop().time()
        self.held_until = max(self.held_until, now + seconds)
        self.stalls += 1

    def piece_bytes(self) -> int:
        """How much to read at once: small pieces under a rate cap, so the cap is smooth."""
        if self.rate_kbps <= 0:
            return CHUNK_BYTES
        return max(256, min(CHUNK_BYTES, int(self.rate_kbps * 1000 / 8 * RATE_PIECE_S)))


@dataclass(eq=False)
class Pipe:
    """One direction of one connection: reads from src, holds chunks until due, writes to dst."""

    link: Link
    src: asyncio.StreamReader
    dst: asyncio.StreamWriter
    max_held: int
    rng: random.Random
    chunks: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    held: int = 0
    eof: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        """Take chunks from the sender, stamped with when they are due, while fewer than max_held bytes wait."""
        loop = asyncio.get_running_loop()
        while True:
            while self.held >= self.max_held:  # bound reached: stop reading, TCP pushes back on the sender
                self.changed.clear()
                await self.changed.wait()
            data = await self.src.read(min(self.link.piece_bytes(), self.max_held - self.held))
            if not data:
                self.eof = True
                self.changed.set()
                return
            link = self.link
            due = loop.time() + (link.delay_ms + self.rng.uniform(0, link.jitter_ms)) / 1000
            # One FIFO per direction: a chunk whose time has come still waits behind the one ahead of it,
            # so order is kept, and a late chunk holds back the rest, as in TCP.
            self.chunks.append((due, data))
            self.held += len(data)
            self.changed.set()

    async def write(self) -> None:
        """Deliver chunks when due, after any stall, at the link's rate; pass the sender's EOF on."""
        loop = asyncio.get_running_loop()
        while True:
            if not self.chunks:
                if self.eof:
                    if self.dst.can_write_eof():
                        self.dst.write_eof()
                    return
                self.changed.clear()
                await self.changed.wait()
                continue
            due, data = self.chunks[0]
            link = self.link
            # A stall may begin or be extended while we wait: look again after every sleep.
            while (wait := max(due, link.held_until) - loop.time()) > 0:
                await asyncio.sleep(wait)
            if link.rate_kbps > 0:
                start = max(loop.time(), link.free_at)
                link.free_at = start + len(data) * 8 / (link.rate_kbps * 1000)
                if (wait := link.free_at - loop.time()) > 0:
                    await asyncio.sleep(wait)  # delivered once its last bit has crossed
            self.chunks.popleft()
            self.held -= len(data)
            self.changed.set()
            self.dst.write(data)
            await self.dst.drain()


@dataclass(eq=False)
class Connection:
    """A client's connection and the proxy's connection to the target, joined by two pipes."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    pipes: tuple[Pipe, ...] = ()
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """Close both sides at once with a TCP reset, as a dead network path looks to each end."""
        reset(self.client)
        reset(self.server)
        for task in self.tasks:
            task.cancel()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close a socket with a TCP reset (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def small_buffers(writer: asyncio.StreamWriter) -> None:
    """Keep the kernel and the transport from hiding megabytes of queued data behind the proxy's bound."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.transport.set_write_buffer_limits(high=SOCKET_BUFFER)


class Impairment:
    """A TCP proxy on an ephemeral loopback port in front of target_host:target_port.

    Args:
        target_host, target_port: the server behind the link.
        up: the link from clients to the server (defaults to a perfect one).
        down: the link from the server to clients (defaults to a perfect one).
        listen_host, listen_port: where to listen (port 0: pick one; see .port).
        max_held_bytes: bound on the bytes waiting in each direction of each connection.
        seed: seed of the jitter's random numbers, for repeatable runs.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        up: Link | None = None,
        down: Link | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        max_held_bytes: int = MAX_HELD_BYTES,
        seed: int | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.up = up if up is not None else Link()
        self.down = down if down is not None else Link()
        self.listen = (listen_host, listen_port)
        self.max_held_bytes = max_held_bytes
        self.rng = random.Random(seed)
        self.connections: set[Connection] = set()
        self.refuse_until = 0.0
        self._server: asyncio.Server | None = None
        self._schedules: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        """The port clients connect to."""
        assert self._server is not None, "the proxy is not running"
        return self._server.sockets[0].getsockname()[1]

    def held_bytes(self) -> int:
        """Bytes waiting in the proxy now, all connections and directions together."""
        return sum(pipe.held for connection in self.connections for pipe in connection.pipes)

    def stall(self, seconds: float) -> None:
        """Stall both directions for this long from now; the held data then arrives as a burst."""
        self.up.hold(seconds)
        self.down.hold(seconds)

    def cut(self, refuse_for: float = 0.0) -> int:
        """Reset every connection now; refuse (reset) new ones for refuse_for s. Returns how many were cut."""
        self.refuse_until = asyncio.get_running_loop().time() + refuse_for
        cut = list(self.connections)
        for connection in cut:
            connection.reset()
        self.connections.clear()
        return len(cut)

    async def start(self) -> None:
        """Listen, and start the stall schedules."""
        self._server = await asyncio.start_server(self._accept, *self.listen, limit=READER_LIMIT)
        self._schedules = [asyncio.create_task(stall_schedule(link)) for link in (self.up, self.down)]

    async def close(self) -> None:
        """Stop listening and reset whatever is still connected."""
        for task in self._schedules:
            task.cancel()
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Impairment:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Connect the new client to the target and move bytes both ways until both sides are done."""
        loop = asyncio.get_running_loop()
        small_buffers(client_writer)
        if loop.time() < self.refuse_until:
            reset(client_writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target, limit=READER_LIMIT)
        except OSError:
            reset(client_writer)  # as a refused connection looks
            return
        small_buffers(server_writer)
        pipes = (
            Pipe(self.up, client_reader, server_writer, self.max_held_bytes, self.rng),
            Pipe(self.down, server_reader, client_writer, self.max_held_bytes, self.rng),
        )
        connection = Connection(client_writer, server_writer, pipes)
        self.connections.add(connection)
        for pipe in pipes:
            connection.tasks += [asyncio.create_task(pipe.read()), asyncio.create_task(pipe.write())]
        try:
            await asyncio.gather(*connection.tasks)
        except (OSError, asyncio.IncompleteReadError):
            connection.reset()  # one side reset: pass the reset on to the other
        except asyncio.CancelledError:
            pass  # cut() or close()
        finally:
            self.connections.discard(connection)
            for writer in (client_writer, server_writer):
                writer.close()


async def stall_schedule(link: Link) -> None:
    """Stall the link every stall_every_s for stall_ms, reading the knobs again each time."""
    while True:
        if link.stall_every_s <= 0 or link.stall_ms <= 0:
            await asyncio.sleep(IDLE_POLL_S)
            continue
        await asyncio.sleep(link.stall_every_s)
        if link.stall_every_s > 0:
            link.hold(link.stall_ms / 1000)


def parse_address(text: str) -> tuple[str, int]:
    """host:port (or [v6]:port) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A TCP proxy that impairs the link to a duoduel server.")
    parser.add_argument("--target", type=parse_address, required=True, help="the server, host:port")
    parser.add_argument("--listen", type=parse_address, default=("127.0.0.1", 0), help="where to listen (default 127.0.0.1:0)")
    parser.add_argument("--delay", type=float, default=0.0, help="fixed delay per direction, ms")
    parser.add_argument("--jitter", type=float, default=0.0, help="uniform extra delay 0..JITTER per direction, ms")
    parser.add_argument("--stall-every", type=float, default=0.0, help="stall every this many seconds (0: never)")
    parser.add_argument("--stall-ms", type=float, default=300.0, help="how long each stall lasts, ms")
    parser.add_argument("--rate-kbps", type=float, default=0.0, help="bandwidth cap per direction, kbit/s (0: none)")
    parser.add_argument("--max-held-kib", type=int, default=MAX_HELD_BYTES // 1024, help="bound per direction and connection")
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter, for repeatable runs")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the proxy until SIGINT or SIGTERM; SIGUSR1 cuts every connection."""
    def link() -> Link:
        return Link(args.delay, args.jitter, args.stall_every, args.stall_ms if args.stall_every else 0.0, args.rate_kbps)

    proxy = Impairment(*args.target, up=link(), down=link(), listen_host=args.listen[0], listen_port=args.listen[1],
                       max_held_bytes=args.max_held_kib * 1024, seed=args.seed)
    async with proxy:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(f"cut {proxy.cut()} connection(s)", flush=True))
        print(f"impair: listening on http://{args.listen[0]}:{proxy.port}/ -> {args.target[0]}:{args.target[1]}", flush=True)
        await done.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as error:
        print(f"impair: cannot listen on {args.listen[0]}:{args.listen[1]}: {error.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
