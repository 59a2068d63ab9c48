"""The impaired link (bench/impair.py) in front of a real duoduel server: what crosses it, in what order, when.

Ann reaches the server through the proxy, Bob directly, so what Bob receives from Ann crossed the link's
"up" direction and what Ann receives from Bob its "down" direction. Timings are generous: the assertions
are about what a client observes (order, content, a gap and then a burst, a throughput), not exact times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from bench.impair import Impairment, Link
from conftest import ROOT, Running, http_request, join, receive_json, round_trip, until

BIG_FILE = "/vendor/qrcode-generator.js"  # about 50 KB


@pytest.fixture
async def proxy(server: Running) -> AsyncIterator[Impairment]:
    """A proxy in front of the server, a perfect link until a test changes its knobs."""
    async with Impairment(server.host, server.port, seed=13) as impairment:
        yield impairment


def via(proxy: Impairment) -> Running:
    """Where a client reaches the server through the proxy."""
    return Running("127.0.0.1", proxy.port)


async def call_through(proxy: Impairment, server: Running) -> tuple[ClientConnection, ClientConnection]:
    """Ann (through the proxy) waits, Bob (direct) joins: both are told connected."""
    ann, told = await join(via(proxy))
    assert told == {"type": "waiting"}
    bob, told = await join(server)
    assert told == {"type": "connected"}
    assert await receive_json(ann) == {"type": "connected"}
    return ann, bob


def frame(index: int) -> bytes:
    """A binary frame that names itself and has a length and content of its own."""
    length = 40 + (index * 97) % 1400
    return index.to_bytes(2, "big") + bytes((index * 7 + j) % 256 for j in range(length))


async def send_frames(websocket: ClientConnection, count: int, period: float, during=None) -> None:
    """Send count frames, one every period s, as a page sends audio; call during(i) before frame i."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(count):
        if during is not None:
            during(i)
        await websocket.send(frame(i))
        await asyncio.sleep(max(0.0, start + (i + 1) * period - loop.time()))  # paces the sender on purpose


async def receive_frames(websocket: ClientConnection, count: int) -> list[tuple[float, bytes]]:
    """Receive count binary frames with the loop time each arrived at."""
    loop = asyncio.get_running_loop()
    arrived = []
    while len(arrived) < count:
        message = await asyncio.wait_for(websocket.recv(), 10)
        if isinstance(message, bytes):
            arrived.append((loop.time(), message))
    return arrived


def gaps(arrived: list[tuple[float, bytes]]) -> list[float]:
    """Time between consecutive arrivals, s."""
    return [later[0] - earlier[0] for earlier, later in zip(arrived, arrived[1:])]


async def test_frames_cross_a_jittery_link_intact_and_in_order(proxy, server):
    """10 ms + 0-30 ms of jitter each way: every frame arrives whole and in order, both ways, and later."""
    proxy.up.delay_ms = proxy.down.delay_ms = 10
    proxy.up.jitter_ms = proxy.down.jitter_ms = 30
    ann, bob = await call_through(proxy, server)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await round_trip(ann)
    assert loop.time() - sent_at >= 0.020, "a round trip crosses the 10 ms delay twice"
    count = 120
    results = await asyncio.gather(
        send_frames(ann, count, 0.01), receive_frames(bob, count),
        send_frames(bob, count, 0.01), receive_frames(ann, count),
    )
    expected = [frame(i) for i in range(count)]
    assert [message for _, message in results[1]] == expected  # up: Ann -> Bob
    assert [message for _, message in results[3]] == expected  # down: Bob -> Ann


async def test_a_stall_holds_data_for_its_duration_then_releases_the_burst(proxy, server):
    """A 400 ms stall in the middle of a stream: nothing arrives for about that long, then the held frames
    arrive at once, all of them, in order."""
    ann, bob = await call_through(proxy, server)
    count = 60  # 1.2 s at one frame per 20 ms; the stall starts at frame 15

    def stall_at_frame_15(i: int) -> None:
        if i == 15:
            proxy.stall(0.4)

    _, arrived = await asyncio.gather(send_frames(ann, count, 0.02, stall_at_frame_15), receive_frames(bob, count))
    assert [message for _, message in arrived] == [frame(i) for i in range(count)]
    between = gaps(arrived)
    longest = max(between)
    assert 0.3 <= longest <= 1.0, f"longest gap {longest:.3f} s"
    after = between.index(longest) + 1  # the first frame released
    burst = [t for t, _ in arrived[after:] if t - arrived[after][0] <= 0.05]
    assert len(burst) >= 10, f"only {len(burst)} frames arrived together after the stall"
    assert proxy.up.stalls == 1


