#!/usr/bin/env python3
"""A packet-level network path for tests and benches: delay, jitter, loss, loss bursts, reordering, a rate cap.

usage: sudo python bench/netpath.py [--delay 25] [--jitter 5] [--loss 2] [--burst-enter 0] [--burst-exit 30]
                                    [--burst-loss 100] [--reorder 0] [--reorder-delay 10] [--rate 0]
                                    [--bucket 3000] [--queue 100] [--seed N]

The kernel here has no netem, so the path is a process. It joins this network namespace (the "server side")
to a network namespace of its own (the "client side") through two TUN devices on one /24: 10.9.K.1 here and
10.9.K.2 in the namespace, K unique per run. The forwarder reads every IP packet from each TUN device and
writes it to the other when it is due, so TCP and UDP alike (and ICMP) cross it, per packet and per direction
("up": client -> server, "down": server -> client):
  loss              drop it at random, with this probability (%);
  burst-enter/-exit Gilbert-Elliott loss bursts: each packet, the path enters a burst with probability
                    burst-enter (%) and leaves one with burst-exit (%); in a burst each packet is lost with
                    burst-loss (%), outside with loss. Mean burst: 100/burst-exit packets; mean loss:
                    (enter * burst_loss + exit * loss) / (enter + exit).
  rate, bucket      a token bucket: rate (kbit/s, 0: none) with a bucket of this many bytes; packets wait
  queue             in order for tokens in a queue bounded to queue ms of waiting; one that would wait longer
                    is dropped (tail drop).
  delay, jitter     after the queue, each packet is delayed by delay ms +/- jitter ms (uniform), but never
                    delivered before the one ahead of it: jitter holds packets, it does not reorder them.
  reorder           this fraction (%) of packets is held back reorder-delay ms more, and the packets behind
  reorder-delay     it do not wait for it: they overtake it.
Timing comes from a heap of due packets and the monotonic clock; the forwarder wakes within about a
millisecond of a packet's due time (stats() gives how late it was), at a real-time priority where allowed
(run_in_real_time). No checksum or address is rewritten.

Why the server side is this namespace (the root one) and not a second private one: servers under test
(duoduel in the test's own event loop, its UDP endpoints, a bench's subprocess) bind 10.9.K.1 like any local
address, with nothing started in a namespace and no socket made across one; only the clients (browsers, or
a test's sockets) go in the namespace. The price is an address on this side that must not collide with
another run's: K is taken under a lock, and the TUN device (with its address and route) goes away with the
forwarder, even if it is killed. Only the namespace itself could outlive a SIGKILL; a later run skips its K.

Run by hand (root; Ctrl-C removes everything), it prints how to reach it, e.g.:
    python duoduel.py --host 10.9.0.1
    sudo ip netns exec netpath0 chromium --no-sandbox \\
        --unsafely-treat-insecure-origin-as-secure=http://10.9.0.1:8080 http://10.9.0.1:8080/

As a library (tests, bench/latency.py): the forwarder runs in a child process that owns the namespace and
the devices and removes them when it ends, whether the parent closes it, exits, or is killed.

    from bench.netpath import NetPath, Shape, missing_netpath
    with NetPath(Shape(delay=25, loss=2), seed=1) as path:      # one shape both ways, or up=..., down=...
        config = duoduel.Config(host=path.server_address, port=0)   # a server on this side
        sock = path.socket(socket.SOCK_DGRAM)     # a socket made in the namespace (client side)
        path.command(["chromium", ...])           # ["ip", "netns", "exec", NS, "chromium", ...]
        path.executable("/usr/bin/chromium")      # a wrapper script that runs it in the namespace,
                                                  # for Playwright's executable_path
        path.set(down=Shape(delay=25, loss=10))   # change a direction while it runs
        path.stats()                              # per direction: packets, lost, queue drops, lateness
    Shape.parse("delay=25,jitter=5,loss=2")      # the same keys as the command line's options

In tests, the `netpath` fixture of tests/conftest.py starts one (skipped where namespaces or TUN devices are
unavailable, failing instead under DUODUEL_REQUIRE_NETNS=1) and tears it down at the end of the test.
Browsers' microphones need a secure context, and http://10.9.K.1 is not one: give Chromium
--unsafely-treat-insecure-origin-as-secure=ORIGIN (NetPath.chromium_flags), or serve HTTPS.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import fcntl
import heapq
import itertools
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NetPath", "PathUnavailable", "Shape", "missing_netpath", "main"]

PREFIX = "netpath"  # of the namespace (netpathK) and the TUN devices (netpathKs here, netpathKc there)
SUBNET = "10.9.{}.0/24"
LOCK_FILE = Path(tempfile.gettempdir()) / "netpath.lock"
MAX_PATHS = 256
MAX_HELD_PACKETS = 100_000  # across both directions: past this a packet is dropped, never queued
READS_PER_WAKE = 64  # packets read from one device at once before the due ones are written
SLEEP_S = 0.001  # closer than this to the next due time, sleep precisely (epoll waits in whole ms)
START_TIMEOUT_S = 10
REALTIME_PRIORITY = 10  # SCHED_FIFO, low among real-time tasks

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


@dataclass
class Shape:
    """What one direction of the path does to each packet (units as on the command line)."""

    delay: float = 0.0  # ms
    jitter: float = 0.0  # ms, +/- around delay, uniform; order kept
    loss: float = 0.0  # %, random; outside bursts when bursts are on
    burst_enter: float = 0.0  # %, per packet: chance to enter a loss burst (0: no bursts)
    burst_exit: float = 30.0  # %, per packet in a burst: chance to leave it
    burst_loss: float = 100.0  # %, loss in a burst
    reorder: float = 0.0  # %, packets held back reorder_delay more, overtaken by those behind
    reorder_delay: float = 10.0  # ms
    rate: float = 0.0  # kbit/s, 0: no cap
    bucket: int = 3000  # bytes of the token bucket
    queue: float = 100.0  # ms a packet may wait for tokens before it is dropped instead

    @classmethod
    def parse(cls, spec: str) -> Shape:
        """A shape from "delay=25,jitter=5,loss=2" (the field names; empty: a perfect path)."""
        values = {}
        names = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in filter(None, (part.strip() for part in spec.replace("perfect", "").split(","))):
            key, _, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in names or not value:
                raise ValueError(f"netpath: {item!r} is not one of {', '.join(k + '=N' for k in names)}")
            values[key] = int(value) if names[key] == "int" else float(value)
        return cls(**values)

    def __str__(self) -> str:
        """The fields that differ from a perfect path, as parse() reads them."""
        default = Shape()
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in dataclasses.fields(self)
                        if getattr(self, f.name) != getattr(default, f.name)
                        and (f.name not in ("burst_exit", "burst_loss") or self.burst_enter)
                        and (f.name != "reorder_delay" or self.reorder)
                        and (f.name not in ("bucket", "queue") or self.rate)) or "perfect"


@dataclass
class Direction:
    """One direction of the path: its shape, its random state, and what it did so far."""

    shape: Shape
    rng: random.Random
    in_burst: bool = False
    last_due: float = 0.0  # when the last packet that keeps order is due (no one overtakes it)
    tokens: float = 0.0
    tokens_at: float = 0.0
    last_departure: float = 0.0  # of the rate cap's queue
    counts: dict = field(default_factory=lambda: dict.fromkeys(
        ("packets", "bytes", "lost", "burst_lost", "queue_dropped", "overflow", "reordered", "delivered",
         "write_errors", "late_1ms"), 0))
    lateness_sum: float = 0.0
    lateness_max: float = 0.0

    def admit(self, now: float, size: int) -> float | None:
        """When this packet, read now, is due on the other side; None when the path drops it."""
        self.counts["packets"] += 1
        self.counts["bytes"] += size
        if self.lost():
            return None
        departure = self.departure(now, size)
        if departure is None:
            self.counts["queue_dropped"] += 1
            return None
        shape = self.shape
        due = departure + max(0.0, shape.delay + self.rng.uniform(-shape.jitter, shape.jitter)) / 1000
        if shape.reorder and self.rng.random() * 100 < shape.reorder:
            self.counts["reordered"] += 1
            return due + shape.reorder_delay / 1000
        self.last_due = due = max(due, self.last_due)
        return due

    def lost(self) -> bool:
        """Random loss, or the Gilbert-Elliott model's: a burst state entered and left per packet."""
        shape = self.shape
        if shape.burst_enter:
            chance = shape.burst_exit if self.in_burst else shape.burst_enter
            if self.rng.random() * 100 < chance:
                self.in_burst = not self.in_burst
        if self.in_burst:
            if self.rng.random() * 100 < shape.burst_loss:
                self.counts["burst_lost"] += 1
                return True
            return False
        if shape.loss and self.rng.random() * 100 < shape.loss:
            self.counts["lost"] += 1
            return True
        return False

    def departure(self, now: float, size: int) -> float | None:
        """When the rate cap lets this packet go (in order, once the bucket holds its size), or None
        when it would wait more than the queue's bound. now without a cap."""
        shape = self.shape
        if shape.rate <= 0:
            return now
        rate = shape.rate * 1000 / 8  # bytes per second
        bucket = max(shape.bucket, size)
        start = max(now, self.last_departure)
        tokens = min(bucket, self.tokens + (start - self.tokens_at) * rate)
        departure = start + max(0.0, size - tokens) / rate
        if departure - now > shape.queue / 1000:
            return None
        self.tokens = tokens + (departure - start) * rate - size
        self.tokens_at = self.last_departure = departure
        return departure

    def delivered(self, lateness: float) -> None:
        self.counts["delivered"] += 1
        self.lateness_sum += lateness
        self.lateness_max = max(self.lateness_max, lateness)
        if lateness > 0.001:
            self.counts["late_1ms"] += 1

    def stats(self) -> dict:
        delivered = self.counts["delivered"]
        return {**self.counts, "shape": str(self.shape),
                "lateness_mean_ms": round(self.lateness_sum / delivered * 1000, 3) if delivered else None,
                "lateness_max_ms": round(self.lateness_max * 1000, 3)}


