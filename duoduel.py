#!/usr/bin/env python
"""duoduel: two people open the same page, press Start, and talk.

One websockets server does everything: it serves the page from static/, pairs
the clients that connect to /ws through a waiting slot guarded by a lock, and
relays their binary audio frames to each other. A private room (/ws?room=NAME)
holds up to --room-size people, each hearing all the others. Text frames are
JSON control messages; see docs/protocol.md for the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.utils
import errno
import hashlib
import json
import logging
import posixpath
import re
import secrets
import signal
import socket
import ssl
import struct
import sys
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # redis is optional: imported at run time only with --redis
    import redis.asyncio

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.version import version as websockets_version

__all__ = ["Config", "Lobby", "main", "make_server", "run"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

# An explicit map, not mimetypes alone: on some systems mimetypes says
# text/plain for .js, and browsers then refuse to run module scripts.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".wav": "audio/wav",
}

ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROOM_PAGE = re.compile(r"/r/[A-Za-z0-9_-]{1,64}")
BAD_ROOM_NAME = "bad room name: use 1 to 64 letters, digits, '-' or '_'"
BAD_CALL_TOKEN = "bad call token: open the page again to be paired"
# A Host header we are willing to echo into the Content-Security-Policy.
SAFE_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

# Audio frames are 20 ms: a few hundred bytes of Opus, 1920 bytes of PCM16 at
# 48 kHz. Anything near this limit is not audio; websockets closes with 1009.
MAX_MESSAGE_BYTES = 64 * 1024
# Defaults of the Config fields of the same names.
# An audio client sends 50 frames a second plus a ping every few seconds.
MAX_MESSAGES_PER_SECOND = 250
# Drop audio for a partner whose unsent backlog exceeds this many frames
# (about 100 ms): old audio is worth less than none.
AUDIO_BACKLOG_FRAMES = 5
# Linux grows a socket's buffers to megabytes (seconds of audio) unless told
# otherwise; the kernel doubles these values. Small buffers keep a slow reader
# from piling up audio in our send buffer, and an overloaded server from
# piling up stale frames in its receive buffers: shed, don't queue.
SOCKET_SEND_BUFFER = 8 * 1024
SOCKET_RECEIVE_BUFFER = 16 * 1024
# A partner that has not been able to take audio for this long is gone.
STALL_TIMEOUT = 5.0
# One core relays about 400 calls (40,000 frames a second at about 22 us
# each; see docs/performance.md): past that, admit nobody rather than make every call late.
MAX_CLIENTS = 800
# A private room's people by default. Every member's frame goes to every other
# member, so a room of K costs K x (K - 1) x 50 deliveries a second, and each
# page decodes K - 1 streams: keep rooms small. Two is a private call.
ROOM_SIZE = 8
MAX_ROOM_SIZE = 16
# A member's label is shown to the others as text, never as markup.
MAX_LABEL = 32
# How long a client whose socket dropped keeps its place for a resume (issue 13):
# a network change or a laptop lid shut for a moment, not a page that left.
RESUME_WINDOW = 10.0
# A resume token's random bytes: 192 bits, 32 characters of base64url.
RESUME_TOKEN_BYTES = 24
# The largest one-way delay a page may report in its pings (a minute: beyond any call).
MAX_PATH_MS = 60_000

WAITING = json.dumps({"type": "waiting"})
CONNECTED = json.dumps({"type": "connected"})
DISCONNECTED = json.dumps({"type": "disconnected"})
ROOM_FULL = json.dumps({"type": "error", "reason": "room full"})
RECONNECTING = json.dumps({"type": "reconnecting"})
RESUMED = json.dumps({"type": "resumed"})
RESUME_REFUSED = json.dumps({"type": "error", "reason": "resume token unknown or expired: starting a new session"})
BAD_LABEL = f"label must be text of 1 to {MAX_LABEL} characters"

log = logging.getLogger("duoduel")


class StartupError(Exception):
    """A reason the server cannot start, for one line on stderr."""


@dataclass(eq=False)
class Client:
    """One connected page: its socket, where it waits, and who it talks to."""

    websocket: ServerConnection
    room: str | None
    name: str
    partner: Client | None = None
    group: Room | None = None  # the group room the client talks in (rooms of more than two)
    slot: int = 0  # its place in the group room, marked on every frame it sends there
    label: str = ""
    stalled_since: float | None = None
    closing: asyncio.Task[None] | None = None
    messages: int = 0
    window_start: float = 0.0
    token: str | None = None  # its resume token, if it asked for one (?resumable=1)
    expiry: asyncio.Task[None] | None = None  # while its place is held after a drop: the end of the window
    call: str | None = None  # the call token it came with, moved here by another process (shared lobby)
    ticket: str | None = None  # its place in the shared lobby's waiting slot, while it waits there
    seeking: asyncio.Task[None] | None = None  # its search through the shared lobby, while one runs
    path_ms: float | None = None  # its one-way delay to the server, as its page measures it (pings)


@dataclass
class Metrics:
    """Counters for /metrics; plain integers, cheap to bump on the hot path."""

    connections: int = 0
    pairs: int = 0
    groups: int = 0
    frames_relayed: int = 0
    bytes_relayed: int = 0
    frames_dropped: int = 0
    holds: int = 0
    resumes: int = 0
    resumes_refused: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    moved: int = 0  # clients sent to another process of the shared lobby
    answered: int = 0  # clients moved here and paired with the waiter they were sent to
    redis_errors: int = 0


@dataclass(eq=False)
class Room:
    """A private room's members in the order they came.

    The tuple is replaced, never changed in place: a loop over it (a fan-out)
    never sees it change under it.
    """

    members: tuple[Client, ...] = ()


@dataclass(frozen=True)
class Config:
    """What the command line decides, and the relay's tunables."""

    host: str = "localhost"
    port: int = 8080
    static_dir: Path = STATIC_DIR
    tls: ssl.SSLContext | None = None
    allowed_origins: frozenset[str] = frozenset()
    max_clients: int = MAX_CLIENTS
    handshake_timeout: float = 10.0
    room_size: int = ROOM_SIZE
    max_messages_per_second: int = MAX_MESSAGES_PER_SECOND
    audio_backlog_frames: int = AUDIO_BACKLOG_FRAMES
    stall_timeout: float = STALL_TIMEOUT
    socket_send_buffer: int = SOCKET_SEND_BUFFER
    socket_receive_buffer: int = SOCKET_RECEIVE_BUFFER
    # "auto": cut audio frames from the byte stream ourselves if the start-up
    # self-check passes, else websockets' public API alone; "public": always the latter.
    relay_route: Literal["auto", "public"] = "auto"
    # Seconds a dropped client's place is held for a resume; 0: a drop ends the call at once.
    resume_window: float = RESUME_WINDOW
    # The shared lobby (--redis): where Redis is, and how a browser reaches this process.
    redis_url: str | None = None
    public_url: str | None = None


@dataclass
class Lobby:
    """Who is connected, who waits (one slot per room; None is the lobby), who talks.

    Rooms of size 2 pair their two members as the lobby does; larger ones are
    group rooms, where everyone hears everyone.
    """

    config: Config = field(default_factory=Config)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: dict[str | None, Client] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    clients: set[Client] = field(default_factory=set)
    metrics: Metrics = field(default_factory=Metrics)
    tokens: dict[str, Client] = field(default_factory=dict)  # resume tokens of clients connected or held
    held: set[Client] = field(default_factory=set)  # clients (in `clients` too) whose socket dropped, for a while
    shared: SharedLobby | None = None  # with --redis: the lobby and rooms this process shares with others


# Sending.


def send_now(websocket: ServerConnection, message: str) -> None:
    """Queue a control message on the socket at once; nothing if it is closing.

    websockets' send() waits for a slow reader to drain its buffer. Nothing
    here may wait for another client: a frozen partner would stall its sender,
    and pairing sends under the lobby lock so that notices keep their order.
    websockets' broadcast() writes at once and skips a connection that is not
    open: exactly this, through its public API. (Audio goes out through
    send_frame(), below.)
    """
    broadcast((websocket,), message)


def send_error(client: Client, reason: str) -> None:
    """Tell a client that its control message was not understood."""
    send_now(client.websocket, json.dumps({"type": "error", "reason": reason}))


# Pairing. Every change of who waits and who talks happens under lobby.lock,
# with the notices sent (never awaited) inside it, so they cannot cross.


def pair_or_wait(lobby: Lobby, client: Client) -> None:
    """Pair the client with whoever waits in its room, or make it the one who waits."""
    # With --redis, the lobby's waiting slot is in Redis (while Redis answers).
    if client.room is None and lobby.shared is not None and lobby.shared.seek(lobby, client):
        return
    waiter = lobby.waiting.pop(client.room, None)
    # A waiter whose socket is closing is about to run leave(): never pair with it.
    if waiter is None or waiter is client or waiter.websocket.state is not State.OPEN:
        lobby.waiting[client.room] = client
        send_now(client.websocket, WAITING)
        return
    pair(lobby, client, waiter)


