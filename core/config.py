"""The limits, and the Config that the command line fills in."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.identity import TOKEN_SECONDS
from core.webtransport import MAX_SESSIONS as MAX_WEBTRANSPORT_SESSIONS

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

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
# A lobby call's key message, passed to the partner unread (the page's are under 120 characters).
MAX_KEY_MESSAGE = 256
# How long a client whose socket dropped keeps its place for a resume (issue 13):
# a network change or a laptop lid shut for a moment, not a page that left.
RESUME_WINDOW = 10.0
# Safety with strangers (issue 23). A block lasts this many days by default.
BLOCK_DAYS = 30.0
# Per address: open connections at once, and handshakes a minute. A household or
# an office behind one address stays well under both; see docs/deploy.md for a carrier NAT.
CONNECTIONS_PER_ADDRESS = 16
HANDSHAKES_PER_MINUTE = 60
# More Nexts than this in a minute, and each further one waits a growing cool-down
# (COOL_DOWN seconds, doubling, up to MAX_COOL_DOWN) before the next pairing.
SKIPS_PER_MINUTE = 10
COOL_DOWN = 2.0
MAX_COOL_DOWN = 60.0
# The largest one-way delay a page may report in its pings (a minute: beyond any call).
MAX_PATH_MS = 60_000
# A page that loses audio says so ({"type": "loss"}) at most every 2 s; the server passes on at most one report a
# second from each client, so that nobody can keep the pages it talks to busy with them.
LOSS_REPORT_INTERVAL = 1.0


class StartupError(Exception):
    """A reason the server cannot start, for one line on stderr."""


@dataclass(frozen=True)
class Config:
    """What the command line decides, and the relay's tunables."""

    host: str = "localhost"
    port: int = 8080
    unix_socket: Path | None = None  # listen here instead of host:port (a proxy on this machine)
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
    # Safety (issue 23): how long a block lasts, where reports and bans are kept, the limits per address.
    block_days: float = BLOCK_DAYS
    report_log: Path | None = None  # None: reports go to the log
    bans_file: Path | None = None  # without --redis: the file `duoduel.py ban` writes and the server watches
    connections_per_address: int = CONNECTIONS_PER_ADDRESS
    handshakes_per_minute: int = HANDSHAKES_PER_MINUTE
    trusted_proxies: frozenset[str] = frozenset()  # whose X-Forwarded-For names the address that counts
    skips_per_minute: int = SKIPS_PER_MINUTE
    # WebTransport on UDP beside the WebSocket (the command line turns it on; --no-webtransport off):
    # its UDP port (None: the HTTP port's number) and address, how many sessions at once, and its certificate
    # (a core.webtransport.ServerCertificate; None: one made at start, named to the page by its hash).
    webtransport: bool = False
    webtransport_port: int | None = None
    webtransport_host: str | None = None  # None: host's
    max_webtransport_sessions: int = MAX_WEBTRANSPORT_SESSIONS
    webtransport_certificate: Any = None
    # How long the id token of a page's offer names its browser to /wt (the page renews it at half of this).
    id_token_seconds: float = TOKEN_SECONDS
