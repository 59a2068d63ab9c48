"""A client's stay, as the protocol goes: it is screened, arrives, talks, and departs.

Every kind of link (core.link.Link) goes through the same steps; duoduel.stay
takes a WebSocket (duoduel.handler) and a WebTransport session
(duoduel.session_handler) through them:

1. Before accepting the handshake: await screen_visitor(lobby, visitor) and
   screen(lobby, query) are None, or say why not (an HTTP status, one line for
   the person, the label /metrics counts, when to retry). The visitor comes
   from core.identity.identify(): the browser's id from the cookie, or for
   WebTransport from identity_from_token(); the address that counts.
2. client = newcomer(link, visit_of(query), name, visitor); opened(lobby,
   visitor). From here on, everything is inside a try whose finally is step 5
   (and closed(lobby, visitor) first).
3. arrived = await arrive(lobby, client, visit): the client to talk as (itself,
   or the one whose place it resumed), or None (turned away or moved: skip to 5).
4. link.start_relay(lobby, arrived), then until the link closes or
   `arrived.link is not link` (the page resumed on another link): each audio
   frame `if not flooding(lobby, arrived): relay(lobby, arrived, frame)`
   (core.relay), each control message `if not flooding(...): await control(lobby, arrived, text)`.
5. finally: await depart(lobby, arrived or client, link).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus

from core.config import MAX_PATH_MS
from core.identity import Visitor
from core.link import Link
from core.lobby import (
    Client, Lobby, block_partner, enter, leave, next_partner, pass_key, pass_loss, send_error, set_label, where,
)
from core.resume import forget_token, grant_token, hold, holdable, resume
from core.safety import FOREVER
from core.shared import CALL_TOKEN, CALL_UNKNOWN

log = logging.getLogger("duoduel")

ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
BAD_ROOM_NAME = "bad room name: use 1 to 64 letters, digits, '-' or '_'"
BAD_CALL_TOKEN = "bad call token: open the page again to be paired"
ROOM_FULL = json.dumps({"type": "error", "reason": "room full"})
RESUME_REFUSED = json.dumps({"type": "error", "reason": "resume token unknown or expired: starting a new session"})


@dataclass(frozen=True)
class Visit:
    """What a client's URL asks for: a room, the call it was moved to, a resume token for later, a place to resume."""

    room: str | None = None
    call: str | None = None
    resumable: bool = False
    token: str | None = None


@dataclass(frozen=True)
class Unwelcome:
    """Why a handshake is refused: its HTTP status, one line for the person, and the label /metrics counts it under."""

    status: HTTPStatus
    line: str
    label: str
    retry_after: int | None = None  # seconds, for a Retry-After header


def screen(lobby: Lobby, query: str) -> Unwelcome | None:
    """Check a handshake's query (room, call) and that there is room for one more; None lets it in."""
    fields = urllib.parse.parse_qs(query, keep_blank_values=True)
    rooms, calls = fields.get("room"), fields.get("call")
    if rooms is not None and (len(rooms) != 1 or not ROOM_NAME.fullmatch(rooms[0])):
        return Unwelcome(HTTPStatus.BAD_REQUEST, BAD_ROOM_NAME, "bad_room")
    if calls is not None and (len(calls) != 1 or not CALL_TOKEN.fullmatch(calls[0]) or rooms is not None):
        return Unwelcome(HTTPStatus.BAD_REQUEST, BAD_CALL_TOKEN, "bad_call")
    # A resume takes back a place the server holds, not a new one: never refused as full.
    if len(lobby.clients) >= lobby.config.max_clients and not any(token in lobby.tokens for token in fields.get("resume", ())):
        log.warning("refused a client: %d clients already (--max-clients)", len(lobby.clients))
        return Unwelcome(HTTPStatus.SERVICE_UNAVAILABLE, "The server is full. Try again in a minute.", "full")
    return None


async def screen_visitor(lobby: Lobby, visitor: Visitor) -> Unwelcome | None:
    """Refuse a banned browser or address, and an address past its limits (with --redis, of all processes); None lets it in."""
    until = lobby.safety.banned(visitor.browser, visitor.address)
    if until is not None:
        when = "" if until >= FOREVER else datetime.fromtimestamp(until, timezone.utc).strftime(" until %Y-%m-%d %H:%M UTC")
        return Unwelcome(HTTPStatus.FORBIDDEN, f"You are banned from this service{when}.", "banned")
    if not visitor.limited:
        return None
    config, shared, refusal = lobby.config, lobby.shared, None
    if shared is not None and shared.up:
        refusal = await shared.admit(lobby, visitor.address)
    if shared is None or not shared.up:  # alone, or Redis out (even just now): this process counts on its own
        refusal = lobby.safety.limits.admit(visitor.address, config.connections_per_address, config.handshakes_per_minute, time.monotonic())
    if refusal is not None:
        line, wait = refusal
        log.info("refused a handshake from %s: %s", visitor.address, line)
        return Unwelcome(HTTPStatus.TOO_MANY_REQUESTS, line, "address_limit", wait)
    return None


def opened(lobby: Lobby, visitor: Visitor) -> None:
    """Count the visitor's connection open, here and (with --redis) for every process's limit."""
    if visitor.limited:
        lobby.safety.limits.opened(visitor.address)
        if lobby.shared is not None:
            lobby.shared.count_open(visitor.address, 1)


