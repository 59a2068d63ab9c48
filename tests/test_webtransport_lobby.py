"""WebTransport sessions in duoduel's lobby, on real UDP with a raw aioquic client (tests/wt_client.py): they are
admitted as WebSocket handshakes are, pair, take Next, share private and group rooms and calls with WebSocket
clients, resume, and are held to the same limits; /webtransport.json and /metrics tell of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aioquic.h3.connection import ErrorCode

import duoduel
from conftest import FRAME, Running, health, http_request, join, metric, receive_json, running_server, settle
from wt_client import Session, connection, open_session, request

pytestmark = pytest.mark.timeout(60)

OPUS = bytes(range(100))  # an audio frame's size, as a page sends it


@pytest.fixture
def config() -> duoduel.Config:
    return duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, room_size=3)


@contextlib.asynccontextmanager
async def page(server: Running, query: str = "", origin: str | None = None) -> AsyncIterator[Session]:
    """A WebTransport page in the lobby: its session open, its first ping sent (as a page's link does on open)."""
    endpoint = server.webtransport
    async with open_session(endpoint.port, f"/wt{query}", endpoint.certificate, origin=origin) as session:
        session.send_line(json.dumps({"type": "ping", "t": 0}))
        yield session


async def told(session: Session, *skip: str) -> dict:
    """The next control message, passing over pongs and those of the types in skip."""
    while True:
        message = json.loads(await session.line())
        if message["type"] != "pong" and message["type"] not in skip:
            return message


async def refused(server: Running, query: str = "", origin: str | None = None) -> tuple[int, str]:
    """Ask for a session the server must refuse; its status and line."""
    endpoint = server.webtransport
    async with connection(endpoint.port, endpoint.certificate) as client:
        session = request(client, endpoint.port, f"/wt{query}", origin)
        status = await asyncio.wait_for(asyncio.shield(session.response), 5)
        await session.wait_closed()
    return status, session.body.decode(errors="replace")


async def test_offer_names_the_udp_port_and_certificate_hash(server):
    """GET /webtransport.json gives the page the UDP port, the path and the SHA-256 of the certificate it pins (and its
    id token and its lifetime: tests/test_webtransport_identity.py)."""
    reply = await http_request(server, "/webtransport.json")
    assert reply.status == 200
    offer = json.loads(reply.body)
    endpoint = server.webtransport
    assert offer.pop("token") and offer.pop("tokenSeconds")
    assert offer == {"port": endpoint.port, "path": "/wt", "certificateHashes": [endpoint.certificate.hash.hex()]}


async def test_page_may_connect_to_the_offered_port(server):
    """The page's Content-Security-Policy lets it open https:// to the host it came from (on any port: behind a proxy,
    the offer may come from another process than the page), and nowhere else."""
    reply = await http_request(server, "/")
    connect = reply.headers["content-security-policy"].split("connect-src", 1)[1].split(";", 1)[0].split()
    assert [source for source in connect if source.startswith("https:")] == ["https://127.0.0.1:*"]


async def test_two_webtransport_pages_pair_and_hear_each_other(server):
    """Two pages over WebTransport are paired, and each one's audio datagrams reach the other unchanged."""
    async with page(server) as ann:
        assert await told(ann) == {"type": "waiting"}
        async with page(server) as bob:
            assert await told(bob) == {"type": "connected"}
            assert await told(ann) == {"type": "connected"}
            ann.send_datagram(OPUS)
            assert await bob.datagram() == OPUS
            bob.send_datagram(OPUS[::-1])
            assert await ann.datagram() == OPUS[::-1]
        assert await told(ann) == {"type": "disconnected"}


async def test_webtransport_and_websocket_pages_share_a_call(server):
    """A WebSocket page and a WebTransport page are paired, and hear each other: frames become datagrams and back."""
    ws, first = await join(server)
    assert first == {"type": "waiting"}
    async with page(server) as wt:
        assert await told(wt) == {"type": "connected"}
        assert await receive_json(ws) == {"type": "connected"}
        await ws.send(OPUS)
        assert await wt.datagram() == OPUS
        wt.send_datagram(OPUS[:50])
        assert await asyncio.wait_for(ws.recv(), 5) == OPUS[:50]
    assert await receive_json(ws) == {"type": "disconnected"}
    await ws.close()


async def test_next_over_webtransport_finds_someone_else(server):
    """Next from a WebTransport page ends its call and pairs it with whoever waits."""
    async with page(server) as ann, page(server) as bob:
        assert await told(ann) == {"type": "waiting"}
        assert await told(bob) == {"type": "connected"}
        assert await told(ann) == {"type": "connected"}
        ws, first = await join(server)
        assert first == {"type": "waiting"}
        ann.send_line(json.dumps({"type": "next"}))
        assert await told(ann) == {"type": "connected"}
        assert await told(bob) == {"type": "disconnected"}
        assert await receive_json(ws) == {"type": "connected"}
        ann.send_datagram(OPUS)
        assert await asyncio.wait_for(ws.recv(), 5) == OPUS
        await ws.close()


async def test_group_room_marks_each_sender_over_both_transports(server):
    """In a group room of a WebSocket page and two WebTransport pages, each frame reaches the others behind its sender's slot."""
    ws, notice = await join(server, "?room=trio")
    assert notice["type"] == "room" and notice["slot"] == 0
    async with page(server, "?room=trio") as bob, page(server, "?room=trio") as cyd:
        assert (await told(bob))["slot"] == 1
        assert (await told(cyd, "connected"))["slot"] == 2
        await ws.send(OPUS)
        assert await bob.datagram() == bytes([0]) + OPUS
        assert await cyd.datagram() == bytes([0]) + OPUS
        cyd.send_datagram(OPUS)
        assert await bob.datagram() == bytes([2]) + OPUS
        while isinstance(message := await asyncio.wait_for(ws.recv(), 5), str):
            pass  # the news of bob and cyd
        assert message == bytes([2]) + OPUS
    await ws.close()


async def test_private_room_pairs_a_websocket_and_a_webtransport_page(config, server):
    """A private room's two people talk whichever transport each one has."""
    async with page(server, "?room=pair") as ann:
        notice = await told(ann)
        assert notice["type"] == "room"
        ws, notice = await join(server, "?room=pair")
        assert notice["type"] == "room"
        await ws.send(OPUS)
        assert await ann.datagram() == bytes([1]) + OPUS
        await ws.close()


async def test_resume_over_webtransport_keeps_the_call(server):
    """A WebTransport page whose connection drops takes its place back with its token; its partner hears it again."""
    ws, first = await join(server)
    async with page(server, "?resumable=1") as dropped:
        session = await told(dropped, "connected")
        assert session["type"] == "session"
        assert await receive_json(ws) == {"type": "connected"}
        dropped.drop()  # gone without a word: the server has not noticed yet when the page comes back
    async with page(server, f"?resume={session['token']}") as back:
        assert [await told(back), (await told(back))["resumed"]] == [{"type": "connected"}, True]
        assert await receive_json(ws) == {"type": "resumed"}  # the partner learns its partner is back
        back.send_datagram(OPUS)
        assert await asyncio.wait_for(ws.recv(), 5) == OPUS
        await ws.send(OPUS[:10])
        assert await back.datagram() == OPUS[:10]
    await ws.close()


async def test_browser_closing_its_connection_leaves_the_call_at_once(server):
    """A page whose browser closes its QUIC connection without closing the session first (Firefox leaving a page
    sometimes does) has left, not dropped: its partner is told at once, and no place is held for it."""
    ws, first = await join(server)
    async with page(server, "?resumable=1") as leaving:
        assert (await told(leaving, "connected"))["type"] == "session"
        assert await receive_json(ws) == {"type": "connected"}
        leaving.close_connection(ErrorCode.H3_NO_ERROR)
        assert await receive_json(ws) == {"type": "disconnected"}  # never "reconnecting"
    assert (await health(server))["held"] == 0
    await ws.close()


async def test_websocket_page_resumes_on_webtransport(server):
    """A page whose WebSocket dropped resumes its place over WebTransport: one lobby, both transports."""
    ann, first = await join(server, "?resumable=1")
    assert first == {"type": "waiting"}
    session = await receive_json(ann)
    assert session["type"] == "session"
    bob, first = await join(server)
    assert first == {"type": "connected"}
    assert await receive_json(ann) == {"type": "connected"}
    ann.transport.abort()  # gone without a close: a drop, held for a resume
    await settle(server, held=1)
    async with page(server, f"?resume={session['token']}") as back:
        assert [await told(back), (await told(back))["resumed"]] == [{"type": "connected"}, True]
        await bob.send(OPUS)
        assert await back.datagram() == OPUS
    await bob.close()


async def test_cross_site_session_is_refused(server):
    """A session from another site's page is refused with 403 and one line; the lobby stays empty."""
    status, line = await refused(server, origin="https://evil.example")
    assert status == 403 and "Cross-site" in line
    assert await metric(server, 'rejections_total{reason="origin"}') == 1
    await settle(server, clients=0)


async def test_own_origin_session_is_admitted(server):
    """The page's own origin (its HTTP port on the host the session names) is welcome."""
    async with page(server, origin=f"http://localhost:{server.port}") as ann:
        assert await told(ann) == {"type": "waiting"}


async def test_bad_room_name_is_refused(server):
    """A session for a room name no page makes is refused as /ws refuses it: 400 and what to use instead."""
    status, line = await refused(server, "?room=no%20spaces")
    assert status == 400 and "bad room name" in line


@pytest.mark.parametrize("config", [duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, max_clients=1)])
async def test_max_clients_counts_both_transports(server):
    """With --max-clients 1 and a WebSocket client in, a WebTransport session is refused as full (503); and the other way."""
    ws, _ = await join(server)
    status, line = await refused(server)
    assert status == 503 and "full" in line
    await ws.close()
    await settle(server, clients=0)
    async with page(server) as ann:
        assert await told(ann) == {"type": "waiting"}
        with pytest.raises(Exception, match="503"):
            await join(server)


