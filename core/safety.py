"""Safety with strangers (issue 23): blocks, reports, bans, limits per address, and the Next cool-down.

All of it is per call or per handshake, never per frame. Each table is bounded:
blocks and address counters evict their oldest entries past a size, and the
open-connection counts hold only addresses with a connection open.

- Blocks: a pair of browser ids never paired again for --block-days. Kept here
  (this process pairs with them) and, with --redis, in Redis, where the shared
  lobby's script reads them (core.shared).
- Reports: a block plus one JSON line for the operator (--report-log, else the log).
- Bans: of a browser id or an address, by `duoduel.py ban`; in Redis with --redis,
  else in a file; every process re-reads them within BAN_POLL seconds.
- Limits per address: connections open at once, and handshakes a minute (GCRA:
  one number per address).
- Next cool-down: past --skips-per-minute, each Next waits a doubling pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.config import COOL_DOWN, MAX_COOL_DOWN
from core.identity import BROWSER_ID, address_key

log = logging.getLogger("duoduel")

MAX_BLOCKS = 500_000  # blocks this process remembers (about 100 bytes each); Redis keeps them all with --redis
MAX_ADDRESSES = 100_000  # addresses whose recent handshakes this process counts
BAN_POLL = 0.25  # seconds between two looks at the bans (a file's stat, or one Redis GET)
REASON_CHARS = 200  # of a report's reason
FOREVER = 32503680000.0  # 3000-01-01: a ban without --hours lasts until it is lifted
REFUSAL_SECONDS = 60.0  # how long a refused browser's page may ask why
MAX_REFUSALS = 10_000  # refusals remembered at once (about 200 bytes each)


def pair_key(a: str, b: str) -> str:
    """One name for a pair of browser ids, whichever blocked the other."""
    return f"{a}:{b}" if a < b else f"{b}:{a}"


@dataclass
class Blocks:
    """Pairs of browser ids that must not meet again, each until a time (time.time())."""

    until: dict[str, float] = field(default_factory=dict)  # in the order added: the oldest expire first

    def add(self, a: str, b: str, seconds: float) -> None:
        """Keep a and b apart for this many seconds from now."""
        key = pair_key(a, b)
        self.until.pop(key, None)
        self.until[key] = time.time() + seconds
        self.prune()

    def between(self, a: str | None, b: str | None) -> bool:
        """Whether either of two browsers blocked the other (and the block has not run out)."""
        if a is None or b is None:
            return False
        until = self.until.get(pair_key(a, b))
        return until is not None and until > time.time()

    def prune(self) -> None:
        """Forget expired blocks, and the oldest past MAX_BLOCKS."""
        now = time.time()
        while self.until:
            key, until = next(iter(self.until.items()))
            if until > now and len(self.until) <= MAX_BLOCKS:
                break
            del self.until[key]


@dataclass
class AddressLimits:
    """Connections open and handshakes a minute, per address."""

    open: Counter[str] = field(default_factory=Counter)  # only addresses with a connection open
    # Per address, the GCRA's theoretical arrival time: when its handshake budget is whole again.
    full_at: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def admit(self, address: str, connections: int, per_minute: int, now: float) -> tuple[str, int] | None:
        """Count one handshake, or say why not and in how many seconds to try again."""
        if self.open[address] >= connections:
            return too_many_open(connections)
        if not self.open[address]:
            del self.open[address]  # Counter's lookup does not add; keep only addresses with connections
        interval = 60.0 / per_minute
        full_at = max(self.full_at.pop(address, now), now)
        if full_at - now > 60.0 - interval:
            self.full_at[address] = full_at
            return too_many_handshakes(int(full_at - now - (60.0 - interval)) + 1)
        self.full_at[address] = full_at + interval
        while len(self.full_at) > MAX_ADDRESSES:
            self.full_at.popitem(last=False)  # the address least recently seen: at worst, its count starts over
        return None

    def opened(self, address: str) -> None:
        self.open[address] += 1

    def closed(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


def too_many_open(connections: int) -> tuple[str, int]:
    """The line and the Retry-After for an address past its open connections."""
    return f"Too many open connections from your address (at most {connections}): close another duoduel tab, or try again in a minute.", 60


def too_many_handshakes(wait: int) -> tuple[str, int]:
    """The line and the Retry-After for an address past its handshakes a minute."""
    return f"Too many connections from your address in the last minute: try again in {wait} seconds.", wait


@dataclass(frozen=True)
class TurnedAway:
    """Why a browser's last handshake was turned away: the line, and when it may try again (None: not by waiting)."""

    line: str
    retry_at: float | None  # time.monotonic()
    at: float  # time.monotonic()