class Forwarder:
    """Moves packets between the two TUN devices, each when it is due."""

    def __init__(self, server_fd: int, client_fd: int, up: Shape, down: Shape, seed: int | None):
        self.fds = {client_fd: (server_fd, "up"), server_fd: (client_fd, "down")}
        self.directions = {name: Direction(shape, random.Random(f"{seed}-{name}" if seed is not None else None))
                           for name, shape in (("up", up), ("down", down))}
        self.due: list[tuple[float, int, int, bytes, Direction]] = []  # (due, order, fd, packet, direction)
        self.order = itertools.count()

    def set(self, name: str, shape: Shape) -> None:
        self.directions[name].shape = shape

    def stats(self) -> dict:
        return {name: direction.stats() for name, direction in self.directions.items()}

    def read(self, fd: int) -> None:
        """Take in what the device has (a bounded number at once), each with its due time."""
        destination, name = self.fds[fd]
        direction = self.directions[name]
        for _ in range(READS_PER_WAKE):
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            due = direction.admit(time.monotonic(), len(packet))
            if due is None:
                continue
            if len(self.due) >= MAX_HELD_PACKETS:
                direction.counts["overflow"] += 1
                continue
            heapq.heappush(self.due, (due, next(self.order), destination, packet, direction))

    def write_due(self) -> float | None:
        """Write every packet that is due; return when the next one is (monotonic), or None."""
        while self.due:
            now = time.monotonic()
            due, _, fd, packet, direction = self.due[0]
            if due > now:
                return due
            heapq.heappop(self.due)
            try:
                os.write(fd, packet)
            except OSError:
                direction.counts["write_errors"] += 1
                continue
            direction.delivered(now - due)
        return None

    def run(self, control: int | None, on_command) -> None:
        """Forward until control (a pipe) reaches its end; each line on it goes to on_command."""
        poller = select.epoll()
        for fd in self.fds:
            poller.register(fd, select.EPOLLIN)
        if control is not None:
            os.set_blocking(control, False)
            poller.register(control, select.EPOLLIN)
        pending = b""
        next_due = None
        while True:
            wait = None if next_due is None else next_due - time.monotonic()
            if wait is not None and wait < SLEEP_S:
                # clock_nanosleep, to the microsecond; a packet that comes meanwhile is read (and its
                # delay starts) at most this much late.
                if wait > 0:
                    time.sleep(wait)
                events = poller.poll(0)
            else:
                events = poller.poll(-1 if wait is None else wait - SLEEP_S)  # rounded up to whole ms
            for fd, _ in events:
                if fd == control:
                    chunk = os.read(control, 65536)
                    if not chunk:
                        return
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        on_command(json.loads(line))
                else:
                    self.read(fd)
            next_due = self.write_due()


