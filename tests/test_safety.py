"""Safety with strangers (issue 23): the id cookie, block and report, bans, limits per address, the Next cool-down."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from cluster import Duoduel, arrive, start_shared, until_connected
from conftest import FRAME, ROOT, Running, http_request, metric, receive_json, run_command, running_server, settle, until
from core.identity import COOKIE_MAX_AGE, identify, identity_from_token, issue_token
from core.shared import OPEN_KEY

pytestmark = pytest.mark.timeout(60)

BLOCKED = {"type": "blocked", "reported": False}
REPORTED = {"type": "blocked", "reported": True}


def new_browser() -> str:
    """A browser id as the server makes them: 128 random bits in hex."""
    return secrets.token_hex(16)


def jar(browser: str, **headers: str) -> dict:
    """connect()'s options for a client whose cookie jar holds this browser id."""
    return {"additional_headers": {"Cookie": f"duoduel_id={browser}", **headers}}


async def enter(url: str, browser: str, **headers: str) -> tuple[ClientConnection, dict]:
    """Connect with a browser id, return the socket and the first thing the server said."""
    websocket = await connect(url, **jar(browser, **headers))
    return websocket, await receive_json(websocket)


async def refusal(url: str, browser: str | None = None, **headers: str) -> InvalidStatus | None:
    """The HTTP refusal of a handshake, or None if it was accepted (and closed at once)."""
    options = jar(browser, **headers) if browser else {"additional_headers": headers}
    try:
        websocket = await connect(url, **options)
    except InvalidStatus as exc:
        return exc
    await websocket.close()
    return None


async def hears(listener: ClientConnection, speaker: ClientConnection) -> bool:
    """Whether a frame one sends reaches the other: they are in a call together."""
    await speaker.send(FRAME)
    heard = await asyncio.wait_for(listener.recv(), 5)
    assert heard == FRAME, f"heard {heard!r:.100}"
    return True


@pytest.fixture
def config(tmp_path):
    """Reports in a file of the test's own, bans in another; few skips a minute."""
    from duoduel import Config

    return Config(host="127.0.0.1", port=0, report_log=tmp_path / "reports.jsonl", bans_file=tmp_path / "bans.json", skips_per_minute=2)


# The id cookie.


async def test_page_first_load_sets_the_id_cookie_for_a_year(server):
    """The page's first load sets duoduel_id: 128 bits, a year, HttpOnly, SameSite=Lax; a load that has it sets none."""
    reply = await http_request(server, "/")
    cookie = reply.headers["set-cookie"]
    assert re.fullmatch(rf"duoduel_id=[0-9a-f]{{32}}; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=Lax", cookie), cookie
    assert COOKIE_MAX_AGE == 365 * 24 * 3600
    again = await http_request(server, "/", headers={"Cookie": cookie.split(";")[0]})
    assert again.status == 200 and "set-cookie" not in again.headers
    assert "set-cookie" not in (await http_request(server, "/app.js")).headers


async def test_handshake_without_the_cookie_gets_one_on_the_101(server):
    """A WebSocket handshake without the cookie is given one with the 101; one with it is given none."""
    websocket = await connect(server.ws_url())
    cookie = websocket.response.headers["Set-Cookie"]
    assert re.match(r"duoduel_id=[0-9a-f]{32}; Max-Age=\d+; Path=/; HttpOnly; SameSite=Lax$", cookie)
    await websocket.close()
    websocket = await connect(server.ws_url(), **jar(new_browser()))
    assert "Set-Cookie" not in websocket.response.headers
    await websocket.close()


async def test_cookie_is_secure_over_https(config, tmp_path):
    """Over HTTPS the cookie is Secure as well."""
    import ssl

    from duoduel import tls_context

    made = run_command("bash", str(ROOT / "gen_cert.sh"), str(tmp_path / "cert"))
    assert made.returncode == 0, made.stderr
    tls = dataclasses.replace(config, tls=tls_context(tmp_path / "cert" / "cert.pem", None))
    async with running_server(tls) as running:
        trust = ssl.create_default_context(cafile=tmp_path / "cert" / "cert.pem")
        reply = await http_request(Running(running.host, running.port, "https"), "/", ssl=trust)
        assert reply.headers["set-cookie"].endswith("; HttpOnly; SameSite=Lax; Secure")


