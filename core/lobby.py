"""The lobby: who is connected, who waits, who talks; pairing, group rooms and labels.

Every change of who waits and who talks happens under lobby.lock, with the
notices sent (never awaited) inside it, so they cannot cross.

The lobby's waiters form a short queue: a newcomer takes the first of them it
may meet (neither blocked the other, core.safety), looking at SCAN_WAITERS at
most; in the common case the first. A room of two has one waiting slot.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.config import LOSS_REPORT_INTERVAL, MAX_KEY_MESSAGE, MAX_LABEL, Config
from core.safety import Safety, cool_down, report_line, write_report

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
NOBODY_TO_BLOCK = "block and report work in a call with a stranger from the lobby"
LOSS = json.dumps({"type": "loss"})
BAD_LOSS = 'a loss report is {"type": "loss"} and nothing more'
LOSS_ALONE = "a loss report goes to whoever sends you audio: you are not in a call"
LOSS_TOO_OFTEN = f"loss reports go on at most once every {LOSS_REPORT_INTERVAL:g} s: this one was not passed on"
SCAN_WAITERS = 16  # waiters a newcomer looks at before it waits itself: pairing stays O(1)


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
    browser: str | None = None  # its browser's id (core.identity): blocks keep two browsers apart
    address: str = ""  # the address that counts for it (core.identity)
    # When it last asked for Next: enough for the longest cool-down past --skips-per-minute (at most 50), no more.
    skips: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    cooling: asyncio.Task[None] | None = None  # its cool-down before the next pairing, while one runs
    last_partner: Stranger | None = None  # whom it talked to last: it may still block or report them after the call
    loss_reported: float = float("-inf")  # when its last loss report was passed on (loop time)


@dataclass(frozen=True)
class Stranger:
    """A past partner, as much as a block or a report needs: never the Client itself (a cycle, and its link kept)."""

    browser: str | None
    address: str
    name: str


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
    blocks: int = 0
    reports: int = 0
    cool_downs: int = 0
    loss_reports: int = 0


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
    waiting: dict[str, Client] = field(default_factory=dict)  # the one who waits in each room of two
    queue: dict[Client, None] = field(default_factory=dict)  # the lobby's waiters, first come first (an ordered set)
    rooms: dict[str, Room] = field(default_factory=dict)
    clients: set[Client] = field(default_factory=set)
    metrics: Metrics = field(default_factory=Metrics)
    tokens: dict[str, Client] = field(default_factory=dict)  # resume tokens of clients connected or held
    held: set[Client] = field(default_factory=set)  # clients (in `clients` too) whose link dropped, for a while
    shared: SharedLobby | None = None  # with --redis: the lobby and rooms this process shares with others
    retiring: set[asyncio.Task[None]] = field(default_factory=set)  # closing the links that resumed clients left
    safety: Safety = field(default_factory=Safety)  # blocks, bans, limits per address


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
    waiter = take_waiter(lobby, client)
    if waiter is None:
        if client.room is None:
            lobby.queue[client] = None
        else:
            lobby.waiting[client.room] = client
        client.link.send_text(WAITING)
        return
    pair(lobby, client, waiter)


def take_waiter(lobby: Lobby, client: Client) -> Client | None:
    """Take the waiter the client is to meet: its room's, or the first in the lobby's queue it may meet; or None."""
    # A waiter whose link is closing is about to run leave(): never pair with it.
    if client.room is not None:
        waiter = lobby.waiting.pop(client.room, None)
        return waiter if waiter is not None and waiter is not client and waiter.link.is_open else None
    found, gone = None, []
    for waiter in itertools.islice(lobby.queue, SCAN_WAITERS):
        if waiter is client or not waiter.link.is_open:
            gone.append(waiter)
        elif not lobby.safety.blocks.between(client.browser, waiter.browser):
            found = waiter
            break
    for waiter in gone if found is None else (*gone, found):
        del lobby.queue[waiter]
    return found


def pair(lobby: Lobby, client: Client, waiter: Client) -> None:
    """Put two clients in a call and tell them both, the waiter first."""
    client.partner, waiter.partner = waiter, client
    lobby.metrics.pairs += 1
    waiter.link.send_text(CONNECTED)
    client.link.send_text(CONNECTED)
    log.info("%s paired with %s%s", client.name, waiter.name, where(client))


def unpair(lobby: Lobby, client: Client) -> Client | None:
    """End the client's call or its wait; return the partner it had, told it left."""
    if client.room is None:
        lobby.queue.pop(client, None)
    elif lobby.waiting.get(client.room) is client:
        del lobby.waiting[client.room]
    if lobby.shared is not None:
        lobby.shared.forget(client)
    partner, client.partner = client.partner, None
    if partner is not None:
        partner.partner = None
        client.last_partner = Stranger(partner.browser, partner.address, partner.name)
        partner.last_partner = Stranger(client.browser, client.address, client.name)
        partner.link.send_text(DISCONNECTED)
    return partner


