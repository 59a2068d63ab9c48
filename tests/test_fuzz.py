"""Random sequences of clients, control messages, garbage and audio against a live server.

Whatever happens, what the clients see stays consistent: every live client is waiting,
talking with a live partner who talks with it, or idle after being told its partner left;
at most one waits per room; no frame reaches anyone outside its call; the server answers.
With rooms of three (group rooms), every member's list of the others (slots and labels)
matches who is really there, a frame only ever comes from a slot its receiver knows, and
each member hears each other member's frame once, behind that member's slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import duoduel
from core.config import MAX_MESSAGE_BYTES
from conftest import Running, health, running_server, settle

ROOMS = ["", "?room=r", "?room=s"]
GARBAGE = {
    "bad json": "{not json",
    "empty": "",
    "wrong type": '{"type": 42}',
    "unknown": '{"type": "launch"}',
    "list": "[]",
    "bad ping": '{"type": "ping", "t": "x"}',
    "huge text": "x" * (MAX_MESSAGE_BYTES + 10),
    "bad utf-8": b"\xff\xfe\xfd",
    "huge binary": bytes(MAX_MESSAGE_BYTES + 10),
}


@dataclass(eq=False)
class Peer:
    """A test client and what it has observed."""

    name: int
    room: str
    websocket: ClientConnection
    status: str | None = None
    alive: bool = True
    heard: list[tuple[int | None, int]] = field(default_factory=list)  # (sender's slot in a group room, name)
    slot: int | None = None  # set in a group room
    label: str = ""
    members: dict[int, str] = field(default_factory=dict)  # the others in its group room: slot -> label
    stray_frames: int = 0
    pongs: dict[float, asyncio.Event] = field(default_factory=dict)
    reader: asyncio.Task | None = None

    async def read(self) -> None:
        """Track status notices; a frame heard outside a call is a routing error."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.websocket:
                if isinstance(message, bytes):
                    slot = None if self.slot is None else message[0]
                    if self.status != "connected" or (slot is not None and slot not in self.members):
                        self.stray_frames += 1
                    self.heard.append((slot, int.from_bytes(message[slot is not None :][:4], "big")))
                    continue
                told = json.loads(message)
                if told["type"] in ("waiting", "connected", "disconnected"):
                    self.status = told["type"]
                elif told["type"] in ("room", "joined", "left", "label"):
                    self.follow(told)
                elif told["type"] == "pong" and told["t"] in self.pongs:
                    self.pongs.pop(told["t"]).set()
        self.alive = False

    def follow(self, told: dict) -> None:
        """Keep the list of the others in a group room as the notices say; each must make sense."""
        kind, slot = told["type"], told["slot"]
        if kind == "room":
            assert self.slot is None
            self.slot, self.label = slot, told["label"]
            self.members = {member["slot"]: member["label"] for member in told["members"]}
        elif kind == "joined":
            assert slot not in self.members and slot != self.slot
            self.members[slot] = told["label"]
        elif kind == "left":
            del self.members[slot]
        elif slot == self.slot:
            self.label = told["label"]
        else:
            assert slot in self.members
            self.members[slot] = told["label"]
        assert self.slot not in self.members

    async def round_trip(self, t: float) -> None:
        """Wait until the server has acted on all this peer sent, and the peer has read all it was sent."""
        if not self.alive:
            return
        self.pongs[t] = answered = asyncio.Event()
        try:
            await self.websocket.send(json.dumps({"type": "ping", "t": t}))
        except ConnectionClosed:
            return
        pong = asyncio.create_task(answered.wait())
        await asyncio.wait([pong, self.reader], timeout=5, return_when=asyncio.FIRST_COMPLETED)
        pong.cancel()


connects = st.tuples(st.just("connect"), st.sampled_from(ROOMS))
operations = st.one_of(
    connects,
    connects,  # twice as likely as the rest: crowded rooms find more
    st.tuples(st.sampled_from(["close", "abort", "next", "audio", "ping"]), st.integers(0, 20)),
    st.tuples(st.just("garbage"), st.integers(0, 20), st.sampled_from(sorted(GARBAGE))),
    st.tuples(st.just("label"), st.integers(0, 20), st.one_of(st.text(max_size=34), st.integers(), st.none())),
)


