"""Pairing, relay, next and control messages, seen from real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import health, join, join_pair, receive_json, round_trip, settle


async def test_first_client_is_told_to_wait(server):
    """The first arrival gets {"type": "waiting"}."""
    websocket, told = await join(server)
    assert told == {"type": "waiting"}
    await websocket.close()


async def test_second_client_is_paired_with_the_waiting_one(server):
    """The next arrival is paired with the waiting client and both are told."""
    first, second = await join_pair(server)
    assert await health(server) == {"up": True, "clients": 2, "waiting": 0, "pairs": 1, "rooms": 0, "groups": 0, "group_members": 0, "held": 0, "resumes": 0}
    await first.close()
    await second.close()


async def test_third_client_waits_while_two_talk(server):
    """A pair is closed to newcomers: the third arrival waits."""
    first, second = await join_pair(server)
    third, told = await join(server)
    assert told == {"type": "waiting"}
    for websocket in (first, second, third):
        await websocket.close()


async def test_partner_is_told_when_the_other_leaves(server):
    """When one leaves, the other gets {"type": "disconnected"} and stays connected."""
    first, second = await join_pair(server)
    await second.close()
    assert await receive_json(first) == {"type": "disconnected"}
    assert await round_trip(first) == []
    await first.close()


async def test_partner_is_told_when_the_other_drops_without_closing(server):
    """A partner whose connection just dies (no close frame) is noticed too."""
    first, second = await join_pair(server)
    second.transport.abort()
    assert await receive_json(first) == {"type": "disconnected"}
    await first.close()


async def test_waiting_client_that_leaves_frees_the_slot(server):
    """A newcomer is never paired with a client that left the waiting slot."""
    stale, _ = await join(server)
    stale.transport.abort()
    await settle(server, clients=0, waiting=0)
    newcomer, told = await join(server)
    assert told == {"type": "waiting"}
    await newcomer.close()


async def test_fifty_clients_arriving_at_once_are_all_paired(server):
    """50 simultaneous arrivals form 25 pairs: nobody twice, nobody with themself, nobody left waiting."""
    clients = await asyncio.gather(*(connect(server.ws_url()) for _ in range(50)))
    for websocket in clients:
        told = await receive_json(websocket)
        if told == {"type": "waiting"}:
            told = await receive_json(websocket)
        assert told == {"type": "connected"}
    # Each client names itself to whoever hears it.
    for index, websocket in enumerate(clients):
        await websocket.send(index.to_bytes(2, "big"))
    heard = {}
    for index, websocket in enumerate(clients):
        heard[index] = int.from_bytes(await asyncio.wait_for(websocket.recv(), 5), "big")
    assert all(heard[heard[index]] == index and heard[index] != index for index in heard)
    assert await health(server) == {"up": True, "clients": 50, "waiting": 0, "pairs": 25, "rooms": 0, "groups": 0, "group_members": 0, "held": 0, "resumes": 0}
    for websocket in clients:
        assert await round_trip(websocket) == [], "a client heard more than its partner"
    for websocket in clients:
        await websocket.close()


async def test_frames_reach_the_partner_verbatim_and_nobody_else(server):
    """Binary frames go to the partner, byte for byte, and never to another pair."""
    a1, b1 = await join_pair(server)
    a2, b2 = await join_pair(server)
    frame = bytes(range(256)) * 4
    await a1.send(frame)
    assert await b1.recv() == frame
    await b2.send(b"pair two")
    assert await a2.recv() == b"pair two"
    for websocket in (a1, b1, a2, b2):
        assert await round_trip(websocket) == []
    for websocket in (a1, b1, a2, b2):
        await websocket.close()


async def test_frames_from_a_waiting_client_go_nowhere(server):
    """A client alone in the lobby can send audio: nobody hears it, nothing breaks."""
    alone, _ = await join(server)
    await alone.send(b"\x00" * 100)
    other, told = await join(server)
    assert told == {"type": "connected"}
    assert await receive_json(alone) == {"type": "connected"}
    assert await round_trip(other) == []
    await alone.close()
    await other.close()


async def test_next_ends_the_call_and_pairs_with_the_waiting_client(server):
    """Next tells the partner "disconnected" and pairs the client with whoever waits."""
    first, second = await join_pair(server)
    third, _ = await join(server)
    await first.send(json.dumps({"type": "next"}))
    assert await receive_json(second) == {"type": "disconnected"}
    assert await receive_json(first) == {"type": "connected"}
    assert await receive_json(third) == {"type": "connected"}
    await first.send(b"hello third")
    assert await third.recv() == b"hello third"
    assert await round_trip(second) == []
    for websocket in (first, second, third):
        await websocket.close()


async def test_next_with_nobody_waiting_waits(server):
    """Next when nobody else is around puts the client back in the waiting slot."""
    first, second = await join_pair(server)
    await first.send(json.dumps({"type": "next"}))
    assert await receive_json(first) == {"type": "waiting"}
    assert await receive_json(second) == {"type": "disconnected"}
    await second.send(json.dumps({"type": "next"}))
    assert await receive_json(second) == {"type": "connected"}
    assert await receive_json(first) == {"type": "connected"}
    await first.close()
    await second.close()


async def test_client_whose_partner_left_finds_a_new_one_with_next(server):
    """After "disconnected", next finds a new partner (here, a newcomer who waits)."""
    first, second = await join_pair(server)
    await second.close()
    assert await receive_json(first) == {"type": "disconnected"}
    newcomer, told = await join(server)
    assert told == {"type": "waiting"}
    await first.send(json.dumps({"type": "next"}))
    assert await receive_json(first) == {"type": "connected"}
    assert await receive_json(newcomer) == {"type": "connected"}
    await first.close()
    await newcomer.close()


async def test_next_while_waiting_keeps_waiting(server):
    """Pressing Next again while waiting changes nothing."""
    alone, _ = await join(server)
    await alone.send(json.dumps({"type": "next"}))
    assert await receive_json(alone) == {"type": "waiting"}
    assert (await health(server))["waiting"] == 1
    await alone.close()


async def test_ping_is_answered_with_the_same_t(server):
    """{"type": "ping", "t": x} comes back as {"type": "pong", "t": x}."""
    websocket, _ = await join(server)
    await websocket.send(json.dumps({"type": "ping", "t": 1234.5}))
    assert await receive_json(websocket) == {"type": "pong", "t": 1234.5}
    await websocket.close()


async def test_pong_carries_the_partners_path_once_the_partner_has_told_it(server):
    """A page that pings with its path (half its least round trip) lets its partner's pongs carry it."""
    first, second = await join_pair(server)
    await second.send(json.dumps({"type": "ping", "t": 1}))
    assert await receive_json(second) == {"type": "pong", "t": 1}, "nobody has told a path yet"
    await first.send(json.dumps({"type": "ping", "t": 2, "path": 12.5}))
    assert await receive_json(first) == {"type": "pong", "t": 2}
    await second.send(json.dumps({"type": "ping", "t": 3, "path": 0.5}))
    assert await receive_json(second) == {"type": "pong", "t": 3, "partner_path": 12.5}
    await first.send(json.dumps({"type": "ping", "t": 4}))
    assert await receive_json(first) == {"type": "pong", "t": 4, "partner_path": 0.5}
    await first.close()
    await second.close()


