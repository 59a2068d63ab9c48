"""Audio datagrams behind congestion (core/webtransport.py): what the server cannot send soon is dropped, not
delayed. A raw aioquic client in the namespace of a packet-level path (bench/netpath.py, the `netpath` fixture)
takes the audio and judges it as a page would: by the age of each frame when it arrives.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bench.netpath import Shape
from core import webtransport
from wt_client import Session, open_session
from wt_harness import Echo

pytestmark = pytest.mark.timeout(60)

STAMP = struct.Struct("!d")  # the server's clock when it handed the frame over (one clock: one machine)
FRAME_GAP_S = 0.010  # 10 ms frames, as the page sends
# Beyond MAX_DATAGRAM_AGE and the path's delay, how late a frame may arrive for the scheduling of a shared
# machine, besides the stalls measured: the path's forwarder reports its own lateness, and this process's
# (the client shares the server's event loop) is how much later than asked its sender woke.
SCHEDULING_S = 0.020


@asynccontextmanager
async def session_across(path) -> AsyncIterator[tuple[webtransport.WebTransportSession, Session]]:
    """A session from the path's far side to an endpoint on this side: the server's end, and the client's."""
    echo = Echo()
    certificate = webtransport.generate_certificate()
    async with webtransport.serve(path.server_address, 0, certificate, admit=echo.admit, on_session=echo.on_session,
                                  on_audio=echo.on_audio) as endpoint:
        async with open_session(endpoint.port, "/wt", certificate, host=path.server_address,
                                sock=path.socket(socket.SOCK_DGRAM)) as session:
            session.send_line('{"type": "ping", "t": 1}')
            await session.line()
            server_side = echo.sessions[0]
            server_side.stop_relay()  # the page's datagrams carry its acknowledgements; none comes back
            yield server_side, session


async def arrivals_of(session: Session, arrivals: list[tuple[float, float]]) -> None:
    """Record (sent, arrived) on the server's clock for every datagram the client receives."""
    while True:
        frame = await session.datagrams.get()
        arrivals.append((STAMP.unpack_from(frame)[0], time.monotonic()))


async def send_frames(server_side: webtransport.WebTransportSession, session: Session, count: int, size: int,
                      during=None) -> float:
    """Send count frames of size bytes from the server, one every FRAME_GAP_S, stamped, each answered by a datagram
    from the page (what carries its acknowledgements, as in a call); call during(index) before each. Return the
    longest this process slept past the time it asked for: a stall the client's arrivals share."""
    padding = bytes(size - STAMP.size)
    start = time.monotonic()
    stall = 0.0
    for index in range(count):
        if during is not None:
            during(index)
        server_side.send_frame(STAMP.pack(time.monotonic()) + padding)
        session.send_datagram(b"page audio")
        due = start + (index + 1) * FRAME_GAP_S
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        stall = max(stall, time.monotonic() - due)
    return stall


def late_allowance(path, one_way_s: float, stall: float) -> float:
    """How long after it was sent a frame may arrive: the path's delay, the server's MAX_DATAGRAM_AGE, and the
    stalls of the path's forwarder and of this process."""
    lateness = path.stats()["down"]["lateness_max_ms"] / 1000
    return one_way_s + webtransport.MAX_DATAGRAM_AGE + lateness + stall + SCHEDULING_S


async def test_audio_the_server_cannot_send_soon_is_dropped_not_delayed(netpath):
    """While the page's acknowledgements are lost, audio the congestion window holds back is dropped; after, frames arrive fresh."""
    one_way_s = 0.025
    path = netpath(Shape(delay=one_way_s * 1000))
    async with session_across(path) as (server_side, session):
        arrivals: list[tuple[float, float]] = []
        receiving = asyncio.create_task(arrivals_of(session, arrivals))
        path.set(up=Shape(delay=one_way_s * 1000, loss=100))  # nothing from the page: no acknowledgements
        start = time.monotonic()
        restored = None

        def restore_at_half_time(index: int) -> None:
            nonlocal restored
            if restored is None and time.monotonic() >= start + 1.5:
                path.set(up=Shape(delay=one_way_s * 1000))
                restored = time.monotonic()

        # 3 s of large frames (a few hundred ms of them fill the window): 1.5 s without acknowledgements, 1.5 s with
        stall = await send_frames(server_side, session, 300, 1000, restore_at_half_time)
        await asyncio.sleep(4 * one_way_s)
        receiving.cancel()
    allowance = late_allowance(path, one_way_s, stall)
    held = [(round(sent - start, 3), round(arrived - sent, 3)) for sent, arrived in arrivals
            if sent < restored and arrived - sent > allowance]
    assert not held, f"frames sent while the window was full came late (sent at s, after s): {held[:10]}"
    assert server_side.datagrams_dropped > 0, "the window never filled: the test shows nothing"
    assert any(sent > restored for sent, _ in arrivals), "no frame arrived once acknowledgements came back"


async def test_audio_over_a_lossy_long_path_is_neither_held_nor_dropped(netpath):
    """At a 150 ms round trip with 5 % loss, a call's audio arrives on time: lost on the path, never held back."""
    one_way_s = 0.075
    path = netpath(Shape(delay=one_way_s * 1000), down=Shape(delay=one_way_s * 1000, loss=5), seed=1)
    async with session_across(path) as (server_side, session):
        arrivals: list[tuple[float, float]] = []
        receiving = asyncio.create_task(arrivals_of(session, arrivals))
        start = time.monotonic()
        sent = 400  # 4 s of 10 ms frames of 200 bytes: a frame and its copy, as the page sends them
        stall = await send_frames(server_side, session, sent, 200)
        await asyncio.sleep(4 * one_way_s)
        receiving.cancel()
    assert len(arrivals) >= 0.9 * sent, f"{len(arrivals)} of {sent} frames arrived across a path that loses 5 %"
    allowance = late_allowance(path, one_way_s, stall)
    late = [(round(s - start, 3), round(a - s, 3)) for s, a in arrivals if a - s > allowance]
    assert not late, f"frames came late (sent at s, after s): {late[:10]}"
