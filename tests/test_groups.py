"""Group rooms: up to --room-size people in a private room, everyone hearing everyone (issue 12).

Each frame a member sends reaches every other member of its room, once, behind a one-byte
slot the server writes; the member list comes on join, then joined, left and label notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import duoduel
from core.config import MAX_LABEL, MAX_MESSAGES_PER_SECOND, MAX_MESSAGE_BYTES
from conftest import FRAME, frozen_client, health, join, join_pair, metric, receive_json, round_trip, run_command, settle

ROOM_SIZE = 8


@pytest.fixture
def config() -> duoduel.Config:
    """A server whose private rooms hold eight."""
    return duoduel.Config(host="127.0.0.1", port=0, room_size=ROOM_SIZE)


@dataclass(eq=False)
class Member:
    """A client in a group room and the slot the server gave it."""

    websocket: ClientConnection
    slot: int
    told: dict


async def enter(running, room: str) -> Member:
    """Join a group room: the member list first, then waiting (alone) or connected."""
    websocket, told = await join(running, f"?room={room}")
    assert told["type"] == "room", told
    assert await receive_json(websocket) == {"type": "connected" if told["members"] else "waiting"}
    return Member(websocket, told["slot"], told)


async def fill(running, room: str, count: int) -> list[Member]:
    """Bring count members into the room one by one, checking that those inside hear of each."""
    members: list[Member] = []
    for _ in range(count):
        newcomer = await enter(running, room)
        for member in members:
            assert await receive_json(member.websocket) == {
                "type": "joined", "slot": newcomer.slot, "label": f"Guest {newcomer.slot + 1}"
            }
            if len(members) == 1:  # the one who waited alone is in a call now
                assert await receive_json(member.websocket) == {"type": "connected"}
        members.append(newcomer)
    return members


async def flush(websockets: list[ClientConnection]) -> dict[ClientConnection, list]:
    """Everything sent so far has been handled and has arrived: ping every client twice, return what came."""
    heard: dict[ClientConnection, list] = {websocket: [] for websocket in websockets}
    for t in (1, 2):  # the first round: the server has relayed all; the second: all has arrived
        for websocket in websockets:
            heard[websocket] += await round_trip(websocket, t)
    return heard


async def close_all(*groups) -> None:
    for group in groups:
        for member in group:
            await (member.websocket if isinstance(member, Member) else member).close()


async def test_first_member_gets_an_empty_member_list_and_waits(server):
    """Alone in a group room: slot 0, the default label, the room's size, nobody else, waiting."""
    websocket, told = await join(server, "?room=g")
    assert told == {"type": "room", "slot": 0, "label": "Guest 1", "size": ROOM_SIZE, "members": []}
    assert await receive_json(websocket) == {"type": "waiting"}
    await websocket.close()


async def test_newcomer_gets_the_member_list_and_everyone_hears_of_it(server):
    """The third arrival is told who is there; the two inside are told it joined, and nothing more."""
    first, second = await fill(server, "g", 2)
    third, told = await join(server, "?room=g")
    assert told == {
        "type": "room", "slot": 2, "label": "Guest 3", "size": ROOM_SIZE,
        "members": [{"slot": 0, "label": "Guest 1"}, {"slot": 1, "label": "Guest 2"}],
    }
    assert await receive_json(third) == {"type": "connected"}
    for member in (first, second):
        assert await round_trip(member.websocket) == ['{"type": "joined", "slot": 2, "label": "Guest 3"}']
    await close_all([first, second, third])


async def test_eight_in_a_room_each_frame_reaches_the_seven_others_once_marked_with_its_sender(server):
    """Every member sends five frames: each member hears each other member's five, in order, behind
    that member's slot, and never its own; the lobby and another room hear nothing."""
    group = await fill(server, "g", ROOM_SIZE)
    assert sorted(member.slot for member in group) == list(range(ROOM_SIZE))
    other_room = await fill(server, "h", 2)
    lobby = await join_pair(server)
    tokens = {member: os.urandom(8) for member in group}
    outsiders = [member.websocket for member in other_room] + list(lobby)
    heard: dict[ClientConnection, list] = {websocket: [] for websocket in [m.websocket for m in group] + outsiders}
    for seq in range(5):  # one round at a time, as audio comes: 20 ms apart, not a burst of 40 frames
        for member in group:
            await member.websocket.send(tokens[member] + bytes([seq]) + FRAME)
        for websocket, messages in (await flush(list(heard))).items():
            heard[websocket] += messages
    for receiver in group:
        expected = sorted(
            bytes([sender.slot]) + tokens[sender] + bytes([seq]) + FRAME
            for sender in group if sender is not receiver for seq in range(5)
        )
        assert sorted(heard[receiver.websocket]) == expected, f"slot {receiver.slot} heard the wrong frames"
        for sender in group:  # each sender's frames in the order sent
            mine = [frame[9] for frame in heard[receiver.websocket] if frame[1:9] == tokens[sender]]
            assert mine == ([] if sender is receiver else list(range(5)))
    for websocket in outsiders:
        assert heard[websocket] == [], "a group's frame reached someone outside the room"
    assert await metric(server, "frames_relayed_total") == ROOM_SIZE * (ROOM_SIZE - 1) * 5
    await close_all(group, other_room, lobby)