def pair(lobby: Lobby, client: Client, waiter: Client) -> None:
    """Put two clients in a call and tell them both, the waiter first."""
    client.partner, waiter.partner = waiter, client
    lobby.metrics.pairs += 1
    send_now(waiter.websocket, CONNECTED)
    send_now(client.websocket, CONNECTED)
    log.info("%s paired with %s%s", client.name, waiter.name, where(client))


def unpair(lobby: Lobby, client: Client) -> Client | None:
    """End the client's call or its wait; return the partner it had, told it left."""
    if lobby.waiting.get(client.room) is client:
        del lobby.waiting[client.room]
    if lobby.shared is not None:
        lobby.shared.forget(client)
    partner, client.partner = client.partner, None
    if partner is not None:
        partner.partner = None
        send_now(partner.websocket, DISCONNECTED)
    return partner


async def join(lobby: Lobby, client: Client) -> bool:
    """Enter the client's room (or the lobby); return False if the room is full."""
    async with lobby.lock:
        if client.room is None:
            room = None
        else:
            room = lobby.rooms.setdefault(client.room, Room())
            if len(room.members) >= lobby.config.room_size:
                return False
            room.members += (client,)
        lobby.clients.add(client)
        if room is not None and lobby.config.room_size > 2:
            enter_group(lobby, room, client)
        else:
            pair_or_wait(lobby, client)
    return True


async def next_partner(lobby: Lobby, client: Client) -> None:
    """End the current call, if any, and look for someone else at once."""
    async with lobby.lock:
        unpair(lobby, client)
        pair_or_wait(lobby, client)


async def leave(lobby: Lobby, client: Client) -> None:
    """Forget a client that has gone; a partner in a private room waits there again."""
    async with lobby.lock:
        lobby.clients.discard(client)
        partner = unpair(lobby, client)
        if client.room is None:
            return
        room = lobby.rooms[client.room]
        room.members = tuple(member for member in room.members if member is not client)
        if not room.members:
            del lobby.rooms[client.room]
            if lobby.shared is not None:
                lobby.shared.release_room(client.room)
        if client.group is not None:
            leave_group(client)
        elif partner is not None and partner.websocket.state is State.OPEN:
            pair_or_wait(lobby, partner)


# Group rooms: every member hears every other. A member holds a slot, the
# lowest free one; the server writes it in front of every frame the member
# sends, so nobody can pass for somebody else. Each member learns of a slot
# (room or joined) before the first frame marked with it, and of its end (left)
# after the last one: the notices and the frames share one socket, in order.


def enter_group(lobby: Lobby, room: Room, client: Client) -> None:
    """Give the newcomer (already counted in room) a slot, the member list, and everyone's news."""
    others = room.members[:-1]
    taken = {member.slot for member in others}
    client.slot = next(slot for slot in range(lobby.config.room_size) if slot not in taken)
    client.label = f"Guest {client.slot + 1}"
    client.group = room
    log.info("%s joined%s: slot %d, %d there now", client.name, where(client), client.slot, len(room.members))
    send_now(client.websocket, json.dumps({
        "type": "room", "slot": client.slot, "label": client.label, "size": lobby.config.room_size,
        "members": [{"slot": member.slot, "label": member.label} for member in others],
    }))
    joined = json.dumps({"type": "joined", "slot": client.slot, "label": client.label})
    for member in others:
        send_now(member.websocket, joined)
    if not others:
        send_now(client.websocket, WAITING)
        return
    if len(others) == 1:  # the one who waited is in a call now, as in a room of two
        lobby.metrics.groups += 1
        send_now(others[0].websocket, CONNECTED)
    send_now(client.websocket, CONNECTED)


def leave_group(client: Client) -> None:
    """Tell the rest of the client's group room (no longer counting it) that it left."""
    room, client.group = client.group, None
    left = json.dumps({"type": "left", "slot": client.slot})
    for member in room.members:
        send_now(member.websocket, left)
    if len(room.members) == 1:  # the last one waits in the room, as after a call of two
        send_now(room.members[0].websocket, DISCONNECTED)
        send_now(room.members[0].websocket, WAITING)


def set_label(client: Client, label: object) -> None:
    """Take a member's new label and show it to the whole room, the member included."""
    if client.group is None:
        return send_error(client, "label works only in a group room")
    if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL:
        return send_error(client, BAD_LABEL)
    client.label = label
    notice = json.dumps({"type": "label", "slot": client.slot, "label": label})
    for member in client.group.members:
        send_now(member.websocket, notice)


def where(client: Client) -> str:
    """Name the client's room for a log line."""
    return "" if client.room is None else f" in room {client.room}"


# Resuming after a dropped socket (issue 13). A page that asks (?resumable=1)
# gets a resume token on its own socket. If that socket drops in a call (no
# closing handshake: 1006), the client's place (partner, room, slot, label) is
# held for resume_window seconds and the others hear "reconnecting"; a socket
# that opens /ws?resume=TOKEN meanwhile takes the place back. A page that says
# goodbye (any close frame: 1000, or 1001 when its tab closes) leaves at once.
# Tokens are single use: each resume hands out a new one. The Client object
# stays; only its socket changes, detached from the old one first, so audio
# that the old socket delivers late is never relayed.


def grant_token(lobby: Lobby, client: Client, resumed: bool = False) -> None:
    """Give the client a fresh resume token (forgetting its old one) and tell it, on its own socket."""
    if client.token is not None:
        lobby.tokens.pop(client.token, None)
    client.token = secrets.token_urlsafe(RESUME_TOKEN_BYTES)
    lobby.tokens[client.token] = client
    session = {"type": "session", "token": client.token, "window": lobby.config.resume_window}
    if resumed:
        session["resumed"] = True
    send_now(client.websocket, json.dumps(session))


def forget_token(lobby: Lobby, client: Client) -> None:
    """The client will not be back: its token opens nothing from now on."""
    if client.token is not None:
        lobby.tokens.pop(client.token, None)
        client.token = None


def tell_others(client: Client, kind: str) -> None:
    """Tell the client's partner, or the rest of its group room, that it is reconnecting or resumed."""
    if client.group is not None:
        notice = json.dumps({"type": kind, "slot": client.slot})
        for member in client.group.members:
            if member is not client:
                send_now(member.websocket, notice)
    elif client.partner is not None:
        send_now(client.partner.websocket, RECONNECTING if kind == "reconnecting" else RESUMED)


def holdable(lobby: Lobby, client: Client, websocket: RelayConnection) -> bool:
    """Whether a closed socket was a drop worth holding a place for.

    Only a drop: the page sent no close frame (1006), and the server did not
    close it on purpose (flooding, stalled). Only in company: a call, or a group
    room with someone else in it; whoever waited alone just waits again.
    """
    if lobby.config.resume_window <= 0 or client.token is None or client.closing is not None:
        return False
    if websocket.close_code != 1006:
        return False
    if client.group is not None:
        return len(client.group.members) > 1
    return client.partner is not None


def hold(lobby: Lobby, client: Client) -> None:
    """Keep a dropped client's place for the resume window; tell the others it is reconnecting."""
    lobby.held.add(client)
    lobby.metrics.holds += 1
    client.expiry = asyncio.create_task(expire(lobby, client))
    tell_others(client, "reconnecting")
    log.info("%s dropped%s: place held for %g s", client.name, where(client), lobby.config.resume_window)


async def expire(lobby: Lobby, client: Client) -> None:
    """At the end of the window, a client that did not come back leaves as if it had just gone."""
    await asyncio.sleep(lobby.config.resume_window)
    async with lobby.lock:
        if client.expiry is not asyncio.current_task():
            return  # it resumed while this task waited for the lock
        client.expiry = None
        lobby.held.discard(client)
        forget_token(lobby, client)
    log.info("%s did not come back within %g s", client.name, lobby.config.resume_window)
    await leave(lobby, client)


async def depart(lobby: Lobby, client: Client, websocket: RelayConnection) -> None:
    """The client's socket closed: hold its place for a resume, or let it leave."""
    async with lobby.lock:
        if client.websocket is not websocket:
            return  # resumed on another socket already: nothing here is this socket's any more
        if holdable(lobby, client, websocket):
            return hold(lobby, client)
        forget_token(lobby, client)  # before the lock goes: no resume can slip in before leave()
    await leave(lobby, client)


