"""Loss reports ({"type": "loss"}): a page that loses audio tells whoever sends it audio, through the server, over
either transport, with real WebSocket clients and raw WebTransport clients (tests/wt_client.py). The server passes
on its own constant message to the partner, or to every other member of a group room, and nothing else; a report
with anything more, one outside a call, or one sooner than a second after the last gets an error and reaches nobody.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest

import duoduel
from conftest import Running, join, join_pair, metric, receive_json, round_trip
from core.lobby import BAD_LOSS, LOSS_ALONE, LOSS_TOO_OFTEN
from wt_client import Session, open_session

pytestmark = pytest.mark.timeout(60)

LOSS = json.dumps({"type": "loss"})


@pytest.fixture
def config() -> duoduel.Config:
    return duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, room_size=3)


@contextlib.asynccontextmanager
async def webtransport_page(server: Running, query: str = "") -> AsyncIterator[Session]:
    """A WebTransport page in the lobby (or a room): its session open, its first ping sent as a page's link does."""
    endpoint = server.webtransport
    async with open_session(endpoint.port, f"/wt{query}", endpoint.certificate) as session:
        session.send_line(json.dumps({"type": "ping", "t": 0}))
        yield session


async def told(session: Session) -> dict:
    """The next control message on a WebTransport session, passing over the pong to its first ping."""
    while (message := json.loads(await session.line())) == {"type": "pong", "t": 0}:
        pass
    return message


async def before_pong(session: Session, t: float = 1) -> list[dict]:
    """Ping through the server over WebTransport; what arrived before the pong (everything sent to it before)."""
    session.send_line(json.dumps({"type": "ping", "t": t}))
    before = []
    while (message := await told(session)) != {"type": "pong", "t": t}:
        before.append(message)
    return before


async def test_loss_report_from_a_webtransport_page_reaches_its_websocket_partner(server):
    """A WebTransport page reports loss: its WebSocket partner gets {"type": "loss"}, the reporter nothing back, and
    /metrics counts the report."""
    ann, told_ann = await join(server)
    assert told_ann == {"type": "waiting"}
    async with webtransport_page(server) as bob:
        assert await told(bob) == {"type": "connected"}
        assert await receive_json(ann) == {"type": "connected"}
        bob.send_line(LOSS)
        assert await receive_json(ann) == {"type": "loss"}
        assert await before_pong(bob) == []
        assert await metric(server, "loss_reports_total") == 1
    await ann.close()


async def test_loss_report_from_a_websocket_page_reaches_its_webtransport_partner(server):
    """The other way: a WebSocket page's report reaches its partner over WebTransport, on the control stream."""
    async with webtransport_page(server) as ann:
        assert await told(ann) == {"type": "waiting"}
        bob, told_bob = await join(server)
        assert told_bob == {"type": "connected"}
        assert await told(ann) == {"type": "connected"}
        await bob.send(LOSS)
        assert await told(ann) == {"type": "loss"}
        assert await round_trip(bob) == []
        await bob.close()


async def test_loss_report_in_a_group_room_reaches_every_other_member(server):
    """In a group room of both transports, one member's report goes to each of the others (each sends it audio)."""
    ann, told_ann = await join(server, "?room=lossy")
    assert told_ann["type"] == "room"
    async with webtransport_page(server, "?room=lossy") as bob:
        cyd, told_cyd = await join(server, "?room=lossy")
        assert told_cyd["type"] == "room"
        await cyd.send(LOSS)
        assert [m for m in await round_trip(ann) if m == LOSS] == [LOSS]
        assert [m for m in await before_pong(bob) if m["type"] == "loss"] == [{"type": "loss"}]
        assert LOSS not in await round_trip(cyd)
        await cyd.close()
    await ann.close()


async def test_loss_report_with_anything_more_is_refused_and_reaches_nobody(server):
    """A report that carries anything besides its type gets an error naming the one form, and the partner hears of
    nothing: the server never passes on what a client wrote."""
    ann, bob = await join_pair(server)
    await bob.send(json.dumps({"type": "loss", "from": "x" * 2000}))
    assert await receive_json(bob) == {"type": "error", "reason": BAD_LOSS}
    assert await round_trip(ann) == []
    await bob.send(LOSS)  # the connection lives on, and a good report goes through
    assert await receive_json(ann) == {"type": "loss"}
    await ann.close()
    await bob.close()


async def test_loss_report_outside_a_call_is_refused(server):
    """Waiting alone, nobody sends the client audio: its report gets an error, and the connection lives on."""
    async with webtransport_page(server) as ann:
        assert await told(ann) == {"type": "waiting"}
        ann.send_line(LOSS)
        assert await told(ann) == {"type": "error", "reason": LOSS_ALONE}
        assert await before_pong(ann) == []
    assert await metric(server, "loss_reports_total") == 0


async def test_loss_reports_faster_than_once_a_second_pass_on_one(server):
    """Two reports at once: the first reaches the partner, the second gets an error and reaches nobody."""
    ann, bob = await join_pair(server)
    await bob.send(LOSS)
    await bob.send(LOSS)
    assert await receive_json(bob) == {"type": "error", "reason": LOSS_TOO_OFTEN}
    assert await round_trip(ann) == [LOSS]
    assert await metric(server, "loss_reports_total") == 1
    await ann.close()
    await bob.close()
