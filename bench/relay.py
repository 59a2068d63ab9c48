#!/usr/bin/env python3
"""Load generator for the duoduel relay: N lobby pairs, or N private rooms of K members, exchange timestamped frames.

usage: python bench/relay.py (--url ws://127.0.0.1:PORT/ws --server-pid PID | --spawn-server [--server PATH] [--server-args "..."]
                              [--servers K [--redis]] [--tls] [--proxy nginx[:SITE]] [--routes R,...] [--rounds N])
                             (--pairs N | --rooms N [--room-members K] [--frozen F]) --seconds T [--frame-bytes 1920]
                             [--rate 50] [--procs P] [--cpu 1] [--conversation [--dtx]]

Prints one JSON object of measured figures. Every frame is a frame.js header followed by a payload whose first
16 bytes are (client id u32, sequence u32, send time u64 = time.monotonic_ns(), system-wide on Linux), so each
receiver measures relay latency and checks that the frame came from a partner or room mate it discovered by a hello
frame; in a group room also that the server's slot mark in front of it is that room mate's. With --rooms, client
c joins room c // K; with --spawn-server the server gets --room-size K (K = 2: private calls, today's format).
With --frozen F, F members of each room stop reading and sending once the rooms are formed: the figures are then the
others', to compare with a run without.

With --spawn-server --servers K, K server processes share core 0 (with --redis, one lobby through a redis-server of
the bench's own, also on core 0) and the units are split over them in contiguous blocks, connected one block after
another: every call stays on one process, as the shared lobby keeps it, and the server figures are summed over all
K processes, to compare with one process at the same total load. bench/pairing.py measures the moves themselves.

Routes (ROUTES below; each starts its own servers for every run): plain (ws:// straight to duoduel), tls (wss://
straight to `duoduel.py --https`), plain-asyncio and tls-asyncio (the same with uvloop hidden, so on asyncio's own
event loop and TLS), nginx (wss:// through deploy/nginx-duoduel.conf: TLS ends at nginx, which speaks plain WebSocket
to duoduel on its unix socket). Certificates come from gen_cert.sh. --tls and --proxy nginx add their route to plain; --rounds N runs
every route N times, alternating (each round in a rotated order), and prints each route's medians beside its runs.
The proxy's workers run on the servers' core; their CPU per relayed frame is reported apart from duoduel's.
--proxy nginx:SITE runs another site file in the deploy file's form (e.g. with one directive changed) as a route of
its own, to compare in one run. With --callgrind the servers run under valgrind, and the figures to compare are
their user-space instructions per relayed frame, which the machine's other load changes far less than seconds.
--conversation: each client talks in spurts and pauses instead of sending every frame, on P.59's model of a
conversation's speech (ITU-T P.59: talk spurts of 1.004 s and pauses of 1.587 s on average, here each drawn from an
exponential distribution, a random stream per client): without --dtx a page still sends every frame of a pause
(the encoder codes the silence), with --dtx it sends what the page's DTX does (static/silence-gate.js): the frames
of the pause's first 200 ms, then one at the end of every 400 ms. server_core_percent_per_call is the server's CPU
per call, in % of a core: a call's cost, to compare between frame durations (--rate 50 or 100, --frame-bytes 70 or 35 at 28 kbit/s) and with and without DTX.
One more route is one more entry in ROUTES: a function that starts what its clients go through and returns an
Endpoint (their URLs, duoduel's processes, the proxy's); a script may add one and call main(). The clients speak
WebSocket, over TLS for a wss:// URL: a route over another transport brings a client of its own too.
"""

from __future__ import annotations

import argparse, asyncio, base64, contextlib, hashlib, ipaddress, json, multiprocessing as mp, os, random, resource, shlex
import signal
import socket, ssl, statistics, struct, subprocess, sys, tempfile, time, traceback, urllib.request
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import nginx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ports import free_port  # noqa: E402


HEADER = struct.Struct("<BBHId")  # frame.js: version, codec (0 = PCM16), seq u16, sample rate, capture time (ms)
BENCH = struct.Struct("<IIQ")  # start of payload: client id, seq (0 = hello), send time (monotonic ns)
CONNECT_TIMEOUT = 15.0
DRAIN_SECONDS = 3.0
TALK_S, PAUSE_S = 1.004, 1.587  # --conversation: mean talk spurt and pause (ITU-T P.59)
DTX_HANGOVER_S, DTX_UPDATE_S = 0.2, 0.4  # --dtx: the page sends a pause's first 200 ms, then a frame every 400 ms
HANDSHAKES_IN_FLIGHT = 64  # stay under the listen backlog (100) so no SYN is dropped and retried after 1 s
ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = ROOT / "duoduel.py"
SERVER_CORE = 0  # duoduel, redis-server and the proxy's workers; the generator runs on --cpu (default 1)
# Runs duoduel.py (argv[1]) with uvloop hidden, so that it runs on asyncio's own event loop and TLS.
WITHOUT_UVLOOP = ("import runpy, sys; sys.modules['uvloop'] = None; del sys.argv[0]; "
                  "runpy.run_path(sys.argv[0], run_name='__main__')")


@dataclass
class Client:
    """One WebSocket client and what it saw."""

    cid: int
    mates: int = 1  # the others it should hear: its partner, or the rest of its room
    room: int | None = None  # with --rooms: the room it joins
    ws: Wire | None = None
    marked: bool = False  # in a group room: every frame comes behind the sender's slot
    senders: dict[int | None, int] = field(default_factory=dict)  # slot (None unmarked) -> client id, from hellos
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # heard every mate's hello, or failed
    sent: int = 0
    received: int = 0
    last_seq: dict[int | None, int] = field(default_factory=dict)


@dataclass
class Tally:
    """Everything one generator process measured; sent back to the parent."""

    connect_failures: dict[str, int] = field(default_factory=dict)
    unpaired: int = 0
    sent: int = 0
    expected: int = 0
    received: int = 0
    misrouted: int = 0
    out_of_order: int = 0
    closed_by_server: dict[str, int] = field(default_factory=dict)
    texts: dict[str, int] = field(default_factory=dict)
    latency_ns: array = field(default_factory=lambda: array("q"))
    lag_ns: array = field(default_factory=lambda: array("q"))
    cpu_s: float = 0.0
    wall_s: float = 0.0
    drained: bool = True
    stopping: bool = False
    error: str = ""
    tls: str = ""  # the TLS version and cipher suite the connections agreed, on an encrypted route