async def test_ninth_is_told_the_room_is_full_and_nobody_inside_hears_of_it(server):
    """Past --room-size: "room full" and close 1008, as for a third in a room of two; the room goes on."""
    group = await fill(server, "g", ROOM_SIZE)
    ninth = await connect(server.ws_url("?room=g"))
    assert await receive_json(ninth) == {"type": "error", "reason": "room full"}
    with pytest.raises(ConnectionClosed):
        await ninth.recv()
    assert ninth.close_code == 1008 and ninth.close_reason == "room full"
    assert await metric(server, 'rejections_total{reason="room_full"}') == 1
    await group[0].websocket.send(b"still here")
    heard = await flush([member.websocket for member in group])
    assert all(heard[member.websocket] == [bytes([group[0].slot]) + b"still here"] for member in group[1:])
    assert heard[group[0].websocket] == []
    await close_all(group)


async def test_member_who_leaves_is_announced_and_its_slot_goes_to_the_next_arrival(server):
    """The rest are told left with the slot, and nothing else; a newcomer gets the lowest free slot."""
    first, second, third = await fill(server, "g", 3)
    await second.websocket.close()
    for member in (first, third):
        assert await round_trip(member.websocket) == ['{"type": "left", "slot": 1}']
    newcomer = await enter(server, "g")
    assert newcomer.slot == 1
    assert newcomer.told["members"] == [{"slot": 0, "label": "Guest 1"}, {"slot": 2, "label": "Guest 3"}]
    await newcomer.websocket.send(b"new voice")
    heard = await flush([first.websocket, third.websocket])
    assert heard[first.websocket][-1] == heard[third.websocket][-1] == b"\x01new voice"
    await close_all([first, third, newcomer])


async def test_last_member_left_alone_is_told_disconnected_then_waits(server):
    """With one left, the room behaves as a room of two: left, disconnected, waiting; a newcomer connects it."""
    first, second = await fill(server, "g", 2)
    await second.websocket.close()
    assert await receive_json(first.websocket) == {"type": "left", "slot": 1}
    assert await receive_json(first.websocket) == {"type": "disconnected"}
    assert await receive_json(first.websocket) == {"type": "waiting"}
    await settle(server, clients=1, waiting=1, groups=0)
    newcomer = await enter(server, "g")
    assert await receive_json(first.websocket) == {"type": "joined", "slot": 1, "label": "Guest 2"}
    assert await receive_json(first.websocket) == {"type": "connected"}
    await close_all([first, newcomer])


async def test_forged_sender_mark_is_ignored(server):
    """A member that starts its frame with another's slot is still marked as itself."""
    first, second, third = await fill(server, "g", 3)
    await third.websocket.send(bytes([first.slot]) + b"I am slot 0")
    heard = await flush([first.websocket, second.websocket])
    assert heard[first.websocket] == heard[second.websocket] == [bytes([third.slot, first.slot]) + b"I am slot 0"]
    await close_all([first, second, third])


async def test_largest_allowed_message_is_relayed_with_its_mark(server):
    """A 64 KiB frame plus the slot needs the 8-byte length form: it arrives whole."""
    first, second = await fill(server, "g", 2)
    payload = os.urandom(MAX_MESSAGE_BYTES)
    await first.websocket.send(payload)
    assert await second.websocket.recv() == b"\x00" + payload
    await close_all([first, second])


async def test_fragmented_frame_is_relayed_whole_with_its_mark(server):
    """A binary message in fragments (websockets parses it, not the fast path) is marked too."""
    first, second = await fill(server, "g", 2)
    await second.websocket.send([b"first half, ", b"second half"])
    assert await first.websocket.recv() == b"\x01first half, second half"
    await close_all([first, second])


async def test_label_is_shown_to_the_whole_room_as_sent(server):
    """A label is any text up to 32 characters: everyone, the member included, gets it verbatim, and newcomers see it."""
    first, second, third = await fill(server, "g", 3)
    for label in ("Zoë <b>&amp;</b>", "🎧" * MAX_LABEL):
        await second.websocket.send(json.dumps({"type": "label", "label": label}))
        for member in (first, second, third):
            assert await receive_json(member.websocket) == {"type": "label", "slot": 1, "label": label}
    newcomer = await enter(server, "g")
    assert {"slot": 1, "label": "🎧" * MAX_LABEL} in newcomer.told["members"]
    await close_all([first, second, third, newcomer])


