"""Several duoduel processes, one lobby, through a real redis-server (issue 14)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cluster import (
    CALL_UNKNOWN, Arrival, Duoduel, RedisServer, arrive, arrive_like_page, health_of, start_duoduel, start_shared,
    until_connected,
)
from conftest import ROOT, http_request, receive_json, round_trip, run_command, until
from wt_client import open_session
from core.shared import ALIVE_KEY, CALL_KEY, CALL_MS, ROOM_KEY

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def processes(tmp_path, redis_server) -> Iterator[list[Duoduel]]:
    """Two duoduel processes sharing the lobby."""
    started = [start_shared(tmp_path, redis_server.url, "--max-clients", "2000") for _ in range(2)]
    yield started
    for process in started:
        process.kill()


def port_of(arrival: Arrival) -> int:
    return urllib.parse.urlsplit(arrival.url).port


async def redis_is(process: Duoduel, state: str) -> bool:
    """Whether the process's /healthz says Redis is "up" or "down"."""
    return (await health_of(process.running)).get("redis") == state


async def talk(first: Arrival, second: Arrival, payload: bytes = b"hello") -> None:
    """A frame sent by one reaches the other: they are in a call together."""
    await first.websocket.send(payload)
    assert await asyncio.wait_for(second.websocket.recv(), 5) == payload


async def test_newcomer_on_another_process_is_moved_to_the_waiter_and_paired(processes):
    """A waiter on A, a newcomer on B: B sends it to A with a call token, A pairs the two, audio flows on A."""
    a, b = processes
    waiter = await arrive(a.running.ws_url())
    assert waiter.told == {"type": "waiting"}
    newcomer = await arrive(b.running.ws_url())
    assert newcomer.told == {"type": "connected"} and newcomer.moves == 1
    assert port_of(newcomer) == a.port and newcomer.url.startswith(f"ws://127.0.0.1:{a.port}/ws?call=")
    await until_connected(waiter)
    await talk(waiter, newcomer)
    await talk(newcomer, waiter)
    assert (await health_of(a.running))["pairs"] == 1 and (await health_of(b.running))["clients"] == 0
    assert (await health_of(a.running))["redis"] == "up"


async def test_thousand_clients_arriving_at_once_over_two_processes(processes):
    """1,000 simultaneous arrivals over two processes: everyone paired exactly once, every pair on one process."""
    a, b = processes
    started = time.monotonic()
    arrivals = await asyncio.gather(*(arrive((a, b)[i % 2].running.ws_url(), open_timeout=20) for i in range(1000)))
    await asyncio.gather(*(until_connected(arrival, 20) for arrival in arrivals))
    for index, arrival in enumerate(arrivals):
        await arrival.websocket.send(index.to_bytes(2, "big"))
    heard = {}
    for index, arrival in enumerate(arrivals):
        heard[index] = int.from_bytes(await asyncio.wait_for(arrival.websocket.recv(), 10), "big")
    assert all(heard[heard[index]] == index != heard[index] for index in heard), "pairing is not symmetric"
    assert all(port_of(arrivals[index]) == port_of(arrivals[partner]) for index, partner in heard.items())
    states = [await health_of(p.running) for p in processes]
    assert sum(state["pairs"] for state in states) == 500 and sum(state["waiting"] for state in states) == 0
    print(f"1,000 arrivals paired and talking in {time.monotonic() - started:.1f} s, "
          f"{sum(arrival.moves for arrival in arrivals)} moves")
    await asyncio.gather(*(arrival.websocket.close() for arrival in arrivals))


async def test_waiter_goes_back_to_waiting_when_the_moved_client_never_arrives(processes):
    """A newcomer that disconnects while being moved leaves no waiter stuck: the next one is paired with it."""
    a, b = processes
    waiter = await arrive(a.running.ws_url())
    deserter = await connect(b.running.ws_url())
    moved = await receive_json(deserter)
    assert moved["type"] == "moved"
    await deserter.close()  # gone before reaching A
    # The next arrival is paired at once if the waiter is back in line already; otherwise it waits, and the
    # waiter, put back in line within CLAIM_MS plus a heartbeat, takes it (and is moved to it).
    newcomer = await arrive(b.running.ws_url())
    await asyncio.gather(until_connected(newcomer, 8), until_connected(waiter, 8))
    await talk(newcomer, waiter)
    await talk(waiter, newcomer)
    assert port_of(newcomer) == port_of(waiter)


