#!/usr/bin/env python3
"""Server CPU per relayed WebTransport datagram, side by side with the WebSocket routes of bench/relay.py.

usage: python bench/relay_webtransport.py --pairs 10,25,50,100 --seconds 10 --rounds 3 [--nice -10]
                                          [--variant NAME=DIR|qh3[:asyncio]]... [--websocket plain,tls] [--relay PATH]
                                          [--frame-bytes 104] [--client-ack-delay 25] [--callgrind]

Each call is two raw WebTransport clients that send a datagram every 1/--rate s (a bench/relay.py message: the
frame.js header, then client id, sequence and send time) and hear each other's: the server relays each datagram to
the sender's partner, as duoduel relays a WebSocket frame. The server is this file's own minimal lobby (`serve`:
sessions with the same room= are a call, on_audio hands a frame to the partner's send_frame after the backlog check,
as duoduel's deliver() does) around webtransport.py's Endpoint, or (--variant NAME=duoduel) duoduel.py itself, its
lobby and relay behind /wt, with rooms of two; it runs pinned to core 0, the clients on core 1.

The clients open their sessions with aioquic (tests/wt_client.py), then take over their UDP socket: each packet is
built, encrypted and parsed here, with aioquic's packet protection, and nothing else, so that the load costs a
fraction of what the server does. They acknowledge as browsers do: an ACK rides on the next datagram a client sends,
or goes alone once --client-ack-delay ms pass without one (0: an ACK alone for every packet received, which is what
Chromium and Firefox nearly always did on loopback: docs/performance.md).

Every round runs each variant and each WebSocket route once, in a rotated order, at every load; the report gives
medians of the rounds: server CPU (utime+stime, /proc) per relayed datagram, calls per core, p50/p99 latency, loss,
the packets the server received and sent per relayed datagram (as the clients counted them: ACK-only packets show),
and the exceptions its event loop caught. A variant is a folder holding the webtransport.py to serve (default: this
checkout's), or qh3 (this checkout's, ported to qh3: see QH3_PORT), and the event loop (uvloop unless :asyncio).
The WebSocket routes are bench/relay.py's (plain: ws://; tls: wss:// to --https, where that relay.py has --tls:
--relay names another checkout's), with the same message size, rate and load.

On a machine shared with other sessions, give --nice -10 (as root): with autogroups, CPU time is shared between
sessions first, and without it the server may wait for the CPU long enough to overflow its socket buffer.

With --callgrind the servers run under valgrind, and the figure to compare is their user-space instructions per
relayed datagram (the kernel's share is not counted), which the machine's other load changes far less than seconds;
valgrind runs them about 50 times slower, so use one call (--pairs 1).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

HEADER = struct.Struct("<BBHId")  # frame.js: version, codec, seq u16, sample rate, capture time (ms)
BENCH = struct.Struct("<IIQ")  # as bench/relay.py: client id, seq, send time (monotonic ns)
SERVER_CORE, CLIENT_CORE = 0, 1
CONNECT_TIMEOUT = 30.0
HANDSHAKES_IN_FLIGHT = 16
SETTLE_SECONDS = 0.5  # after the last session opens: every handshake packet acknowledged, every ACK sent
DRAIN_SECONDS = 3.0


# The bench's server: webtransport.py's Endpoint and a lobby of pairs.


@dataclass
class Caller:
    """A page in the bench's lobby: its session, and its partner once the call is made."""

    session: object
    partner: Caller | None = None


@dataclass
class Pairs:
    """Sessions with the same room= are a call; audio goes to the partner, as duoduel's relay() does."""

    waiting: dict[str, Caller] = field(default_factory=dict)
    backlog_bytes: int = 5 * 200  # as duoduel's bound: 5 frames (of at most 200 bytes here)
    relayed: int = 0
    dropped: int = 0

    def admit(self, request):
        """Every session is welcome."""
        return None

    async def on_session(self, session) -> None:
        """Pair the session with the one waiting in its room, or wait; then read its lines until it closes."""
        me = Caller(session)
        room = session.path.partition("room=")[2]
        other = self.waiting.pop(room, None)
        if other is None:
            self.waiting[room] = me
        else:
            me.partner, other.partner = other, me
            for caller in (me, other):
                caller.session.start_relay(self, caller)
                caller.session.send_text('{"type": "connected"}')
        async for _ in session:
            pass
        if self.waiting.get(room) is me:
            del self.waiting[room]

    def on_audio(self, lobby: Pairs, sender: Caller, frame: bytes) -> None:
        """Relay a frame to the sender's partner, or drop it if the partner's backlog is full (duoduel's deliver())."""
        receiver = sender.partner
        if receiver is None:
            return
        link = receiver.session
        if link.backlog() > self.backlog_bytes:
            self.dropped += 1
        elif link.send_frame(frame):
            self.relayed += 1