async def resume(
    lobby: Lobby, websocket: RelayConnection, token: str, room: str | None
) -> tuple[Client, RelayConnection] | None:
    """Give a held (or still connected) client's place to a new socket; return the client and the socket it had.

    None if the token opens nothing here: unknown, used already, expired, or
    for another room. The old socket is detached before the new one is attached.
    """
    async with lobby.lock:
        client = lobby.tokens.get(token)
        if client is None or client.room != room:
            return None
        old = client.websocket
        old.stop_relay()
        client.websocket = websocket
        client.closing, client.stalled_since = None, None
        client.messages, client.window_start = 0, asyncio.get_running_loop().time()
        if client.expiry is not None:
            client.expiry.cancel()
            client.expiry = None
        lobby.held.discard(client)
        lobby.metrics.resumes += 1
        tell_place(lobby, client)
        grant_token(lobby, client, resumed=True)
        tell_others(client, "resumed")
    log.info("%s resumed%s", client.name, where(client))
    return client, old


def tell_place(lobby: Lobby, client: Client) -> None:
    """Tell a resumed client where it is now: its group room, its call, its wait, or that its partner left meanwhile."""
    if client.group is not None:
        others = [member for member in client.group.members if member is not client]
        send_now(client.websocket, json.dumps({
            "type": "room", "slot": client.slot, "label": client.label, "size": lobby.config.room_size,
            "members": [{"slot": member.slot, "label": member.label} for member in others],
        }))
        send_now(client.websocket, CONNECTED if others else WAITING)
    elif client.partner is not None:
        send_now(client.websocket, CONNECTED)
    elif lobby.waiting.get(client.room) is client:  # it resumed a wait (its old socket was still open)
        send_now(client.websocket, WAITING)
    else:
        send_now(client.websocket, DISCONNECTED)
        if client.room is not None:  # in a room, as when a partner leaves: wait there again
            pair_or_wait(lobby, client)


def session_query(path: str) -> tuple[bool, str | None]:
    """Whether a /ws URL asks for a resume token (?resumable=1), and the token it resumes with (?resume=)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query, keep_blank_values=True)
    tokens = query.get("resume")
    token = None if tokens is None else tokens[0] if len(tokens) == 1 else ""
    return query.get("resumable") == ["1"] or token is not None, token


async def release_held(lobby: Lobby) -> None:
    """On shutdown: end every hold now, so no window outlives the server."""
    for client in list(lobby.held):
        if client.expiry is not None:
            client.expiry.cancel()
    lobby.held.clear()
    lobby.tokens.clear()


# ---------------------------------------------------------------------------
# The shared lobby (--redis, issue 14): N duoduel processes, on one machine or
# many, act as one service. Every call lives on one process and its audio
# never leaves it: Redis holds only who waits and where each private room
# lives, never a frame. Redis commands are spent per call (about three: park,
# take, answer), never per frame, plus two a second per process to say it is
# alive.
#
# The lobby's waiting slot is one Redis key, "PID TICKET", taken or set by the
# Lua script TAKE_SLOT in one atomic step: pop a waiter whose process is alive
# (its key ALIVE_KEY + PID has not expired), or park the caller. A newcomer
# that takes a waiter of another process is sent there ({"type": "moved"})
# with a call token: single-use (GETDEL), short-lived (CALL_MS), unguessable
# (128 random bits). The waiter's process pairs the two when it arrives. A
# waiter taken by a newcomer who never arrives is back in the slot within
# CLAIM_MS plus a second (sweep). A private room belongs to the process its
# first member reached (ROOM_KEY); later members are moved there.
#
# Redis unreachable: calls go on (they never touched it), each process pairs
# its own clients locally and says so once, in the log, /healthz and /metrics,
# and rejoins the shared lobby at the first heartbeat Redis answers.
# ---------------------------------------------------------------------------

REDIS_PREFIX = "duoduel:"
SLOT_KEY = REDIS_PREFIX + "waiting"
ALIVE_KEY = REDIS_PREFIX + "alive:"
CALL_KEY = REDIS_PREFIX + "call:"
CLAIMED_KEY = REDIS_PREFIX + "claimed:"
ROOM_KEY = REDIS_PREFIX + "room:"
HEARTBEAT = 1.0  # seconds between two "alive" refreshes
ALIVE_MS = 3000  # a process silent this long is dead: its waiters and rooms are never used again
CALL_MS = 3000  # a moved client has this long to reach the waiter's process
CLAIM_MS = CALL_MS + 1000  # the waiter is held a second longer, so an answer in time always finds it
ROOM_MS = 24 * 3600 * 1000  # a room's owner key outlives any call; each member's arrival renews it
REDIS_TIMEOUT = 0.5  # one slow answer is an outage: pair locally rather than keep people waiting
REDIS_CONNECTIONS = 8
SEEK_TRIES = 5  # tries in a row before find_partner pauses between them (and says so once)
SEEK_PAUSE = 0.05  # seconds, times the tries so far, up to half a heartbeat
CALL_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
CALL_UNKNOWN = "call token unknown, already used or expired: looking for a partner here instead"

# KEYS[1] the slot; ARGV: pid, ticket, call token, CLAIM_MS, CALL_MS, prefix.
# Returns nil (the caller waits now) or {pid, ticket, public URL} of the waiter taken.
TAKE_SLOT = """
local waiter = redis.call('GET', KEYS[1])
if waiter then
  local pid, ticket = string.match(waiter, '^(%S+) (%S+)$')
  local url = pid and redis.call('GET', ARGV[6] .. 'alive:' .. pid)
  if url then
    redis.call('DEL', KEYS[1])
    if pid ~= ARGV[1] then
      redis.call('SET', ARGV[6] .. 'call:' .. ARGV[3], ticket, 'PX', ARGV[5])
      redis.call('SET', ARGV[6] .. 'claimed:' .. ticket, pid, 'PX', ARGV[4])
    end
    return {pid, ticket, url}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