def run_ip(*args: str) -> str:
    """Run ip(8); raise with its own message when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def open_tun(name: str) -> int:
    """A TUN device of that name in this namespace, non-blocking, with no packet-info header. It lives
    as long as the descriptor (not persistent), so it vanishes with this process whatever ends it."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def taken_indexes() -> set[int]:
    """Path numbers in use: by a namespace or a device named after one (a live or a dead run)."""
    names = run_ip("netns", "list") + run_ip("-o", "link", "show")
    return {int(k) for k in re.findall(rf"\b{PREFIX}(\d+)", names)}


@dataclass
class Plumbing:
    """The namespace and the two TUN devices of one path."""

    index: int
    server_fd: int = -1
    client_fd: int = -1

    @property
    def namespace(self) -> str:
        return f"{PREFIX}{self.index}"

    @property
    def server_address(self) -> str:
        return f"10.9.{self.index}.1"

    @property
    def client_address(self) -> str:
        return f"10.9.{self.index}.2"

    @classmethod
    def create(cls) -> Plumbing:
        """Take a free number under the lock, make the namespace and the devices, and set them up."""
        with open(LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            free = sorted(set(range(MAX_PATHS)) - taken_indexes())
            if not free:
                raise RuntimeError(f"netpath: all {MAX_PATHS} paths are taken (ip netns list)")
            plumbing = cls(free[0])
            run_ip("netns", "add", plumbing.namespace)
        try:
            plumbing.set_up()
        except BaseException:
            plumbing.remove()
            raise
        return plumbing

    def set_up(self) -> None:
        ns, server_dev, client_dev = self.namespace, f"{self.namespace}s", f"{self.namespace}c"
        self.server_fd = open_tun(server_dev)
        self.client_fd = open_tun(client_dev)
        # Made here, then moved: a TUN device keeps working in the namespace it is moved to.
        run_ip("link", "set", "dev", client_dev, "netns", ns)
        for dev, address, prefix in ((server_dev, self.server_address, []), (client_dev, self.client_address, ["-n", ns])):
            # No IPv6 link-local address: no router solicitations or MLD reports cross the path uninvited.
            run_ip(*prefix, "link", "set", "dev", dev, "addrgenmode", "none")
            run_ip(*prefix, "addr", "add", f"{address}/24", "dev", dev)
            run_ip(*prefix, "link", "set", "dev", dev, "up")
        run_ip("-n", ns, "link", "set", "dev", "lo", "up")

    def remove(self) -> None:
        """Close the devices (they vanish) and delete the namespace."""
        for fd in (self.server_fd, self.client_fd):
            if fd >= 0:
                os.close(fd)
        self.server_fd = self.client_fd = -1
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)


