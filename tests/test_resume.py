"""Resuming a call after the socket drops (issue 13): raw WebSocket clients against the real server.

A page that opens /ws?resumable=1 gets a resume token on its own socket. When its socket drops in a
call without a closing handshake, its partner (or the rest of its group room) hears "reconnecting",
and a new socket opening /ws?resume=TOKEN within the window takes the place back: same partner, same
slot, audio both ways at once. Drops are made by aborting the client's TCP connection (no close
frame, as when the network goes) or by cutting it in bench/impair.py's proxy (a TCP reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import duoduel
from bench.impair import Impairment
from conftest import Running, health, metric, receive_json, round_trip, run_command, running_server, settle

REFUSED = {"type": "error", "reason": "resume token unknown or expired: starting a new session"}
SHORT_WINDOW = 0.3


@dataclass(eq=False)
class Person:
    """A resumable client: its socket and the token it holds now."""

    websocket: ClientConnection
    token: str


async def until_session(websocket: ClientConnection) -> tuple[dict, list[dict]]:
    """Read control messages up to the session message; return it and what came before it."""
    before = []
    while True:
        message = await receive_json(websocket)
        if message["type"] == "session":
            return message, before
        before.append(message)


async def arrive(running: Running, query: str = "?resumable=1") -> tuple[Person, list[dict]]:
    """Connect a resumable client; return it and the messages that came before its token."""
    websocket = await connect(running.ws_url(query))
    session, before = await until_session(websocket)
    assert len(session["token"]) >= 22, "at least 128 random bits"
    return Person(websocket, session["token"]), before


async def call(running: Running, room: str | None = None) -> tuple[Person, Person]:
    """Ann waits, Bob joins: a call of two resumable clients."""
    query = "?resumable=1" + ("" if room is None else f"&room={room}")
    ann, told = await arrive(running, query)
    assert told == [{"type": "waiting"}]
    bob, told = await arrive(running, query)
    assert told == [{"type": "connected"}]
    assert await receive_json(ann.websocket) == {"type": "connected"}
    return ann, bob


def drop(person: Person) -> None:
    """The network goes: the TCP connection ends without a closing handshake."""
    person.websocket.transport.abort()


async def come_back(running: Running, person: Person, extra: str = "") -> tuple[Person, dict, list[dict]]:
    """Open a new socket with the person's token; return the new person, its session message, and what came before."""
    websocket = await connect(running.ws_url(f"?resume={person.token}{extra}"))
    session, before = await until_session(websocket)
    return Person(websocket, session["token"]), session, before


async def hears(listener: ClientConnection, speaker: ClientConnection, frame: bytes) -> None:
    """The speaker's frame reaches the listener, and nothing else came first."""
    await speaker.send(frame)
    assert await asyncio.wait_for(listener.recv(), 5) == frame


@pytest.fixture
async def short_window() -> AsyncIterator[Running]:
    """A server whose resume window is a fraction of a second."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0, resume_window=SHORT_WINDOW)) as running:
        yield running


async def test_a_resumable_client_gets_a_token_only_when_it_asks():
    """?resumable=1 brings a session message after the join messages; a plain /ws never gets one."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0)) as running:
        ann, told = await arrive(running)
        assert told == [{"type": "waiting"}]
        plain = await connect(running.ws_url())
        assert await receive_json(plain) == {"type": "connected"}
        assert await receive_json(ann.websocket) == {"type": "connected"}
        assert await round_trip(plain) == []
        await plain.close()
        await ann.websocket.close()


async def test_partner_hears_reconnecting_and_the_dropped_client_resumes_the_same_call(server):
    """Ann's socket drops mid-call: Bob hears "reconnecting" (not "disconnected"); Ann's new socket with her
    token gets a new token, "connected", the same partner, and audio flows both ways; Bob hears "resumed"."""
    ann, bob = await call(server)
    await hears(bob.websocket, ann.websocket, b"before")
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    assert (await health(server))["held"] == 1

    again, session, before = await come_back(server, ann)
    assert session["resumed"] is True and again.token != ann.token
    assert before == [{"type": "connected"}]
    assert await receive_json(bob.websocket) == {"type": "resumed"}
    await hears(bob.websocket, again.websocket, b"ann is back")
    await hears(again.websocket, bob.websocket, b"bob hears her")
    state = await health(server)
    assert (state["pairs"], state["held"], state["resumes"], state["clients"]) == (1, 0, 1, 2)
    await again.websocket.close()
    await bob.websocket.close()