@pytest.mark.parametrize(
    "config", [duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, max_webtransport_sessions=1)])
async def test_sessions_past_the_cap_are_refused_for_the_websocket(server):
    """Past --max-webtransport-sessions a session is refused with 503, saying the page uses the WebSocket; it counts."""
    async with page(server) as ann:
        assert await told(ann) == {"type": "waiting"}
        status, line = await refused(server)
    assert status == 503 and "WebSocket" in line
    assert await metric(server, "webtransport_refused_total") == 1


async def test_datagram_flood_closes_the_flooder_alone(server):
    """A page that sends datagrams far faster than audio is closed (1008); its partner stays, and waits again."""
    ws, _ = await join(server)
    async with page(server) as flooder:
        assert await told(flooder) == {"type": "connected"}
        for _ in range(400):
            flooder.send_datagram(OPUS)
        closed = await flooder.wait_closed()
        assert (closed.code, closed.reason) == (1008, "too many messages")
    assert await receive_json(ws) == {"type": "connected"}
    while isinstance(message := await asyncio.wait_for(ws.recv(), 5), bytes):
        assert message == OPUS  # what the flooder sent before it was stopped, within the rate
    assert json.loads(message) == {"type": "disconnected"}
    await settle(server, clients=1)
    assert await metric(server, 'closes_total{reason="rate"}') == 1
    await ws.close()