# A key message as a page could send it, with what a server that re-encoded it would change: spacing, key order,
# escapes, a field it does not know, text beyond ASCII.
KEY_MESSAGE = '{ "public":"BPk\\u002d_x", "type" : "key", "extra": [1, 2.50], "note": "clé ✓" }'


async def test_key_message_reaches_the_partner_byte_for_byte_and_nobody_else(server):
    """A lobby call's key message goes to the partner exactly as sent, up to 256 characters, and to no one else."""
    a1, b1 = await join_pair(server)
    a2, b2 = await join_pair(server)
    longest = '{"type":"key","public":"' + "A" * (256 - 26) + '"}'
    assert len(longest) == 256
    for text in (KEY_MESSAGE, longest):
        await a1.send(text)
        assert await b1.recv(decode=False) == text.encode()
    await b1.send(KEY_MESSAGE)
    assert await a1.recv(decode=False) == KEY_MESSAGE.encode()
    for websocket in (a1, b1, a2, b2):
        assert await round_trip(websocket) == []
    for websocket in (a1, b1, a2, b2):
        await websocket.close()


async def test_key_message_without_a_partner_is_refused(server):
    """Alone in the lobby, or once the partner has left, a key message gets an error and reaches nobody."""
    refused = {"type": "error", "reason": "key needs a partner: you are not in a call of two"}
    alone, _ = await join(server)
    await alone.send(KEY_MESSAGE)
    assert await receive_json(alone) == refused
    partner, told = await join(server)
    assert told == {"type": "connected"}
    assert await receive_json(alone) == {"type": "connected"}
    await partner.close()
    assert await receive_json(alone) == {"type": "disconnected"}
    await alone.send(KEY_MESSAGE)
    assert await receive_json(alone) == refused
    await alone.close()