return false
"""

# KEYS[1] the slot; ARGV[1] "PID TICKET", or "PID " for any ticket of that process. Empties the slot if it holds it.
LEAVE_SLOT = """
local waiter = redis.call('GET', KEYS[1])
if waiter and string.sub(waiter, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return false
"""

# KEYS[1] the slot; ARGV: pid, prefix, tickets... Returns the tickets neither in the slot nor claimed by a newcomer.
SWEEP = """
local waiter = redis.call('GET', KEYS[1])
local lost = {}
for i = 3, #ARGV do
  if waiter ~= ARGV[1] .. ' ' .. ARGV[i] and redis.call('EXISTS', ARGV[2] .. 'claimed:' .. ARGV[i]) == 0 then
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS[1] the room's key; ARGV: pid, prefix, ROOM_MS. Returns {owner pid, owner URL} (URL '' when the caller owns it now).
CLAIM_ROOM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local url = redis.call('GET', ARGV[2] .. 'alive:' .. owner)
  if url then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {owner, url}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {ARGV[1], ''}
"""

# KEYS[1] the room's key; ARGV[1] pid. Deletes the key if this process owns the room.
RELEASE_ROOM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return false
"""


class SharedLobby:
    """This process's part in the lobby and the rooms that duoduel processes share through Redis."""

    def __init__(self, config: Config) -> None:
        if not config.public_url:
            raise StartupError("--redis needs --public-url, how a browser reaches this process")
        import redis.asyncio  # optional: only --redis needs it (public_url() checks it is installed)
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # A few connections, shared: a burst of arrivals queues for them (up to REDIS_TIMEOUT)
        # rather than opening one connection each.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            config.redis_url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_TIMEOUT, decode_responses=True,
            socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 0),
        )
        self.redis: redis.asyncio.Redis = redis.asyncio.Redis(connection_pool=pool)
        self.take_slot = self.redis.register_script(TAKE_SLOT)
        self.leave_slot = self.redis.register_script(LEAVE_SLOT)
        self.sweep = self.redis.register_script(SWEEP)
        self.claim_room = self.redis.register_script(CLAIM_ROOM)
        self.release = self.redis.register_script(RELEASE_ROOM)
        self.pid = secrets.token_hex(8)  # this run of this process: a restart is a new process
        self.url = websocket_base(config.public_url)
        self.where = redact(config.redis_url or "")
        self.up: bool | None = None  # None until Redis first answers or fails
        self.waiters: dict[str, Client] = {}  # ticket -> local client parked in (or taken from) the slot
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self, lobby: Lobby) -> None:
        """Say this process is alive, then keep saying it every second."""
        await self.beat(lobby)
        self.spawn(self.keep_alive(lobby))

    async def stop(self) -> None:
        """Leave the shared lobby: nobody is sent here any more."""
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(*self.errors):
            await self.leave_slot(keys=[SLOT_KEY], args=[f"{self.pid} "])
            await self.redis.delete(ALIVE_KEY + self.pid)
        await self.redis.aclose(close_connection_pool=True)

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def keep_alive(self, lobby: Lobby) -> None:
        """Beat every HEARTBEAT seconds until cancelled."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            await self.beat(lobby)

    async def beat(self, lobby: Lobby) -> None:
        """Renew this process's liveness key, put lost waiters back in line, notice Redis leaving or returning."""
        try:
            before = await self.redis.set(ALIVE_KEY + self.pid, self.url, px=ALIVE_MS, get=True)
            lost = await self.sweep(keys=[SLOT_KEY], args=[self.pid, REDIS_PREFIX, *self.waiters]) if self.waiters else []
        except self.errors as exc:
            return await self.went_down(lobby, exc)
        # No key from the last beat: Redis restarted (or forgot us) between two beats, even if no command failed.
        if not self.up or before is None:
            await self.came_back(lobby)
        async with lobby.lock:
            for ticket in lost:
                client = self.waiters.pop(ticket, None)
                if client is not None:
                    client.ticket = None
                    if waiting_alone(lobby, client):
                        self.seek(lobby, client)

    async def went_down(self, lobby: Lobby, exc: BaseException) -> None:
        """Redis failed: pair this process's clients locally, and say so once."""
        lobby.metrics.redis_errors += 1
        if self.up is False:
            return
        self.up = False
        log.warning(
            "Redis at %s is unreachable (%s): pairing this process's clients locally until it answers again",
            self.where, exc.__class__.__name__,
        )
        async with lobby.lock:
            stranded, self.waiters = list(self.waiters.values()), {}
            for client in stranded:
                client.ticket = None
                if waiting_alone(lobby, client):
                    pair_or_wait(lobby, client)

    async def came_back(self, lobby: Lobby) -> None:
        """Redis answers (again): clear what this process left in the slot and wait in the shared lobby."""
        with contextlib.suppress(*self.errors):
            await self.leave_slot(keys=[SLOT_KEY], args=[f"{self.pid} "])
            # A Redis that restarted forgot which rooms live here: pin them again (unless taken meanwhile).
            for name in list(lobby.rooms):
                await self.claim_room(keys=[room_key(name)], args=[self.pid, REDIS_PREFIX, ROOM_MS])
        async with lobby.lock:
            self.up = True
            log.info("in the shared lobby at %s as %s (%s)", self.where, self.pid, self.url)
            waiter = lobby.waiting.pop(None, None)
            if waiter is not None and waiting_alone(lobby, waiter):
                self.seek(lobby, waiter)

    def seek(self, lobby: Lobby, client: Client) -> bool:
        """Start looking for the client's partner in the shared lobby; False if Redis is out (pair locally)."""
        if not self.up:
            return False
        client.seeking = self.spawn(self.find_partner(lobby, client))
        return True

    def forget(self, client: Client) -> None:
        """The client stops waiting or seeking (it left, or asked for Next): take it out of the slot."""
        client.seeking = None
        ticket, client.ticket = client.ticket, None
        if ticket is not None and self.waiters.pop(ticket, None) is not None:
            self.spawn(self.unpark(ticket))

    async def unpark(self, ticket: str) -> None:
        """Empty the slot if it still holds this ticket."""
        with contextlib.suppress(*self.errors):
            await self.leave_slot(keys=[SLOT_KEY], args=[f"{self.pid} {ticket}"])

    async def find_partner(self, lobby: Lobby, client: Client) -> None:
        """Pair the client through the slot: with a waiter here, by moving it to a waiter elsewhere, or park it."""
        me = asyncio.current_task()
        if client.call is not None:
            call, client.call = client.call, None
            if await self.answer(lobby, client, call, me):
                return
        tries = 0
        while True:
            # A waiter taken from the slot may have left a moment before, or be one of ours whose own
            # search has not settled yet (it is put back in line by the sweep): try again, soon at first,
            # then no more than twice a second. Waiting locally instead would hide the client from the
            # shared slot while Redis is up, and two such clients on two processes would never meet.
            if tries == SEEK_TRIES:
                log.warning("%s: the shared lobby kept giving waiters that had left; still trying", client.name)
            if tries >= SEEK_TRIES:
                await asyncio.sleep(min(SEEK_PAUSE * tries, HEARTBEAT / 2))
            tries += 1
            ticket, call = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            try:
                found = await self.take_slot(
                    keys=[SLOT_KEY], args=[self.pid, ticket, call, CLAIM_MS, CALL_MS, REDIS_PREFIX]
                )
            except self.errors as exc:
                await self.went_down(lobby, exc)
                found = ticket = None
            async with lobby.lock:
                if self.settle(lobby, client, me, ticket, call, found):
                    return

    def settle(
        self, lobby: Lobby, client: Client, me: object, ticket: str | None, call: str, found: list[str] | None
    ) -> bool:
        """Act, under the lock, on what TAKE_SLOT did; False to try again (the waiter taken here had left)."""
        if not searching(lobby, client, me) or not self.up:
            if found is None and ticket is not None:
                self.spawn(self.unpark(ticket))  # parked, but gone meanwhile
            elif found is not None and found[0] == self.pid:
                self.requeue(lobby, found[1])  # took a waiter of ours for nobody
            if searching(lobby, client, me):  # Redis went out meanwhile
                client.seeking = None
                pair_or_wait(lobby, client)
            return True
        if found is None:
            client.seeking, client.ticket = None, ticket
            self.waiters[ticket] = client
            send_now(client.websocket, WAITING)
            return True
        pid, their_ticket, url = found
        if pid != self.pid:
            client.seeking = None
            self.move(lobby, client, f"{url}/ws?call={call}")
            return True
        waiter = self.waiters.pop(their_ticket, None)
        if waiter is None or not waiting_alone(lobby, waiter) or waiter is client:
            return False
        waiter.ticket = client.seeking = None
        pair(lobby, client, waiter)
        return True

    def requeue(self, lobby: Lobby, ticket: str) -> None:
        """A waiter of this process was taken from the slot for nobody: put it back in line."""
        waiter = self.waiters.pop(ticket, None)
        if waiter is not None:
            waiter.ticket = None
            if waiting_alone(lobby, waiter):
                self.seek(lobby, waiter)

    async def answer(self, lobby: Lobby, client: Client, call: str, me: object) -> bool:
        """A client moved here with a call token: pair it with the waiter the token names, if still there."""
        try:
            ticket = await self.redis.getdel(CALL_KEY + call)
        except self.errors as exc:
            await self.went_down(lobby, exc)
            ticket = None
        async with lobby.lock:
            if not searching(lobby, client, me):
                return True
            waiter = self.waiters.pop(ticket, None) if ticket is not None else None
            if waiter is not None and waiting_alone(lobby, waiter):
                waiter.ticket = client.seeking = None
                lobby.metrics.answered += 1
                pair(lobby, client, waiter)
                return True
            if waiter is not None:
                waiter.ticket = None
            send_error(client, CALL_UNKNOWN)
            if not self.up:
                client.seeking = None
                pair_or_wait(lobby, client)
                return True
        return False

    def move(self, lobby: Lobby, client: Client, url: str) -> None:
        """Send the client to another process, where its call or room is; then close its socket here."""
        lobby.metrics.moved += 1
        send_now(client.websocket, json.dumps({"type": "moved", "url": url}))
        close_soon(lobby, client, 1000, "moved to another process", "moved")

    async def owner_elsewhere(self, lobby: Lobby, client: Client) -> bool:
        """Move a private room's newcomer to the process that holds the room; False if the room is (now) here."""
        if not self.up:
            return False
        try:
            owner, url = await self.claim_room(keys=[room_key(client.room)], args=[self.pid, REDIS_PREFIX, ROOM_MS])
        except self.errors as exc:
            await self.went_down(lobby, exc)
            return False
        if owner == self.pid:
            return False
        self.move(lobby, client, f"{url}/ws?room={client.room}")
        return True

    def release_room(self, name: str) -> None:
        """The room has emptied here: let the next first member pin it wherever it arrives."""
        if self.up:
            self.spawn(self.forget_room(name))

    async def forget_room(self, name: str) -> None:
        with contextlib.suppress(*self.errors):
            await self.release(keys=[room_key(name)], args=[self.pid])


def searching(lobby: Lobby, client: Client, search: object) -> bool:
    """Whether this search is still the client's: it has not left, nor asked for Next since."""
    return client.seeking is search and client in lobby.clients and client.websocket.state is State.OPEN


def waiting_alone(lobby: Lobby, client: Client) -> bool:
    """Whether a client is here, open, and in no call: one that may still be paired."""
    return client.partner is None and client in lobby.clients and client.websocket.state is State.OPEN


def room_key(name: str) -> str:
    """The Redis key of a private room: a hash, so that whoever reads Redis learns no room's name."""
    return ROOM_KEY + hashlib.blake2s(name.encode(), digest_size=16).hexdigest()


def websocket_base(public_url: str) -> str:
    """The ws:// or wss:// URL that /ws hangs under, from --public-url."""
    url = urllib.parse.urlsplit(public_url)
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    return urllib.parse.urlunsplit((scheme, url.netloc, url.path.rstrip("/"), "", ""))


def redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# End of the shared lobby.


# The relay: an audio frame from one client to whoever listens to it. No await,
# no task switch, no logging, no lock; nothing allocated but the unmasked frame
# and the bytes written. Both routes below hand every binary frame to relay().