def closed(lobby: Lobby, visitor: Visitor) -> None:
    """Count the visitor's connection closed."""
    if visitor.limited:
        lobby.safety.limits.closed(visitor.address)
        if lobby.shared is not None:
            lobby.shared.count_open(visitor.address, -1)


def visit_of(query: str) -> Visit:
    """Read what a screened query asks for."""
    fields = urllib.parse.parse_qs(query, keep_blank_values=True)
    tokens = fields.get("resume")
    token = None if tokens is None else tokens[0] if len(tokens) == 1 else ""
    return Visit(
        room=fields.get("room", [None])[0],
        call=fields.get("call", [None])[0],
        resumable=fields.get("resumable") == ["1"] or token is not None,
        token=token,
    )


def newcomer(link: Link, visit: Visit, name: str, visitor: Visitor | None = None) -> Client:
    """A client for a link that has just opened, not in the lobby yet."""
    client = Client(link, visit.room, name, call=visit.call, window_start=asyncio.get_running_loop().time())
    if visitor is not None:
        client.browser, client.address = visitor.browser, visitor.address
    return client


async def arrive(lobby: Lobby, client: Client, visit: Visit) -> Client | None:
    """Take a newcomer to the place its resume token holds, else into the lobby or its room.

    Returns the client to talk as: the one whose place it resumed, or the
    newcomer; None if it was turned away (room full) or sent to another process.
    """
    if visit.token is not None:
        resumed = await resume(lobby, client.link, visit.token, visit.room)
        if resumed is not None:
            return resumed
        lobby.metrics.resumes_refused += 1
        client.link.send_text(RESUME_REFUSED)
    return client if await come_in(lobby, client, visit.resumable) else None


async def come_in(lobby: Lobby, client: Client, resumable: bool) -> bool:
    """Enter a newcomer in the lobby or its room, with a resume token if it asked; False if it may not stay here."""
    address = client.link.remote_address[0] if client.link.remote_address else "?"
    log.info("%s connected from %s%s", client.name, address, where(client))
    if client.call is not None and lobby.shared is None:
        client.call = None
        send_error(client, CALL_UNKNOWN)
    # With --redis, a private room lives on one process: go there if it is not this one.
    if lobby.shared is not None and client.room is not None and await lobby.shared.owner_elsewhere(lobby, client):
        return False
    async with lobby.lock:
        entered = enter(lobby, client)
        if entered and resumable:
            grant_token(lobby, client)
    if not entered:
        log.info("%s refused: room %s is full", client.name, client.room)
        lobby.metrics.rejections["room_full"] += 1
        client.link.send_text(ROOM_FULL)
        await client.link.close(1008, "room full")
        return False
    lobby.metrics.connections += 1
    return True


async def depart(lobby: Lobby, client: Client, link: Link) -> None:
    """The client's link closed: hold its place for a resume, or let it leave."""
    log.info("%s disconnected (%s)", client.name, link.close_code if link.close_code is not None else 1006)
    async with lobby.lock:
        if client.link is not link:
            return  # resumed on another link already: nothing here is this link's any more
        if holdable(lobby, client, link):
            return hold(lobby, client)
        forget_token(lobby, client)  # before the lock goes: no resume can slip in before leave()
    await leave(lobby, client)


# Control messages.


async def control(lobby: Lobby, client: Client, text: str) -> None:
    """Act on one JSON control message from the client."""
    try:
        message = json.loads(text)
    except ValueError:
        return send_error(client, "malformed JSON: send an object such as {\"type\": \"next\"}")
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return send_error(client, "expected a JSON object with a string \"type\"")
    kind = message["type"]
    if kind == "next" and client.group is not None:
        send_error(client, "next does nothing in a group room: everyone in it hears you already")
    elif kind == "next":
        await next_partner(lobby, client)
    elif kind == "block":
        await block_partner(lobby, client)
    elif kind == "report":
        reason = message.get("reason", "")
        await block_partner(lobby, client, reason if isinstance(reason, str) else "")
    elif kind == "label":
        set_label(client, message.get("label"))
    elif kind == "ping":
        answer_ping(client, message)
    elif kind == "key":
        pass_key(client, text)
    elif kind == "loss":
        pass_loss(lobby, client, message)
    else:
        send_error(client, f"unknown message type {kind[:40]!r}")


def answer_ping(client: Client, message: dict) -> None:
    """Pong with the ping's t, and the partner's path (its delay to the server) for the page's estimate.

    A page knows only its own half of the way: the partner's uplink, as far from it as its own, reaches it
    through here, with the ping it already sends every 2 s.
    """
    t, path = message.get("t"), message.get("path")
    if not is_number(t):
        return send_error(client, "ping needs a number \"t\"")
    if path is not None:
        if not is_number(path) or not 0 <= path <= MAX_PATH_MS:
            return send_error(client, f"ping's \"path\" must be a number of ms from 0 to {MAX_PATH_MS}")
        client.path_ms = float(path)
    pong: dict[str, object] = {"type": "pong", "t": t}
    if client.partner is not None and client.partner.path_ms is not None:
        pong["partner_path"] = client.partner.path_ms
    client.link.send_text(json.dumps(pong))


def is_number(value: object) -> bool:
    """A JSON number (true and false are not numbers here, though Python's bool is an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