def run_in_real_time() -> None:
    """Put this process ahead of the endpoints' (browsers') load: it is the network, and a network's delay does
    not grow when the computers at its ends are busy. Under SCHED_FIFO the forwarder wakes within a fraction of
    a millisecond of a due time on a fully loaded machine, where at nice 0 it was up to tens of ms late. It
    sleeps between packets, and the kernel's real-time throttling leaves others a share even in a flood."""
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        return
    with contextlib.suppress(OSError):
        os.nice(-10)


def missing_netpath() -> str | None:
    """Why a path cannot be made here, or None when it can."""
    if sys.platform != "linux":
        return "netpath needs Linux (network namespaces and TUN devices)"
    if os.geteuid() != 0:
        return "netpath needs root (network namespaces and TUN devices)"
    if shutil.which("ip") is None:
        return "netpath needs ip(8) (Debian: iproute2)"
    try:
        if not stat.S_ISCHR(os.stat("/dev/net/tun").st_mode):
            return "/dev/net/tun is not a character device"
    except OSError as error:
        return f"no TUN devices here: /dev/net/tun: {error.strerror}"
    return None


_libc = None


def in_namespace(namespace: str, make):
    """Call make() in a thread that has entered the namespace, and return what it made (a socket made
    there stays there). Only that thread moves; this one, and the rest of the process, stay here."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # Python 3.11 has no os.setns
    outcome: dict = {}

    def enter_and_make() -> None:
        try:
            with open(f"/run/netns/{namespace}") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}: {os.strerror(ctypes.get_errno())}")
            outcome["value"] = make()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=enter_and_make, name=f"in {namespace}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class PathUnavailable(RuntimeError):
    """This machine (or container) would not let the forwarder make the namespace or the devices."""


class NetPath:
    """A path run by a child process (this file with --control); a context manager. See the module's doc."""

    def __init__(self, shape: Shape | None = None, *, up: Shape | None = None, down: Shape | None = None,
                 seed: int | None = None, cpu: int | None = None):
        self.up = up or shape or Shape()
        self.down = down or shape or Shape()
        self.seed = seed
        self.cpu = cpu  # pin the forwarder to this core (taskset), away from the load
        self.process: subprocess.Popen | None = None
        self.namespace = self.server_address = self.client_address = ""
        self._folder: Path | None = None

    def start(self) -> NetPath:
        if reason := missing_netpath():
            raise RuntimeError(reason)
        command = [sys.executable, str(Path(__file__).resolve()), "--control",
                   "--up", str(self.up), "--down", str(self.down)]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = self._reply(START_TIMEOUT_S)
        except RuntimeError:
            self.close()
            raise
        if "error" in ready:
            self.close()
            raise PathUnavailable(ready["error"])
        self.namespace, self.server_address, self.client_address = (
            ready["namespace"], ready["server_address"], ready["client_address"])
        return self

    def _reply(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"netpath: the forwarder did not answer in {timeout:g} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"netpath: the forwarder exited (code {self.process.wait()})")
        return json.loads(line)

    def _send(self, command: dict) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply(5)

    def set(self, up: Shape | None = None, down: Shape | None = None) -> None:
        """Change one direction or both while the path runs; the next packet sees it."""
        self._send({"up": str(up) if up else None, "down": str(down) if down else None})
        self.up, self.down = up or self.up, down or self.down

    def stats(self) -> dict:
        """Per direction ("up": client -> server, "down"): packets, bytes, lost at random and in bursts,
        queue_dropped, reordered, delivered, and how late the forwarder wrote them (mean, max, over 1 ms)."""
        return self._send({"stats": True})

    def command(self, argv: list[str]) -> list[str]:
        """argv run in the client-side namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def executable(self, binary: str) -> str:
        """A script that runs binary in the client-side namespace with its arguments and descriptors
        (Playwright talks to Chromium over inherited pipes): for launch(executable_path=...)."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix=f"{self.namespace}-"))
        script = self._folder / Path(binary).name
        script.write_text(f"#!/bin/sh\nexec ip netns exec {self.namespace} {binary} \"$@\"\n")
        script.chmod(0o755)
        return str(script)

    def socket(self, type: int = socket.SOCK_STREAM, family: int = socket.AF_INET) -> socket.socket:
        """A socket in the client-side namespace: what it sends crosses the path."""
        return in_namespace(self.namespace, lambda: socket.socket(family, type))

    def chromium_flags(self, *origins: str) -> list[str]:
        """Flags that make these http:// origins secure contexts (the microphone needs one)."""
        return [f"--unsafely-treat-insecure-origin-as-secure={','.join(origins)}"] if origins else []

    def close(self) -> None:
        """Stop the forwarder (it removes what it made); remove the namespace ourselves if it was killed."""
        if self.process is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            # Only a forwarder that did not finish left its namespace, and then no other run has taken its
            # number (a namespace of that name exists): deleting it cannot touch another run's.
            if self.process.returncode != 0 and self.namespace:
                subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
            self.process = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> NetPath:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def shape_option(text: str) -> Shape:
    """A Shape from a command-line argument (argparse's type=), for this command and bench/latency.py."""
    try:
        return Shape.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Shape()
    helps = {"delay": "ms each way", "jitter": "+/- ms around the delay, order kept", "loss": "% lost at random",
             "burst_enter": "% per packet: chance of entering a loss burst (0: no bursts)",
             "burst_exit": "% per packet: chance of leaving a burst", "burst_loss": "% lost in a burst",
             "reorder": "% of packets held back (and overtaken)", "reorder_delay": "ms those are held back",
             "rate": "kbit/s cap each way (0: none)", "bucket": "bytes of the rate cap's token bucket",
             "queue": "ms a packet may wait for the rate cap before it is dropped"}
    for f in dataclasses.fields(Shape):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=int if f.type == "int" else float,
                            default=getattr(defaults, f.name), help=helps[f.name].replace("%", "%%") + " (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random choices, for repeatable runs")
    # For NetPath: a whole shape per direction, JSON lines on stdin and stdout instead of the text.
    parser.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--up", type=shape_option, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--down", type=shape_option, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def usage(plumbing: Plumbing, up: Shape, down: Shape) -> str:
    ns, here, there = plumbing.namespace, plumbing.server_address, plumbing.client_address
    return f"""netpath: {there} in namespace {ns} <-> {here} here; each packet, {ns} -> here: {up}; here -> {ns}: {down}.
  A server here on {here}:   python duoduel.py --host {here}
  Clients in the namespace:  sudo ip netns exec {ns} ping {here}
                             sudo ip netns exec {ns} chromium --no-sandbox \\
                                 --unsafely-treat-insecure-origin-as-secure=http://{here}:8080 http://{here}:8080/
Ctrl-C stops the path and removes the namespace and its devices."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = Shape(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Shape)})
    up, down = args.up or shape, args.down or shape
    if reason := missing_netpath():
        print(json.dumps({"error": reason}) if args.control else f"netpath: {reason}", flush=True)
        return 2

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        plumbing = Plumbing.create()
    except (RuntimeError, OSError) as error:
        print(json.dumps({"error": str(error)}) if args.control else f"netpath: {error}", flush=True)
        return 1
    try:
        run_in_real_time()
        forwarder = Forwarder(plumbing.server_fd, plumbing.client_fd, up, down, args.seed)
        if not args.control:
            print(usage(plumbing, up, down), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                forwarder.run(None, None)
            print(json.dumps(forwarder.stats(), indent=2))
            return 0

        def on_command(command: dict) -> None:
            if not command.get("stats"):
                for name in ("up", "down"):
                    if command.get(name):
                        forwarder.set(name, Shape.parse(command[name]))
            print(json.dumps(forwarder.stats()), flush=True)

        print(json.dumps({"namespace": plumbing.namespace, "server_address": plumbing.server_address,
                          "client_address": plumbing.client_address}), flush=True)
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            forwarder.run(sys.stdin.fileno(), on_command)
        return 0
    finally:
        plumbing.remove()


if __name__ == "__main__":
    sys.exit(main())