async def test_reused_call_token_is_refused_and_its_holder_paired_normally(processes):
    """A call token works once: a second use gets a clear error, then the client pairs as anyone would."""
    a, b = processes
    waiter = await arrive(a.running.ws_url())
    newcomer = await arrive(b.running.ws_url())
    await until_connected(waiter)
    replay = await arrive(newcomer.url)
    assert replay.errors == [CALL_UNKNOWN] and replay.told == {"type": "waiting"}
    await talk(waiter, newcomer)
    assert await round_trip(replay.websocket) == []  # no audio of the call it tried to enter


async def test_forged_call_token_is_refused_and_its_holder_paired_normally(processes):
    """A made-up token names no waiter: a clear error, then normal pairing; a malformed one is refused with 400."""
    a, _ = processes
    forged = await arrive(a.running.ws_url(f"?call={secrets.token_urlsafe(16)}"))
    assert forged.errors == [CALL_UNKNOWN] and forged.told == {"type": "waiting"}
    with pytest.raises(InvalidStatus) as refused:
        await connect(a.running.ws_url("?call=../../etc"))
    assert refused.value.response.status_code == 400
    assert b"bad call token" in refused.value.response.body


async def test_expired_call_token_is_refused(redis_server, processes):
    """A moved client that comes after the token expired (CALL_MS) is told so, and paired normally."""
    a, b = processes
    await arrive(a.running.ws_url())
    late = await connect(b.running.ws_url())
    moved = await receive_json(late)
    await late.close()
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(moved["url"]).query)["call"][0]
    inspect = redis_server.client()
    assert inspect.exists(CALL_KEY + token)

    async def expired() -> bool:
        return not inspect.exists(CALL_KEY + token)

    await until(expired, "the call token to expire", timeout=CALL_MS / 1000 + 1)
    arrival = await arrive(moved["url"])
    assert arrival.errors == [CALL_UNKNOWN]
    assert arrival.told["type"] in ("waiting", "connected")


async def test_waiter_of_a_killed_process_is_never_paired_with(tmp_path, redis_server, processes):
    """SIGKILL the waiter's process: newcomers still pair within 5 s, and never with it once its key expired."""
    a, b = processes
    await arrive(a.running.ws_url())
    a.kill()
    killed = time.monotonic()
    first, second = await asyncio.gather(
        arrive_like_page(b.running.ws_url(), killed + 5), arrive_like_page(b.running.ws_url(), killed + 5)
    )
    await asyncio.gather(until_connected(first, 5), until_connected(second, 5))
    await talk(first, second)
    assert time.monotonic() - killed < 5
    inspect = redis_server.client()

    async def forgotten() -> bool:
        return not inspect.exists(ALIVE_KEY + process_id(a))

    await until(forgotten, "Redis to forget the killed process", timeout=killed + 5 - time.monotonic())
    loner = await arrive(b.running.ws_url())
    assert loner.told == {"type": "waiting"} and loner.moves == 0


def process_id(process: Duoduel) -> str:
    """The shared-lobby id a process logged when it joined."""
    for line in process.log.read_text().splitlines():
        if "in the shared lobby at" in line:
            return line.split(" as ")[1].split()[0]
    raise AssertionError("the process never joined the shared lobby")