@pytest.mark.parametrize(
    "message",
    [
        {"type": "label", "label": "x" * (MAX_LABEL + 1)},
        {"type": "label", "label": ""},
        {"type": "label", "label": 42},
        {"type": "label", "label": None},
        {"type": "label", "label": ["Ann"]},
        {"type": "label"},
    ],
)
async def test_bad_label_gets_a_clear_error_and_changes_nothing(server, message):
    """Too long, empty, or not text: that member is told what a label may be; nobody else hears of it."""
    first, second = await fill(server, "g", 2)
    await first.websocket.send(json.dumps(message))
    assert await receive_json(first.websocket) == {"type": "error", "reason": "label must be text of 1 to 32 characters"}
    await first.websocket.send(b"still talking")
    heard = await flush([first.websocket, second.websocket])
    assert heard == {first.websocket: [], second.websocket: [b"\x00still talking"]}
    newcomer = await enter(server, "g")
    assert newcomer.told["members"][0] == {"slot": 0, "label": "Guest 1"}
    await close_all([first, second, newcomer])


async def test_label_outside_a_group_room_is_refused(server):
    """In the lobby nobody is shown a label: a clear error, and the client stays."""
    websocket, _ = await join(server)
    await websocket.send(json.dumps({"type": "label", "label": "Ann"}))
    assert await receive_json(websocket) == {"type": "error", "reason": "label works only in a group room"}
    assert await round_trip(websocket) == []
    await websocket.close()


async def test_next_in_a_group_room_is_refused_and_changes_nothing(server):
    first, second = await fill(server, "g", 2)
    await first.websocket.send(json.dumps({"type": "next"}))
    assert await receive_json(first.websocket) == {
        "type": "error", "reason": "next does nothing in a group room: everyone in it hears you already"
    }
    assert await round_trip(second.websocket) == []
    await close_all([first, second])


async def test_key_message_in_a_group_room_is_refused_and_reaches_nobody(server):
    """A room of more than two shares its key in its link: a key message gets an error and goes to no member."""
    first, second, third = await fill(server, "g", 3)
    await first.websocket.send('{"type":"key","public":"BPk"}')
    assert await receive_json(first.websocket) == {
        "type": "error", "reason": "key needs a partner: you are not in a call of two"
    }
    heard = await flush([second.websocket, third.websocket])
    assert all(messages == [] for messages in heard.values()), heard
    await close_all([first, second, third])


async def test_frozen_member_costs_the_others_nothing(server):
    """A member that stops reading loses its own audio only: the others get every frame, in order,
    and the talker is answered at once."""
    talker, listener = await fill(server, "g", 2)
    frozen = await frozen_client(server, "?room=g")
    for member in (talker, listener):
        assert await receive_json(member.websocket) == {"type": "joined", "slot": 2, "label": "Guest 3"}

    async def listen() -> list[bytes]:
        return [await asyncio.wait_for(listener.websocket.recv(), 5) for _ in range(200)]

    listening = asyncio.create_task(listen())
    for seq in range(200):  # 4 s of audio at four times its pace
        await talker.websocket.send(seq.to_bytes(4, "big") + FRAME)
        await asyncio.sleep(0.005)  # paces the talker (four times a page's rate) so the listener keeps up
    assert await round_trip(talker.websocket) == [], "the talker was not answered while a member froze"
    assert await listening == [b"\x00" + seq.to_bytes(4, "big") + FRAME for seq in range(200)]
    assert await metric(server, "frames_dropped_total") >= 150
    await listener.websocket.send(b"back to you")
    assert await talker.websocket.recv() == b"\x01back to you"
    await close_all([talker, listener])
    frozen.transport.abort()


STALL_TIMEOUT = 1.0


@pytest.mark.parametrize("config", [duoduel.Config(host="127.0.0.1", port=0, room_size=ROOM_SIZE, stall_timeout=STALL_TIMEOUT)])
async def test_member_stalled_for_the_stall_timeout_is_closed_and_the_others_told_it_left(server):
    """A member that takes nothing for the stall timeout is closed with 1011; the others lose nothing meanwhile."""
    talker, listener = await fill(server, "g", 2)
    frozen = await frozen_client(server, "?room=g")
    for member in (talker, listener):
        assert await receive_json(member.websocket) == {"type": "joined", "slot": 2, "label": "Guest 3"}

    async def talk():
        for seq in range(10_000):
            # Opus-sized frames, so the frozen member's kernel buffers fill in seconds, as in a call
            await talker.websocket.send(seq.to_bytes(4, "big") + bytes(116))
            await asyncio.sleep(0.02)  # paces the talker as a page does

    talking = asyncio.create_task(talk())
    heard = []
    try:
        while isinstance(message := await asyncio.wait_for(listener.websocket.recv(), STALL_TIMEOUT + 5), bytes):
            heard.append(int.from_bytes(message[1:5], "big"))
    finally:
        talking.cancel()
    assert json.loads(message) == {"type": "left", "slot": 2}
    assert heard == list(range(len(heard))) and len(heard) >= STALL_TIMEOUT * 40
    assert await receive_json(talker.websocket) == {"type": "left", "slot": 2}
    assert await metric(server, 'closes_total{reason="stalled"}') == 1
    await close_all([talker, listener])
    frozen.transport.abort()