async def test_a_call_resumes_twice_with_a_new_token_each_time(server):
    """Each resume hands out a new single-use token; the second drop resumes with the second token."""
    ann, bob = await call(server)
    for round_ in range(2):
        drop(ann)
        assert await receive_json(bob.websocket) == {"type": "reconnecting"}
        ann, session, before = await come_back(server, ann)
        assert session["resumed"] is True and before == [{"type": "connected"}]
        assert await receive_json(bob.websocket) == {"type": "resumed"}
        await hears(bob.websocket, ann.websocket, f"round {round_}".encode())
    assert (await health(server))["resumes"] == 2
    await ann.websocket.close()
    await bob.websocket.close()


async def test_partner_is_told_disconnected_when_the_window_ends(short_window):
    """Ann does not come back within the window: Bob hears "disconnected" as today, and her token is refused
    afterwards with one clear error and an ordinary new session."""
    ann, bob = await call(short_window)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    assert await receive_json(bob.websocket, timeout=SHORT_WINDOW + 5) == {"type": "disconnected"}
    await settle(short_window, held=0, clients=1)

    late = await connect(short_window.ws_url(f"?resume={ann.token}"))
    assert await receive_json(late) == REFUSED
    assert await receive_json(late) == {"type": "waiting"}
    assert (await receive_json(late))["type"] == "session"
    assert await round_trip(bob.websocket) == [], "Bob's side heard nothing of the refused token"
    await late.close()
    await bob.websocket.close()


@pytest.mark.parametrize("token", ["forged-token-aaaaaaaaaaaaaaaaaaaaaaa", "", "x" * 500])
async def test_a_forged_token_gets_an_error_and_a_new_session_and_touches_no_call(server, token):
    """A token the server never gave: the error, then a new session of its own (here: waiting); the call
    it tried to enter goes on untouched, and nobody in it hears of the attempt."""
    ann, bob = await call(server)
    mallory = await connect(server.ws_url(f"?resume={token}"))
    assert await receive_json(mallory) == REFUSED
    assert await receive_json(mallory) == {"type": "waiting"}
    assert (await receive_json(mallory))["type"] == "session"
    await hears(bob.websocket, ann.websocket, b"still ours")
    await hears(ann.websocket, bob.websocket, b"still ours too")
    assert await round_trip(ann.websocket) == [] and await round_trip(bob.websocket) == []
    assert await metric(server, "resumes_refused_total") == 1
    for websocket in (mallory, ann.websocket, bob.websocket):
        await websocket.close()


async def test_a_used_token_is_refused(server):
    """A token works once: after Ann resumed with it, a second socket presenting it gets a new session
    and the error, and Ann's resumed call is untouched."""
    ann, bob = await call(server)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    again, _, before = await come_back(server, ann)
    assert before == [{"type": "connected"}]
    assert await receive_json(bob.websocket) == {"type": "resumed"}

    replay = await connect(server.ws_url(f"?resume={ann.token}"))
    assert await receive_json(replay) == REFUSED
    assert await receive_json(replay) == {"type": "waiting"}
    await hears(bob.websocket, again.websocket, b"the call is hers")
    assert await round_trip(bob.websocket) == [] and await round_trip(again.websocket) == []
    for websocket in (replay, again.websocket, bob.websocket):
        await websocket.close()


async def test_a_token_opens_only_its_own_room(server):
    """A lobby call's token presented with ?room=NAME is refused there: a new session in that room."""
    ann, bob = await call(server)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    elsewhere = await connect(server.ws_url(f"?resume={ann.token}&room=elsewhere"))
    assert await receive_json(elsewhere) == REFUSED
    assert (await receive_json(elsewhere))["type"] == "room"  # a group room of its own, nobody else's call
    again, session, _ = await come_back(server, ann)  # the token still opens the lobby call
    assert session["resumed"] is True
    assert await receive_json(bob.websocket) == {"type": "resumed"}
    for websocket in (elsewhere, again.websocket, bob.websocket):
        await websocket.close()


@pytest.mark.parametrize("route", ["auto", "public"])
async def test_late_audio_on_the_old_socket_is_never_relayed(route):
    """The server never saw Ann's old socket drop: her new socket resumes, and a frame the old socket sends
    afterwards reaches nobody (on either relay route); the old socket is closed by the server."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0, relay_route=route)) as running:
        ann, bob = await call(running)
        again, session, before = await come_back(running, ann)
        assert session["resumed"] is True and before == [{"type": "connected"}]
        assert await receive_json(bob.websocket) == {"type": "resumed"}, "no reconnecting: nothing dropped"
        with contextlib.suppress(ConnectionClosed):
            for _ in range(5):
                await ann.websocket.send(b"late, from the old socket")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ann.websocket.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert await round_trip(bob.websocket) == [], "the old socket's audio reached Bob"
        await hears(bob.websocket, again.websocket, b"from the new socket")
        await again.websocket.close()
        await bob.websocket.close()


@pytest.mark.parametrize("code", [1000, 1001])
async def test_a_page_that_says_goodbye_leaves_at_once(server, code):
    """A close frame (1000, or 1001 when a tab closes) is a goodbye: the partner hears "disconnected" at once,
    and the token is forgotten."""
    ann, bob = await call(server)
    await ann.websocket.close(code)
    assert await receive_json(bob.websocket) == {"type": "disconnected"}
    again = await connect(server.ws_url(f"?resume={ann.token}"))
    assert await receive_json(again) == REFUSED
    await again.close()
    await bob.websocket.close()


async def test_a_window_of_zero_ends_the_call_at_the_drop():
    """resume_window=0 (--resume-window 0): a drop is a departure, as before resuming existed."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0, resume_window=0)) as running:
        ann, bob = await call(running)
        drop(ann)
        assert await receive_json(bob.websocket) == {"type": "disconnected"}
        assert (await health(running))["held"] == 0
        await bob.websocket.close()