async def test_frames_too_big_for_a_datagram_are_refused_with_a_line(server):
    """PCM16 frames from a WebSocket partner do not fit a datagram: the WebTransport page is told once why, and gets the
    audio frames that fit."""
    ws, _ = await join(server)
    async with page(server) as wt:
        assert await told(wt) == {"type": "connected"}
        await ws.send(FRAME)
        await ws.send(FRAME)
        await ws.send(OPUS)
        error = await told(wt)
        assert error["type"] == "error" and "do not fit in a WebTransport datagram" in error["reason"]
        assert await wt.datagram() == OPUS
        wt.send_line(json.dumps({"type": "ping", "t": 9}))
        while (message := json.loads(await wt.line()))["type"] != "pong" or message["t"] != 9:
            assert message["type"] != "error", "told twice"
    assert await metric(server, 'webtransport_datagrams_total{direction="dropped"}') == 2
    await ws.close()


async def test_datagrams_before_the_lobby_go_nowhere(server):
    """Datagrams of a session that has opened no control stream yet reach nobody."""
    ws, _ = await join(server)
    endpoint = server.webtransport
    async with open_session(endpoint.port, "/wt", endpoint.certificate) as silent:
        silent.send_datagram(OPUS)
        async with page(server) as talker:
            assert await told(talker) == {"type": "connected"}
            assert await receive_json(ws) == {"type": "connected"}
            silent.send_datagram(OPUS)
            talker.send_datagram(OPUS[:7])
            assert await asyncio.wait_for(ws.recv(), 5) == OPUS[:7]
            assert await metric(server, 'webtransport_datagrams_total{direction="received"}') == 3
    await ws.close()


async def test_metrics_count_clients_and_datagrams_by_transport(server):
    """/metrics counts the clients of each transport and the datagrams received and sent."""
    ws, _ = await join(server)
    async with page(server) as wt:
        assert await told(wt) == {"type": "connected"}
        assert await metric(server, 'clients_by_transport{transport="websocket"}') == 1
        assert await metric(server, 'clients_by_transport{transport="webtransport"}') == 1
        assert await metric(server, "webtransport_sessions") == 1
        wt.send_datagram(OPUS)
        await asyncio.wait_for(ws.recv(), 5)  # "connected"
        assert await asyncio.wait_for(ws.recv(), 5) == OPUS
        await ws.send(OPUS)
        assert await wt.datagram() == OPUS
    assert await metric(server, 'webtransport_datagrams_total{direction="received"}') == 1
    assert await metric(server, 'webtransport_datagrams_total{direction="sent"}') == 1
    await ws.close()


async def test_off_without_the_option():
    """Without config.webtransport nothing listens on UDP, and the offer is a 404 that says to use the WebSocket."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0)) as server:
        reply = await http_request(server, "/webtransport.json")
        assert server.webtransport is None
        assert reply.status == 404 and b"WebSocket" in reply.body