async def test_periodic_stalls_recur_and_lose_nothing(proxy, server):
    """stall_every_s=0.5, stall_ms=200 on the way down: over 2 s the stream stops and restarts repeatedly."""
    proxy.down.stall_every_s, proxy.down.stall_ms = 0.5, 200
    ann, bob = await call_through(proxy, server)
    count = 100
    _, arrived = await asyncio.gather(send_frames(bob, count, 0.02), receive_frames(ann, count))
    assert [message for _, message in arrived] == [frame(i) for i in range(count)]
    stalls_seen = sum(gap >= 0.12 for gap in gaps(arrived))
    assert stalls_seen >= 2, f"{stalls_seen} stalls seen in {gaps(arrived)}"


async def test_the_rate_cap_limits_throughput(proxy, server):
    """At 200 kbit/s down, a 50 KB file takes about 2 s and arrives intact."""
    proxy.down.rate_kbps = 200
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await http_request(via(proxy), BIG_FILE)
    elapsed = loop.time() - started
    assert reply.status == 200
    assert reply.body == (ROOT / "static" / BIG_FILE.lstrip("/")).read_bytes()
    kbps = len(reply.body) * 8 / elapsed / 1000
    assert 100 <= kbps <= 250, f"{kbps:.0f} kbit/s through a 200 kbit/s cap"


async def test_the_proxy_holds_at_most_its_bound_then_pushes_back(server):
    """During a 1 s stall, a 50 KB reply waits in the proxy only up to max_held_bytes (the rest stays with the
    sender, whose writes block); afterwards it arrives whole."""
    async with Impairment(server.host, server.port, max_held_bytes=8192) as proxy:
        proxy.down.hold(1.0)
        fetch = asyncio.create_task(http_request(via(proxy), BIG_FILE))
        most = 0
        while not fetch.done():
            most = max(most, proxy.held_bytes())
            await asyncio.sleep(0.01)  # samples what the proxy holds while the reply is under way
        reply = await fetch
    assert 0 < most <= 8192, f"held up to {most} bytes"
    assert reply.body == (ROOT / "static" / BIG_FILE.lstrip("/")).read_bytes()


async def test_cut_resets_both_sides_and_the_partner_is_told_disconnected(proxy, server):
    """cut(): Ann's socket dies without a closing handshake, Bob is told disconnected (today's behaviour:
    no resume), and while refuse_for lasts a new connection through the proxy is reset."""
    ann, bob = await call_through(proxy, server)
    assert proxy.cut(refuse_for=0.5) == 1
    assert await receive_json(bob) == {"type": "disconnected"}
    with pytest.raises(ConnectionClosedError) as closed:
        await asyncio.wait_for(ann.recv(), 5)
    assert closed.value.rcvd is None, "a reset, not a close frame"
    with pytest.raises(OSError):
        await http_request(via(proxy), "/healthz")

    async def accepts() -> bool:
        with contextlib.suppress(OSError):
            return (await http_request(via(proxy), "/healthz")).status == 200
        return False

    await until(accepts, "the proxy to let connections through once refuse_for (0.5 s) is over")
    carl, told = await join(via(proxy))
    assert told["type"] in ("waiting", "connected")
    await carl.close()
    await bob.close()


async def test_command_line_proxies_and_cuts_on_sigusr1(server):
    """python bench/impair.py --target ...: prints where it listens, serves through, SIGUSR1 cuts, SIGINT exits 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "impair.py"), "--target", f"{server.host}:{server.port}",
        "--delay", "5", "--jitter", "5", "--stall-every", "5", "--stall-ms", "100", "--rate-kbps", "2000",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("impair: listening on http://127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        reply = await http_request(Running("127.0.0.1", port), "/healthz")
        assert reply.status == 200 and json.loads(reply.body)["up"] is True
        process.send_signal(signal.SIGUSR1)
        assert (await asyncio.wait_for(process.stdout.readline(), 5)).decode().startswith("cut ")
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_command_line_refuses_a_bad_target():
    """A target without a port: one line saying what is expected, exit status 2."""
    import subprocess

    done = subprocess.run([sys.executable, str(ROOT / "bench" / "impair.py"), "--target", "localhost"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "expected host:port" in done.stderr
