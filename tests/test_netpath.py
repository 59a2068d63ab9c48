"""The packet-level path (bench/netpath.py), measured with real UDP and TCP sockets across it.

A socket made in the path's namespace (path.socket) talks to one bound to the path's server address here, so
every datagram and segment crosses the forwarder. Datagrams carry their index and the time they were sent, and
the receiving socket stamps when each arrived (SO_TIMESTAMPNS: the kernel's time, not the receiving thread's,
which other processes on a busy machine may hold up), so the receiver sees what a client would: which arrived,
in what order, how late. Bounds are wide enough for a loaded 2-core machine, and narrow enough that a path without the feature
fails them. Skipped where namespaces or TUN devices are unavailable, unless DUODUEL_REQUIRE_NETNS=1 (CI).
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from bench.netpath import NetPath, Shape
from conftest import ROOT

DATAGRAM = struct.Struct("!Id")  # index, send time (wall clock, as the kernel's receive stamp)
SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it
TIMESPEC = struct.Struct("qq")


@dataclass
class Arrival:
    index: int
    delay_ms: float  # one way


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def devices() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def udp_train(path: NetPath, direction: str, count: int, gap_s: float, size: int = 64) -> list[Arrival]:
    """Send count datagrams of size bytes across the path ("up": from the namespace, "down": into it),
    one every gap_s; return those that arrived, in the order they arrived."""
    here = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    there = path.socket(socket.SOCK_DGRAM)
    here.bind((path.server_address, 0))
    there.bind((path.client_address, 0))
    sender, receiver = (there, here) if direction == "up" else (here, there)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    receiver.settimeout(0.5)
    arrivals: list[Arrival] = []
    sending = threading.Event()
    sending.set()

    def receive() -> None:
        while True:
            try:
                data, ancillary, _, _ = receiver.recvmsg(65536, 64)
            except TimeoutError:
                if not sending.is_set():
                    return
                continue
            seconds, nanoseconds = next(TIMESPEC.unpack(value) for level, kind, value in ancillary
                                        if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS))
            index, sent = DATAGRAM.unpack_from(data)
            arrivals.append(Arrival(index, (seconds + nanoseconds / 1e9 - sent) * 1000))

    thread = threading.Thread(target=receive)
    thread.start()
    padding = bytes(size - DATAGRAM.size)
    destination = receiver.getsockname()
    start = time.monotonic()
    try:
        for index in range(count):
            sender.sendto(DATAGRAM.pack(index, time.time()) + padding, destination)
            time.sleep(max(0.0, start + (index + 1) * gap_s - time.monotonic()))  # sleeping lets the receiver run
    finally:
        sending.clear()
        thread.join()
        here.close()
        there.close()
    return arrivals


def lost_runs(arrivals: list[Arrival], count: int) -> list[int]:
    """Lengths of the runs of consecutive datagrams that never arrived."""
    received = {a.index for a in arrivals}
    runs, run = [], 0
    for index in range(count):
        if index in received:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return runs + ([run] if run else [])


def overtaken(arrivals: list[Arrival]) -> list[Arrival]:
    """Datagrams that arrived after one sent later than them."""
    latest, late = -1, []
    for arrival in arrivals:
        if arrival.index < latest:
            late.append(arrival)
        latest = max(latest, arrival.index)
    return late


def test_shape_parse_reads_the_command_line_names():
    """A path's description reads back as the same shape; an unknown name is refused with the known ones."""
    shape = Shape.parse("delay=25, jitter=5,loss=2,burst-enter=1,rate=512,bucket=1500")
    assert shape == Shape(delay=25, jitter=5, loss=2, burst_enter=1, rate=512, bucket=1500)
    assert Shape.parse(str(shape)) == shape
    assert str(Shape()) == "perfect" and Shape.parse("") == Shape()
    with pytest.raises(ValueError, match="delay=N"):
        Shape.parse("latency=25")