async def test_a_client_that_waited_alone_is_not_held(server):
    """Nobody is there to come back to: a waiting client's drop just ends its wait."""
    ann, _ = await arrive(server)
    drop(ann)
    await settle(server, clients=0, waiting=0, held=0)


async def test_a_client_still_waiting_resumes_its_wait(server):
    """A waiting client's new socket (the old one still open) takes its place in the queue: waiting, and the
    next arrival pairs with the new socket."""
    ann, _ = await arrive(server)
    again, _, before = await come_back(server, ann)
    assert before == [{"type": "waiting"}]
    bob, told = await arrive(server)
    assert told == [{"type": "connected"}]
    assert await receive_json(again.websocket) == {"type": "connected"}
    await hears(bob.websocket, again.websocket, b"queued on the new socket")
    await again.websocket.close()
    await bob.websocket.close()


async def test_a_room_partner_who_left_meanwhile_is_reported_on_resume():
    """In a private call (--room-size 2) Bob leaves while Ann's place is held: Ann resumes, hears
    "disconnected", and waits in the room again, where the next arrival pairs with her."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0, room_size=2)) as running:
        ann, bob = await call(running, room="ours")
        drop(ann)
        assert await receive_json(bob.websocket) == {"type": "reconnecting"}
        await bob.websocket.close()
        again, _, before = await come_back(running, ann, "&room=ours")
        assert before == [{"type": "disconnected"}, {"type": "waiting"}]
        cyd, told = await arrive(running, "?resumable=1&room=ours")
        assert told == [{"type": "connected"}]
        assert await receive_json(again.websocket) == {"type": "connected"}
        await hears(cyd.websocket, again.websocket, b"hello cyd")
        await cyd.websocket.close()
        await again.websocket.close()


async def test_a_cut_through_the_impaired_link_resumes_the_same_call(server):
    """Ann reaches the server through bench/impair.py; the link resets her connection (TCP RST, no close
    frame): Bob hears "reconnecting", Ann reconnects through the link with her token to the same call."""
    async with Impairment(server.host, server.port, seed=13) as link:
        through = Running("127.0.0.1", link.port)
        ann, told = await arrive(through)
        assert told == [{"type": "waiting"}]
        bob, told = await arrive(server)
        assert told == [{"type": "connected"}]
        assert await receive_json(ann.websocket) == {"type": "connected"}
        assert link.cut() == 1
        assert await receive_json(bob.websocket) == {"type": "reconnecting"}
        again, session, before = await come_back(through, ann)
        assert session["resumed"] is True and before == [{"type": "connected"}]
        assert await receive_json(bob.websocket) == {"type": "resumed"}
        await hears(bob.websocket, again.websocket, b"through the link again")
        await hears(again.websocket, bob.websocket, b"and back")
        await again.websocket.close()
        await bob.websocket.close()


async def test_healthz_and_metrics_count_holds_and_resumes(server):
    """/healthz shows held places and resumes; /metrics counts holds, resumes and refusals."""
    ann, bob = await call(server)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    state = await health(server)
    assert (state["clients"], state["pairs"], state["held"], state["resumes"]) == (2, 1, 1, 0)
    assert await metric(server, "held") == 1
    again, _, _ = await come_back(server, ann)
    assert await receive_json(bob.websocket) == {"type": "resumed"}
    state = await health(server)
    assert (state["clients"], state["pairs"], state["held"], state["resumes"]) == (2, 1, 0, 1)
    assert (await metric(server, "holds_total"), await metric(server, "resumes_total")) == (1, 1)
    await again.websocket.close()
    await bob.websocket.close()


# Group rooms: the place held is the slot (and its label).


async def enter_group(running: Running, room: str) -> tuple[Person, dict]:
    """Join a group room resumably: the room message, then waiting or connected, then the token."""
    person, before = await arrive(running, f"?resumable=1&room={room}")
    assert before[0]["type"] == "room" and before[1]["type"] in ("waiting", "connected"), before
    return person, before[0]


async def test_a_group_member_resumes_into_its_slot():
    """Three in a group room; the member in slot 1 drops: the others hear reconnecting for slot 1, then resumed;
    the member gets its slot and label back, the others' list, and its frames come marked with its slot."""
    async with running_server(duoduel.Config(host="127.0.0.1", port=0, room_size=4)) as running:
        people = []
        for _ in range(3):
            person, told = await enter_group(running, "band")
            for earlier in people:  # joined (and, for the first, connected)
                while (await receive_json(earlier.websocket))["type"] != "joined":
                    pass
            people.append(person)
        first, middle, last = people
        await middle.websocket.send('{"type": "label", "label": "Bea"}')
        for person in people:
            assert await receive_json(person.websocket) == {"type": "label", "slot": 1, "label": "Bea"}

        drop(middle)
        for other in (first, last):
            assert await receive_json(other.websocket) == {"type": "reconnecting", "slot": 1}
        again, session, before = await come_back(running, middle, "&room=band")
        assert session["resumed"] is True
        assert before == [
            {"type": "room", "slot": 1, "label": "Bea", "size": 4,
             "members": [{"slot": 0, "label": "Guest 1"}, {"slot": 2, "label": "Guest 3"}]},
            {"type": "connected"},
        ]
        for other in (first, last):
            assert await receive_json(other.websocket) == {"type": "resumed", "slot": 1}
        await again.websocket.send(b"bea again")
        for other in (first, last):
            assert await asyncio.wait_for(other.websocket.recv(), 5) == bytes((1,)) + b"bea again"
        await first.websocket.send(b"hi")
        assert await asyncio.wait_for(again.websocket.recv(), 5) == bytes((0,)) + b"hi"
        for person in (first, again, last):
            await person.websocket.close()