def bump(counts: dict[str, int], key: str) -> None:
    """Count one occurrence of key."""
    counts[key] = counts.get(key, 0) + 1


def check_loopback(url: str) -> None:
    """Refuse any URL whose host is not a loopback address: traffic must not leave this machine."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        sys.exit(f"relay.py: need a ws:// URL (for wss://, let the bench start the server: --tls), got {url!r}")
    addrs = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)}
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        sys.exit(f"relay.py: refusing non-loopback host {parts.hostname!r} ({sorted(addrs)})")


def on_binary(c: Client, msg: bytes, now: int, tally: Tally) -> None:
    """Account one binary frame: the first from each sender is its hello, the rest carry latency samples."""
    slot = msg[0] if c.marked else None
    cid, seq, sent_ns = BENCH.unpack_from(msg, HEADER.size + c.marked)
    known = c.senders.get(slot)
    if known is None:
        if seq or cid == c.cid or (c.room is not None and cid // (c.mates + 1) != c.room):
            tally.misrouted += 1  # a stranger's frame, or a room mate's behind no hello
            return
        c.senders[slot] = cid
        if len(c.senders) == c.mates:
            c.settled.set()
    elif cid != known:
        tally.misrouted += 1  # another's frame, or a room mate's behind the wrong slot
    elif seq:
        tally.out_of_order += seq <= c.last_seq.get(slot, 0)
        c.last_seq[slot] = seq
        c.received += 1
        tally.latency_ns.append(now - sent_ns)


class Wire(asyncio.Protocol):
    """A minimal RFC 6455 client connection for one Client.

    A full client library costs about as much CPU per frame as the server does, so on a two-core machine the
    generator would saturate first. This one masks with a zero key (valid: the key is only required to be
    unpredictable to protect proxies, and there are none on loopback) and parses the server's unmasked frames.
    """

    def __init__(self, c: Client, tally: Tally, request: bytes, accept: bytes) -> None:
        self.c, self.tally, self.request, self.accept = c, tally, request, accept
        self.buf, self.transport = bytearray(), None
        self.opened = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if self.close_code is None and not self.tally.stopping:
            bump(self.tally.closed_by_server, "1006")  # TCP closed without a close frame
        self.lost.set_result(None)
        self.c.settled.set()

    def send(self, opcode: int, data: bytes) -> None:
        """Write one masked frame (zero masking key: the payload goes out as is)."""
        n = len(data)
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        self.transport.write(head + b"\0\0\0\0" + data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.opened.done():
            if (end := self.buf.find(b"\r\n\r\n")) < 0:
                return
            head, self.buf = bytes(self.buf[:end]), self.buf[end + 4:]
            status = head.split(b" ", 2)[1].decode()
            if status != "101" or self.accept not in head:
                self.opened.set_exception(ConnectionError(f"HTTP {status}"))
                self.transport.close()
                return
            self.opened.set_result(None)
        pos, buf = 0, self.buf
        while len(buf) - pos >= 2:
            opcode, n, at = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
            if n >= 126:
                at += 2 if n == 126 else 8
                if len(buf) < at:
                    break
                n = int.from_bytes(buf[pos + 2:at], "big")
            if len(buf) < at + n:
                break
            self.on_frame(opcode, bytes(buf[at:at + n]))
            pos = at + n
        del buf[:pos]

    def on_frame(self, opcode: int, payload: bytes) -> None:
        """Dispatch one complete frame from the server (it never fragments its messages)."""
        if opcode == 0x2:
            on_binary(self.c, payload, time.monotonic_ns(), self.tally)
        elif opcode == 0x1:
            kind = json.loads(payload).get("type", "?")
            bump(self.tally.texts, kind)
            if kind == "room":
                self.c.marked = True
            elif kind in ("connected", "joined"):  # say hello to the partner, or to everyone in the room
                self.send(0x2, HEADER.pack(1, 0, 0, 48000, time.time() * 1000) + BENCH.pack(self.c.cid, 0, 0))
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.tally.stopping:
                bump(self.tally.closed_by_server, str(self.close_code))
                self.send(0x8, payload[:2])
            self.transport.close()
        elif opcode == 0x9:
            self.send(0xA, payload)
        else:
            bump(self.tally.texts, f"unexpected opcode {opcode}")


async def open_wire(c: Client, url: str, gate: asyncio.Semaphore, tally: Tally,
                    tls: ssl.SSLContext | None = None) -> Wire | None:
    """Open c's connection (over TLS with a wss:// URL) and complete the handshake; count a failure by kind and return None."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    request = (f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
               f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: {'https' if secure else 'http'}://{parts.netloc}\r\n\r\n").encode()  # a same-origin page's
    loop = asyncio.get_running_loop()
    try:
        async with gate:
            transport, wire = await asyncio.wait_for(loop.create_connection(
                lambda: Wire(c, tally, request, accept), parts.hostname, parts.port or (443 if secure else 80),
                ssl=tls if secure else None), CONNECT_TIMEOUT)
            await asyncio.wait_for(wire.opened, CONNECT_TIMEOUT)
        if secure and not tally.tls:
            agreed = transport.get_extra_info("ssl_object")
            tally.tls = f"{agreed.version()} {agreed.cipher()[0]}"
        c.ws = wire
        return wire
    except Exception as exc:  # a failure is a figure to report, not a crash
        bump(tally.connect_failures, str(exc) if str(exc).startswith("HTTP") else type(exc).__name__)
        c.settled.set()
        return None


