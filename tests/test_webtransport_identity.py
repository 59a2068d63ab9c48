"""A WebTransport session's browser id (issues 20 and 23): a session carries no cookie, so the page passes the signed
token its offer gave it as /wt?id=; blocks and bans by id then hold over WebTransport as over the WebSocket, and a
missing, forged or expired token leaves the session its address alone, never a refused call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import urllib.parse
from collections.abc import AsyncIterator

import pytest

import core.identity
import duoduel
from conftest import ROOT, Running, http_request, run_command, running_server, settle
from core.identity import COOKIE_NAME, issue_token
from wt_client import Session, open_session

pytestmark = pytest.mark.timeout(60)

OPUS = bytes(range(100))  # an audio frame's size, as a page sends it


def new_browser() -> str:
    """A browser id as the server makes them: 128 random bits in hex."""
    return secrets.token_hex(16)


@pytest.fixture
def config(tmp_path) -> duoduel.Config:
    return duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, bans_file=tmp_path / "bans.json")


async def offer_for(server: Running, browser: str | None) -> tuple[dict, dict]:
    """GET /webtransport.json as the page does (with its cookie, if it has one): the offer, and the reply's headers."""
    headers = {} if browser is None else {"Cookie": f"{COOKIE_NAME}={browser}"}
    reply = await http_request(server, "/webtransport.json", headers=headers)
    assert reply.status == 200
    return json.loads(reply.body), reply.headers


async def token_for(server: Running, browser: str) -> str:
    """The token the page of this browser is given in its offer."""
    return (await offer_for(server, browser))[0]["token"]


@contextlib.asynccontextmanager
async def page(server: Running, token: str | None) -> AsyncIterator[Session]:
    """A WebTransport page in the lobby carrying this id token (None: none), its first ping sent as a page's is."""
    query = "" if token is None else "?id=" + urllib.parse.quote(token)
    endpoint = server.webtransport
    async with open_session(endpoint.port, f"/wt{query}", endpoint.certificate) as session:
        session.send_line(json.dumps({"type": "ping", "t": 0}))
        yield session


async def told(session: Session) -> dict:
    """The next control message that is not a pong."""
    while (message := json.loads(await session.line()))["type"] == "pong":
        pass
    return message


async def test_offer_gives_a_token_naming_the_cookies_browser_id(server):
    """/webtransport.json, fetched with the id cookie, gives a token that names that id and says for how long; without
    one it sets the cookie and names the id it set; never cached."""
    ann = new_browser()
    offer, headers = await offer_for(server, ann)
    assert named(offer["token"]) == ann
    assert offer["tokenSeconds"] == core.identity.TOKEN_SECONDS  # the page renews it at half of this
    assert "set-cookie" not in headers and headers["cache-control"] == "no-store"
    offer, headers = await offer_for(server, None)
    given = re.match(rf"{COOKIE_NAME}=([0-9a-f]{{32}});", headers["set-cookie"])
    assert given and named(offer["token"]) == given[1]
    assert headers["cache-control"] == "no-store"


def named(token: str) -> str:
    """The browser id a token names (its first field, core.identity.issue_token; the sessions below show it is believed)."""
    return token.split(".", 1)[0]


async def test_block_over_webtransport_holds_when_both_come_back(server):
    """Two browsers whose sessions carry their tokens: after one blocks the other, their next sessions are not paired
    with each other, while a newcomer is paired with one of them."""
    ann, bob = await token_for(server, new_browser()), await token_for(server, new_browser())
    async with page(server, ann) as a, page(server, bob) as b:
        assert await told(a) == {"type": "waiting"}
        assert await told(b) == {"type": "connected"} and await told(a) == {"type": "connected"}
        a.send_line(json.dumps({"type": "block"}))
        assert await told(a) == {"type": "blocked", "reported": False}
        assert await told(b) == {"type": "disconnected"}
    await settle(server, clients=0)
    async with page(server, ann) as a, page(server, bob) as b:
        assert await told(a) == {"type": "waiting"}
        assert await told(b) == {"type": "waiting"}
        async with page(server, None) as carl:  # paired with ann, first in line
            assert await told(carl) == {"type": "connected"} and await told(a) == {"type": "connected"}
            carl.send_datagram(OPUS)
            assert await a.datagram() == OPUS


@pytest.fixture
async def ban_then_serve(config) -> AsyncIterator[tuple[Running, str]]:
    """A server started after `duoduel.py ban ID` (as an operator runs it), and the banned id."""
    async with banned_then_served(config) as served:
        yield served


@contextlib.asynccontextmanager
async def banned_then_served(config: duoduel.Config) -> AsyncIterator[tuple[Running, str]]:
    banned = new_browser()
    done = run_command("python", str(ROOT / "duoduel.py"), "ban", banned, "--bans-file", str(config.bans_file))
    assert done.returncode == 0, done.stderr
    async with running_server(config) as running:
        yield running, banned


async def test_ban_by_id_closes_the_session_carrying_that_ids_token(ban_then_serve):
    """A session whose token names a banned browser is closed (1008) with the ban's line; another browser's enters."""
    server, banned = ban_then_serve
    async with page(server, await token_for(server, banned)) as session:
        closed = await session.wait_closed()
    assert (closed.code, closed.reason) == (1008, "You are banned from this service.")
    async with page(server, await token_for(server, new_browser())) as session:
        assert await told(session) == {"type": "waiting"}


async def test_forged_or_expired_token_is_no_id_and_the_call_goes_on(config):
    """A token signed with another secret, or past its lifetime, names nobody: the banned id it claims is not
    believed, and the two sessions are paired and hear each other as sessions without a token are."""
    expiring = dataclasses.replace(config, id_token_seconds=-60)  # the server issues tokens that have already expired
    async with banned_then_served(expiring) as (server, banned):
        forged = issue_token(secrets.token_bytes(32), banned)
        expired = await token_for(server, banned)
        async with page(server, forged) as a, page(server, expired) as b:
            assert await told(a) == {"type": "waiting"}
            assert await told(b) == {"type": "connected"} and await told(a) == {"type": "connected"}
            a.send_datagram(OPUS)
            assert await b.datagram() == OPUS