def relay(lobby: Lobby, client: Client, frame: bytes) -> None:
    """Forward an audio frame to the partner, or to every other member of a group room."""
    if client.group is not None:
        return fan_out(lobby, client, frame)
    partner = client.partner
    if partner is not None:
        deliver(lobby, partner, frame)


def deliver(lobby: Lobby, receiver: Client, frame: bytes) -> None:
    """Send an audio frame to one receiver, or drop it if the receiver lags behind."""
    websocket = receiver.websocket
    if websocket.wire.get_write_buffer_size() > lobby.config.audio_backlog_frames * len(frame):
        drop(lobby, receiver)
    elif websocket.send_frame(frame):
        receiver.stalled_since = None
        metrics = lobby.metrics
        metrics.frames_relayed += 1
        metrics.bytes_relayed += len(frame)


def fan_out(lobby: Lobby, sender: Client, frame: bytes) -> None:
    """Forward an audio frame, behind its sender's slot, to every other member of its group room.

    The marked frame is built once; deliver() gives each receiver its own
    backlog check, so one that lags loses its own audio and nobody else's.
    """
    members = sender.group.members
    if len(members) < 2:
        return
    marked = SLOT_MARKS[sender.slot] + frame
    for member in members:
        if member is not sender:
            deliver(lobby, member, marked)


SLOT_MARKS = [bytes((slot,)) for slot in range(MAX_ROOM_SIZE)]


def drop(lobby: Lobby, receiver: Client) -> None:
    """Count a frame dropped for a slow receiver; close one stalled for too long."""
    lobby.metrics.frames_dropped += 1
    now = asyncio.get_running_loop().time()
    if receiver.stalled_since is None:
        receiver.stalled_since = now
    elif now - receiver.stalled_since > lobby.config.stall_timeout:
        close_soon(lobby, receiver, 1011, "receiver stalled", "stalled")


def close_soon(lobby: Lobby, client: Client, code: int, reason: str, label: str) -> None:
    """Start closing a client without waiting for its close handshake (it may never read it)."""
    if client.closing is not None:
        return
    lobby.metrics.closes[label] += 1
    log.info("%s closed: %s", client.name, reason)
    client.closing = asyncio.create_task(client.websocket.close(code, reason))


# Reading a client's frame header (RFC 6455 5.2): a pure function, tested
# without a socket in tests/test_frame_header.py.

FrameHeader = tuple[bool, int, int, int]
"""(fin, opcode, payload length, header size) of a masked client frame.

A plain tuple: it is made once per audio frame, and a NamedTuple costs three
times as much to make. The masking key is the last 4 bytes of the header.
"""


@dataclass(frozen=True)
class Refusal:
    """A header no client may send: the close code RFC 6455 gives it, and why."""

    code: int
    reason: str


def read_header(data: bytes, start: int = 0, max_length: int = MAX_MESSAGE_BYTES) -> FrameHeader | Refusal | None:
    """Read the header of the client frame at data[start:]; None if more bytes are needed.

    Refuses, as soon as the bytes present tell, reserved bits (no extension is
    ever agreed), unknown opcodes, unmasked frames, fragmented or long control
    frames, and payloads over max_length.
    """
    available = len(data) - start
    if available < 2:
        return None
    first = data[start]
    second = data[start + 1]
    opcode = first & 0x0F
    length = second & 0x7F
    if first & 0x70:
        return Refusal(1002, "reserved bits set, but no extension was agreed")
    if opcode > 2 and not 8 <= opcode <= 10:
        return Refusal(1002, f"unknown opcode {opcode}")
    if not second & 0x80:
        return Refusal(1002, "unmasked frame from a client")
    if opcode >= 8 and (length > 125 or first < 128):
        return Refusal(1002, "control frame fragmented or over 125 bytes")
    if length < 126:
        size = 6
    elif length == 126:
        if available < 4:
            return None
        length = data[start + 2] << 8 | data[start + 3]
        size = 8
    else:
        if available < 10:
            return None
        length = int.from_bytes(data[start + 2 : start + 10], "big")
        if length >> 63:
            return Refusal(1002, "payload length with its most significant bit set")
        size = 14
    if length > max_length:
        return Refusal(1009, f"frame of {length} bytes, over the limit of {max_length}")
    if available < size:
        return None
    return (first > 127, opcode, length, size)


# The public route: websockets' documented API alone.


class RelayConnection(ServerConnection):
    """A connection that relays audio through websockets' public API: the public route.

    Every message comes out of websockets' parser into the handler's `async
    for`, which hands binary ones to relay(); audio goes out with broadcast(),
    which never waits. Slower than the fast route, just as safe: the backlog
    drop, the stall close, the rate and size limits all hold.
    """

    wire: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio hands every protocol its transport here: keep it under our own
        # name for the backlog check, whatever websockets calls its copy.
        self.wire = transport  # type: ignore[assignment]
        super().connection_made(transport)

    def start_relay(self, lobby: Lobby, client: Client) -> None:
        """From now on the client's audio goes to relay(): here, through the handler's loop."""

    def stop_relay(self) -> None:
        """The client resumed on another socket: relay nothing more from this one (the handler's loop stops)."""

    def send_frame(self, frame: bytes) -> bool:
        """Queue an audio frame at once; return False if the connection is closing."""
        if self.state is not State.OPEN:
            return False
        broadcast((self,), frame)
        return True


# ---------------------------------------------------------------------------
# websockets internals. Everything duoduel uses of websockets that websockets
# does not document is in this section, and only the fast route uses it:
#
# 1. apply_mask (websockets.speedups, or websockets.utils without the C
#    extension) unmasks a payload.
# 2. Connection.data_received: websockets' asyncio connection is the asyncio
#    Protocol that parses the byte stream. CuttingConnection overrides it, keeps
#    the complete final binary frames, and passes every other frame on whole to
#    super().data_received(), which parses it as if it had read it itself.
# 3. protocol.state, the sans-I/O state under the public websocket.state
#    property: read directly, once per read for the sender and once per frame
#    for the receiver, to relay nothing to or from a closing connection.
# 4. Writing a whole frame with a header of our own straight to the transport.
#    Safe because websockets too writes only whole frames, duoduel never sends
#    a fragmented message, and compression is off.
# 5. The fragmented flag mirrors websockets' parser: "inside a fragmented
#    message", from the data frames we pass on. A binary frame inside one must
#    reach websockets, which refuses it (RFC 6455 5.4).
#
# check_fast_route() exercises all of them through a real connection on
# loopback at start-up; if anything fails, duoduel logs one warning and takes
# the public route (RelayConnection) instead.
# ---------------------------------------------------------------------------

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    try:
        from websockets.utils import apply_mask
    except ImportError:
        apply_mask = None  # the self-check then chooses the public route

# A server's frames are unmasked: the header is all the framing there is.
SHORT_HEADERS = [bytes((0x82, length)) for length in range(126)]  # an Opus frame's, ready-made
MEDIUM_HEADER = struct.Struct("!BBH").pack
LONG_HEADER = struct.Struct("!BBQ").pack


def binary_header(length: int) -> bytes:
    """The RFC 6455 header of a final, unmasked binary frame of this length."""
    if length < 126:
        return SHORT_HEADERS[length]
    if length < 65536:
        return MEDIUM_HEADER(0x82, 126, length)
    return LONG_HEADER(0x82, 127, length)