def test_identity_token_carries_the_browser_id_and_nothing_forged_or_expired():
    """A WebTransport token gives back the id it was issued for; altered, forged with another secret, or expired: None."""
    secret, browser = secrets.token_bytes(32), new_browser()
    token = issue_token(secret, browser)
    assert identity_from_token(secret, token) == browser
    assert identity_from_token(secrets.token_bytes(32), token) is None
    assert identity_from_token(secret, new_browser() + token[32:]) is None
    assert identity_from_token(secret, token, now=time.time() + 2 * 3600) is None
    assert identity_from_token(secret, "not a token") is None


def test_address_that_counts_is_an_ipv6_clients_64_and_loopback_is_not_limited_without_a_trusted_proxy():
    """An IPv6 client counts as its /64 (one subscriber), an IPv4-mapped one as IPv4; ::1 and 127.0.0.1 are exempt
    unless a trusted proxy is set (but the proxy's own address never is); a forwarded address counts only from a
    trusted proxy."""
    none = frozenset()
    assert identify(None, "2001:db8::5", None, none).address == "2001:db8::/64"
    assert identify(None, "::ffff:203.0.113.4", None, none).address == "203.0.113.4"
    assert not identify(None, "::1", None, none).limited and not identify(None, "127.0.0.1", None, none).limited
    assert identify(None, "203.0.113.4", "198.51.100.1", none).address == "203.0.113.4"
    behind = identify(None, "127.0.0.1", "198.51.100.1, 127.0.0.1", frozenset({"127.0.0.1"}))
    assert (behind.address, behind.limited) == ("198.51.100.1", True)
    assert not identify(None, "127.0.0.1", "127.0.0.1", frozenset({"127.0.0.1"})).limited  # the proxy's own machine
    assert identify(None, "", "198.51.100.1", none).address == "198.51.100.1"  # on a unix socket: a local proxy
    assert identify(None, "", None, none).address == "127.0.0.1"


# Block and report.


async def test_blocked_pair_never_meets_again_while_newcomers_still_do(server):
    """After a block the two wait side by side, each is paired with a newcomer instead, and again after reconnecting."""
    ann, bob = new_browser(), new_browser()
    a, told = await enter(server.ws_url(), ann)
    assert told == {"type": "waiting"}
    b, told = await enter(server.ws_url(), bob)
    assert told == {"type": "connected"} and await receive_json(a) == {"type": "connected"}
    await a.send(json.dumps({"type": "block"}))
    assert await receive_json(a) == BLOCKED
    assert await receive_json(a) == {"type": "waiting"}
    assert await receive_json(b) == {"type": "disconnected"}
    await b.send(json.dumps({"type": "next"}))
    assert await receive_json(b) == {"type": "waiting"}  # ann waits first in line, but not for bob
    carl, told = await enter(server.ws_url(), new_browser())
    assert told == {"type": "connected"} and await receive_json(a) == {"type": "connected"}
    assert await hears(a, carl)
    dora, told = await enter(server.ws_url(), new_browser())
    assert told == {"type": "connected"} and await receive_json(b) == {"type": "connected"}
    assert await hears(b, dora)
    for websocket in (a, b, carl, dora):
        await websocket.close()
    await settle(server, clients=0)
    a, told = await enter(server.ws_url(), ann)
    b, told_b = await enter(server.ws_url(), bob)
    assert (told, told_b) == ({"type": "waiting"}, {"type": "waiting"})
    assert await metric(server, "blocks_total") == 1