class Talker:
    """--conversation: whether a client's page sends the frame due at a time, as it talks in spurts and pauses."""

    def __init__(self, cid: int, dtx: bool) -> None:
        self._random = random.Random(cid)
        self._dtx = dtx
        self._talking = self._random.random() < TALK_S / (TALK_S + PAUSE_S)
        self._since = 0.0
        self._until = self._random.expovariate(1 / (TALK_S if self._talking else PAUSE_S))
        self._next_update = 0.0

    def sends(self, t: float) -> bool:
        """Whether the frame due t seconds into the window is sent (call with t increasing)."""
        while t >= self._until:
            self._talking = not self._talking
            self._since = self._until
            self._until += self._random.expovariate(1 / (TALK_S if self._talking else PAUSE_S))
            self._next_update = self._since + DTX_HANGOVER_S + DTX_UPDATE_S
        if self._talking or not self._dtx or t < self._since + DTX_HANGOVER_S:
            return True
        if t < self._next_update:
            return False
        self._next_update += DTX_UPDATE_S
        return True


async def send_frames(c: Client, t0: int, end: int, period: int, phase: int, size: int, tally: Tally,
                      talker: Talker | None = None) -> None:
    """Send one frame per period on absolute deadlines (no drift) from t0 + phase until end (with a talker, only
    the frames it sends)."""
    buf = bytearray(os.urandom(HEADER.size + size))  # random, so nothing downstream can shortcut it
    deadline, seq = t0 + phase, 0
    while deadline < end:
        if talker is not None and not talker.sends((deadline - t0) / 1e9):
            deadline += period
            continue
        delay = deadline - time.monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        seq += 1
        now = time.monotonic_ns()
        tally.lag_ns.append(now - deadline)
        HEADER.pack_into(buf, 0, 1, 0, seq & 0xFFFF, 48000, time.time() * 1000)
        BENCH.pack_into(buf, HEADER.size, c.cid, seq, now)
        await c.ws.writable.wait()  # backpressure: the kernel buffer is full, as websockets' send() would wait
        if c.ws.lost.done():
            return
        c.ws.send(0x2, buf)
        c.sent += 1
        deadline += period