class CuttingConnection(RelayConnection):
    """A connection that cuts complete binary frames from the byte stream itself: the fast route.

    websockets parses frames with generators and hands each message to the
    handler through a queue, a future and a task switch: most of the server's
    CPU per audio frame. Here each complete, final, masked binary frame goes
    straight to relay(); every other frame (text, ping, pong, close, fragments)
    is fed whole to websockets, which stays in step because it only ever sees
    whole frames. read_header() reads headers; this class is the state machine.
    """

    lobby: Lobby
    client: Client | None = None  # set by start_relay()
    cutting: bool | None = None  # decided when the first bytes after the handshake arrive
    pending: bytes = b""  # the start of a frame still incomplete
    fragmented: bool = False  # websockets is inside a fragmented message
    request_tail: bytes = b""  # the last bytes of the request so far, to find its end across reads
    early: bool | None = None  # None until the request's end is seen; then, did bytes follow it?

    def start_relay(self, lobby: Lobby, client: Client) -> None:
        """From now on, the client's complete audio frames go straight from the socket to relay()."""
        self.lobby, self.client = lobby, client

    def stop_relay(self) -> None:
        """The client resumed on another socket: from now on every frame read here goes to websockets."""
        self.client = None

    def send_frame(self, frame: bytes) -> bool:
        """Queue an audio frame at once; return False if the connection is closing."""
        if self.protocol.state is not State.OPEN:
            return False
        length = len(frame)
        self.wire.write((SHORT_HEADERS[length] if length < 126 else binary_header(length)) + frame)
        return True

    def data_received(self, data: bytes) -> None:
        if not self.cutting:
            if self.cutting is None:
                if self.state is State.CONNECTING:
                    self.watch_request(data)
                else:
                    # RFC 6455 4.1: a client sends no frame before the server's
                    # 101. One that did may have had part of a frame parsed by
                    # websockets already: then websockets parses this connection
                    # alone, since we cannot tell where its next frame starts.
                    self.cutting = self.early is False
            if not self.cutting:
                return super().data_received(data)
        if self.pending:
            data, self.pending = self.pending + data, b""
        client = self.client
        # The state changes during this call only through what we feed websockets.
        relaying = client is not None and self.protocol.state is State.OPEN
        start, size_of_data = 0, len(data)
        while start < size_of_data:
            header = read_header(data, start)
            if header is None:
                self.pending = data[start:]
                return
            if type(header) is Refusal:
                # websockets fails the connection with the right close code.
                self.cutting = False
                return super().data_received(data[start:])
            fin, opcode, length, size = header
            end = start + size + length
            if end > size_of_data:
                self.pending = data[start:]
                return
            if opcode == 2 and fin and relaying and not self.fragmented:
                payload = start + size
                if not flooding(self.lobby, client):
                    relay(self.lobby, client, apply_mask(data[payload:end], data[payload - 4 : payload]))
            else:
                if opcode < 3:  # a data frame: its message goes on unless FIN is set
                    self.fragmented = not fin
                super().data_received(data if end - start == size_of_data else data[start:end])
                relaying = client is not None and self.protocol.state is State.OPEN
            start = end

    def watch_request(self, data: bytes) -> None:
        """Before the 101: note whether any byte follows the end of the HTTP request."""
        if self.early is not None:
            self.early = True
            return
        seen = self.request_tail + data
        end = seen.find(b"\r\n\r\n")  # websockets requires CRLF: the first empty line ends the headers
        if end < 0:
            self.request_tail = seen[-3:]
        else:
            self.early = end + 4 < len(seen)


async def check_fast_route() -> str | None:
    """Relay frames through a CuttingConnection on loopback; return what went wrong, or None.

    One client is its own partner. Two binary frames (7-bit and 16-bit lengths)
    must come back whole through relay(), and a text frame between them must
    reach the handler through websockets and be answered with send_now().
    """
    if apply_mask is None:
        return "websockets has no apply_mask"
    lobby = Lobby()

    async def echo(websocket: CuttingConnection) -> None:
        client = Client(websocket, None, "self-check")
        client.partner = client
        websocket.start_relay(lobby, client)
        async for message in websocket:
            if isinstance(message, str):
                send_now(websocket, message)

    short, medium, text = bytes(range(120)), bytes(range(256)) * 2, b'{"type": "ping"}'
    try:
        async with asyncio.timeout(5), serve(
            echo, "127.0.0.1", 0, create_connection=CuttingConnection, compression=None, max_size=MAX_MESSAGE_BYTES
        ) as server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            try:
                writer.write(
                    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                if not (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101"):
                    return "the handshake failed"
                writer.write(masked_frame(0x82, short) + masked_frame(0x81, text) + masked_frame(0x82, medium))
                got = [await read_frame(reader) for _ in range(3)]
                writer.write(masked_frame(0x88, (1000).to_bytes(2, "big")))
                if await read_frame(reader) != (0x88, (1000).to_bytes(2, "big")):
                    return "the close handshake failed"
            finally:
                writer.close()
    except Exception as exc:  # anything at all: the fast route is not for this websockets
        return f"{exc.__class__.__name__}: {exc}"
    if [frame for frame in got if frame[0] == 0x82] != [(0x82, short), (0x82, medium)] or (0x81, text) not in got:
        return "frames came back wrong"
    if lobby.metrics.frames_relayed != 2:
        return "audio did not take the fast route"
    return None


def masked_frame(first: int, payload: bytes, mask: bytes = b"\x5a\xc3\x0f\x96") -> bytes:
    """Encode a client's frame (RFC 6455 5.2), masked without apply_mask, for the self-check."""
    length = len(payload)
    size = bytes((length,)) if length < 126 else bytes((126,)) + length.to_bytes(2, "big")
    return bytes((first, 0x80 | size[0])) + size[1:] + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one unmasked server frame: its first byte and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length >= 126:
        length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8), "big")
    return first, await reader.readexactly(length)


# End of the websockets internals.


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
    elif kind == "label":
        set_label(client, message.get("label"))
    elif kind == "ping":
        answer_ping(client, message)
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
    send_now(client.websocket, json.dumps(pong))


def is_number(value: object) -> bool:
    """A JSON number (true and false are not numbers here, though Python's bool is an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flooding(lobby: Lobby, client: Client) -> bool:
    """Count a message; if the client sends far faster than audio needs, start closing it and say so."""
    client.messages += 1
    if client.messages <= lobby.config.max_messages_per_second:
        return False
    # Only every max_messages_per_second messages: look at the clock.
    now = asyncio.get_running_loop().time()
    if now - client.window_start >= 1.0:
        client.messages, client.window_start = 0, now
        return False
    close_soon(lobby, client, 1008, "too many messages", "rate")
    return True


# The connection handler.


async def handler(websocket: RelayConnection, lobby: Lobby) -> None:
    """Handle a connection from a page: pair it (or give it its place back), then relay and obey it until it leaves."""
    room, call = room_of(websocket.request.path), call_of(websocket.request.path)
    resumable, token = session_query(websocket.request.path)
    resumed = None if token is None else await resume(lobby, websocket, token, room)
    if resumed is not None:
        client, replaced = resumed
        # Close the socket it had, if the server had not noticed its drop; the task lives as long as this handler.
        retiring = asyncio.create_task(replaced.close(1000, "resumed on another connection"))  # noqa: F841
    else:
        if token is not None:
            lobby.metrics.resumes_refused += 1
            send_now(websocket, RESUME_REFUSED)
        client = Client(websocket, room, websocket.id.hex[:8], window_start=asyncio.get_running_loop().time(), call=call)
        address = websocket.remote_address[0] if websocket.remote_address else "?"
        log.info("%s connected from %s%s", client.name, address, where(client))
        if lobby.shared is None and call is not None:
            client.call = None
            send_error(client, CALL_UNKNOWN)
        # With --redis, a private room lives on one process: go there if it is not this one.
        if lobby.shared is not None and room is not None and await lobby.shared.owner_elsewhere(lobby, client):
            return
        if not await join(lobby, client):
            log.info("%s refused: room %s is full", client.name, room)
            lobby.metrics.rejections["room_full"] += 1
            send_now(websocket, ROOM_FULL)
            await websocket.close(1008, "room full")
            return
        if resumable:
            async with lobby.lock:
                grant_token(lobby, client)
    lobby.metrics.connections += 1
    websocket.start_relay(lobby, client)  # from now on, every audio frame from the client goes to relay()
    try:
        async for message in websocket:  # control messages; audio too on the public route, or if fragmented
            if client.websocket is not websocket:
                break  # the page resumed on another socket: this one has nothing more to say
            if flooding(lobby, client):
                continue
            if isinstance(message, str):
                await control(lobby, client, message)
            else:
                relay(lobby, client, message)
    except ConnectionClosed:
        pass
    finally:
        await depart(lobby, client, websocket)
        code = websocket.close_code if websocket.close_code is not None else 1006
        log.info("%s disconnected (%s)", client.name, code)


def limit_kernel_buffers(listener: socket.socket, config: Config) -> None:
    """Keep the kernel from buffering seconds of audio, either way, on every connection accepted.

    Set on the listening socket, before any connection: accepted sockets inherit
    both sizes, so the window a connection advertises never shrinks. Shrinking
    SO_RCVBUF on an established connection instead (issue 10) made Linux drop
    data already in flight beyond the new window; a client flooding right
    after it was paired was then never read again, nor closed, in 7 of 12 runs.
    """
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.socket_send_buffer)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, config.socket_receive_buffer)


def room_of(path: str) -> str | None:
    """Return the room a /ws URL asks for, None for the lobby; the name is checked already."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    return query.get("room", [None])[0]


