"""Private rooms of two (--room-size 2): a shared link pairs two people with each other and nobody else."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import duoduel
from conftest import health, http_request, join, join_pair, receive_json, round_trip, settle


@pytest.fixture
def config() -> duoduel.Config:
    """Rooms of two: a private room is a private call, exactly as before group rooms."""
    return duoduel.Config(host="127.0.0.1", port=0, room_size=2)


async def test_two_people_in_a_room_are_paired_with_each_other(server):
    """Room members pair with each other even while someone waits in the lobby."""
    lobby_waiter, told = await join(server)
    assert told == {"type": "waiting"}
    first, told = await join(server, "?room=kitchen")
    assert told == {"type": "waiting"}
    second, told = await join(server, "?room=kitchen")
    assert told == {"type": "connected"}
    assert await receive_json(first) == {"type": "connected"}
    assert await round_trip(lobby_waiter) == [], "the lobby heard about the room"
    for websocket in (lobby_waiter, first, second):
        await websocket.close()


async def test_rooms_and_the_lobby_never_cross(server):
    """Two rooms and the lobby at once: every frame stays inside its own pair."""
    pairs = {query: await join_pair(server, query) for query in ("", "?room=red", "?room=blue")}
    for query, (first, _) in pairs.items():
        await first.send(f"from {query or 'lobby'}".encode())
    for query, (_, second) in pairs.items():
        assert await second.recv() == f"from {query or 'lobby'}".encode()
    for first, second in pairs.values():
        assert await round_trip(first) == [] and await round_trip(second) == []
    assert await health(server) == {"up": True, "clients": 6, "waiting": 0, "pairs": 3, "rooms": 2, "groups": 0, "group_members": 0, "held": 0, "resumes": 0}
    for first, second in pairs.values():
        await first.close()
        await second.close()


async def test_third_person_in_a_room_is_told_it_is_full(server):
    """A room holds two: a third gets "room full" and is closed with 1008; the call goes on."""
    first, second = await join_pair(server, "?room=duo")
    third = await connect(server.ws_url("?room=duo"))
    assert await receive_json(third) == {"type": "error", "reason": "room full"}
    with pytest.raises(ConnectionClosed):
        await third.recv()
    assert third.close_code == 1008 and third.close_reason == "room full"
    await first.send(b"still here")
    assert await second.recv() == b"still here"
    await first.close()
    await second.close()


async def test_room_waits_for_the_next_arrival_after_one_leaves(server):
    """When one leaves, the other is told and waits in the room; a newcomer pairs with it."""
    first, second = await join_pair(server, "?room=den")
    await second.close()
    assert await receive_json(first) == {"type": "disconnected"}
    assert await receive_json(first) == {"type": "waiting"}
    newcomer, told = await join(server, "?room=den")
    assert told == {"type": "connected"}
    assert await receive_json(first) == {"type": "connected"}
    await first.close()
    await newcomer.close()


async def test_next_in_a_room_waits_in_the_same_room(server):
    """Next inside a room ends the call and waits there, never in the lobby."""
    lobby_waiter, _ = await join(server)
    first, second = await join_pair(server, "?room=attic")
    await first.send(json.dumps({"type": "next"}))
    assert await receive_json(first) == {"type": "waiting"}
    assert await receive_json(second) == {"type": "disconnected"}
    assert await round_trip(lobby_waiter) == [], "next in a room paired someone from the lobby"
    await second.send(json.dumps({"type": "next"}))
    assert await receive_json(second) == {"type": "connected"}
    assert await receive_json(first) == {"type": "connected"}
    for websocket in (lobby_waiter, first, second):
        await websocket.close()


@pytest.mark.parametrize(
    "query",
    ["?room=", "?room=a%20b", "?room=" + "x" * 65, "?room=caf%C3%A9", "?room=a/b", "?room=a&room=b", "?room=..%2f"],
)
async def test_bad_room_names_are_refused_with_a_clear_error(server, query):
    """A handshake for a badly named room gets HTTP 400 saying what a name may be."""
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.ws_url(query))
    assert caught.value.response.status_code == 400
    assert caught.value.response.body == b"bad room name: use 1 to 64 letters, digits, '-' or '_'\n"


@pytest.mark.parametrize("path", ["/r/a%20b", "/r/" + "x" * 65, "/r/", "/r/a/b"])
async def test_bad_room_pages_are_refused_with_a_clear_error(server, path):
    reply = await http_request(server, path)
    assert reply.status in (400, 404)
    assert reply.status == 404 or reply.body.startswith(b"bad room name")


async def test_longest_room_name_works(server):
    """64 characters of the allowed alphabet is a valid room."""
    name = ("Az09-_" * 11)[:64]
    first, second = await join_pair(server, f"?room={name}")
    assert (await http_request(server, f"/r/{name}")).status == 200
    await first.close()
    await second.close()


async def test_empty_rooms_leave_no_state_behind(server):
    """Once everyone has left, the server holds nothing for any room."""
    for name in ("one", "two", "three"):
        first, second = await join_pair(server, f"?room={name}")
        await first.close()
        await second.close()
    alone, _ = await join(server, "?room=four")
    alone.transport.abort()
    await settle(server, clients=0, waiting=0, pairs=0, rooms=0)