def server_of(c: Client, args: argparse.Namespace) -> int:
    """Which server c connects to: units are split over the servers in contiguous blocks."""
    return (c.cid // (args.room_members or 2)) * len(args.urls) // args.units


def client_url(c: Client, args: argparse.Namespace) -> str:
    """c's server's lobby URL, or with --rooms the URL of c's room there."""
    url = args.urls[server_of(c, args)]
    return url if c.room is None else f"{url}?room={args.room_prefix}{c.room}"


def heard_by_all(c: Client, clients: dict[int, Client]) -> bool:
    """c heard a hello from each of its mates, and each of them heard c's."""
    return len(c.senders) == c.mates and all(
        cid in clients and c.cid in clients[cid].senders.values() for cid in c.senders.values()
    )


async def run_worker(first: int, units: int, args: argparse.Namespace, pipe) -> Tally:
    """One generator process: connect its pairs or rooms when told, send for the window, drain, report, close."""
    tally = Tally()
    await asyncio.to_thread(pipe.recv)  # our turn to connect: the previous process's clients are all paired
    size = args.room_members or 2
    clients = {cid: Client(cid, size - 1, cid // size if args.rooms else None)
               for cid in range(first, first + size * units)}
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    tasks = []
    for server in range(len(args.urls)):  # one server's clients after another's: no call spans two processes
        group = [c for c in clients.values() if server_of(c, args) == server]
        tasks += [asyncio.create_task(open_wire(c, client_url(c, args), gate, tally, tls)) for c in group]
        settles = [asyncio.create_task(c.settled.wait()) for c in group]
        if settles:
            await asyncio.wait(settles, timeout=CONNECT_TIMEOUT + len(group) / HANDSHAKES_IN_FLIGHT)
    ours = [c for c in clients.values() if heard_by_all(c, clients)]
    tally.unpaired = len(clients) - len(ours)
    pipe.send(("ready", len(ours)))
    t0 = await asyncio.to_thread(pipe.recv)
    # With --frozen F, the last F members of each room stop reading (and sending) for the whole window.
    frozen = [c for c in ours if c.cid % size >= size - args.frozen]
    for c in frozen:
        c.ws.transport.pause_reading()
    talking = [c for c in ours if c.cid % size < size - args.frozen]
    await asyncio.sleep(max(0, t0 - time.monotonic_ns()) / 1e9)
    cpu0, wall0 = time.process_time(), time.monotonic()
    period, end = round(1e9 / args.rate), t0 + round(args.seconds * 1e9)
    spread = max(1, size * args.units)
    await asyncio.gather(*(send_frames(c, t0, end, period, c.cid * period // spread, args.frame_bytes, tally,
                                       Talker(c.cid, args.dtx) if args.conversation else None)
                           for c in talking))
    tally.sent = sum(c.sent for c in talking)
    tally.expected = tally.sent * (size - 1 - args.frozen)  # every frame goes to each of the sender's talking mates
    drain_end, last = time.monotonic() + DRAIN_SECONDS, (-1, time.monotonic())
    while (got := sum(c.received for c in talking)) < tally.expected and time.monotonic() < drain_end:
        last = (got, time.monotonic()) if got != last[0] else last
        if time.monotonic() - last[1] > 0.5:
            break  # nothing for 500 ms: the rest was dropped, not delayed
        await asyncio.sleep(0.01)
    tally.received = sum(c.received for c in talking)
    tally.drained = tally.received >= tally.expected
    tally.cpu_s, tally.wall_s = time.process_time() - cpu0, time.monotonic() - wall0
    tally.stopping = True
    pipe.send(("result", tally))
    await asyncio.to_thread(pipe.recv)  # parent has read the server's figures: now closing is not measured
    wires = [c.ws for c in clients.values() if c.ws]
    for wire in wires:
        wire.send(0x8, (1000).to_bytes(2, "big"))
    await asyncio.wait([w.lost for w in wires], timeout=5)
    for wire in wires:
        wire.transport.close()
    return tally


def worker_main(first: int, units: int, args: argparse.Namespace, pipe) -> None:
    """Process entry: raise the fd limit, run run_worker on uvloop if installed, report a crash as a result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run_worker(first, units, args, pipe))
    except Exception:
        pipe.send(("error", traceback.format_exc()))


def server_cpu(pid: int) -> float:
    """CPU seconds (utime+stime, reaped children included) of pid and its live descendants, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += server_cpu(int(child))
    return total


def core_busy_s() -> dict[int, float]:
    """Busy seconds (all but idle and iowait) of every core since boot, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name != "cpu":
            out[int(name[3:])] = (sum(map(int, ticks[:8])) - int(ticks[3]) - int(ticks[4])) / os.sysconf("SC_CLK_TCK")
    return out


def server_mem_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of pid in MiB, from /proc/PID/status."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: round(int(status[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def servers_dropped(endpoint: Endpoint, tls: ssl.SSLContext | None) -> int | None:
    """frames_dropped_total summed over the servers, else None."""
    counts = [server_dropped(url, tls) for url in endpoint.metrics]
    return None if not counts or None in counts else sum(counts)


def server_dropped(url: str, tls: ssl.SSLContext | None) -> int | None:
    """duoduel's frames_dropped_total counter from its own /metrics page (url), else None."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),  # never via a proxy
                                         urllib.request.HTTPSHandler(context=tls))
    try:
        with opener.open(url, timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("duoduel_frames_dropped_total "):
                    return int(float(line.split()[1]))
    except (OSError, ValueError):
        pass
    return None


@dataclass
class Server:
    """A duoduel process the bench started: its port (with a unix socket: its name, a free port's number) and its output."""

    proc: subprocess.Popen
    port: int
    log: IO[bytes]
    unix_socket: Path | None = None


@dataclass
class Endpoint:
    """What one run measures: where the clients connect, and whose CPU is counted."""

    urls: list[str]  # each duoduel process's lobby URL, as the clients reach it
    metrics: list[str]  # each duoduel process's own /metrics URL
    pids: list[int]  # duoduel's processes
    servers: list[Server] = field(default_factory=list)  # those the bench started: stopped, their output noted
    proxy: list[int] = field(default_factory=list)  # the proxy's worker processes
    redis_port: int | None = None


# A route starts what its clients connect through, for one run, and leaves its cleanup on the stack.
Route = Callable[[argparse.Namespace, contextlib.ExitStack], Endpoint]


def plain_route(args: argparse.Namespace, stack: contextlib.ExitStack, uvloop: bool = True) -> Endpoint:
    """ws:// straight to duoduel, on uvloop or asyncio's own loop."""
    servers, redis_port = start_servers(args, stack, lambda port: f"http://127.0.0.1:{port}", uvloop=uvloop)
    return Endpoint([f"ws://127.0.0.1:{s.port}/ws" for s in servers],
                    [f"http://127.0.0.1:{s.port}/metrics" for s in servers],
                    [s.proc.pid for s in servers], servers, redis_port=redis_port)


def tls_route(args: argparse.Namespace, stack: contextlib.ExitStack, uvloop: bool = True) -> Endpoint:
    """wss:// straight to duoduel.py --https: each process ends TLS itself, on uvloop's TLS or asyncio's."""
    servers, redis_port = start_servers(args, stack, lambda port: f"https://127.0.0.1:{port}",
                                        ["--https", "--cert", str(args.cert), "--key", str(args.key)], uvloop)
    return Endpoint([f"wss://127.0.0.1:{s.port}/ws" for s in servers],
                    [f"https://127.0.0.1:{s.port}/metrics" for s in servers],
                    [s.proc.pid for s in servers], servers, redis_port=redis_port)


def nginx_route(args: argparse.Namespace, stack: contextlib.ExitStack, site: Path = nginx.SITE) -> Endpoint:
    """wss:// to nginx with the deploy site file, which ends TLS and speaks ws:// to each duoduel on its unix socket.

    Each client connects through /p/PORT/, as a client moved to that process does: the same tunnel as the
    upstream's, and every call stays on one process, as the shared lobby keeps it.
    """
    listen = free_port()
    public = f"https://127.0.0.1:{listen}"
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-nginx-")))
    servers, redis_port = start_servers(args, stack, lambda port: f"{public}/p/{port}", ["--allow-origin", public],
                                        unix_sockets=directory)
    site_text = nginx.site_config({str(s.port): s.unix_socket for s in servers}, listen, args.cert, args.key, site)
    # Under callgrind, one process that is master and worker: callgrind follows no fork.
    config = nginx.write_config(directory, site_text, args.proxy_workers, master=not args.callgrind)
    proxy = subprocess.Popen(["taskset", "-c", str(SERVER_CORE), *callgrind(args, "proxy"), nginx.binary(), "-c", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    stack.callback(stop_proxy, proxy)
    errors = directory / "error.log"
    wait_listening(listen, proxy, "nginx", lambda: errors.read_text() if errors.exists() else "", args.start_timeout)
    deadline = time.monotonic() + 5
    while not args.callgrind and len(nginx.workers(proxy.pid)) < args.proxy_workers and time.monotonic() < deadline:
        time.sleep(0.02)  # the master listens before it forks its workers
    workers = [proxy.pid] if args.callgrind else nginx.workers(proxy.pid)
    return Endpoint([f"wss://127.0.0.1:{listen}/p/{s.port}/ws" for s in servers],
                    [f"{public}/p/{s.port}/metrics" for s in servers],
                    [s.proc.pid for s in servers], servers, workers, redis_port)


ROUTES: dict[str, Route] = {
    "plain": plain_route,
    "plain-asyncio": lambda args, stack: plain_route(args, stack, uvloop=False),
    "tls": tls_route,
    "tls-asyncio": lambda args, stack: tls_route(args, stack, uvloop=False),
    "nginx": nginx_route,
}


def stop_proxy(proxy: subprocess.Popen) -> None:
    """Stop nginx (SIGTERM: the master stops its workers), or kill it if it lingers."""
    proxy.send_signal(signal.SIGTERM)
    try:
        proxy.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proxy.kill()
        proxy.wait()


def wait_listening(port: int | Path, proc: subprocess.Popen, name: str, output: Callable[[], str],
                   timeout: float = 10) -> None:
    """Return once something accepts connections on the loopback port (or unix socket); exit with proc's output if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"relay.py: {name} exited {proc.returncode}: {output()[-2000:]}")
        try:
            if isinstance(port, Path):
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(port))
            else:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"relay.py: {name} did not listen within {timeout:g} s: {output()[-2000:]}")


def spawn_redis() -> tuple[subprocess.Popen, int]:
    """Start a redis-server of our own, without persistence, pinned to the servers' core."""
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CORE), "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("relay.py: redis-server did not listen within 5 s")


def redis_calls(port: int) -> int:
    """Commands Redis has executed since it started (INFO commandstats, INFO itself left out)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"INFO commandstats\r\n")
        data = b""
        while not data.endswith(b"\r\n") or data.count(b"\r\n") < 2:
            data += s.recv(65536)
    return sum(int(line.split(b"calls=")[1].split(b",")[0]) for line in data.split(b"\r\n")
               if line.startswith(b"cmdstat_") and not line.startswith(b"cmdstat_info"))


def start_servers(args: argparse.Namespace, stack: contextlib.ExitStack, public: Callable[[int], str],
                  flags: list[str] | None = None, uvloop: bool = True,
                  unix_sockets: Path | None = None) -> tuple[list[Server], int | None]:
    """Start the --servers duoduel processes (with --redis, sharing a lobby through a redis-server of their own).

    public(port) is how a client reaches the process on port: its --public-url in the shared lobby. With
    unix_sockets, each process listens on PORT.sock in that folder instead, the port being only its name.
    """
    redis_port = None
    if args.redis:
        redis, redis_port = spawn_redis()
        stack.callback(redis.kill)
    servers = []
    for _ in range(args.servers):
        port = free_port()
        extra = [*(flags or []), *shlex.split(args.server_args)]
        if redis_port:
            extra += ["--redis", f"redis://127.0.0.1:{redis_port}/0", "--public-url", public(port)]
        if args.rooms and not any(arg.startswith("--room-size") for arg in extra):
            extra += ["--room-size", str(args.room_members)]
        unix_socket = unix_sockets / f"{port}.sock" if unix_sockets else None
        servers.append(spawn_server(args, stack, port, extra, uvloop, unix_socket))
    return servers, redis_port


def spawn_server(args: argparse.Namespace, stack: contextlib.ExitStack, port: int, extra: list[str],
                 uvloop: bool, unix_socket: Path | None = None) -> Server:
    """Start duoduel pinned to the servers' core on port (or unix_socket); return it once it listens."""
    python = [sys.executable] if uvloop else [sys.executable, "-c", WITHOUT_UVLOOP]
    where = ["--host", "127.0.0.1", "--port", str(port)] if unix_socket is None else ["--unix", str(unix_socket)]
    cmd = ["taskset", "-c", str(SERVER_CORE), *callgrind(args, "duoduel"), *python, str(args.server_script), *where,
           "--log-level", "warning", *extra]
    log = stack.enter_context(tempfile.TemporaryFile())
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(lambda: proc.poll() is None and proc.kill())
    wait_listening(unix_socket or port, proc, "server", lambda: log.seek(0) or log.read().decode(errors="replace"),
                   args.start_timeout)
    return Server(proc, port, log, unix_socket)


def callgrind(args: argparse.Namespace, role: str) -> list[str]:
    """With --callgrind, the prefix that runs a server under callgrind; measure() counts only the window."""
    if not args.callgrind:
        return []
    return ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={args.callgrind_dir}/{role}.%p"]


def instructions(args: argparse.Namespace, role: str, pid: int) -> int | None:
    """The instructions callgrind counted in pid between measure()'s zero and dump (its first dump), else None."""
    try:
        text = Path(f"{args.callgrind_dir}/{role}.{pid}.1").read_text(errors="replace")
    except OSError:
        return None
    line = next((line for line in text.splitlines() if line.startswith(("summary:", "totals:"))), None)
    return int(line.split()[1]) if line else None


def stop_server(server: Server, notes: list[str]) -> None:
    """SIGTERM the spawned server, kill it if it lingers, and note anything it logged."""
    proc, log = server.proc, server.log
    if proc.poll() is not None:
        notes.append(f"server exited early with {proc.returncode}")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        notes.append("server ignored SIGTERM for 5 s: killed")
    log.seek(0)
    lines = log.read().decode(errors="replace").splitlines()
    if lines:
        notes.append(f"server logged {len(lines)} lines, last: {lines[-1][:300]}")


def percentiles_ms(values: list[int]) -> dict[str, float]:
    """Nearest-rank p50/p99/max of nanosecond samples, in milliseconds."""
    values = sorted(values)
    if not values:
        return {"p50": None, "p99": None, "max": None}
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 3)  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(values[-1] / 1e6, 3)}


def merge(tallies: list[Tally], key: str) -> dict[str, int]:
    """Sum one dict-of-counts field over all processes."""
    out: dict[str, int] = {}
    for t in tallies:
        for k, v in getattr(t, key).items():
            out[k] = out.get(k, 0) + v
    return out


def run(args: argparse.Namespace) -> dict:
    """Measure the server at --url, or each route --rounds times, alternating, with servers of the bench's own."""
    if args.url:
        check_loopback(args.url)
        metrics = f"http://{urlsplit(args.url).netloc}/metrics"
        return measure(args, Endpoint([args.url], [metrics], [args.server_pid] if args.server_pid else []), [])
    with contextlib.ExitStack() as stack:
        if args.callgrind:
            args.callgrind_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-callgrind-"))
        make_certificate(args, stack)
        if args.routes == ["plain"] and args.rounds == 1:
            return measure_route(args, "plain")  # the report as it always was
        load = os.getloadavg()
        runs: dict[str, list[dict]] = {name: [] for name in args.routes}
        for round_ in range(args.rounds):
            for i in range(len(args.routes)):  # each round starts one route later: none always runs first
                name = args.routes[(round_ + i) % len(args.routes)]
                runs[name].append(measure_route(args, name))
        return side_by_side(args, runs, load)


def make_certificate(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    """A gen_cert.sh certificate for the spawned servers, in a directory the stack removes; the clients trust it."""
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-cert-")))
    subprocess.run([str(ROOT / "gen_cert.sh"), str(directory)], check=True, capture_output=True)
    args.cert, args.key = directory / "cert.pem", directory / "key.pem"
    args.cafile = args.cert


def measure_route(args: argparse.Namespace, name: str) -> dict:
    """One run of one route, with servers (and a proxy) started for it and stopped after."""
    with contextlib.ExitStack() as stack:
        endpoint = ROUTES[name](args, stack)
        return {"route": name, **measure(args, endpoint, [])}


def side_by_side(args: argparse.Namespace, runs: dict[str, list[dict]], load: tuple[float, ...]) -> dict:
    """Each route's medians over its runs (CPU per relayed frame against plain's, calls per core), then the runs."""
    def median(reports: list[dict], *keys: str | int) -> float | None:
        values = []
        for report in reports:
            for key in keys:
                report = report.get(key) if isinstance(report, dict) else None
            if report is not None:
                values.append(report)
        return round(statistics.median(values), 3) if values else None

    plain = median(runs.get("plain", []), "total_cpu_us_per_relayed_frame")
    routes = {}
    for name, reports in runs.items():
        total = median(reports, "total_cpu_us_per_relayed_frame")
        routes[name] = {
            "duoduel_cpu_us_per_relayed_frame": median(reports, "server_cpu_us_per_relayed_frame"),
            "proxy_cpu_us_per_relayed_frame": median(reports, "proxy_cpu_us_per_relayed_frame"),
            "total_cpu_us_per_relayed_frame": total,
            "total_runs": [r["total_cpu_us_per_relayed_frame"] for r in reports],
            "x_plain": round(total / plain, 2) if total and plain else None,
            # A call of two relays 2 × rate frames a second; a core kept at 85 % (as --max-clients assumes).
            **({"calls_per_core_at_85pct": int(0.85e6 / (2 * args.rate * total))} if total and not args.rooms else {}),
            "latency_p50_ms": median(reports, "latency_ms", "p50"), "latency_p99_ms": median(reports, "latency_ms", "p99"),
            "loss": median(reports, "loss"), "send_lag_p99_ms": median(reports, "send_lag_ms", "p99"),
            "server_core_busy": median(reports, "core_busy", SERVER_CORE),
            "generator_cores": median(reports, "generator_cpu", "total_cores"),
            "connect_cpu_ms_per_client": median(reports, "connect_cpu_ms_per_client"),
            **({"instructions_per_relayed_frame": instructions_side_by_side(reports, runs.get("plain"), median)}
               if args.callgrind else {}),
            "tls": sorted({r["tls"] for r in reports if r.get("tls")}),
            "notes": sum(len(r["notes"]) for r in reports),
        }
    return {
        "routes": routes, "rounds": args.rounds, "seconds": args.seconds,
        "load": f"{args.pairs} pairs" if not args.rooms else f"{args.rooms} rooms of {args.room_members}",
        "frame_bytes": args.frame_bytes, "rate": args.rate,
        "cores": {"duoduel": [SERVER_CORE], "proxy_workers": [SERVER_CORE], **({"redis": [SERVER_CORE]} if args.redis else {}),
                  "generator": sorted(args.cpu)},
        "load_average": {"before": [round(x, 2) for x in load], "after": [round(x, 2) for x in os.getloadavg()]},
        "runs": runs,
    }


def measure(args: argparse.Namespace, endpoint: Endpoint, notes: list[str]) -> dict:
    """Spawn the generator processes, connect them one after another, run the window, and build the report."""
    args.urls, pids, proxy = endpoint.urls, endpoint.pids, endpoint.proxy  # the generator processes read args.urls
    metrics_tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    cpus = set(args.cpu)
    os.sched_setaffinity(0, cpus)  # the children inherit it
    size = args.room_members or 2
    nprocs = max(1, min(args.procs or len(cpus), args.units))
    shares = [args.units // nprocs + (i < args.units % nprocs) for i in range(nprocs)]
    ctx, workers = mp.get_context("fork"), []
    for i, share in enumerate(shares):
        here, there = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(size * sum(shares[:i]), share, args, there), daemon=True)
        p.start()
        workers.append((p, here))
    redis_port = endpoint.redis_port
    paired, calls0 = 0, redis_calls(redis_port) if redis_port else 0
    connecting0 = sum(map(server_cpu, pids + proxy))
    for p, pipe in workers:  # one process at a time, so that no pair straddles two processes
        pipe.send("connect")
        msg = pipe.recv() if pipe.poll(CONNECT_TIMEOUT * 4 + args.units / 10) else ("error", "connect timeout")
        if msg[0] != "ready":
            sys.exit(f"relay.py: generator process failed while connecting: {msg[1]}")
        paired += msg[1] // size
    calls1 = redis_calls(redis_port) if redis_port else 0
    connecting = sum(map(server_cpu, pids + proxy)) - connecting0  # handshakes (TCP, TLS, WebSocket) and pairing
    t0 = time.monotonic_ns() + 500_000_000
    for _, pipe in workers:
        pipe.send(t0)
    time.sleep((t0 - time.monotonic_ns()) / 1e9)
    dropped0 = servers_dropped(endpoint, metrics_tls)
    counted = [("duoduel", pid) for pid in pids] + [("proxy", pid) for pid in proxy] if args.callgrind else []
    for _, pid in counted:
        subprocess.run(["callgrind_control", "--zero", str(pid)], capture_output=True, check=True)
    cpu0, proxy0, wall0 = sum(map(server_cpu, pids)), sum(map(server_cpu, proxy)), time.monotonic()
    busy0 = core_busy_s()
    tallies = []
    for _, pipe in workers:
        msg = pipe.recv() if pipe.poll(args.seconds + DRAIN_SECONDS + 30) else ("error", "no result in time")
        if msg[0] != "result":
            sys.exit(f"relay.py: generator process failed: {msg[1]}")
        tallies.append(msg[1])
    window = time.monotonic() - wall0
    busy = {k: round((v - busy0[k]) / window, 3) for k, v in core_busy_s().items()}
    cpu = sum(map(server_cpu, pids)) - cpu0 if pids else None
    proxy_cpu = sum(map(server_cpu, proxy)) - proxy0 if proxy else None
    for _, pid in counted:
        subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, check=True)
    mems = [server_mem_mb(pid) for pid in pids]
    mem = {k: round(sum(m[k] for m in mems), 1) for k in ("VmRSS", "VmHWM")} if mems else {"VmRSS": None, "VmHWM": None}
    calls2 = redis_calls(redis_port) if redis_port else 0
    dropped1 = servers_dropped(endpoint, metrics_tls)
    dropped = dropped1 - dropped0 if dropped0 is not None and dropped1 is not None else None
    for pid in pids + proxy:
        if os.sched_getaffinity(pid) != {SERVER_CORE}:
            notes.append(f"process {pid}'s affinity is {sorted(os.sched_getaffinity(pid))}, not core {SERVER_CORE}")
    for p, pipe in workers:
        pipe.send("close")
        p.join(timeout=10)
    for server in endpoint.servers:
        stop_server(server, notes)
    sent, received = sum(t.sent for t in tallies), sum(t.received for t in tallies)
    expected = sum(t.expected for t in tallies)
    gen = [t.cpu_s / t.wall_s for t in tallies if t.wall_s > args.seconds / 2]
    closed, texts, failures = merge(tallies, "closed_by_server"), merge(tallies, "texts"), merge(tallies, "connect_failures")
    lag = percentiles_ms([x for t in tallies for x in t.lag_ns])
    if paired < args.units:
        notes.append(f"only {paired} of {args.units} {'rooms' if args.rooms else 'pairs'} formed; "
                     f"clients without all their mates: {sum(t.unpaired for t in tallies)}")
    if failures:
        notes.append(f"connect failures by kind: {failures}")
    if closed:
        notes.append(f"server closed connections during the run, by close code: {closed}")
    if texts.get("disconnected") or texts.get("error"):
        notes.append(f"unexpected control messages: {texts}")
    if not all(t.drained for t in tallies):
        notes.append(f"{expected - received} frames never arrived (server says it dropped {dropped})")
    other = busy.get(SERVER_CORE, 0) - ((cpu or 0) + (proxy_cpu or 0)) / window
    if other > 0.1:
        notes.append(f"other processes kept core {SERVER_CORE} (the server's) ~{other:.0%} busy: server figures are disturbed")
    if max(gen, default=0) > 0.85:
        notes.append("a generator process used >85% of a core: figures may be limited by the generator")
    if (lag["p99"] or 0) > 1000 / args.rate / 2:
        notes.append(f"sends ran late (p99 {lag['p99']} ms behind deadline): generator or send backpressure")
    return {
        **({"rooms": paired, "rooms_requested": args.rooms, "room_members": size, "frozen_per_room": args.frozen}
           if args.rooms else
           {"pairs": paired, "pairs_requested": args.pairs}),
        "seconds": args.seconds, "frame_bytes": args.frame_bytes,
        "message_bytes": HEADER.size + args.frame_bytes, "rate": args.rate,
        "frames_sent": sent, "frames_received": received, "frames_received_per_s": round(received / window),
        "loss": round(1 - received / expected, 6) if expected else None,
        "misrouted": sum(t.misrouted for t in tallies), "out_of_order": sum(t.out_of_order for t in tallies),
        "latency_ms": percentiles_ms([x for t in tallies for x in t.latency_ns]), "send_lag_ms": lag,
        "server_frames_dropped": dropped, "window_s": round(window, 3), "server_cpu_s": round(cpu, 3) if cpu is not None else None,
        # A relayed frame is a delivered one: in a room of K, each frame sent is relayed K - 1 times.
        "server_cpu_us_per_relayed_frame": round(cpu * 1e6 / received, 2) if cpu is not None and received else None,
        "server_cpu_us_per_sent_frame": round(cpu * 1e6 / sent, 2) if cpu is not None and sent else None,
        "server_core_percent_per_call": round(cpu * 100 / window / paired, 4) if cpu is not None and paired else None,
        **({"conversation": {"talk_s": TALK_S, "pause_s": PAUSE_S, "dtx": args.dtx,
                             "frames_sent_per_s_per_client": round(sent / window / (paired * size), 1)}}
           if args.conversation else {}),
        **({"proxy_workers": len(proxy), "proxy_cpu_s": round(proxy_cpu, 3),
            "proxy_cpu_us_per_relayed_frame": round(proxy_cpu * 1e6 / received, 2) if received else None}
           if proxy_cpu is not None else {}),
        "total_cpu_us_per_relayed_frame":
            round((cpu + (proxy_cpu or 0)) * 1e6 / received, 2) if cpu is not None and received else None,
        "tls": next((t.tls for t in tallies if t.tls), None),
        "connect_cpu_ms_per_client": round(connecting * 1e3 / (paired * size), 3) if pids and paired else None,
        **({"instructions_per_relayed_frame": instructions_per_frame(args, counted, received)} if counted else {}),
        "server_rss_mb": mem["VmRSS"], "server_peak_rss_mb": mem["VmHWM"], "servers": len(pids),
        **({"redis_commands_while_pairing": calls1 - calls0,
            "redis_commands_per_call": round((calls1 - calls0) / paired, 2) if paired else None,
            "redis_commands_during_window": calls2 - calls1} if redis_port else {}),
        "generator_cpu": {"procs": len(tallies), "cpus": sorted(cpus), "per_proc": [round(g, 3) for g in gen],
                          "total_cores": round(sum(t.cpu_s for t in tallies) / window, 3)},
        "core_busy": busy, "load_average": [round(x, 2) for x in os.getloadavg()],
        "connect_failures": sum(failures.values()), "closed_by_server": closed, "notes": notes,
    }


def instructions_side_by_side(reports: list[dict], plain: list[dict] | None, median: Callable) -> dict:
    """Medians of duoduel's and the proxy's instructions per relayed frame, their sum, and the sum against plain's."""
    duoduel, proxy = (median(reports, "instructions_per_relayed_frame", role) for role in ("duoduel", "proxy"))
    total = (duoduel or 0) + (proxy or 0)
    base = median(plain, "instructions_per_relayed_frame", "duoduel") if plain else None
    return {"duoduel": duoduel, "proxy": proxy, "total": total, "x_plain": round(total / base, 2) if base else None}


def instructions_per_frame(args: argparse.Namespace, counted: list[tuple[str, int]], received: int) -> dict:
    """User-space instructions per relayed frame of duoduel and of the proxy, as callgrind counted them."""
    out: dict[str, int | None] = {}
    for role in dict.fromkeys(role for role, _ in counted):
        counts = [instructions(args, role, pid) for r, pid in counted if r == role]
        out[role] = round(sum(counts) / received) if received and None not in counts else None
    return out


def cpu_list(text: str) -> list[int]:
    """Parse a CPU list such as '1', '1,3' or '1-3'."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read and check the command line; a script may add routes to ROUTES first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="lobby URL, ws://127.0.0.1:PORT/ws (loopback only)")
    units = parser.add_mutually_exclusive_group(required=True)
    units.add_argument("--pairs", type=int, help="N pairs in the lobby")
    units.add_argument("--rooms", type=int, help="N private rooms of --room-members each")
    parser.add_argument("--room-members", type=int, default=None, help="K members per room with --rooms (default 8)")
    parser.add_argument("--frozen", type=int, default=0,
                        help="with --rooms: F members of each room stop reading and sending (the others' figures)")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--frame-bytes", type=int, default=1920, help="payload bytes after the 16-byte header")
    parser.add_argument("--rate", type=float, default=50, help="frames per second per client")
    parser.add_argument("--conversation", action="store_true",
                        help="clients talk in spurts and pauses (ITU-T P.59's means), not all the time")
    parser.add_argument("--dtx", action="store_true", help="with --conversation: pauses sent as Opus DTX sends them")
    parser.add_argument("--procs", type=int, default=0, help="generator processes (default: one per --cpu)")
    parser.add_argument("--cpu", type=cpu_list, default=[1], help="CPU list for the generator (default 1)")
    parser.add_argument("--server-pid", type=int, help="server process to read /proc figures from")
    parser.add_argument("--spawn-server", action="store_true", help="start the server on core 0 and a free port")
    parser.add_argument("--tls", action="store_true", help="also measure wss:// straight to duoduel.py --https (implies --spawn-server)")
    parser.add_argument("--proxy", action="append", default=[], metavar="nginx[:SITE]",
                        help="also measure wss:// through nginx with deploy/nginx-duoduel.conf, or SITE, a file in its form "
                             "(repeatable; implies --spawn-server)")
    parser.add_argument("--routes", type=lambda text: text.split(","), metavar="R,...",
                        help=f"routes to measure, of {', '.join(ROUTES)} (default plain; --tls and --proxy add theirs; "
                             "implies --spawn-server)")
    parser.add_argument("--rounds", type=int, default=1, help="run every route this many times, alternating; print medians")
    parser.add_argument("--proxy-workers", type=int, default=1, help="nginx worker processes (all on core 0)")
    parser.add_argument("--callgrind", action="store_true",
                        help="run duoduel and nginx under valgrind's callgrind and report their user-space instructions per "
                             "relayed frame in the window (repeatable where CPU seconds are noisy; the kernel's share is not "
                             "counted); they run ~50x slower, so use a light load: --pairs 2")
    parser.add_argument("--servers", type=int, default=1, help="with --spawn-server: K server processes, all on core 0")
    parser.add_argument("--redis", action="store_true", help="with --spawn-server: the servers share one lobby through a redis-server")
    parser.add_argument("--server-args", default="", help="extra arguments for the spawned server")
    parser.add_argument("--server", "--server-script", dest="server_script", type=Path, default=SERVER_SCRIPT, metavar="PATH",
                        help="duoduel.py to spawn (default: this checkout's); another commit's, to compare in one run")
    args = parser.parse_args(argv)
    if args.rooms and args.room_members is None:
        args.room_members = 8
    if args.room_members is not None and (not args.rooms or not 2 <= args.room_members <= 255):
        parser.error("--room-members K goes with --rooms, and 2 <= K <= 255")
    if args.frozen and (not args.rooms or not 0 < args.frozen <= args.room_members - 2):
        parser.error("--frozen F goes with --rooms, and leaves at least two members talking")
    args.units = args.rooms or args.pairs
    # Names this run's rooms: a server measured again must not put new clients in old rooms.
    args.room_prefix = f"bench-{os.urandom(4).hex()}-"
    if not BENCH.size <= args.frame_bytes <= 65535 - HEADER.size or args.units < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error(f"need {BENCH.size} <= --frame-bytes <= {65535 - HEADER.size}, --pairs or --rooms >= 1, "
                     "--seconds > 0, --rate > 0")
    for proxy in args.proxy:
        kind, _, site = proxy.partition(":")
        if kind != "nginx" or (site and not Path(site).is_file()):
            parser.error(f"--proxy {proxy}: give nginx, or nginx:SITE with SITE a site file in deploy/'s form")
        if site:  # a route of its own, named after the file, to compare with deploy's in one run
            ROUTES[f"nginx:{Path(site).stem}"] = lambda a, stack, site=Path(site): nginx_route(a, stack, site)
    args.spawn_server = args.spawn_server or bool(args.routes or args.tls or args.proxy) or args.rounds > 1
    args.routes = list(dict.fromkeys((args.routes or ["plain"]) + ["tls"] * args.tls +
                                     [f"nginx:{Path(p[6:]).stem}" if p[6:] else "nginx" for p in args.proxy]))
    if unknown := [name for name in args.routes if name not in ROUTES]:
        parser.error(f"unknown route {', '.join(unknown)}: the routes are {', '.join(ROUTES)}")
    if not args.url and not args.spawn_server:
        parser.error("give --url (and --server-pid) or --spawn-server")
    if args.url and args.spawn_server:
        parser.error("--url measures a server of yours; --spawn-server, --tls, --proxy and --rounds start the bench's own")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.dtx and not args.conversation:
        parser.error("--dtx leaves out the frames of a conversation's pauses: give --conversation too")
    args.cafile = None  # set to the spawned servers' certificate (gen_cert.sh)
    args.start_timeout = 120 if args.callgrind else 10  # valgrind takes its time to start Python
    return args


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, measure, print the JSON report. A script may add routes to ROUTES first."""
    args = parse_args(argv)
    try:
        print(json.dumps(run(args), indent=1))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