def call_of(path: str) -> str | None:
    """Return the call token a client moved here brings (shared lobby), or None; checked already."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    return query.get("call", [None])[0]


# HTTP: the page, health, metrics, and the gate in front of /ws.


def resolve_static(static_dir: Path, url_path: str) -> Path | None:
    """Map a URL path to a file inside static_dir, or None if there is no such file.

    The path arrives raw (websockets does not decode it). Like Go's file server,
    refuse any '..' segment outright; like CPython's, resolve symlinks before
    checking that the file is inside the tree (gh-81054).
    """
    try:
        path = urllib.parse.unquote(url_path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "\0" in path or "\\" in path or not path.startswith("/"):
        return None
    if any(segment == ".." for segment in path.split("/")):
        return None
    if path == "/" or ROOM_PAGE.fullmatch(path):
        path = "/index.html"
    relative = posixpath.normpath(path).lstrip("/")
    # A file followed by "/" is not that file (CPython Issue17324).
    if path.endswith("/") or relative.startswith(".") or "/." in relative:
        return None
    root = static_dir.resolve()
    try:
        target = (root / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def make_process_request(lobby: Lobby, config: Config) -> Callable[[ServerConnection, Request], Response | None]:
    """Build the HTTP hook: serve pages, /healthz and /metrics, and guard /ws."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        """Answer an HTTP request, or return None to let /ws become a WebSocket."""
        url = urllib.parse.urlsplit(request.path)
        if url.path == "/ws":
            return gate(request, url.query)
        if request.method not in ("GET", "HEAD"):
            return refuse(request, "method", HTTPStatus.METHOD_NOT_ALLOWED, "Only GET and HEAD are allowed.", [("Allow", "GET, HEAD")])
        if url.path == "/healthz":
            return respond(request, HTTPStatus.OK, json.dumps(health_report(lobby)).encode(), "application/json")
        if url.path == "/metrics":
            return respond(request, HTTPStatus.OK, metrics_text(lobby).encode(), "text/plain; version=0.0.4; charset=utf-8")
        if url.path.startswith("/r/") and not ROOM_PAGE.fullmatch(url.path):
            return refuse(request, "bad_room", HTTPStatus.BAD_REQUEST, BAD_ROOM_NAME)
        file = resolve_static(config.static_dir, url.path)
        if file is None or file.suffix.lower() not in CONTENT_TYPES:
            return refuse(request, "not_found", HTTPStatus.NOT_FOUND, "Not found.")
        return static_file(request, file)

    def gate(request: Request, query: str) -> Response | None:
        """Let a WebSocket handshake through, or say why not."""
        if request.method != "GET":
            return refuse(request, "method", HTTPStatus.METHOD_NOT_ALLOWED, "Only GET opens a WebSocket.", [("Allow", "GET")])
        origin = request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, request.headers.get("Host"), config):
            log.info("refused a handshake from origin %.100r", origin)
            return refuse(request, "origin", HTTPStatus.FORBIDDEN, "Cross-site WebSocket connections are not allowed.")
        fields = urllib.parse.parse_qs(query, keep_blank_values=True)
        rooms, calls = fields.get("room"), fields.get("call")
        if rooms is not None and (len(rooms) != 1 or not ROOM_NAME.fullmatch(rooms[0])):
            return refuse(request, "bad_room", HTTPStatus.BAD_REQUEST, BAD_ROOM_NAME)
        if calls is not None and (len(calls) != 1 or not CALL_TOKEN.fullmatch(calls[0]) or rooms is not None):
            return refuse(request, "bad_call", HTTPStatus.BAD_REQUEST, BAD_CALL_TOKEN)
        if len(lobby.clients) >= config.max_clients and not resuming(lobby, query):
            log.warning("refused a client: %d clients already (--max-clients)", len(lobby.clients))
            return refuse(request, "full", HTTPStatus.SERVICE_UNAVAILABLE, "The server is full. Try again in a minute.")
        return None

    def refuse(
        request: Request, reason: str, status: HTTPStatus, line: str, extra: Sequence[tuple[str, str]] = ()
    ) -> Response:
        """Answer with one line of plain text that says what is wrong, and count it by reason."""
        lobby.metrics.rejections[reason] += 1
        headers = [("X-Content-Type-Options", "nosniff"), *extra]
        return respond(request, status, f"{line}\n".encode(), "text/plain; charset=utf-8", headers)

    return process_request


def resuming(lobby: Lobby, query: str) -> bool:
    """Whether a handshake brings back a place the server holds: it takes no new place, so it is never refused as full."""
    return any(token in lobby.tokens for token in urllib.parse.parse_qs(query).get("resume", ()))


def census(lobby: Lobby) -> dict[str, int]:
    """How many clients are connected, waiting and talking, and in how many rooms.

    A group room's lone member waits, as in a room of two; a group room of two or
    more is one group call. Room names are secrets: never list them.
    """
    grouped = [len(room.members) for room in lobby.rooms.values()] if lobby.config.room_size > 2 else []
    shared = len(lobby.shared.waiters) if lobby.shared is not None else 0
    return {
        "clients": len(lobby.clients),
        "waiting": len(lobby.waiting) + shared + grouped.count(1),
        "pairs": sum(client.partner is not None for client in lobby.clients) // 2,
        "rooms": len(lobby.rooms),
        "groups": sum(size > 1 for size in grouped),
        "group_members": sum(size for size in grouped if size > 1),
        "held": len(lobby.held),
        "resumes": lobby.metrics.resumes,
    }


def health_report(lobby: Lobby) -> dict[str, object]:
    """What /healthz says: up, the census, and with --redis whether the shared lobby is reachable."""
    report: dict[str, object] = {"up": True, **census(lobby)}
    if lobby.shared is not None:
        report["redis"] = "up" if lobby.shared.up else "down"
    return report


def origin_allowed(origin: str, host: str | None, config: Config) -> bool:
    """Accept the page's own origin (the one matching Host) and those allowed on the command line."""
    if origin in config.allowed_origins:
        return True
    scheme = "https" if config.tls is not None else "http"
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