def serve_main(args: argparse.Namespace) -> None:
    """Serve the pairs lobby on a free UDP port of 127.0.0.1; print the port; stop on SIGTERM or stdin's end."""
    sys.path.insert(0, str(args.webtransport_dir))
    if (args.webtransport_dir / "core" / "webtransport.py").exists():
        from core import webtransport
    else:  # a checkout from before the core/ package
        import webtransport

    async def main() -> None:
        pairs = Pairs()
        certificate = webtransport.generate_certificate(["127.0.0.1"])
        async with webtransport.serve("127.0.0.1", 0, certificate, admit=pairs.admit, on_session=pairs.on_session,
                                      on_audio=pairs.on_audio, retry=False) as endpoint:
            print(endpoint.port, webtransport.__file__, flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            errors: list[tuple[float, str]] = []  # what the event loop caught: when, and what
            loop.set_exception_handler(
                lambda loop, context: errors.append((time.monotonic(), repr(context.get("exception") or context.get("message")))))
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_reader(sys.stdin.fileno(), stop.set)
            await stop.wait()
            loop.remove_reader(sys.stdin.fileno())
            print(json.dumps({"relayed": pairs.relayed, "dropped": pairs.dropped, "errors": errors}), flush=True)

    if args.loop == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


# The bench's clients: aioquic for the handshake, then a fast path of our own.


@dataclass
class Tally:
    """What the clients of one generator saw and sent."""

    sent: int = 0
    received: int = 0
    misrouted: int = 0
    out_of_order: int = 0
    packets_sent: int = 0
    acks_alone: int = 0
    packets_received: int = 0
    undecryptable: int = 0
    closed: int = 0
    latency_ns: array = field(default_factory=lambda: array("q"))


class FastPath:
    """One client's QUIC connection after its handshake: datagrams out and in, ACKs, nothing else.

    aioquic's connection is frozen at takeover (its timer cancelled, its socket handed to us); what it had sent
    was acknowledged and what it had received was acknowledged. From then on every packet is a 1-RTT short-header
    packet built and protected here with the connection's own keys.
    """

    def __init__(self, client, session_id: int, cid: int, tally: Tally, ack_delay: float) -> None:
        from aioquic import tls
        from aioquic.buffer import encode_uint_var
        from aioquic.quic.rangeset import RangeSet

        quic = client._quic
        self.loop = asyncio.get_running_loop()
        self.crypto = quic._cryptos[tls.Epoch.ONE_RTT]
        self.peer_cid = quic._peer_cid.cid
        self.host_cid_length = len(quic.host_cid)
        self.addr = quic._network_paths[0].addr
        self.pn = quic._packet_number
        self.expected = quic._spaces[tls.Epoch.ONE_RTT].expected_packet_number
        self.prefix = encode_uint_var(session_id // 4)  # the quarter stream ID of an HTTP/3 datagram
        self.received = RangeSet()
        self.largest_time = 0
        self.ack_needed = False  # a packet arrived since the last ACK we sent
        self.ack_timer: asyncio.TimerHandle | None = None
        self.ack_delay = ack_delay
        self.cid, self.tally = cid, tally
        self.partner: int | None = None
        self.last_seq = 0
        self.seq = 0
        # Freeze aioquic's side and take its socket.
        if client._timer is not None:
            client._timer.cancel()
            client._timer = None
        client.transmit = lambda: None
        self.transport = client._transport
        self.transport.set_protocol(self)

    # asyncio.DatagramProtocol

    def connection_made(self, transport) -> None:
        pass

    def connection_lost(self, exc) -> None:
        pass

    def error_received(self, exc) -> None:
        pass

    def datagram_received(self, data: bytes, addr) -> None:
        from aioquic._crypto import CryptoError
        from aioquic.buffer import Buffer
        from aioquic.quic.packet import pull_ack_frame

        now = time.monotonic_ns()
        tally = self.tally
        if data[0] & 0x80:
            return  # a long header: nothing of the handshake is left
        try:
            _, payload, pn = self.crypto.decrypt_packet(data, 1 + self.host_cid_length, self.expected)
        except CryptoError:
            tally.undecryptable += 1
            return
        tally.packets_received += 1
        if pn >= self.expected:
            self.expected = pn + 1
            self.largest_time = now
        self.received.add(pn)
        if len(self.received) > 16:
            self.received.shift()
        buf = Buffer(data=payload)
        eliciting = False
        while not buf.eof():
            kind = buf.pull_uint_var()
            if kind == 0x00:  # PADDING
                continue
            if kind in (0x02, 0x03):  # ACK
                pull_ack_frame(buf)
                if kind == 0x03:
                    for _ in range(3):
                        buf.pull_uint_var()
                continue
            eliciting = True
            if kind in (0x30, 0x31):  # DATAGRAM
                length = buf.pull_uint_var() if kind == 0x31 else buf.capacity - buf.tell()
                self.on_datagram(buf.pull_bytes(length), now)
            elif kind == 0x01 or kind == 0x1E:  # PING, HANDSHAKE_DONE
                pass
            elif 0x08 <= kind <= 0x0F:  # STREAM: a control line, not read here
                buf.pull_uint_var()
                if kind & 4:
                    buf.pull_uint_var()
                length = buf.pull_uint_var() if kind & 2 else buf.capacity - buf.tell()
                buf.pull_bytes(length)
            elif kind in (0x10, 0x12, 0x13, 0x14, 0x16, 0x17, 0x19):
                buf.pull_uint_var()
            elif kind in (0x11, 0x15):
                buf.pull_uint_var()
                buf.pull_uint_var()
            elif kind == 0x18:  # NEW_CONNECTION_ID
                buf.pull_uint_var()
                buf.pull_uint_var()
                buf.pull_bytes(buf.pull_uint8())
                buf.pull_bytes(16)
            elif kind == 0x07:  # NEW_TOKEN
                buf.pull_bytes(buf.pull_uint_var())
            else:  # CONNECTION_CLOSE or a frame this client does not know
                tally.closed += kind in (0x1C, 0x1D)
                break
        if eliciting:
            self.ack_needed = True
            if self.ack_delay <= 0:
                self.send_ack()
            elif self.ack_timer is None:
                self.ack_timer = self.loop.call_later(self.ack_delay, self.send_ack)

    def on_datagram(self, data: bytes, now: int) -> None:
        """A relayed message: the partner's, in order, with its send time."""
        cid, seq, sent_ns = BENCH.unpack_from(data, len(self.prefix) + HEADER.size)
        tally = self.tally
        if cid != self.partner:
            tally.misrouted += 1
            return
        tally.out_of_order += seq <= self.last_seq
        self.last_seq = seq
        tally.received += 1
        tally.latency_ns.append(now - sent_ns)

    # Sending.

    def ack_frame(self, buf) -> None:
        from aioquic.quic.packet import push_ack_frame

        delay = (time.monotonic_ns() - self.largest_time) // 1000 >> 3
        buf.push_uint_var(0x02)
        push_ack_frame(buf, self.received, delay, 200)
        self.ack_needed = False
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None

    def send_ack(self) -> None:
        """An ACK-only packet: nothing to send for --client-ack-delay since a packet arrived."""
        from aioquic.buffer import Buffer

        self.ack_timer = None
        if not self.ack_needed:
            return
        buf = Buffer(capacity=256)
        self.ack_frame(buf)
        self.tally.acks_alone += 1
        self.send_packet(buf.data)

    def send_message(self, message: bytes) -> None:
        """One datagram, with the pending ACK riding on it."""
        from aioquic.buffer import Buffer

        buf = Buffer(capacity=1500)
        if self.ack_needed:
            self.ack_frame(buf)
        buf.push_uint_var(0x31)
        buf.push_uint_var(len(self.prefix) + len(message))
        buf.push_bytes(self.prefix)
        buf.push_bytes(message)
        self.send_packet(buf.data)

    def send_packet(self, payload: bytes) -> None:
        """Protect a 1-RTT packet (4-byte packet number) carrying payload's frames, and send it."""
        pn = self.pn
        self.pn += 1
        header = bytes((0x43 | self.crypto.key_phase << 2,)) + self.peer_cid + pn.to_bytes(4, "big")
        self.transport.sendto(self.crypto.encrypt_packet(header, payload, pn), self.addr)
        self.tally.packets_sent += 1

    def close(self) -> None:
        """CONNECTION_CLOSE (no error), so that the server forgets us at once."""
        from aioquic.buffer import Buffer

        buf = Buffer(capacity=64)
        buf.push_uint_var(0x1C)
        buf.push_uint_var(0)
        buf.push_uint_var(0)
        buf.push_uint_var(0)
        self.send_packet(buf.data)
        if self.ack_timer is not None:
            self.ack_timer.cancel()


async def open_call_member(port: int, room: str, gate: asyncio.Semaphore, managers: list):
    """One aioquic client with an open session in `room`, paired (the server said so on the control stream)."""
    import ssl

    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration
    from wt_client import ClientConnection, request

    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    configuration.verify_mode = ssl.CERT_NONE  # loopback, the bench's own server
    async with gate:
        manager = connect("127.0.0.1", port, configuration=configuration, create_protocol=ClientConnection)
        client = await asyncio.wait_for(manager.__aenter__(), CONNECT_TIMEOUT)
        managers.append(manager)
        session = request(client, port, f"/wt?room={room}")
        status = await asyncio.wait_for(asyncio.shield(session.response), CONNECT_TIMEOUT)
        if status != 200:
            raise ConnectionError(f"HTTP {status}")
        session.send_line('{"type": "ping", "t": 0}')  # opens the control stream, as a page's first ping does
    while '"connected"' not in await session.line(CONNECT_TIMEOUT):
        pass  # duoduel says "waiting" (and answers the ping) first: the partner is there once it says "connected"
    return client, session


async def generate(args: argparse.Namespace) -> None:
    """The load: connect every call, take over, say ready; send from t0 (read on stdin) for --seconds; report."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    managers: list = []
    prefix = os.urandom(4).hex()
    members = [open_call_member(args.port, f"{prefix}-{c // 2}", gate, managers) for c in range(2 * args.pairs)]
    opened = await asyncio.gather(*members)
    await asyncio.sleep(SETTLE_SECONDS)
    tally = Tally()
    unsettled = sum(client._quic._loss.bytes_in_flight > 0 for client, _ in opened)
    paths = [FastPath(client, session.session_id, cid, tally, args.client_ack_delay / 1000)
             for cid, (client, session) in enumerate(opened)]
    for cid, path in enumerate(paths):
        path.partner = cid ^ 1
    print(json.dumps({"ready": len(paths), "unsettled": unsettled}), flush=True)
    t0_ns = int(await loop.run_in_executor(None, sys.stdin.readline))
    period = 1 / args.rate
    size = HEADER.size + args.frame_bytes
    start = loop.time() + (t0_ns - time.monotonic_ns()) / 1e9
    end = start + args.seconds
    lag = array("q")

    def tick(path: FastPath, deadline: float, message: bytearray) -> None:
        """Send path's next message, stamped now, and schedule the one after on the absolute deadlines."""
        if deadline >= end:
            return
        now = time.monotonic_ns()
        lag.append(int((loop.time() - deadline) * 1e9))
        path.seq += 1
        HEADER.pack_into(message, 0, 1, 0, path.seq & 0xFFFF, 48000, time.time() * 1000)
        BENCH.pack_into(message, HEADER.size, path.cid, path.seq, now)
        path.send_message(bytes(message))
        tally.sent += 1
        loop.call_at(deadline + period, tick, path, deadline + period, message)

    phases = random.Random(args.pairs)  # the same phases for every variant at this load
    for path in paths:  # each at its own phase, as pages that started at random moments
        phase = period * phases.random()
        loop.call_at(start + phase, tick, path, start + phase, bytearray(os.urandom(size)))
    await asyncio.sleep(end - loop.time())
    drain_end, last = time.monotonic() + DRAIN_SECONDS, (-1, time.monotonic())
    while tally.received < tally.sent and time.monotonic() < drain_end:
        if tally.received != last[0]:
            last = (tally.received, time.monotonic())
        elif time.monotonic() - last[1] > 0.5:
            break  # nothing for 500 ms: the rest was dropped, not delayed
        await asyncio.sleep(0.01)
    lag_ms = sorted(lag)
    print(json.dumps({
        "sent": tally.sent, "received": tally.received, "misrouted": tally.misrouted,
        "out_of_order": tally.out_of_order, "packets_sent": tally.packets_sent, "acks_alone": tally.acks_alone,
        "packets_received": tally.packets_received, "undecryptable": tally.undecryptable, "closed": tally.closed,
        "latency_ms": percentiles_ms(tally.latency_ns),
        "send_lag_p99_ms": round(lag_ms[int(0.99 * len(lag_ms))] / 1e6, 3) if lag_ms else None,
        "cpu_s": time.process_time(),
    }), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent has read the server's figures
    for path in paths:
        path.close()
    await asyncio.sleep(0.1)


def generate_main(args: argparse.Namespace) -> None:
    """Process entry of the clients: on uvloop, as relay.py's generator."""
    import uvloop
    uvloop.run(generate(args))


# Measuring.


def percentiles_ms(values) -> dict[str, float | None]:
    """Nearest-rank p50/p99/max of nanosecond samples, in milliseconds."""
    values = sorted(values)
    if not values:
        return {"p50": None, "p99": None, "max": None}
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 3)  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(values[-1] / 1e6, 3)}


def process_cpu_s(pid: int) -> float:
    """utime+stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_s(core: int) -> float:
    """Busy seconds (all but idle and iowait) of one core since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name == f"cpu{core}":
            return (sum(map(int, ticks[:8])) - int(ticks[3]) - int(ticks[4])) / os.sysconf("SC_CLK_TCK")
    return 0.0


@dataclass
class Variant:
    """A WebTransport server to measure: the folder of its webtransport.py, and its event loop."""

    name: str
    directory: Path
    loop: str = "uvloop"
    duoduel: bool = False  # serve with the checkout's duoduel.py itself (its lobby, /wt), not the bench's pairs


def parse_variant(text: str) -> Variant:
    """NAME=DIR[:asyncio], NAME=qh3[:asyncio] or NAME=duoduel (--variant)."""
    name, _, where = text.partition("=")
    where, _, loop = where.partition(":")
    if where == "qh3":
        return Variant(name, port_to_qh3(ROOT / "core" / "webtransport.py"), loop or "uvloop")
    if where == "duoduel":
        return Variant(name, ROOT, "uvloop", duoduel=True)
    directory = Path(where or ROOT).resolve()
    if not (directory / "webtransport.py").is_file() and not (directory / "core" / "webtransport.py").is_file():
        raise argparse.ArgumentTypeError(f"{directory} holds no webtransport.py")
    return Variant(name, directory, loop or "uvloop")


# webtransport.py on qh3 instead of aioquic, for measuring only: qh3 2.x keeps aioquic's Python API above a
# QUIC core of its own in Rust, with other names in a few places. Its core exposes neither the datagrams it
# holds (so the backlog bound is off: backlog() is 0) nor aioquic's ACK and timer internals (so aioquic's cuts
# are off: no ACK delay to set, its own timer handling).
QH3_PORT = [
    # aioquic's congestion control, which qh3's core has its own of: the audio's window floor and age bound are off.
    ("from aioquic.quic.congestion.base import register_congestion_control\n"
     "from aioquic.quic.congestion.reno import RenoCongestionControl\n",
     "RenoCongestionControl = object\n"),
    ('register_congestion_control("duoduel-audio", AudioCongestion)\n', ""),
    ('        congestion_control_algorithm="duoduel-audio",\n', ""),
    ("        self._queued_at.append(self.connection._loop.time())\n", ""),
    ("from aioquic import tls\n", "from qh3 import tls\n"),
    ("from aioquic.asyncio.", "from qh3.asyncio."),
    ("from aioquic.buffer import", "from qh3._hazmat import"),
    ("from aioquic.h3.", "from qh3.h3."),
    ("from aioquic.quic.", "from qh3.quic."),
    ("event.stream_id == session.session_id:\n                session.datagram_received(",
     "event.flow_id == session.session_id:\n                session.datagram_received("),
    ("sum(len(datagram) for datagram in self.connection._quic._datagrams_pending)", "0"),
    ("quic._ack_delay = ACK_DELAY", "pass"),
    ("quic._datagrams_pending", "False"),
    ("""    configuration.certificate = certificate.chain[0]
    configuration.certificate_chain = list(certificate.chain[1:])
    configuration.private_key = certificate.key
""", """    configuration.load_cert_chain(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificate.chain),
        certificate.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
"""),
]


def port_to_qh3(source: Path) -> Path:
    """A temporary folder holding source (webtransport.py) ported to qh3 by QH3_PORT's substitutions."""
    text = source.read_text()
    for old, new in QH3_PORT:
        if old in text:
            text = text.replace(old, new)
    if "aioquic." in "\n".join(line for line in text.splitlines() if line.startswith(("from ", "import "))):
        raise argparse.ArgumentTypeError(f"{source} imports aioquic where QH3_PORT does not reach: extend QH3_PORT")
    directory = Path(tempfile.mkdtemp(prefix="wtbench-qh3-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    (directory / "webtransport.py").write_text(text)
    return directory


def callgrind_instructions(out: Path) -> int | None:
    """The instructions in callgrind's newest dump (callgrind_control --dump writes OUT.1, OUT.2, ...)."""
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else -1)
    for line in dumps[-1].read_text(errors="replace").splitlines() if dumps else []:
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return None


def measure_webtransport(args: argparse.Namespace, variant: Variant, pairs: int) -> dict:
    """One run: start the server, connect the calls, measure the window, stop everything."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wtbench-")))
        callgrind_out = directory / "callgrind.out"
        valgrind = (["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind_out}"]
                    if args.callgrind else [])
        if variant.duoduel:  # rooms of two are calls, as the bench's pairs; its limits raised past the load
            command = [str(variant.directory / "duoduel.py"), "--host", "127.0.0.1", "--port", "0",
                       "--webtransport-port", "0", "--room-size", "2", "--max-clients", "100000",
                       "--max-webtransport-sessions", "100000"]
        else:
            command = [__file__, "serve", "--webtransport-dir", str(variant.directory), "--loop", variant.loop]
        server = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *valgrind, sys.executable, *command],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        stack.callback(stop, server)
        prioritise(server.pid, args.nice)
        port = duoduel_udp_port(server) if variant.duoduel else int(server.stdout.readline().split()[0])
        client = subprocess.Popen(
            ["taskset", "-c", str(CLIENT_CORE), sys.executable, __file__, "generate", "--port", str(port),
             "--pairs", str(pairs), "--seconds", str(args.seconds), "--rate", str(args.rate),
             "--frame-bytes", str(args.frame_bytes), "--client-ack-delay", str(args.client_ack_delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        stack.callback(stop, client)
        prioritise(client.pid, args.nice)
        line = client.stdout.readline()
        if not line:
            return {"variant": variant.name, "pairs": pairs, "error": "the clients could not connect"}
        ready = json.loads(line)
        t0 = time.monotonic_ns() + 500_000_000
        client.stdin.write(f"{t0}\n")
        client.stdin.flush()
        time.sleep((t0 - time.monotonic_ns()) / 1e9)
        if args.callgrind:
            subprocess.run(["callgrind_control", "--zero", str(server.pid)], capture_output=True, check=True)
        cpu0, busy0, wall0 = process_cpu_s(server.pid), core_busy_s(SERVER_CORE), time.monotonic()
        line = client.stdout.readline()
        cpu1, busy1, wall1 = process_cpu_s(server.pid), core_busy_s(SERVER_CORE), time.monotonic()
        instructions = None
        if args.callgrind:  # the dump of the window: written before the server exits and dumps the rest
            subprocess.run(["callgrind_control", "--dump", str(server.pid)], capture_output=True, check=True)
            instructions = callgrind_instructions(callgrind_out)
        result = json.loads(line)
        closing = time.monotonic()
        client.stdin.write("done\n")
        client.stdin.flush()
        client.wait(timeout=10)
        server.stdin.close()  # the bench's server prints its figures and exits; duoduel.py stops on SIGTERM
        if variant.duoduel:
            stop(server)
        served = json.loads(server.stdout.readline() or "{}")
        server.wait(timeout=30)
        received = result["received"]
        cpu = cpu1 - cpu0
        errors = served.get("errors", [])
        during = [message for at, message in errors if wall0 <= at <= wall1]
        before_close = [message for at, message in errors if at < closing]
        window = wall1 - wall0
        # On loopback nothing is lost: the server received what the clients sent, and sent what they received.
        server_in, server_out = result["packets_sent"], result["packets_received"]
        report = {
            "variant": variant.name, "loop": variant.loop, "pairs": pairs, "calls_ready": ready["ready"] // 2,
            "unsettled_at_takeover": ready["unsettled"],
            "sent": result["sent"], "received": received,
            "loss": round(1 - received / result["sent"], 6) if result["sent"] else None,
            "misrouted": result["misrouted"], "out_of_order": result["out_of_order"],
            "server_dropped": served.get("dropped"),
            "latency_ms": result["latency_ms"], "send_lag_p99_ms": result["send_lag_p99_ms"],
            "server_cpu_s": round(cpu, 3),
            "server_cpu_us_per_relayed_frame": round(cpu * 1e6 / received, 2) if received else None,
            "server_packets_in_per_relayed": round(server_in / received, 3) if received else None,
            "server_packets_out_per_relayed": round(server_out / received, 3) if received else None,
            "client_acks_alone_per_relayed": round(result["acks_alone"] / received, 3) if received else None,
            "client_cpu_s": result["cpu_s"],
            "core0_others": round((busy1 - busy0 - cpu) / window, 3),
            "undecryptable": result["undecryptable"], "closed": result["closed"],
            # Exceptions the server's event loop caught: in the window, and all (the clients' closes included).
            "server_errors_in_window": len(during), "server_errors_before_close": len(before_close),
            "server_errors": len(errors),
            "server_error_kinds": sorted({message for _, message in errors})[:3],
        }
        if args.callgrind:
            report["instructions_per_relayed_frame"] = round(instructions / received) if instructions and received else None
        return report


def duoduel_udp_port(server: subprocess.Popen) -> int:
    """The UDP port duoduel.py says it serves WebTransport on (its log, on stderr); then its log goes to a thread
    that reads it, so that a full pipe never blocks the server."""
    for line in server.stderr:
        if match := re.search(r"webtransport on udp port (\d+)", line):
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return int(match[1])
    raise RuntimeError(f"duoduel.py did not start: exit {server.wait()}")


def prioritise(pid: int, nice: int) -> None:
    """Give the session of pid (a process started with a session of its own) this niceness.

    With autogroups (Linux's default for desktops and this machine), CPU time is shared between sessions
    first, and a process's own niceness counts only within its session: on a machine shared with other
    sessions, only the session's niceness gives the bench the CPU it asks for.
    """
    if nice:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM a process the bench started, and kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_websocket(args: argparse.Namespace, route: str, pairs: int) -> dict:
    """One run of bench/relay.py's route at the same load; its report, with the figures this bench compares."""
    cmd = [sys.executable, str(args.relay), "--spawn-server", "--pairs", str(pairs),
           "--seconds", str(args.seconds), "--rate", str(args.rate), "--frame-bytes", str(args.frame_bytes)]
    if route != "plain":
        cmd += ["--routes", route]
    if args.callgrind:
        cmd += ["--callgrind"]
    relay = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    prioritise(relay.pid, args.nice)  # before it starts its server and its clients, which share its session
    stdout, stderr = relay.communicate()
    done = subprocess.CompletedProcess(cmd, relay.returncode, stdout, stderr)
    if done.returncode:
        return {"variant": route, "error": done.stderr[-500:]}
    report = json.loads(done.stdout)
    if "runs" in report:
        report = report["runs"][route][0]
    received = report["frames_received"]
    return {
        "variant": route, "pairs": report.get("pairs"), "sent": report["frames_sent"], "received": received,
        "loss": report["loss"], "latency_ms": report["latency_ms"],
        "server_cpu_us_per_relayed_frame": report.get("total_cpu_us_per_relayed_frame",
                                                      report["server_cpu_us_per_relayed_frame"]),
        **({"instructions_per_relayed_frame": sum(v for v in report["instructions_per_relayed_frame"].values() if v)}
           if args.callgrind and report.get("instructions_per_relayed_frame") else {}),
        "notes": report["notes"],
    }


def websocket_routes(relay: Path) -> set[str]:
    """The routes bench/relay.py measures: plain always, tls where it has --tls."""
    helped = subprocess.run([sys.executable, str(relay), "--help"], capture_output=True, text=True)
    return {"plain", "tls"} if "--tls" in helped.stdout else {"plain"}


def median_of(runs: list[dict], *keys: str):
    """The median of a figure (reached through keys) over the runs that have it, else None."""
    values = []
    for run in runs:
        value = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return round(statistics.median(values), 3) if values else None


def bench_main(args: argparse.Namespace) -> None:
    """Run every variant and route at every load, --rounds times, alternating; print the medians as JSON."""
    available = websocket_routes(args.relay)
    routes = [route for route in args.websocket if route in available]
    skipped = [route for route in args.websocket if route not in available]
    names = [v.name for v in args.variants] + routes
    load = os.getloadavg()
    runs: dict[int, dict[str, list[dict]]] = {p: {name: [] for name in names} for p in args.pairs}
    for round_ in range(args.rounds):
        for pairs in args.pairs:
            for i in range(len(names)):  # each round starts one later: none always runs first
                name = names[(round_ + i) % len(names)]
                variant = next((v for v in args.variants if v.name == name), None)
                run = measure_webtransport(args, variant, pairs) if variant else measure_websocket(args, name, pairs)
                run["load_average"] = round(os.getloadavg()[0], 2)
                runs[pairs][name].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    table = {}
    for pairs in args.pairs:
        rows = {}
        base = {}
        for name in names:
            them = runs[pairs][name]
            cpu = median_of(them, "server_cpu_us_per_relayed_frame")
            rows[name] = {
                "cpu_us_per_relayed": cpu,
                "cpu_runs": [r.get("server_cpu_us_per_relayed_frame") for r in them],
                # A call relays 2 x rate frames a second; a core kept at 85 %, as relay.py counts.
                "calls_per_core_at_85pct": int(0.85e6 / (2 * args.rate * cpu)) if cpu else None,
                "p50_ms": median_of(them, "latency_ms", "p50"), "p99_ms": median_of(them, "latency_ms", "p99"),
                "loss": median_of(them, "loss"),
                **({"packets_in_per_relayed": median_of(them, "server_packets_in_per_relayed"),
                    "packets_out_per_relayed": median_of(them, "server_packets_out_per_relayed"),
                    "server_errors_in_window": sum(r.get("server_errors_in_window", 0) for r in them),
                    "server_errors": sum(r.get("server_errors", 0) for r in them)}
                   if name not in routes else {}),
                "failed_runs": sum("error" in r for r in them),
                **({"instructions_per_relayed": median_of(them, "instructions_per_relayed_frame")}
                   if args.callgrind else {}),
            }
            base[name] = cpu
        for name in names:
            for route in routes:
                if base.get(name) and base.get(route):
                    rows[name][f"x_{route}"] = round(base[name] / base[route], 2)
        table[pairs] = rows
    print(json.dumps({
        "load": f"pairs {args.pairs}, {args.rate:g} datagrams/s each way, {HEADER.size + args.frame_bytes}-byte messages",
        "seconds": args.seconds, "rounds": args.rounds, "client_ack_delay_ms": args.client_ack_delay,
        "variants": {v.name: f"{v.directory} on {v.loop}" for v in args.variants},
        "websocket_routes_missing": skipped,
        "load_average": {"before": [round(x, 2) for x in load], "after": [round(x, 2) for x in os.getloadavg()]},
        "medians": table,
    }, indent=1))


def main() -> None:
    """Parse the command line: the bench, or one of its two internal parts (serve, generate)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="(internal) the bench's relay server")
    serve.add_argument("--webtransport-dir", type=Path, default=ROOT)
    serve.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    gen = sub.add_parser("generate", help="(internal) the clients")
    gen.add_argument("--port", type=int, required=True)
    for p in (gen, parser):
        if p is gen:
            p.add_argument("--pairs", type=int, required=True)
        p.add_argument("--seconds", type=float, default=10)
        p.add_argument("--rate", type=float, default=50, help="datagrams per second per client")
        p.add_argument("--frame-bytes", type=int, default=104, help="bytes after the 16-byte frame.js header")
        p.add_argument("--client-ack-delay", type=float, default=25,
                       help="ms a client waits for a datagram of its own to carry an ACK (0: ACK every packet alone)")
    parser.add_argument("--pairs", type=lambda text: [int(x) for x in text.split(",")], default=[10, 25, 50, 100],
                        help="loads to measure, in calls (comma-separated)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", dest="variants", type=parse_variant, action="append",
                        help="NAME=DIR[:asyncio]: serve DIR/webtransport.py; NAME=qh3: ported to qh3; NAME=duoduel: this "
                             "checkout's duoduel.py (repeatable; default this checkout's webtransport.py on uvloop)")
    parser.add_argument("--websocket", type=lambda text: [x for x in text.split(",") if x], default=["plain", "tls"],
                        help="bench/relay.py routes to measure beside (default plain,tls; '' for none)")
    parser.add_argument("--relay", type=Path, default=ROOT / "bench" / "relay.py", metavar="PATH",
                        help="the bench/relay.py that measures the WebSocket routes (default this checkout's; another "
                             "checkout's runs that checkout's duoduel.py)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the sessions of the servers and the clients (root may give -10 on a busy machine)")
    parser.add_argument("--callgrind", action="store_true", help="count the server's instructions (light loads only)")
    args = parser.parse_args()
    if args.command == "serve":
        return serve_main(args)
    if args.command == "generate":
        return generate_main(args)
    args.variants = args.variants or [parse_variant(f"webtransport={ROOT}")]
    if not BENCH.size <= args.frame_bytes or args.rounds < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error(f"need --frame-bytes >= {BENCH.size}, --rounds >= 1, --seconds > 0, --rate > 0")
    bench_main(args)


if __name__ == "__main__":
    main()
