"""The lobby: who is connected, who waits, who talks; pairing, group rooms and labels.

Every change of who waits and who talks happens under lobby.lock, with the
notices sent (never awaited) inside it, so they cannot cross.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.config import MAX_KEY_MESSAGE, MAX_LABEL, Config

if TYPE_CHECKING:
    from core.link import Link
    from core.shared import SharedLobby

log = logging.getLogger("duoduel")

WAITING = json.dumps({"type": "waiting"})
CONNECTED = json.dumps({"type": "connected"})
DISCONNECTED = json.dumps({"type": "disconnected"})
BAD_LABEL = f"label must be text of 1 to {MAX_LABEL} characters"
KEY_ALONE = "key needs a partner: you are not in a call of two"
BAD_KEY = f"a key message is at most {MAX_KEY_MESSAGE} characters"


@dataclass(eq=False)
class Client:
    """One connected page: its link, where it waits, and who it talks to."""

    link: Link
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
    held: set[Client] = field(default_factory=set)  # clients (in `clients` too) whose link dropped, for a while
    shared: SharedLobby | None = None  # with --redis: the lobby and rooms this process shares with others
    retiring: set[asyncio.Task[None]] = field(default_factory=set)  # closing the links that resumed clients left


def send_error(client: Client, reason: str) -> None:
    """Tell a client that its control message was not understood."""
    client.link.send_text(json.dumps({"type": "error", "reason": reason}))


# Pairing.


def enter(lobby: Lobby, client: Client) -> bool:
    """Under the lock: put the client in its room (or the lobby) and pair it or seat it; False if the room is full."""
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


def pair_or_wait(lobby: Lobby, client: Client) -> None:
    """Pair the client with whoever waits in its room, or make it the one who waits."""
    # With --redis, the lobby's waiting slot is in Redis (while Redis answers).
    if client.room is None and lobby.shared is not None and lobby.shared.seek(lobby, client):
        return
    waiter = lobby.waiting.pop(client.room, None)
    # A waiter whose link is closing is about to run leave(): never pair with it.
    if waiter is None or waiter is client or not waiter.link.is_open:
        lobby.waiting[client.room] = client
        client.link.send_text(WAITING)
        return
    pair(lobby, client, waiter)


def pair(lobby: Lobby, client: Client, waiter: Client) -> None:
    """Put two clients in a call and tell them both, the waiter first."""
    client.partner, waiter.partner = waiter, client
    lobby.metrics.pairs += 1
    waiter.link.send_text(CONNECTED)
    client.link.send_text(CONNECTED)
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
        partner.link.send_text(DISCONNECTED)
    return partner


async def next_partner(lobby: Lobby, client: Client) -> None:
    """End the current call, if any, and look for someone else at once."""
    async with lobby.lock:
        unpair(lobby, client)
        pair_or_wait(lobby, client)


async def leave(lobby: Lobby, client: Client) -> None:
    """Forget a client that has gone, if it was here; a partner in a private room waits there again."""
    async with lobby.lock:
        if client not in lobby.clients:
            return  # it never entered (turned away, moved, or gone before), or has left already
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
        elif partner is not None and partner.link.is_open:
            pair_or_wait(lobby, partner)


def close_soon(lobby: Lobby, client: Client, code: int, reason: str, label: str) -> None:
    """Start closing a client without waiting for its close handshake (it may never read it)."""
    if client.closing is not None:
        return
    lobby.metrics.closes[label] += 1
    log.info("%s closed: %s", client.name, reason)
    client.closing = asyncio.create_task(client.link.close(code, reason))


def where(client: Client) -> str:
    """Name the client's room for a log line."""
    return "" if client.room is None else f" in room {client.room}"


def pass_key(client: Client, text: str) -> None:
    """Hand a key message to the partner exactly as it came: the pages agree a key, the server only carries it."""
    if client.group is not None or client.partner is None:
        return send_error(client, KEY_ALONE)
    if len(text) > MAX_KEY_MESSAGE:
        return send_error(client, BAD_KEY)
    client.partner.link.send_text(text)


# Group rooms: every member hears every other. A member holds a slot, the
# lowest free one; the server writes it in front of every frame the member
# sends, so nobody can pass for somebody else. Each member learns of a slot
# (room or joined) before the first frame marked with it, and of its end (left)
# after the last one: the notices and the frames share one link, in order.


def enter_group(lobby: Lobby, room: Room, client: Client) -> None:
    """Give the newcomer (already counted in room) a slot, the member list, and everyone's news."""
    others = room.members[:-1]
    taken = {member.slot for member in others}
    client.slot = next(slot for slot in range(lobby.config.room_size) if slot not in taken)
    client.label = f"Guest {client.slot + 1}"
    client.group = room
    log.info("%s joined%s: slot %d, %d there now", client.name, where(client), client.slot, len(room.members))
    client.link.send_text(room_notice(lobby, client))
    joined = json.dumps({"type": "joined", "slot": client.slot, "label": client.label})
    for member in others:
        member.link.send_text(joined)
    if not others:
        client.link.send_text(WAITING)
        return
    if len(others) == 1:  # the one who waited is in a call now, as in a room of two
        lobby.metrics.groups += 1
        others[0].link.send_text(CONNECTED)
    client.link.send_text(CONNECTED)


def room_notice(lobby: Lobby, client: Client) -> str:
    """The "room" message: the client's slot and label, the room's size, and the others in it."""
    return json.dumps({
        "type": "room", "slot": client.slot, "label": client.label, "size": lobby.config.room_size,
        "members": [{"slot": member.slot, "label": member.label} for member in client.group.members if member is not client],
    })


def leave_group(client: Client) -> None:
    """Tell the rest of the client's group room (no longer counting it) that it left."""
    room, client.group = client.group, None
    left = json.dumps({"type": "left", "slot": client.slot})
    for member in room.members:
        member.link.send_text(left)
    if len(room.members) == 1:  # the last one waits in the room, as after a call of two
        room.members[0].link.send_text(DISCONNECTED)
        room.members[0].link.send_text(WAITING)


def set_label(client: Client, label: object) -> None:
    """Take a member's new label and show it to the whole room, the member included."""
    if client.group is None:
        return send_error(client, "label works only in a group room")
    if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL:
        return send_error(client, BAD_LABEL)
    client.label = label
    notice = json.dumps({"type": "label", "slot": client.slot, "label": label})
    for member in client.group.members:
        member.link.send_text(notice)