async def play(running: Running, script: list[tuple]) -> list[Peer]:
    """Carry out the operations; return every peer ever connected."""
    peers: list[Peer] = []
    for operation in script:
        kind = operation[0]
        if kind == "connect":
            peer = Peer(len(peers), operation[1], await connect(running.ws_url(operation[1])))
            peer.reader = asyncio.create_task(peer.read())
            peers.append(peer)
            continue
        if not peers:
            continue
        peer = peers[operation[1] % len(peers)]
        with contextlib.suppress(ConnectionClosed):
            if kind == "close":
                await peer.websocket.close()
            elif kind == "abort":
                peer.websocket.transport.abort()
            elif kind == "next":
                await peer.websocket.send(json.dumps({"type": "next"}))
            elif kind == "audio":
                await peer.websocket.send(peer.name.to_bytes(4, "big") + bytes(100))
            elif kind == "ping":
                await peer.websocket.send(json.dumps({"type": "ping", "t": -1}))
            elif kind == "label":
                await peer.websocket.send(json.dumps({"type": "label", "label": operation[2]}))
            elif kind == "garbage":
                message = GARBAGE[operation[2]]
                await peer.websocket.send(message, text=True if operation[2] == "bad utf-8" else None)
    return peers


async def quiesce(running: Running, peers: list[Peer]) -> list[Peer]:
    """Let the server act on everything sent and notice every close, then flush every live peer twice."""
    for peer in peers:
        await peer.round_trip(0)
    for _ in range(100):
        live = [peer for peer in peers if peer.alive and peer.websocket.state.name == "OPEN"]
        if (await health(running))["clients"] == len(live):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the server kept clients that had gone")
    for t in (1, 2):
        for peer in live:
            await peer.round_trip(t)
    return [peer for peer in live if peer.alive]


async def scenario(room_size: int, script: list[tuple]) -> None:
    async with running_server(duoduel.Config(host="127.0.0.1", port=0, room_size=room_size)) as running:
        peers = await play(running, script)
        live = await quiesce(running, peers)

        assert all(peer.stray_frames == 0 for peer in peers), "a frame reached someone outside a call"
        grouped = [peer for peer in live if peer.slot is not None]
        assert all(peer.room and room_size > 2 for peer in grouped)
        for room in ROOMS:
            assert sum(peer.status == "waiting" for peer in live if peer.room == room) <= 1
            group = [peer for peer in grouped if peer.room == room]
            assert len(group) <= room_size and len({peer.slot for peer in group}) == len(group)
            for peer in group:  # its list of the others is who is there, with the labels they set
                assert peer.members == {other.slot: other.label for other in group if other is not peer}
                assert peer.status == ("connected" if peer.members else "waiting")

        # Every talking peer names itself once; each must hear exactly its partner, who hears it back,
        # or in a group room each other member once, behind that member's slot.
        talking = [peer for peer in live if peer.status == "connected"]
        for peer in live:
            peer.heard.clear()
        for peer in talking:
            await peer.websocket.send(peer.name.to_bytes(4, "big"))
        for t in (3, 4):
            for peer in live:
                await peer.round_trip(t)
        by_name = {peer.name: peer for peer in live}
        for peer in live:
            if peer.status != "connected":
                assert peer.heard == [], f"peer {peer.name} ({peer.status}) heard {peer.heard}"
            elif peer.slot is not None:
                others = [other for other in grouped if other.room == peer.room and other is not peer]
                assert sorted(peer.heard) == sorted((other.slot, other.name) for other in others)
            else:
                [(_, partner_name)] = peer.heard
                partner = by_name[partner_name]
                assert partner is not peer and partner.status == "connected" and partner.room == peer.room
                assert partner.heard == [(None, peer.name)]

        state = await settle(running, clients=len(live))
        assert state["waiting"] == sum(peer.status == "waiting" for peer in live)
        assert state["pairs"] * 2 == sum(peer.slot is None for peer in talking)
        assert state["group_members"] == sum(peer.slot is not None for peer in talking)
        assert state["groups"] == len({peer.room for peer in talking if peer.slot is not None})

        for peer in peers:
            with contextlib.suppress(ConnectionClosed):
                await peer.websocket.close()
            await peer.reader
        await settle(running, clients=0, waiting=0, pairs=0, rooms=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([2, 3]), st.lists(operations, max_size=30))
def test_random_clients_and_messages_keep_pairing_consistent(room_size, script):
    asyncio.run(scenario(room_size, script))