async def test_oversize_key_message_is_refused_and_the_call_goes_on(server):
    """A key message of more than 256 characters gets an error; the partner gets nothing and the call goes on."""
    first, second = await join_pair(server)
    await first.send('{"type":"key","public":"' + "A" * (257 - 26) + '"}')
    assert await receive_json(first) == {"type": "error", "reason": "a key message is at most 256 characters"}
    await first.send(b"still talking")
    assert await second.recv() == b"still talking"
    assert await round_trip(second) == [], "the partner was told something"
    await first.close()
    await second.close()


BAD_CONTROL_MESSAGES = {
    "not json": "malformed JSON",
    "": "malformed JSON",
    "[1, 2]": "expected a JSON object",
    "null": "expected a JSON object",
    '{"kind": "next"}': "expected a JSON object",
    '{"type": 7}': "expected a JSON object",
    '{"type": "dance"}': "unknown message type 'dance'",
    '{"type": "ping", "t": "soon"}': "ping needs a number",
    '{"type": "ping"}': "ping needs a number",
    '{"type": "ping", "t": 1, "path": -3}': "ping's \"path\" must be a number of ms",
    '{"type": "ping", "t": 1, "path": "near"}': "ping's \"path\" must be a number of ms",
    '{"type": "ping", "t": 1, "path": 1e9}': "ping's \"path\" must be a number of ms",
}


async def test_malformed_control_messages_get_an_error_and_the_connection_lives(server):
    """Each bad control message is answered with an error; the call goes on unharmed."""
    first, second = await join_pair(server)
    for text, reason in BAD_CONTROL_MESSAGES.items():
        await first.send(text)
        told = await receive_json(first)
        assert told["type"] == "error" and told["reason"].startswith(reason), (text, told)
    await first.send(b"still talking")
    assert await second.recv() == b"still talking"
    assert await round_trip(second) == [], "the partner was told something"
    await first.close()
    await second.close()


@pytest.mark.parametrize("path, status", [("/wss", 404), ("/ws/", 404), ("/index.html", 200), ("/ws/../ws", 404)])
async def test_only_ws_becomes_a_websocket(server, path, status):
    """A handshake on any other path gets a plain HTTP answer, not an upgrade."""
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"ws://{server.host}:{server.port}{path}")
    assert caught.value.response.status_code == status


async def test_log_has_a_line_per_connect_pair_and_disconnect_and_no_audio(server, caplog):
    """The operator's log: one line each for connect, pair and disconnect; payloads never appear."""
    caplog.set_level(logging.INFO, logger="duoduel")
    first, second = await join_pair(server)
    await first.send(b"SECRET-AUDIO")
    assert await second.recv() == b"SECRET-AUDIO"
    await first.close()
    await second.close()
    await settle(server, clients=0)
    lines = [record.getMessage() for record in caplog.records if record.name == "duoduel"]
    assert sum(" connected from 127.0.0.1" in line for line in lines) == 2
    assert sum(" paired with " in line for line in lines) == 1
    assert sum(" disconnected (" in line for line in lines) == 2
    assert not any("SECRET" in line for line in lines)