async def test_redis_restart_loses_no_frame_and_pairs_locally_meanwhile(redis_server, processes):
    """50 calls run on while Redis is down; new clients pair on their own process; sharing resumes within 5 s."""
    a, b = processes
    calls = []
    for i in range(50):
        first = await arrive((a, b)[i % 2].running.ws_url())
        second = await arrive((a, b)[(i // 2) % 2].running.ws_url())
        await until_connected(first)
        calls.append((first, second))
    sent: dict[int, int] = {}
    heard: dict[int, list[int]] = {}
    stop = asyncio.Event()
    end = (2**32 - 1).to_bytes(4, "big")

    async def speak(arrival: Arrival) -> None:
        """Send a numbered 200-byte frame every 20 ms, as a page sends audio, then an end mark."""
        count = 0
        while not stop.is_set():
            await arrival.websocket.send(count.to_bytes(4, "big") + bytes(196))
            count += 1
            await asyncio.sleep(0.02)  # paces the sender as a page does
        sent[id(arrival)] = count
        await arrival.websocket.send(end)

    async def listen(arrival: Arrival) -> None:
        """Note the number of every frame heard, up to the partner's end mark."""
        numbers = heard.setdefault(id(arrival), [])
        async for message in arrival.websocket:
            if message == end:
                return
            numbers.append(int.from_bytes(message[:4], "big"))

    speakers = [asyncio.create_task(speak(arrival)) for call in calls for arrival in call]
    listeners = [asyncio.create_task(listen(arrival)) for call in calls for arrival in call]

    async def every_call_talks() -> bool:
        return len(heard) == len(listeners) and all(len(numbers) >= 10 for numbers in heard.values())

    await until(every_call_talks, "audio in every call before Redis stops")
    redis_server.stop()
    for process in processes:
        await until(lambda: redis_is(process, "down"), f"{process.public_url} to see Redis down")
    local_waiter = await arrive(a.running.ws_url())
    local_partner = await arrive(a.running.ws_url())
    assert local_waiter.told == {"type": "waiting"} and local_partner.told == {"type": "connected"}
    assert local_partner.moves == 0
    await until_connected(local_waiter)
    await talk(local_partner, local_waiter)
    later = await arrive(b.running.ws_url())  # waits on B, alone: B cannot see A's lobby now
    assert later.told == {"type": "waiting"}
    redis_server.start()
    back = time.monotonic()
    newcomer = await arrive(a.running.ws_url())
    # Whichever process sees Redis first puts its waiter back in the shared lobby; the other's finds it there.
    await asyncio.wait_for(asyncio.gather(until_connected(newcomer), until_connected(later)), 5)
    assert time.monotonic() - back < 5, "no cross-process pairing within 5 s of Redis returning"
    assert newcomer.moves + later.moves == 1 and port_of(newcomer) == port_of(later)
    await talk(newcomer, later)
    stop.set()
    await asyncio.gather(*speakers)
    await asyncio.wait_for(asyncio.gather(*listeners), 10)
    for first, second in calls:
        assert heard[id(second)] == list(range(sent[id(first)])) and sent[id(first)] > 50
        assert heard[id(first)] == list(range(sent[id(second)]))
    assert [(await health_of(p.running))["redis"] for p in processes] == ["up", "up"]


async def test_private_room_lives_on_the_process_its_first_member_reached(redis_server, processes):
    """Later members of a room are moved to the first member's process; an emptied room may live anywhere next."""
    a, b = processes
    first = await arrive(b.running.ws_url("?room=team"))
    assert first.told["type"] == "room" and first.moves == 0
    second = await arrive(a.running.ws_url("?room=team"))
    assert second.moves == 1 and port_of(second) == b.port
    assert second.told["type"] == "room" and second.told["members"] == [{"slot": 0, "label": "Guest 1"}]
    third = await arrive(a.running.ws_url("?room=team"))
    assert third.moves == 1 and len(third.told["members"]) == 2
    for member in (first, second, third):
        await member.websocket.close()
    inspect = redis_server.client()

    async def released() -> bool:
        return not inspect.keys(ROOM_KEY + "*")

    await until(released, "the room's key to go with its last member")
    again = await arrive(a.running.ws_url("?room=team"))
    assert again.moves == 0 and port_of(again) == a.port


async def test_private_call_room_moves_the_second_member(tmp_path, redis_server):
    """With --room-size 2 a room is a private call: its second member is moved to the first and paired."""
    a, b = (start_shared(tmp_path, redis_server.url, "--room-size", "2") for _ in range(2))
    try:
        first = await arrive(a.running.ws_url("?room=duo"))
        second = await arrive(b.running.ws_url("?room=duo"))
        assert first.told == {"type": "waiting"} and second.told == {"type": "connected"} and second.moves == 1
        await until_connected(first)
        await talk(second, first)
    finally:
        a.kill()
        b.kill()


async def test_next_finds_a_partner_across_processes(processes):
    """Next ends the call and pairs with whoever waits, wherever they are."""
    a, b = processes
    waiter = await arrive(a.running.ws_url())
    newcomer = await arrive(a.running.ws_url())
    await until_connected(waiter)
    other = await arrive(b.running.ws_url())
    assert other.told == {"type": "waiting"}
    await newcomer.websocket.send('{"type": "next"}')
    assert await receive_json(waiter.websocket) == {"type": "disconnected"}
    moved = await receive_json(newcomer.websocket)
    assert moved["type"] == "moved" and f":{b.port}/" in moved["url"]
    followed = await arrive(moved["url"])
    assert followed.told == {"type": "connected"}
    await until_connected(other)
    await talk(followed, other)


async def test_health_and_metrics_show_the_shared_lobby(processes, redis_server):
    """/healthz says whether Redis answers; /metrics counts moves, answers and Redis errors."""
    a, b = processes
    await arrive(a.running.ws_url())
    await arrive(b.running.ws_url())
    assert (await health_of(a.running))["redis"] == "up"
    metrics = (await http_request(b.running, "/metrics")).body.decode()
    assert "duoduel_redis_up 1" in metrics and "duoduel_moved_total 1" in metrics
    assert "duoduel_answered_total 1" in (await http_request(a.running, "/metrics")).body.decode()
    redis_server.stop()
    await until(lambda: redis_is(a, "down"), "A to see Redis down")
    metrics = (await http_request(a.running, "/metrics")).body.decode()
    assert "duoduel_redis_up 0" in metrics
    warnings = [line for line in a.log.read_text().splitlines() if "WARNING" in line and "Redis" in line]
    assert len(warnings) == 1 and "pairing this process's clients locally" in warnings[0]


async def test_process_starts_without_redis_and_joins_when_it_appears(tmp_path):
    """Redis down at start-up: the process serves and pairs locally, and joins the shared lobby once Redis is up."""
    redis = RedisServer(tmp_path)
    process = start_shared(tmp_path, redis.url)
    try:
        assert (await health_of(process.running))["redis"] == "down"
        first = await arrive(process.running.ws_url())
        second = await arrive(process.running.ws_url())
        assert second.told == {"type": "connected"}
        redis.start()
        await until(lambda: redis_is(process, "up"), "the process to join the shared lobby")
        await talk(first, second)
    finally:
        process.kill()
        redis.stop()


async def test_redis_commands_per_call_do_not_grow_with_frames(processes, redis_server):
    """Audio never reaches Redis: a call that relays 200 frames costs the Redis commands of one that relays none."""
    a, b = processes
    inspect = redis_server.client()

    async def one_call(frames: int) -> int:
        inspect.config_resetstat()
        waiter = await arrive(a.running.ws_url())
        newcomer = await arrive(b.running.ws_url())
        await until_connected(waiter)
        for i in range(frames):
            await newcomer.websocket.send(i.to_bytes(4, "big"))
        for _ in range(frames):
            await asyncio.wait_for(waiter.websocket.recv(), 5)
        count = sum(stat["calls"] for name, stat in inspect.info("commandstats").items() if not name.endswith("_info"))
        await waiter.websocket.close()
        await newcomer.websocket.close()
        return count

    quiet, busy = await one_call(0), await one_call(200)
    # Heartbeats (two commands a second per process) may fall into either window.
    assert abs(busy - quiet) <= 6, (quiet, busy)


def test_without_redis_flag_redis_is_never_imported(tmp_path):
    """No --redis, no import: a poisoned redis package on the path changes nothing."""
    poison = tmp_path / "poison" / "redis"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise SystemExit('redis was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(poison.parent)}
    check = subprocess.run(
        [sys.executable, "-c", "import duoduel, sys; sys.exit('redis' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env=env,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_redis_flag_without_the_package_says_what_to_install(tmp_path):
    """--redis without the redis package: one line naming the package, exit 2."""
    missing = tmp_path / "missing" / "redis"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('No module named redis')\n")
    env = {**os.environ, "PYTHONPATH": str(missing.parent)}
    result = subprocess.run(
        [sys.executable, "duoduel.py", "--redis", "redis://127.0.0.1:1/0", "--public-url", "http://x"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env=env,
    )
    assert result.returncode == 2
    assert result.stderr == "duoduel: --redis needs the redis package: pip install redis (or leave --redis out)\n"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--redis", "redis://127.0.0.1:6379/0"], "--redis needs --public-url"),
        (["--public-url", "https://example.org/p/a"], "--public-url is only used with --redis"),
        (["--redis", "localhost:6379", "--public-url", "http://x"], "is not a Redis URL"),
        (["--redis", "redis://127.0.0.1:6379/0", "--public-url", "example.org"], "is not a page address"),
    ],
)
def test_shared_lobby_flags_are_checked_at_start(args, line):
    """A wrong combination of --redis and --public-url: one line that says what to give, exit 2."""
    result = run_command(sys.executable, "duoduel.py", *args)
    assert result.returncode == 2 and line in result.stderr and len(result.stderr.splitlines()) == 1


async def test_call_token_without_redis_gets_an_error_and_normal_pairing(tmp_path):
    """A process without --redis knows no call token: it says so and pairs the client as usual."""
    process = start_duoduel(tmp_path)
    try:
        arrival = await arrive(process.running.ws_url(f"?call={secrets.token_urlsafe(16)}"))
        assert arrival.errors == [CALL_UNKNOWN] and arrival.told == {"type": "waiting"}
        assert "redis" not in (await health_of(process.running))
    finally:
        process.kill()


async def test_private_room_keeps_its_process_across_a_redis_restart(redis_server, processes):
    """Redis restarted empty: the process holding a room pins it again, so a later member still reaches it."""
    a, b = processes
    first = await arrive(b.running.ws_url("?room=kept"))
    assert first.told["type"] == "room"
    redis_server.stop()
    redis_server.start()
    for process in processes:
        await until(lambda: redis_is(process, "up"), f"{process.public_url} to see Redis back")

    async def room_pinned() -> bool:
        return bool(redis_server.client().keys(ROOM_KEY + "*"))

    await until(room_pinned, "B to pin its room again")
    second = await arrive(a.running.ws_url("?room=kept"))
    assert second.moves == 1 and port_of(second) == b.port
    assert second.told["members"] == [{"slot": 0, "label": "Guest 1"}]


async def test_frozen_redis_times_out_into_local_pairing(redis_server, processes):
    """A Redis that stops answering (SIGSTOP) is an outage after 0.5 s: newcomers pair locally, and rejoin after SIGCONT."""
    a, b = processes
    redis_server.popen.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        first, second = await asyncio.gather(arrive(a.running.ws_url()), arrive(a.running.ws_url()))
        await asyncio.gather(until_connected(first), until_connected(second))
        await talk(first, second)
        assert time.monotonic() - started < 3
        assert (await health_of(a.running))["redis"] == "down"
    finally:
        redis_server.popen.send_signal(signal.SIGCONT)
    await until(lambda: redis_is(a, "up"), "A to rejoin the shared lobby")
    waiter = await arrive(a.running.ws_url())
    newcomer = await arrive(b.running.ws_url())
    assert waiter.told == {"type": "waiting"} and newcomer.moves == 1 and newcomer.told == {"type": "connected"}


async def offer_of(process: Duoduel) -> dict:
    """The process's WebTransport offer, from its /webtransport.json (less the id token, which names this request's
    browser, and its lifetime)."""
    offer = json.loads((await http_request(process.running, "/webtransport.json")).body)
    del offer["token"], offer["tokenSeconds"]
    return offer


async def offer_published(redis_server: RedisServer, process: Duoduel) -> None:
    """Wait until the process's liveness key carries its WebTransport offer (from its first heartbeat on)."""
    inspect = redis_server.client()

    async def published() -> bool:
        return " " in (inspect.get(ALIVE_KEY + process_id(process)) or "")

    await until(published, "the process's offer in the shared lobby")


async def test_webtransport_newcomer_is_moved_with_the_other_process_offer(processes, redis_server):
    """A waiter on A, a WebTransport newcomer on B: B's `moved` names A's /ws and A's WebTransport offer (its UDP port
    and certificate hash); a session opened with that offer and the call token is paired with the waiter on A."""
    a, b = processes
    a_offer = await offer_of(a)
    await offer_published(redis_server, a)
    waiter = await arrive(a.running.ws_url())
    assert waiter.told == {"type": "waiting"}
    b_offer = await offer_of(b)
    async with open_session(b_offer["port"], "/wt", b_offer["certificateHashes"][0]) as newcomer:
        newcomer.send_line(json.dumps({"type": "ping", "t": 0}))
        while (moved := json.loads(await newcomer.line()))["type"] == "pong":
            pass
        assert moved["type"] == "moved" and moved["webtransport"] == a_offer, moved
        assert moved["url"].startswith(f"ws://127.0.0.1:{a.port}/ws?call=")
        call = urllib.parse.urlsplit(moved["url"]).query
    async with open_session(a_offer["port"], f"/wt?{call}", a_offer["certificateHashes"][0]) as arrived:
        arrived.send_line(json.dumps({"type": "ping", "t": 0}))
        while (told := json.loads(await arrived.line()))["type"] == "pong":
            pass
        assert told == {"type": "connected"}
        await until_connected(waiter)
        arrived.send_datagram(b"over webtransport, moved")
        assert await asyncio.wait_for(waiter.websocket.recv(), 5) == b"over webtransport, moved"


async def test_webtransport_token_from_one_process_names_its_browser_on_the_other(processes, redis_server):
    """The id token A's offer gives a browser is believed on B (the secret is shared through Redis): once that id is
    banned, B closes a session carrying the token (1008), as a moved page's would be."""
    a, b = processes
    banned = secrets.token_hex(16)
    reply = await http_request(a.running, "/webtransport.json", headers={"Cookie": f"duoduel_id={banned}"})
    token = json.loads(reply.body)["token"]
    done = run_command("python", str(ROOT / "duoduel.py"), "ban", banned, "--redis", redis_server.url)
    assert done.returncode == 0, done.stderr

    async def refused_on_b() -> bool:
        try:
            websocket = await connect(b.running.ws_url(), additional_headers={"Cookie": f"duoduel_id={banned}"})
        except InvalidStatus:
            return True
        await websocket.close()
        return False

    await until(refused_on_b, "B to know of the ban")
    b_offer = await offer_of(b)
    async with open_session(b_offer["port"], f"/wt?id={urllib.parse.quote(token)}", b_offer["certificateHashes"][0]) as session:
        session.send_line(json.dumps({"type": "ping", "t": 0}))  # opens the control stream, as a page's link does
        closed = await session.wait_closed()
    assert (closed.code, closed.reason) == (1008, "You are banned from this service.")


async def test_websocket_newcomer_is_moved_without_an_offer(processes, redis_server):
    """A WebSocket client is moved as before: its `moved` names the /ws URL alone."""
    a, b = processes
    await offer_published(redis_server, a)
    waiter = await arrive(a.running.ws_url())
    assert waiter.told == {"type": "waiting"}
    async with connect(b.running.ws_url()) as websocket:
        moved = await receive_json(websocket)
    assert moved["type"] == "moved" and "webtransport" not in moved
