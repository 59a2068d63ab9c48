"""Random sequences of clients, control messages, garbage and audio against a live server.

Whatever happens, what the clients see stays consistent: every live client is waiting,
talking with a live partner who talks with it, or idle after being told its partner left;
at most one waits per room; no frame reaches anyone outside its call; the server answers.
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
from conftest import Running, health, running_server, settle

ROOMS = ["", "?room=r"]
GARBAGE = {
    "bad json": "{not json",
    "empty": "",
    "wrong type": '{"type": 42}',
    "unknown": '{"type": "launch"}',
    "list": "[]",
    "bad ping": '{"type": "ping", "t": "x"}',
    "huge text": "x" * (duoduel.MAX_MESSAGE_BYTES + 10),
    "bad utf-8": b"\xff\xfe\xfd",
    "huge binary": bytes(duoduel.MAX_MESSAGE_BYTES + 10),
}


@dataclass(eq=False)
class Peer:
    """A test client and what it has observed."""

    name: int
    room: str
    websocket: ClientConnection
    status: str | None = None
    alive: bool = True
    heard: list[int] = field(default_factory=list)
    stray_frames: int = 0
    pongs: dict[float, asyncio.Event] = field(default_factory=dict)
    reader: asyncio.Task | None = None

    async def read(self) -> None:
        """Track status notices; a frame heard outside a call is a routing error."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.websocket:
                if isinstance(message, bytes):
                    if self.status != "connected":
                        self.stray_frames += 1
                    self.heard.append(int.from_bytes(message[:4], "big"))
                    continue
                told = json.loads(message)
                if told["type"] in ("waiting", "connected", "disconnected"):
                    self.status = told["type"]
                elif told["type"] == "pong" and told["t"] in self.pongs:
                    self.pongs.pop(told["t"]).set()
        self.alive = False

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


operations = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(ROOMS)),
    st.tuples(st.sampled_from(["close", "abort", "next", "audio", "ping"]), st.integers(0, 20)),
    st.tuples(st.just("garbage"), st.integers(0, 20), st.sampled_from(sorted(GARBAGE))),
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


async def scenario(script: list[tuple]) -> None:
    async with running_server(duoduel.Config(host="127.0.0.1", port=0)) as running:
        peers = await play(running, script)
        live = await quiesce(running, peers)

        assert all(peer.stray_frames == 0 for peer in peers), "a frame reached someone outside a call"
        for room in ROOMS:
            assert sum(peer.status == "waiting" for peer in live if peer.room == room) <= 1

        # Every talking peer names itself once; each must hear exactly its partner, who hears it back.
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
                continue
            [partner_name] = peer.heard
            partner = by_name[partner_name]
            assert partner is not peer and partner.status == "connected" and partner.room == peer.room
            assert partner.heard == [peer.name]

        state = await settle(running, clients=len(live))
        assert state["waiting"] == sum(peer.status == "waiting" for peer in live)
        assert state["pairs"] * 2 == len(talking)

        for peer in peers:
            with contextlib.suppress(ConnectionClosed):
                await peer.websocket.close()
            await peer.reader
        await settle(running, clients=0, waiting=0, pairs=0, rooms=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=30))
def test_random_clients_and_messages_keep_pairing_consistent(script):
    asyncio.run(scenario(script))
