"""Audio datagrams behind congestion (core/webtransport.py): what the server cannot send soon is dropped, not
delayed. A raw aioquic client in the namespace of a packet-level path (bench/netpath.py, the `netpath` fixture)
takes the audio and judges it as a page would: by the age of each frame when it arrives.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator

import pytest

from bench.netpath import Shape
from core import webtransport
from wt_client import Session, open_session
from wt_harness import Echo

pytestmark = pytest.mark.timeout(60)

STAMP = struct.Struct("!d")  # the server's clock when it handed the frame over (one clock: one machine)
FRAME_GAP_S = 0.010  # 10 ms frames, as the page sends
FRAME_BYTES = 1000  # large frames, so that a few hundred ms of them fill a congestion window
ONE_WAY_S = 0.025
# How much later than its path's delay a frame may still arrive: MAX_DATAGRAM_AGE in the server, and the
# scheduling of a shared machine (the client shares the server's event loop).
LATE_S = webtransport.MAX_DATAGRAM_AGE + 0.040


@pytest.fixture
async def served_on_path(netpath) -> AsyncIterator[tuple[Echo, webtransport.Endpoint, object, object]]:
    path = netpath(Shape(delay=ONE_WAY_S * 1000))
    echo = Echo()
    certificate = webtransport.generate_certificate()
    async with webtransport.serve(path.server_address, 0, certificate, admit=echo.admit, on_session=echo.on_session,
                                  on_audio=echo.on_audio) as endpoint:
        yield echo, endpoint, path, certificate


async def ages_of_arrivals(session: Session, ages: list[tuple[float, float]]) -> None:
    """Record (sent, age beyond the path's delay) for every datagram the client receives."""
    while True:
        frame = await session.datagrams.get()
        (sent,) = STAMP.unpack_from(frame)
        ages.append((sent, time.monotonic() - sent - ONE_WAY_S))


async def test_audio_the_server_cannot_send_soon_is_dropped_not_delayed(served_on_path):
    """While the page's acknowledgements are lost, audio the congestion window holds back is dropped; after, frames arrive fresh."""
    echo, endpoint, path, certificate = served_on_path
    async with open_session(endpoint.port, "/wt", certificate, host=path.server_address,
                            sock=path.socket(type=2)) as session:  # SOCK_DGRAM
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        server_side = echo.sessions[0]
        server_side.stop_relay()  # the page's datagrams carry its acknowledgements; none comes back
        ages: list[tuple[float, float]] = []
        receiving = asyncio.create_task(ages_of_arrivals(session, ages))
        padding = bytes(FRAME_BYTES - STAMP.size)
        path.set(up=Shape(delay=ONE_WAY_S * 1000, loss=100))  # nothing from the page: no acknowledgements
        start = time.monotonic()
        blackout_ends = start + 1.5
        for index in range(300):  # 3 s of frames: 1.5 s without acknowledgements, 1.5 s with
            if time.monotonic() >= blackout_ends and path is not None:
                path.set(up=Shape(delay=ONE_WAY_S * 1000))
                restored, path = time.monotonic(), None
            server_side.send_frame(STAMP.pack(time.monotonic()) + padding)
            session.send_datagram(b"page audio")  # what carries the page's acknowledgements, as in a call
            await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_GAP_S - time.monotonic()))
        await asyncio.sleep(4 * ONE_WAY_S)
        receiving.cancel()
    assert server_side.datagrams_dropped > 0, "the window never filled: the test shows nothing"
    late = [(round(sent - start, 3), round(age, 3)) for sent, age in ages if age > LATE_S]
    assert not late, f"frames delivered late (sent at s, late by s): {late[:10]}"
    assert any(sent > restored for sent, _ in ages), "no frame arrived once acknowledgements came back"


async def test_audio_over_a_lossy_long_path_is_neither_held_nor_dropped(netpath):
    """At a 150 ms round trip with 5 % loss, a call's audio arrives on time: lost on the path, never held back."""
    one_way_s = 0.075
    path = netpath(Shape(delay=one_way_s * 1000), down=Shape(delay=one_way_s * 1000, loss=5), seed=1)
    echo = Echo()
    certificate = webtransport.generate_certificate()
    async with webtransport.serve(path.server_address, 0, certificate, admit=echo.admit, on_session=echo.on_session,
                                  on_audio=echo.on_audio) as endpoint:
        async with open_session(endpoint.port, "/wt", certificate, host=path.server_address,
                                sock=path.socket(type=2)) as session:
            session.send_line('{"type": "ping", "t": 1}')
            await session.line()
            server_side = echo.sessions[0]
            server_side.stop_relay()  # the page's datagrams carry its acknowledgements; none comes back
            arrivals: list[tuple[float, float]] = []
            receiving = asyncio.create_task(ages_of_arrivals(session, arrivals))
            padding = bytes(200 - STAMP.size)  # a frame and its copy, as the page sends them
            start = time.monotonic()
            sent = 400  # 4 s of 10 ms frames
            for index in range(sent):
                server_side.send_frame(STAMP.pack(time.monotonic()) + padding)
                session.send_datagram(b"page audio")
                await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_GAP_S - time.monotonic()))
            await asyncio.sleep(4 * one_way_s)
            receiving.cancel()
    late = [(round(sent_at - start, 3), round(age + ONE_WAY_S - one_way_s, 3)) for sent_at, age in arrivals
            if age + ONE_WAY_S - one_way_s > LATE_S]
    assert not late, f"frames delivered late (sent at s, late by s): {late[:10]}"
    assert len(arrivals) >= 0.9 * sent, f"{len(arrivals)} of {sent} frames arrived across a path that loses 5 %"