async def test_a_group_member_not_back_within_the_window_has_left():
    """The window ends: the others hear "left" for the slot, which is free for the next arrival."""
    config = duoduel.Config(host="127.0.0.1", port=0, room_size=4, resume_window=SHORT_WINDOW)
    async with running_server(config) as running:
        first, _ = await enter_group(running, "band")
        second, _ = await enter_group(running, "band")
        assert await receive_json(first.websocket) == {"type": "joined", "slot": 1, "label": "Guest 2"}
        assert await receive_json(first.websocket) == {"type": "connected"}
        drop(second)
        assert await receive_json(first.websocket) == {"type": "reconnecting", "slot": 1}
        assert await receive_json(first.websocket, timeout=SHORT_WINDOW + 5) == {"type": "left", "slot": 1}
        assert await receive_json(first.websocket) == {"type": "disconnected"}
        assert await receive_json(first.websocket) == {"type": "waiting"}
        await first.websocket.close()


# The command line.


async def test_the_resume_window_comes_from_the_command_line(start_process):
    """--resume-window 0.3: the partner of a dropped caller hears "disconnected" after a fraction of a second."""
    process = start_process("--resume-window", "0.3")
    ann, bob = await call(process.running)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    assert await receive_json(bob.websocket, timeout=5) == {"type": "disconnected"}
    await bob.websocket.close()


async def test_frames_for_a_held_partner_go_nowhere_and_the_call_resumes(start_process):
    """As a person runs it (uvloop when installed): Bob keeps talking while Ann's place is held; his frames
    reach nobody, his socket stays fine, and once Ann resumes she hears what he says next."""
    process = start_process()
    ann, bob = await call(process.running)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    for _ in range(20):
        await bob.websocket.send(b"while ann is away")
    assert await round_trip(bob.websocket) == []
    again, _, before = await come_back(process.running, ann)
    assert before == [{"type": "connected"}]
    assert await receive_json(bob.websocket) == {"type": "resumed"}
    await hears(again.websocket, bob.websocket, b"welcome back")
    await again.websocket.close()
    await bob.websocket.close()


async def test_sigterm_with_a_place_held_closes_the_rest_with_1001_and_exits_0(start_process):
    """A window still open does not keep a stopping server alive: the partner gets 1001, the process exits 0."""
    process = start_process()
    ann, bob = await call(process.running)
    drop(ann)
    assert await receive_json(bob.websocket) == {"type": "reconnecting"}
    process.popen.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(bob.websocket.recv(), 5)
    assert bob.websocket.close_code == 1001
    assert await asyncio.to_thread(process.popen.wait, 10) == 0


def test_a_resume_window_out_of_range_is_refused():
    """--resume-window takes 0 to 600 seconds; anything else is one line and exit status 2."""
    result = run_command(sys.executable, "duoduel.py", "--resume-window", "-1")
    assert result.returncode == 2
    assert "'-1' is not a resume window: give seconds from 0 to 600" in result.stderr