def test_path_delays_each_direction_by_its_own_amount(netpath):
    """25 ms up and 10 ms down: each datagram arrives that late (within a few ms), and a UDP echo or a TCP
    handshake takes the round trip, 35 ms."""
    path = netpath(up=Shape(delay=25), down=Shape(delay=10))
    up = [a.delay_ms for a in udp_train(path, "up", 200, 0.005)]
    down = [a.delay_ms for a in udp_train(path, "down", 200, 0.005)]
    assert len(up) == len(down) == 200
    assert 25 <= min(up) and statistics.median(up) < 28, (min(up), statistics.median(up))
    assert 10 <= min(down) and statistics.median(down) < 13, (min(down), statistics.median(down))

    listener = socket.create_server((path.server_address, 0))
    handshakes = []
    for _ in range(9):
        client = path.socket()
        started = time.monotonic()
        client.connect(listener.getsockname())  # returns on the SYN-ACK: one round trip
        handshakes.append((time.monotonic() - started) * 1000)
        client.close()
        listener.accept()[0].close()
    listener.close()
    assert 35 <= statistics.median(handshakes) < 45, handshakes


def test_path_jitter_spreads_delays_but_keeps_order(netpath):
    """25 +/- 10 ms of jitter with a datagram every 2 ms: arrival delays spread over more than 10 ms,
    yet no datagram overtakes another."""
    path = netpath(Shape(delay=25, jitter=10), seed=3)
    arrivals = udp_train(path, "down", 1000, 0.002)
    delays = [a.delay_ms for a in arrivals]
    assert len(arrivals) == 1000
    assert min(delays) >= 15 and max(delays) - min(delays) > 10, (min(delays), max(delays))
    assert overtaken(arrivals) == []


def test_path_drops_two_percent_at_random_over_ten_thousand_datagrams(netpath):
    """2 % random loss: 1.5 to 2.5 % of 10,000 datagrams never arrive, nearly always one at a time."""
    path = netpath(up=Shape(loss=2), seed=5)
    count = 10_000
    arrivals = udp_train(path, "up", count, 0.0002)
    loss = 1 - len(arrivals) / count
    runs = lost_runs(arrivals, count)
    assert 0.015 <= loss <= 0.025, loss
    assert statistics.mean(runs) < 1.2, runs
    assert path.stats()["up"]["lost"] == count - len(arrivals)


def test_path_drops_in_bursts(netpath):
    """Gilbert-Elliott bursts (enter 1 %, leave 25 % per datagram, all lost inside): about 1/26 of
    10,000 datagrams are lost, in runs of about 4."""
    path = netpath(up=Shape(burst_enter=1, burst_exit=25), seed=7)
    count = 10_000
    arrivals = udp_train(path, "up", count, 0.0002)
    loss = 1 - len(arrivals) / count
    runs = lost_runs(arrivals, count)
    assert 0.025 <= loss <= 0.055, loss
    assert 3 <= statistics.mean(runs) <= 5.5, statistics.mean(runs)
    assert max(runs) >= 8, runs


def test_path_reorders_the_fraction_held_back(netpath):
    """10 % of datagrams held back 10 ms more, one sent every 2 ms: about that many arrive after a later
    one, 10 ms later than the rest, which keep their delay."""
    path = netpath(Shape(delay=20, reorder=10, reorder_delay=10), seed=11)
    arrivals = udp_train(path, "up", 1000, 0.002)
    held = overtaken(arrivals)
    delays = sorted(a.delay_ms for a in arrivals)
    assert len(arrivals) == 1000
    assert 60 <= len(held) <= 140, len(held)
    assert 20 <= delays[0] and delays[800] < 23, (delays[0], delays[800])
    assert 30 <= statistics.median(a.delay_ms for a in held) < 33