@dataclass
class Refusals:
    """The last refusal of each browser, for REFUSAL_SECONDS: the page reads it at /refusal.json, since a browser
    hides the body of a refused WebSocket handshake. Bounded: the oldest go first past MAX_REFUSALS."""

    last: OrderedDict[str, TurnedAway] = field(default_factory=OrderedDict)

    def note(self, browser: str, line: str, retry_after: int | None) -> None:
        now = time.monotonic()
        self.last.pop(browser, None)
        self.last[browser] = TurnedAway(line, None if retry_after is None else now + retry_after, now)
        while len(self.last) > MAX_REFUSALS or next(iter(self.last.values())).at < now - REFUSAL_SECONDS:
            self.last.popitem(last=False)

    def forget(self, browser: str) -> None:
        """The browser was let in: its last refusal is no longer why anything happens."""
        self.last.pop(browser, None)

    def of(self, browser: str | None) -> TurnedAway | None:
        """This browser's refusal of the last REFUSAL_SECONDS, or None."""
        refusal = self.last.get(browser) if browser is not None else None
        return refusal if refusal is not None and refusal.at >= time.monotonic() - REFUSAL_SECONDS else None


@dataclass
class Safety:
    """This process's blocks, bans, per-address counts, and recent refusals."""

    blocks: Blocks = field(default_factory=Blocks)
    bans: dict[str, float] = field(default_factory=dict)  # browser id or address -> until (time.time())
    limits: AddressLimits = field(default_factory=AddressLimits)
    refusals: Refusals = field(default_factory=Refusals)
    # Signs WebTransport tokens (core.identity); with --redis, replaced by the shared lobby's secret.
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def banned(self, browser: str | None, address: str) -> float | None:
        """Until when a browser or an address is banned, or None."""
        now = time.time()
        for target in (browser, address):
            until = self.bans.get(target)
            if until is not None and until > now:
                return until
        return None


# Reports.


def report_line(reporter: object, reported: object, reason: object) -> str:
    """The operator's record of a report: who, from where, when, why (200 characters at most). Never audio."""
    return json.dumps({
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reporter": {"id": reporter.browser, "address": reporter.address},
        "reported": {"id": reported.browser, "address": reported.address},
        "reason": reason[:REASON_CHARS] if isinstance(reason, str) else "",
    })


def write_report(path: Path | None, line: str) -> None:
    """Append a report line to the report log, or log it."""
    if path is None:
        log.warning("report %s", line)
        return
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError as exc:
        log.error("cannot write to the report log %s (%s): report %s", path, exc.strerror or exc, line)


# The Next cool-down.


def cool_down(skips: deque[float], per_minute: int, now: float) -> float:
    """Count one skip; the seconds to wait before the next pairing (0 while under the limit)."""
    skips.append(now)
    while skips and skips[0] < now - 60.0:
        skips.popleft()
    over = len(skips) - per_minute
    return 0.0 if over <= 0 else min(COOL_DOWN * 2 ** (over - 1), MAX_COOL_DOWN)


# Bans: what `duoduel.py ban` writes, and what the server watches.


def ban_target(text: str) -> str:
    """A browser id or an address, as bans are keyed; ValueError with one line if it is neither."""
    text = text.strip().lower()
    if BROWSER_ID.fullmatch(text):
        return text
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a browser id (32 hex digits, from a report) nor an IP address") from None
    return address_key(text)  # an IPv6 address bans its /64, as it is counted


def live(bans: dict[str, float], now: float | None = None) -> dict[str, float]:
    """The bans that have not run out."""
    now = time.time() if now is None else now
    return {target: until for target, until in bans.items() if until > now}


def read_bans_file(path: Path) -> dict[str, float]:
    """The bans in a file (a JSON object: target -> until); none if there is no file yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("cannot read the bans file %s (%s): keeping the bans read before", path, exc)
        raise
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


@contextlib.contextmanager
def bans_file_locked(path: Path):
    """Hold the bans file's lock while changing it: two `ban` commands at once lose neither."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_bans_file(path: Path, bans: dict[str, float]) -> None:
    """Replace the bans file in one step: the server never reads half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(live(bans), indent=0, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


async def watch_bans(
    safety: Safety, changed: Callable[[], Awaitable[dict[str, float] | None]], enforce: Callable[[], None]
) -> None:
    """Every BAN_POLL seconds, take the bans again if they changed (changed() returns None if not), and enforce them."""
    while True:
        try:
            bans = await changed()
        except Exception as exc:  # a bad file or Redis out: keep the bans known, say so, look again
            log.debug("bans not read: %s", exc)
            bans = None
        if bans is not None:
            if bans != safety.bans:
                log.info("bans: %d in force", len(live(bans)))
            safety.bans = bans
            enforce()
        await asyncio.sleep(BAN_POLL)


def file_watcher(path: Path) -> Callable[[], Awaitable[dict[str, float] | None]]:
    """changed() for a bans file: re-read it when its inode, size or mtime changes (stat polling)."""
    seen: list[tuple[int, int, int] | None] = [None]

    async def changed() -> dict[str, float] | None:
        try:
            stat = path.stat()
            now = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            now = (0, 0, 0)
        if now == seen[0]:
            return None
        bans = read_bans_file(path)
        seen[0] = now
        return bans

    return changed