async def test_report_writes_one_line_for_the_operator_and_no_audio(server, config):
    """A report blocks, and appends one JSON line: both ids, the addresses, the time, the reason cut to 200."""
    ann, bob = new_browser(), new_browser()
    a, _ = await enter(server.ws_url(), ann)
    b, _ = await enter(server.ws_url(), bob)
    await receive_json(a)
    assert await hears(a, b) and await hears(b, a)
    await b.send(json.dumps({"type": "report", "reason": "insults " * 50}))
    assert await receive_json(b) == REPORTED
    assert await receive_json(a) == {"type": "disconnected"}
    lines = config.report_log.read_text().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert set(report) == {"time", "reporter", "reported", "reason"}
    assert report["reporter"] == {"id": bob, "address": "127.0.0.1"}
    assert report["reported"] == {"id": ann, "address": "127.0.0.1"}
    assert report["reason"] == ("insults " * 50)[:200]
    assert abs(time.time() - time.mktime(time.strptime(report["time"], "%Y-%m-%dT%H:%M:%S+00:00")) + time.timezone) < 60
    assert await metric(server, "reports_total") == 1 and await metric(server, "blocks_total") == 1


async def test_partner_who_left_first_can_still_be_blocked(server):
    """After the partner pressed Next, Block blocks that last partner: the two never meet again."""
    ann, bob = new_browser(), new_browser()
    a, _ = await enter(server.ws_url(), ann)
    b, _ = await enter(server.ws_url(), bob)
    await receive_json(a)
    await b.send(json.dumps({"type": "next"}))
    assert await receive_json(b) == {"type": "waiting"}
    assert await receive_json(a) == {"type": "disconnected"}
    await a.send(json.dumps({"type": "report", "reason": "left after insulting me"}))
    assert await receive_json(a) == REPORTED
    await a.send(json.dumps({"type": "next"}))
    assert await receive_json(a) == {"type": "waiting"}  # bob waits, but not for ann
    carl, told = await enter(server.ws_url(), new_browser())
    assert told == {"type": "connected"} and await receive_json(b) == {"type": "connected"}


async def test_block_outside_a_lobby_call_is_a_clear_error(server):
    """Block with nobody to block, or in a private room, answers with an error and changes nothing."""
    waiter, _ = await enter(server.ws_url(), new_browser())
    await waiter.send(json.dumps({"type": "block"}))
    assert (await receive_json(waiter))["reason"] == "block and report work in a call with a stranger from the lobby"
    first, _ = await enter(server.ws_url("?room=friends"), new_browser())
    second, _ = await enter(server.ws_url("?room=friends"), new_browser())
    while (await receive_json(first))["type"] != "connected":
        pass
    await second.send(json.dumps({"type": "report", "reason": "x"}))
    while (told := await receive_json(second))["type"] != "error":
        pass
    assert told["reason"] == "block and report work in a call with a stranger from the lobby"
    await second.send(FRAME)
    assert (await asyncio.wait_for(first.recv(), 5)).endswith(FRAME)  # still in the room together (a slot mark first)
    assert await metric(server, "blocks_total") == 0


# The Next cool-down.


async def test_skipping_at_speed_waits_a_growing_cool_down(server):
    """Past --skips-per-minute (2 here), a Next is told how long it waits, and is paired only after it."""
    a, _ = await enter(server.ws_url(), new_browser())
    for _ in range(2):
        await a.send(json.dumps({"type": "next"}))
        assert await receive_json(a) == {"type": "waiting"}
    await a.send(json.dumps({"type": "next"}))
    assert await receive_json(a) == {"type": "cooldown", "seconds": 2.0}
    started = time.monotonic()
    b, told = await enter(server.ws_url(), new_browser())
    assert told == {"type": "waiting"}  # a is not in line while it cools down
    assert await receive_json(a) == {"type": "connected"}
    assert 1.9 < time.monotonic() - started < 4
    await a.send(json.dumps({"type": "next"}))
    assert await receive_json(a) == {"type": "cooldown", "seconds": 4.0}
    assert await metric(server, "cool_downs_total") == 2


# Bans.