async def next_partner(lobby: Lobby, client: Client) -> None:
    """End the current call, if any, and look for someone else: at once, or after a cool-down if it skips at speed."""
    async with lobby.lock:
        unpair(lobby, client)
        if client.cooling is not None:
            client.cooling.cancel()
            client.cooling = None
        pause = cool_down(client.skips, lobby.config.skips_per_minute, asyncio.get_running_loop().time())
        if not pause:
            return pair_or_wait(lobby, client)
        lobby.metrics.cool_downs += 1
        client.link.send_text(json.dumps({"type": "cooldown", "seconds": pause}))
        client.cooling = asyncio.create_task(pair_later(lobby, client, pause))


async def pair_later(lobby: Lobby, client: Client, seconds: float) -> None:
    """After a cool-down, look for the client's next partner (unless it left meanwhile)."""
    await asyncio.sleep(seconds)
    async with lobby.lock:
        client.cooling = None
        if client in lobby.clients and client.partner is None and client.link.is_open:
            pair_or_wait(lobby, client)


async def block_partner(lobby: Lobby, client: Client, reason: str | None = None) -> None:
    """End a call with a stranger as Next does, and never pair these two browsers again; a reason reports it too.

    Once the call has ended (the partner left or pressed Next), it is the last partner that is blocked.
    """
    partner = client.partner or client.last_partner
    if partner is None or client.room is not None:
        return send_error(client, NOBODY_TO_BLOCK)
    if client.browser is not None and partner.browser is not None:
        seconds = lobby.config.block_days * 86400
        lobby.safety.blocks.add(client.browser, partner.browser, seconds)
        if lobby.shared is not None:  # in Redis before either can look for a partner again
            await lobby.shared.remember_block(lobby, client.browser, partner.browser, seconds)
    lobby.metrics.blocks += 1
    if reason is not None:
        lobby.metrics.reports += 1
        write_report(lobby.config.report_log, report_line(client, partner, reason))
    log.info("%s %s %s", client.name, "reported" if reason is not None else "blocked", partner.name)
    async with lobby.lock:
        client.link.send_text(json.dumps({"type": "blocked", "reported": reason is not None}))
        if client.partner is partner:
            unpair(lobby, client)
            pair_or_wait(lobby, client)


async def leave(lobby: Lobby, client: Client) -> None:
    """Forget a client that has gone, if it was here; a partner in a private room waits there again."""
    async with lobby.lock:
        if client not in lobby.clients:
            return  # it never entered (turned away, moved, or gone before), or has left already
        lobby.clients.discard(client)
        if client.cooling is not None:
            client.cooling.cancel()
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


def expel_banned(lobby: Lobby) -> None:
    """Close the links of the clients whose browser or address is banned now (the bans just changed)."""
    for client in list(lobby.clients):
        if client.link.is_open and lobby.safety.banned(client.browser, client.address) is not None:
            close_soon(lobby, client, 1008, "banned", "banned")


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


def pass_loss(lobby: Lobby, client: Client, message: dict) -> None:
    """Tell whoever sends the client audio that some of it is lost on the way: their pages send copies of their frames.

    The senders get the server's own message, never the client's: all they learn is that a receiver loses audio.
    """
    if len(message) != 1:
        return send_error(client, BAD_LOSS)
    if client.partner is not None:
        senders: tuple[Client, ...] = (client.partner,)
    else:
        senders = () if client.group is None else tuple(member for member in client.group.members if member is not client)
    if not senders:
        return send_error(client, LOSS_ALONE)
    now = asyncio.get_running_loop().time()
    if now - client.loss_reported < LOSS_REPORT_INTERVAL:
        return send_error(client, LOSS_TOO_OFTEN)
    client.loss_reported = now
    lobby.metrics.loss_reports += 1
    for sender in senders:
        sender.link.send_text(LOSS)


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
