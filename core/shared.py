"""The shared lobby (--redis, issue 14): N duoduel processes, on one machine or many, act as one service.

Every call lives on one process and its audio never leaves it: Redis holds only
who waits and where each private room lives, never a frame. Redis commands are
spent per call (about three: park, take, answer), never per frame, plus two a
second per process to say it is alive.

The lobby's waiting slot is one Redis key, "PID TICKET", taken or set by the
Lua script TAKE_SLOT in one atomic step: pop a waiter whose process is alive
(its key ALIVE_KEY + PID has not expired), or park the caller. A newcomer
that takes a waiter of another process is sent there ({"type": "moved"})
with a call token: single-use (GETDEL), short-lived (CALL_MS), unguessable
(128 random bits). The waiter's process pairs the two when it arrives. A
waiter taken by a newcomer who never arrives is back in the slot within
CLAIM_MS plus a second (sweep). A private room belongs to the process its
first member reached (ROOM_KEY); later members are moved there.

Redis unreachable: calls go on (they never touched it), each process pairs
its own clients locally and says so once, in the log, /healthz and /metrics,
and rejoins the shared lobby at the first heartbeat Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.config import Config, StartupError
from core.lobby import WAITING, Client, Lobby, close_soon, pair, pair_or_wait, send_error

if TYPE_CHECKING:  # redis is optional: imported at run time only with --redis
    import redis.asyncio

log = logging.getLogger("duoduel")

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

# Every key a script touches comes from the constants above, as KEYS, or as a
# prefix in ARGV where the script reads the rest of the key's name from Redis.

# KEYS: the slot, the newcomer's call key. ARGV: pid, ticket, CLAIM_MS, CALL_MS, ALIVE_KEY, CLAIMED_KEY.
# Returns nil (the caller waits now) or {pid, ticket, public URL} of the waiter taken.
TAKE_SLOT = """
local waiter = redis.call('GET', KEYS[1])
if waiter then
  local pid, ticket = string.match(waiter, '^(%S+) (%S+)$')
  local url = pid and redis.call('GET', ARGV[5] .. pid)
  if url then
    redis.call('DEL', KEYS[1])
    if pid ~= ARGV[1] then
      redis.call('SET', KEYS[2], ticket, 'PX', ARGV[4])
      redis.call('SET', ARGV[6] .. ticket, pid, 'PX', ARGV[3])
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

# KEYS[1] the slot; ARGV: pid, CLAIMED_KEY, tickets... Returns the tickets neither in the slot nor claimed by a newcomer.
SWEEP = """
local waiter = redis.call('GET', KEYS[1])
local lost = {}
for i = 3, #ARGV do
  if waiter ~= ARGV[1] .. ' ' .. ARGV[i] and redis.call('EXISTS', ARGV[2] .. ARGV[i]) == 0 then
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS[1] the room's key; ARGV: pid, ALIVE_KEY, ROOM_MS. Returns {owner pid, owner URL} (URL '' when the caller owns it now).
CLAIM_ROOM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local url = redis.call('GET', ARGV[2] .. owner)
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
        # This process's WebTransport offer (core.webtransport.Endpoint.offer), once it serves /wt: published
        # beside its URL, so that a WebTransport client moved here is told where to open its session.
        self.offer: Callable[[], dict[str, object]] | None = None
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
            before = await self.redis.set(ALIVE_KEY + self.pid, self.address(), px=ALIVE_MS, get=True)
            lost = await self.sweep(keys=[SLOT_KEY], args=[self.pid, CLAIMED_KEY, *self.waiters]) if self.waiters else []
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
                await self.claim_room(keys=[room_key(name)], args=[self.pid, ALIVE_KEY, ROOM_MS])
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
                    keys=[SLOT_KEY, CALL_KEY + call], args=[self.pid, ticket, CLAIM_MS, CALL_MS, ALIVE_KEY, CLAIMED_KEY]
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
            client.link.send_text(WAITING)
            return True
        pid, their_ticket, address = found
        if pid != self.pid:
            client.seeking = None
            url, offer = parse_address(address)
            self.move(lobby, client, f"{url}/ws?call={call}", offer)
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

    def address(self) -> str:
        """What the liveness key holds: the URL /ws hangs under, and the WebTransport offer after a space if any."""
        return self.url if self.offer is None else f"{self.url} {json.dumps(self.offer(), separators=(',', ':'))}"

    def move(self, lobby: Lobby, client: Client, url: str, offer: dict | None = None) -> None:
        """Send the client to another process, where its call or room is; then close its link here.

        A WebTransport client is also given that process's offer (its UDP port and certificate hash), if it has
        one, so that it opens its session there over WebTransport too.
        """
        lobby.metrics.moved += 1
        moved: dict[str, object] = {"type": "moved", "url": url}
        if offer is not None and getattr(client.link, "kind", None) == "webtransport":
            moved["webtransport"] = offer
        client.link.send_text(json.dumps(moved))
        close_soon(lobby, client, 1000, "moved to another process", "moved")

    async def owner_elsewhere(self, lobby: Lobby, client: Client) -> bool:
        """Move a private room's newcomer to the process that holds the room; False if the room is (now) here."""
        if not self.up:
            return False
        try:
            owner, url = await self.claim_room(keys=[room_key(client.room)], args=[self.pid, ALIVE_KEY, ROOM_MS])
        except self.errors as exc:
            await self.went_down(lobby, exc)
            return False
        if owner == self.pid:
            return False
        url, offer = parse_address(url)
        self.move(lobby, client, f"{url}/ws?room={client.room}", offer)
        return True

    def release_room(self, name: str) -> None:
        """The room has emptied here: let the next first member pin it wherever it arrives."""
        if self.up:
            self.spawn(self.forget_room(name))

    async def forget_room(self, name: str) -> None:
        """Delete the room's key if this process still owns it."""
        with contextlib.suppress(*self.errors):
            await self.release(keys=[room_key(name)], args=[self.pid])


def searching(lobby: Lobby, client: Client, search: object) -> bool:
    """Whether this search is still the client's: it has not left, nor asked for Next since."""
    return client.seeking is search and client in lobby.clients and client.link.is_open


def waiting_alone(lobby: Lobby, client: Client) -> bool:
    """Whether a client is here, open, and in no call: one that may still be paired."""
    return client.partner is None and client in lobby.clients and client.link.is_open


def room_key(name: str) -> str:
    """The Redis key of a private room: a hash, so that whoever reads Redis learns no room's name."""
    return ROOM_KEY + hashlib.blake2s(name.encode(), digest_size=16).hexdigest()


def websocket_base(public_url: str) -> str:
    """The ws:// or wss:// URL that /ws hangs under, from --public-url."""
    url = urllib.parse.urlsplit(public_url)
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    return urllib.parse.urlunsplit((scheme, url.netloc, url.path.rstrip("/"), "", ""))


def parse_address(address: str) -> tuple[str, dict | None]:
    """A process's URL and WebTransport offer, from what its liveness key holds (SharedLobby.address)."""
    url, _, offer = address.partition(" ")
    try:
        return url, json.loads(offer) if offer else None
    except ValueError:
        return url, None


def redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