def ban(*args: str) -> str:
    """Run `duoduel.py ban|unban|bans ...` as an operator would; what it printed."""
    done = run_command("python", str(ROOT / "duoduel.py"), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_ban_by_id_refuses_the_next_handshake_within_a_second_and_unban_lets_it_in(server, config):
    """`ban ID` (the bans file): that browser's handshake gets 403 with one line within a second; others still enter."""
    banned = new_browser()
    assert ban("ban", banned, "--hours", "2", "--bans-file", str(config.bans_file)).startswith(f"banned {banned} until ")
    refused = await until(lambda: refusal(server.ws_url(), banned), "the ban to take effect", timeout=1)
    assert refused.response.status_code == 403
    assert re.fullmatch(rb"You are banned from this service until \d{4}-\d\d-\d\d \d\d:\d\d UTC\.\n", refused.response.body)
    assert await refusal(server.ws_url(), new_browser()) is None
    assert banned in ban("bans", "--bans-file", str(config.bans_file))
    ban("unban", banned, "--bans-file", str(config.bans_file))
    await until(lambda: _accepted(server.ws_url(), banned), "the unban to take effect", timeout=1)
    assert await metric(server, 'rejections_total{reason="banned"}') >= 1


async def _accepted(url: str, browser: str, **headers: str) -> bool:
    return await refusal(url, browser, **headers) is None


async def test_ban_ends_the_banned_browsers_call_within_a_second(server, config):
    """A browser banned in a call is closed with 1008 "banned" within a second; its partner is told it left."""
    banned = new_browser()
    a, _ = await enter(server.ws_url(), banned)
    b, _ = await enter(server.ws_url(), new_browser())
    assert await receive_json(a) == {"type": "connected"}
    ban("ban", banned, "--bans-file", str(config.bans_file))
    assert await receive_json(b, timeout=1) == {"type": "disconnected"}
    await asyncio.wait_for(a.wait_closed(), 1)
    assert (a.close_code, a.close_reason) == (1008, "banned")


async def test_ban_by_address_refuses_every_browser_there(server, config):
    """`ban 127.0.0.1`: any handshake from that address is refused, whatever its cookie."""
    ban("ban", "127.0.0.1", "--bans-file", str(config.bans_file))
    refused = await until(lambda: refusal(server.ws_url(), new_browser()), "the ban to take effect", timeout=1)
    assert refused.response.status_code == 403 and refused.response.body == b"You are banned from this service.\n"


def test_ban_of_something_that_is_neither_id_nor_address_is_one_line_and_exit_2(tmp_path):
    """A typo is refused with one line saying what is expected."""
    done = run_command("python", str(ROOT / "duoduel.py"), "ban", "bob", "--bans-file", str(tmp_path / "bans.json"))
    assert done.returncode == 2
    assert done.stderr == "duoduel: 'bob' is neither a browser id (32 hex digits, from a report) nor an IP address\n"


# Limits per address.


@pytest.fixture
async def proxied_server(config) -> Iterator[Running]:
    """A server behind a trusted proxy on loopback: 2 connections at once and 3 handshakes a minute per address."""
    limited = dataclasses.replace(config, trusted_proxies=frozenset({"127.0.0.1"}), connections_per_address=2, handshakes_per_minute=3)
    async with running_server(limited) as running:
        yield running


async def test_handshakes_past_the_rate_get_429_with_when_to_retry(proxied_server):
    """The fourth handshake in a minute from one forwarded address gets 429, Retry-After and a line; another address enters."""
    url = proxied_server.ws_url()
    for _ in range(3):
        assert await refusal(url, new_browser(), **{"X-Forwarded-For": "203.0.113.7"}) is None
    refused = await refusal(url, new_browser(), **{"X-Forwarded-For": "203.0.113.7"})
    assert refused.response.status_code == 429
    wait = int(refused.response.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert refused.response.body == f"Too many connections from your address in the last minute: try again in {wait} seconds.\n".encode()
    assert await refusal(url, new_browser(), **{"X-Forwarded-For": "203.0.113.8"}) is None


async def test_refused_browser_reads_why_at_refusal_json(proxied_server):
    """A browser hides a refused handshake's body from its page, so the page asks /refusal.json with its cookie: it
    gets the line and when to retry; a browser that was not refused gets 404."""
    url, there = proxied_server.ws_url(), {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(3):
        assert await refusal(url, new_browser(), **there) is None
    turned = new_browser()
    refused = await refusal(url, turned, **there)
    reply = await http_request(proxied_server, "/refusal.json", headers={"Cookie": f"duoduel_id={turned}"})
    assert reply.status == 200 and reply.headers["cache-control"] == "no-store"
    why = json.loads(reply.body)
    assert why["line"] == refused.response.body.decode().strip()
    assert 1 <= why["retryAfter"] <= int(refused.response.headers["Retry-After"])
    other = await http_request(proxied_server, "/refusal.json", headers={"Cookie": f"duoduel_id={new_browser()}"})
    assert other.status == 404


async def test_banned_browser_reads_its_ban_at_refusal_json(server, config):
    """The ban's line, and no time to retry: waiting does not lift a ban."""
    banned = new_browser()
    ban("ban", banned, "--bans-file", str(config.bans_file))
    await until(lambda: refusal(server.ws_url(), banned), "the ban to take effect", timeout=1)
    reply = await http_request(server, "/refusal.json", headers={"Cookie": f"duoduel_id={banned}"})
    assert json.loads(reply.body) == {"line": "You are banned from this service.", "retryAfter": None}


async def test_connections_past_the_limit_get_429_until_one_closes(proxied_server):
    """A third connection open at once from one address gets 429; once one closes, it enters (and waits)."""
    url, there = proxied_server.ws_url(), {"X-Forwarded-For": "198.51.100.1"}
    first, _ = await enter(url, new_browser(), **there)
    second, _ = await enter(url, new_browser(), **there)
    refused = await refusal(url, new_browser(), **there)
    assert refused.response.status_code == 429 and refused.response.headers["Retry-After"] == "60"
    assert b"Too many open connections from your address (at most 2)" in refused.response.body
    await first.close()
    await settle(proxied_server, clients=1)
    third, told = await enter(url, new_browser(), **there)
    assert told == {"type": "waiting"}
    await asyncio.gather(second.close(), third.close())


async def test_forwarded_address_counts_only_from_a_trusted_proxy(proxied_server, server):
    """A client cannot pick its address: the left of X-Forwarded-For is ignored, and so is the header from others."""
    url = proxied_server.ws_url()
    spoof = {"X-Forwarded-For": "192.0.2.1, 203.0.113.9"}  # as nginx forwards it: what the client wrote, then its address
    for _ in range(3):
        assert await refusal(url, new_browser(), **spoof) is None
    refused = await refusal(url, new_browser(), **{"X-Forwarded-For": "192.0.2.2, 203.0.113.9"})
    assert refused is not None and refused.response.status_code == 429
    # Without a trusted proxy, the header is nobody's word, and loopback is not limited.
    for _ in range(20):
        assert await refusal(server.ws_url(), new_browser(), **{"X-Forwarded-For": "203.0.113.9"}) is None


# Across processes, through Redis.


@pytest.fixture
def shared_pair(tmp_path, redis_server) -> Iterator[list[Duoduel]]:
    """Two duoduel processes sharing a lobby through a real redis-server."""
    started = [start_shared(tmp_path, redis_server.url) for _ in range(2)]
    yield started
    for process in started:
        process.kill()


async def test_block_holds_across_processes(shared_pair):
    """Paired across two processes, after a block the two never meet again through the shared lobby; newcomers do."""
    p, q = shared_pair
    ann, bob = new_browser(), new_browser()
    a = await arrive(p.running.ws_url(), **jar(ann))
    b = await arrive(q.running.ws_url(), **jar(bob))
    await until_connected(a)
    assert b.told == {"type": "connected"}
    await b.websocket.send(json.dumps({"type": "block"}))
    assert await receive_json(b.websocket) == BLOCKED
    assert await receive_json(a.websocket) == {"type": "disconnected"}
    b.told = await receive_json(b.websocket)
    assert b.told == {"type": "waiting"}
    await a.websocket.close()
    a = await arrive(q.running.ws_url(), **jar(ann))  # comes back, on the other process
    assert a.told == {"type": "waiting"}  # bob is first in line, but not for ann
    carl = await arrive(p.running.ws_url(), **jar(new_browser()))
    await asyncio.gather(until_connected(carl), until_connected(b))
    assert await hears(carl.websocket, b.websocket) and await hears(b.websocket, carl.websocket)
    dora = await arrive(p.running.ws_url(), **jar(new_browser()))
    await asyncio.gather(until_connected(dora), until_connected(a))
    assert await hears(dora.websocket, a.websocket) and await hears(a.websocket, dora.websocket)


async def test_ban_refuses_on_every_process_within_a_second(shared_pair, redis_server):
    """`ban ID --redis URL`: both processes refuse the browser within a second; `unban` lets it in on both."""
    banned = new_browser()
    ban("ban", banned, "--redis", redis_server.url)
    for process in shared_pair:
        refused = await until(lambda: refusal(process.running.ws_url(), banned), "the ban on every process", timeout=1)
        assert refused.response.status_code == 403
    ban("unban", banned, "--redis", redis_server.url)
    for process in shared_pair:
        await until(lambda: _accepted(process.running.ws_url(), banned), "the unban on every process", timeout=1)


async def test_blocked_pairs_coming_back_on_two_processes_are_each_paired_with_someone_else(shared_pair):
    """Fifty blocked pairs come back, each right after the one it blocked, alternating processes: everyone is paired,
    exactly once, and never with the browser they blocked (first come, first paired would pair every one of them)."""
    p, q = shared_pair
    pairs = [(new_browser(), new_browser()) for _ in range(50)]
    for one, other in pairs:
        first = await arrive(p.running.ws_url(), **jar(one))
        second = await arrive(p.running.ws_url(), **jar(other))
        await until_connected(first)
        await second.websocket.send(json.dumps({"type": "block"}))
        assert await receive_json(second.websocket) == BLOCKED
        await asyncio.gather(first.websocket.close(), second.websocket.close())
    browsers = [browser for pair in pairs for browser in pair]
    arrivals = [await arrive((p, q)[i % 2].running.ws_url(), **jar(browser)) for i, browser in enumerate(browsers)]
    await asyncio.gather(*(until_connected(arrival, 15) for arrival in arrivals))
    for index, arrival in enumerate(arrivals):
        await arrival.websocket.send(index.to_bytes(2, "big"))
    heard = {index: int.from_bytes(await asyncio.wait_for(arrival.websocket.recv(), 10), "big") for index, arrival in enumerate(arrivals)}
    assert all(heard[heard[index]] == index != heard[index] for index in heard), "pairing is not symmetric"
    assert all(heard[index] != index ^ 1 for index in heard), "a blocked pair was paired again"
    await asyncio.gather(*(arrival.websocket.close() for arrival in arrivals))


@pytest.fixture
def limited_pair(tmp_path, redis_server) -> Iterator[list[Duoduel]]:
    """Two processes sharing Redis behind a trusted proxy on loopback: 2 connections and 3 handshakes per address."""
    limits = ("--trusted-proxy", "127.0.0.1", "--connections-per-address", "2", "--handshakes-per-minute", "3")
    started = [start_shared(tmp_path, redis_server.url, *limits) for _ in range(2)]
    yield started
    for process in started:
        process.kill()


async def test_limits_per_address_count_every_process(limited_pair, redis_server):
    """An address's handshakes and open connections count on both processes together: past either, 429 on both."""
    p, q = limited_pair
    there = {"X-Forwarded-For": "203.0.113.7"}

    async def none_open() -> bool:  # a closed connection stops counting a moment after it closed
        return not redis_server.client().exists(OPEN_KEY + "203.0.113.7")

    for process in (p, q, p):
        assert await refusal(process.running.ws_url(), new_browser(), **there) is None
        await until(none_open, "the closed connection to count no more")
    for process in (p, q):
        refused = await refusal(process.running.ws_url(), new_browser(), **there)
        assert refused is not None and refused.response.status_code == 429
        assert b"in the last minute: try again in" in refused.response.body
    # Open connections, each in a room of its own (no move between processes): one on each, and the third is refused.
    there = {"X-Forwarded-For": "198.51.100.1"}
    on_p, _ = await enter(p.running.ws_url("?room=one"), new_browser(), **there)
    on_q, _ = await enter(q.running.ws_url("?room=two"), new_browser(), **there)
    refused = await refusal(p.running.ws_url("?room=three"), new_browser(), **there)
    assert refused is not None and refused.response.status_code == 429
    assert b"Too many open connections from your address (at most 2)" in refused.response.body
    await on_q.close()
    await until(lambda: _accepted(p.running.ws_url("?room=three"), new_browser(), **there), "q's closed connection to count no more")
    await on_p.close()