async def test_flooding_member_is_closed_and_the_rest_talk_on(server):
    """One member's flood closes that member only (1008); the others are told it left and still hear each other."""
    first, second, flooder = await fill(server, "g", 3)

    async def read_everything():
        with contextlib.suppress(ConnectionClosed):
            async for _ in flooder.websocket:
                pass

    reading = asyncio.create_task(read_everything())
    with contextlib.suppress(ConnectionClosed):
        for _ in range(5 * MAX_MESSAGES_PER_SECOND):
            await flooder.websocket.send(b"flood")
    await asyncio.wait_for(reading, 5)
    assert flooder.websocket.close_code == 1008 and flooder.websocket.close_reason == "too many messages"
    await first.websocket.send(b"still here")
    heard = await flush([first.websocket, second.websocket])
    for member, other in ((first, second), (second, first)):
        assert '{"type": "left", "slot": 2}' in heard[member.websocket]
        assert all(message == b"\x02flood" for message in heard[member.websocket][:-1] if isinstance(message, bytes))
    assert heard[second.websocket][-1] == b"\x00still here"
    await close_all([first, second])


async def test_health_and_metrics_count_group_calls_and_their_members(server):
    """A group room of two or more is one group call; a lone member waits; a frame counts once per receiver."""
    group = await fill(server, "g", 3)
    lone = await enter(server, "alone")
    lobby = await join_pair(server)
    assert await health(server) == {
        "up": True, "clients": 6, "waiting": 1, "pairs": 1, "rooms": 2, "groups": 1, "group_members": 3, "held": 0, "resumes": 0
    }
    await group[0].websocket.send(FRAME)
    await flush([member.websocket for member in group])
    assert await metric(server, "groups") == 1
    assert await metric(server, "group_members") == 3
    assert await metric(server, "groups_total") == 1
    assert await metric(server, "frames_relayed_total") == 2
    assert await metric(server, "bytes_relayed_total") == 2 * (len(FRAME) + 1)
    await close_all(group, [lone], lobby)
    await settle(server, clients=0, waiting=0, pairs=0, rooms=0, groups=0, group_members=0)


async def test_room_size_two_on_the_command_line_makes_rooms_private_calls(start_process):
    """--room-size 2: no member list, no marks, and a third is refused, exactly as before group rooms."""
    process = start_process("--room-size", "2")
    first, second = await join_pair(process.running, "?room=duo")
    await first.send(b"unmarked")
    assert await second.recv() == b"unmarked"
    third = await connect(process.running.ws_url("?room=duo"))
    assert await receive_json(third) == {"type": "error", "reason": "room full"}
    with pytest.raises(ConnectionClosed):
        await third.recv()
    assert third.close_code == 1008
    await close_all([first, second])


async def test_room_size_on_the_command_line_sets_the_limit(start_process):
    """--room-size 3: the member list says so, and the fourth is refused."""
    process = start_process("--room-size", "3")
    group = await fill(process.running, "trio", 3)
    assert group[0].told["size"] == 3
    fourth = await connect(process.running.ws_url("?room=trio"))
    assert await receive_json(fourth) == {"type": "error", "reason": "room full"}
    await close_all(group)


@pytest.mark.parametrize("value", ["1", "17", "eight"])
def test_bad_room_size_is_one_line_and_exit_2(value):
    result = run_command(sys.executable, "duoduel.py", "--room-size", value)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"duoduel.py: error: argument --room-size: {value!r} is not a room size: give a whole number from 2 to 16"
    )


async def test_empty_group_rooms_leave_no_state_behind(server):
    """Once everyone has left, by close or by dropping the connection, nothing is kept for any room."""
    group = await fill(server, "g", 4)
    await group[0].websocket.close()
    group[1].websocket.transport.abort()
    await group[2].websocket.close()
    await receive_json(group[3].websocket)  # left
    group[3].websocket.transport.abort()
    await settle(server, clients=0, waiting=0, pairs=0, rooms=0, groups=0, group_members=0)