def test_path_caps_a_tcp_transfer_at_its_rate(netpath):
    """At 4000 kbit/s down, 1 MB sent by the server takes about 2 s to reach the client (TCP/IP headers
    included in the rate, so goodput is a little under it)."""
    path = netpath(down=Shape(rate=4000), seed=13)
    payload = bytes(1_000_000)
    listener = socket.create_server((path.server_address, 0))
    client = path.socket()
    client.connect(listener.getsockname())
    server_side, _ = listener.accept()
    sender = threading.Thread(target=server_side.sendall, args=(payload,))
    started = time.monotonic()
    sender.start()
    received = 0
    while received < len(payload):
        chunk = client.recv(65536)
        assert chunk, "the connection closed early"
        received += len(chunk)
    elapsed = time.monotonic() - started
    sender.join()
    for sock in (client, server_side, listener):
        sock.close()
    kbit_s = received * 8 / elapsed / 1000
    assert 3400 <= kbit_s <= 4000, kbit_s


def test_path_rate_cap_drops_what_its_queue_cannot_hold(netpath):
    """Datagrams at about twice the 1000 kbit/s cap: about half arrive, none after waiting more than the
    queue's 100 ms, and the path counts the rest as queue drops (tail drop)."""
    path = netpath(up=Shape(rate=1000, queue=100), seed=17)
    count = 1000
    arrivals = udp_train(path, "up", count, 0.002, size=500)  # 2000 kbit/s of payload, more with headers
    assert 0.40 * count <= len(arrivals) <= 0.55 * count, len(arrivals)
    assert max(a.delay_ms for a in arrivals) < 105
    assert path.stats()["up"]["queue_dropped"] == count - len(arrivals)


def test_two_paths_at_once_do_not_collide(netpath):
    """Two paths get a namespace, devices and a subnet each, and each carries its own traffic."""
    first, second = netpath(Shape(delay=5)), netpath(Shape(delay=30))
    assert first.namespace != second.namespace and first.server_address != second.server_address
    assert statistics.median(a.delay_ms for a in udp_train(first, "up", 20, 0.005)) < 10
    assert statistics.median(a.delay_ms for a in udp_train(second, "up", 20, 0.005)) >= 30


def test_path_removes_its_namespace_and_devices_when_closed(netpath):
    """close() leaves no namespace, no device, and the server address is no longer here."""
    path = netpath(Shape(delay=1))
    name, address = path.namespace, path.server_address
    assert name in namespaces() and f"{name}s" in devices()
    path.close()
    assert name not in namespaces() and f"{name}s" not in devices()
    with pytest.raises(OSError):
        socket.create_server((address, 0))


def test_path_is_removed_when_its_owner_is_killed(netpath):
    """A process that made a path and was killed (SIGKILL, no clean-up of its own) leaves nothing: the
    forwarder sees its control pipe end and removes the namespace and devices."""
    netpath()  # skips here when paths cannot be made
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bench.netpath import NetPath; "
         "path = NetPath().start(); print(path.namespace, flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    name = owner.stdout.readline().strip()
    assert name in namespaces()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    owner.stdout.close()
    deadline = time.monotonic() + 5
    while name in namespaces() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name not in namespaces() and f"{name}s" not in devices()


def test_command_line_prints_how_to_use_it_and_cleans_up_on_ctrl_c(netpath):
    """`python bench/netpath.py --delay 25` says where servers and clients go, and Ctrl-C removes it all."""
    netpath()  # skips here when paths cannot be made
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "netpath.py"), "--delay", "25"],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = process.stdout.readline()
    name = first.split(" in namespace ")[1].split()[0]
    usage = first + "".join(process.stdout.readline() for _ in range(4))
    assert "delay=25" in usage and f"ip netns exec {name} chromium" in usage and "duoduel.py --host 10.9." in usage
    assert name in namespaces()
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    assert '"delivered"' in process.stdout.read()  # what crossed, per direction
    process.stdout.close()
    assert name not in namespaces() and f"{name}s" not in devices()