def static_file(request: Request, file: Path) -> Response:
    """Send a file from static/, or 304 when the browser's copy is current."""
    stat = file.stat()
    etag = '"' + hashlib.blake2s(f"{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=8).hexdigest() + '"'
    headers = [
        ("ETag", etag),
        ("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True)),
        ("Cache-Control", "no-cache"),
        *security_headers(request),
    ]
    if etag in request.headers.get("If-None-Match", ""):
        return respond(request, HTTPStatus.NOT_MODIFIED, b"", None, headers)
    return respond(request, HTTPStatus.OK, file.read_bytes(), CONTENT_TYPES[file.suffix.lower()], headers)


def security_headers(request: Request) -> list[tuple[str, str]]:
    """Headers that keep the page from running anything but its own scripts."""
    host = request.headers.get("Host", "")
    sockets = f" ws://{host} wss://{host}" if SAFE_HOST.fullmatch(host) else ""
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src 'self'{sockets}; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return [
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Permissions-Policy", "microphone=(self)"),
    ]


def respond(
    request: Request,
    status: HTTPStatus,
    body: bytes,
    content_type: str | None,
    extra: Sequence[tuple[str, str]] = (),
) -> Response:
    """Build a complete HTTP response; HEAD gets the headers without the body."""
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close")])
    if status is not HTTPStatus.NOT_MODIFIED:
        headers["Content-Length"] = str(len(body))
    if content_type is not None:
        headers["Content-Type"] = content_type
    for name, value in extra:
        headers[name] = value
    if request.method == "HEAD" or status is HTTPStatus.NOT_MODIFIED:
        body = b""
    return Response(status.value, status.phrase, headers, body)


def metrics_text(lobby: Lobby) -> str:
    """Render the counters in the Prometheus text format."""
    m = lobby.metrics
    now = census(lobby)
    lines: list[str] = []

    def metric(name: str, kind: str, help: str, samples: list[tuple[str, int]]) -> None:
        lines.append(f"# HELP duoduel_{name} {help}")
        lines.append(f"# TYPE duoduel_{name} {kind}")
        lines.extend(f"duoduel_{name}{labels} {value}" for labels, value in samples)

    metric("clients", "gauge", "Connected WebSocket clients.", [("", now["clients"])])
    metric("waiting", "gauge", "Clients waiting alone, in the lobby or in a room.", [("", now["waiting"])])
    metric("pairs", "gauge", "Two-person calls in progress.", [("", now["pairs"])])
    metric("rooms", "gauge", "Private rooms with someone in them.", [("", now["rooms"])])
    metric("groups", "gauge", "Group rooms with two or more members talking.", [("", now["groups"])])
    metric("group_members", "gauge", "Clients in group rooms with two or more members.", [("", now["group_members"])])
    metric("held", "gauge", "Clients whose socket dropped in a call, their place held for a resume.", [("", now["held"])])
    metric("connections_total", "counter", "WebSocket connections accepted.", [("", m.connections)])
    metric("holds_total", "counter", "Places held after a socket dropped in a call.", [("", m.holds)])
    metric("resumes_total", "counter", "Places taken back with a resume token.", [("", m.resumes)])
    metric("resumes_refused_total", "counter", "Resume tokens refused: unknown, used or expired.", [("", m.resumes_refused)])
    metric("pairs_total", "counter", "Two-person calls started.", [("", m.pairs)])
    metric("groups_total", "counter", "Group calls started (a group room reached two members).", [("", m.groups)])
    metric("frames_relayed_total", "counter", "Audio frames delivered, one per receiver.", [("", m.frames_relayed)])
    metric("bytes_relayed_total", "counter", "Audio bytes delivered, slot marks included.", [("", m.bytes_relayed)])
    metric("frames_dropped_total", "counter", "Audio frames dropped for slow receivers.", [("", m.frames_dropped)])
    if lobby.shared is not None:
        metric("redis_up", "gauge", "1 if the shared lobby's Redis answers, else 0 (pairing locally).", [("", int(bool(lobby.shared.up)))])
        metric("moved_total", "counter", "Clients sent to another process of the shared lobby.", [("", m.moved)])
        metric("answered_total", "counter", "Clients moved here and paired with the waiter they came for.", [("", m.answered)])
        metric("redis_errors_total", "counter", "Redis commands that failed or timed out.", [("", m.redis_errors)])
    metric(
        "rejections_total", "counter", "HTTP requests and handshakes refused, by reason.",
        [(f'{{reason="{reason}"}}', count) for reason, count in sorted(m.rejections.items())],
    )
    metric(
        "closes_total", "counter", "Connections closed by the server, by reason.",
        [(f'{{reason="{reason}"}}', count) for reason, count in sorted(m.closes.items())],
    )
    return "\n".join(lines) + "\n"


# Start-up and shutdown.


@contextlib.asynccontextmanager
async def make_server(config: Config) -> AsyncIterator[Server]:
    """Serve while in the context, with a lobby of its own, on the relay route the self-check allows."""
    lobby = Lobby(config)
    connection, problem = await choose_route(config)
    async with holds_released(lobby), shared_lobby(lobby), serve(
        lambda websocket: handler(websocket, lobby),
        config.host,
        config.port,
        process_request=make_process_request(lobby, config),
        ssl=config.tls,
        compression=None,  # Opus does not compress; deflate would cost memory and CPU per frame
        max_size=MAX_MESSAGE_BYTES,
        open_timeout=config.handshake_timeout,
        close_timeout=3,
        ping_interval=20,
        ping_timeout=20,
        create_connection=connection,
    ) as server:
        for listener in server.sockets:
            limit_kernel_buffers(listener, config)
        # Said once listening: a server that cannot start says only why.
        if problem is not None:
            log.warning(
                "websockets %s failed duoduel's self-check (%s): relaying through its public API instead, "
                "slower but correct. Install the websockets version in requirements.txt for the fast route.",
                websockets_version, problem,
            )
        elif connection is RelayConnection:
            log.info("relay route: websockets' public API (as configured)")
        else:
            log.info("relay route: frames cut from the byte stream (self-check passed)")
        yield server


@contextlib.asynccontextmanager
async def holds_released(lobby: Lobby) -> AsyncIterator[None]:
    """End every hold when the server is closed (its connections first): no window outlives the server."""
    try:
        yield
    finally:
        await release_held(lobby)


@contextlib.asynccontextmanager
async def shared_lobby(lobby: Lobby) -> AsyncIterator[None]:
    """With --redis, be in the shared lobby (or know Redis is out) before the first client arrives."""
    if lobby.config.redis_url is None:
        yield
        return
    lobby.shared = SharedLobby(lobby.config)
    await lobby.shared.start(lobby)
    try:
        yield
    finally:
        await lobby.shared.stop()


async def choose_route(config: Config) -> tuple[type[RelayConnection], str | None]:
    """The fast route if the configuration allows it and the self-check passes, else the public route; and why not."""
    if config.relay_route == "public":
        return RelayConnection, None
    problem = await check_fast_route()
    return (RelayConnection, problem) if problem is not None else (CuttingConnection, None)


async def run(config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then close every call with 1001 and return."""
    async with make_server(config) as server:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.close)
        scheme = "https" if config.tls is not None else "http"
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            log.info("duoduel listening on %s://%s:%d/", scheme, f"[{host}]" if ":" in host else host, port)
        await server.wait_closed()
    log.info("duoduel stopped")


def tls_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    """Load the certificate and key; the key defaults to key.pem beside the certificate."""
    if key is None:
        beside = cert.with_name("key.pem")
        key = beside if beside.exists() else cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for path in (cert, key):
        if not path.is_file():
            raise StartupError(f"cannot read {path}: no such file. Make a certificate with ./gen_cert.sh")
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            f"cannot load the certificate {cert} with the key {key} ({exc.__class__.__name__}: "
            f"{getattr(exc, 'strerror', None) or exc}). Make a new pair with ./gen_cert.sh --force"
        ) from None
    return context


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description="duoduel: a voice-chat server: two people in a call, or a small group in a private room.")
    parser.add_argument("--host", default="localhost", help="address to listen on (default: localhost; 0.0.0.0 for the LAN)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 8080, or 8443 with --https)")
    parser.add_argument("--https", action="store_true", help="serve HTTPS and WSS (needed for the microphone on other machines)")
    parser.add_argument("--cert", type=Path, default=Path("cert/cert.pem"), help="certificate for --https (default: cert/cert.pem)")
    parser.add_argument("--key", type=Path, default=None, help="private key (default: key.pem beside the certificate, else the certificate file)")
    parser.add_argument("--static", type=Path, default=STATIC_DIR, help="folder of the page (default: static/ beside duoduel.py)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN", help="also accept WebSockets from this origin, e.g. https://example.org (repeatable)")
    parser.add_argument("--max-clients", type=int, default=MAX_CLIENTS, help=f"refuse new clients with HTTP 503 past this many (default: {MAX_CLIENTS})")
    parser.add_argument("--room-size", type=room_size, default=ROOM_SIZE, help=f"people a private room admits, 2 to {MAX_ROOM_SIZE} (default: {ROOM_SIZE}; 2 makes rooms private calls)")
    parser.add_argument("--resume-window", type=resume_window, default=RESUME_WINDOW, metavar="SECONDS", help=f"hold a dropped caller's place this long for its page to come back (default: {RESUME_WINDOW:g}; 0: a drop ends the call)")
    parser.add_argument("--redis", metavar="URL", help="share one lobby with the other duoduel processes using this Redis, e.g. redis://127.0.0.1:6379/0 (needs: pip install redis)")
    parser.add_argument("--public-url", metavar="URL", help="with --redis: how a browser reaches this process, e.g. https://example.org/p/a (where other processes send clients)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default: info")
    return parser.parse_args(argv)


def room_size(text: str) -> int:
    """Read --room-size: a whole number of people, 2 to MAX_ROOM_SIZE."""
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 2 <= size <= MAX_ROOM_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a room size: give a whole number from 2 to {MAX_ROOM_SIZE}")
    return size


def resume_window(text: str) -> float:
    """Read --resume-window: seconds, 0 to 600."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a resume window: give seconds from 0 to 600")
    return seconds


def public_url(args: argparse.Namespace) -> str | None:
    """Check --redis and --public-url; return the public URL, without a trailing slash."""
    if args.redis is None:
        if args.public_url is not None:
            raise StartupError("--public-url is only used with --redis: add --redis URL, or leave --public-url out")
        return None
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise StartupError("--redis needs the redis package: pip install redis (or leave --redis out)") from None
    if not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise StartupError(f"--redis {args.redis!r} is not a Redis URL: give one like redis://127.0.0.1:6379/0")
    if args.public_url is None:
        raise StartupError("--redis needs --public-url, how a browser reaches this process: e.g. --public-url https://example.org/p/a")
    url = urllib.parse.urlsplit(args.public_url)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise StartupError(f"--public-url {args.public_url!r} is not a page address: give one like https://example.org/p/a")
    return args.public_url.rstrip("/")


def origin_of(url: str) -> str:
    """The origin (scheme://host[:port]) of a URL, as a browser sends it."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until stopped; exit 2 with one line if it cannot start."""
    try:
        start(parse_args(argv))
    except StartupError as exc:
        print(f"duoduel: {exc}", file=sys.stderr)
        return 2
    return 0


def start(args: argparse.Namespace) -> None:
    """Configure logging, TLS and the event loop, then serve."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=args.log_level.upper())
    # websockets logs every refused handshake and dropped socket at INFO.
    logging.getLogger("websockets").setLevel(logging.DEBUG if args.log_level == "debug" else logging.WARNING)
    if not args.static.is_dir():
        raise StartupError(f"{args.static} is not a folder: pass the page's folder with --static")
    config = Config(
        host=args.host,
        port=args.port if args.port is not None else (8443 if args.https else 8080),
        static_dir=args.static,
        tls=tls_context(args.cert, args.key) if args.https else None,
        allowed_origins=frozenset(origin.rstrip("/") for origin in args.allow_origin),
        max_clients=args.max_clients,
        room_size=args.room_size,
        resume_window=args.resume_window,
        redis_url=args.redis,
        public_url=public_url(args),
    )
    if config.public_url is not None:
        # Behind a TLS-terminating proxy the page's origin is the public one, not what this process serves.
        config = dataclasses.replace(config, allowed_origins=config.allowed_origins | {origin_of(config.public_url)})
    try:
        import uvloop  # optional: a faster event loop, when installed
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(run(config))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {config.port} is already in use on {config.host}: stop the other server or pick another with --port") from None
        raise StartupError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
