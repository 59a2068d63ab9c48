#!/usr/bin/env python
"""duoduel: two people open the same page, press Start, and talk.

One websockets server serves the page from static/, pairs the clients that
connect to /ws through a waiting slot guarded by a lock, and relays their binary
audio frames to each other. A private room (/ws?room=NAME) holds up to
--room-size people, each hearing all the others. Text frames are JSON control
messages; see docs/protocol.md. Beside it, on UDP, WebTransport sessions at /wt
(core.webtransport) join the same lobby: control messages on a stream, audio as
datagrams.

This file is the command: the handlers, HTTP, start-up. The lobby, the
relay and the links they serve are in the package core/, which never imports
this file: run as __main__, it is loaded once.
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
import math
import posixpath
import re
import signal
import socket
import ssl
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.version import version as websockets_version

from core import webtransport
from core.config import (
    BLOCK_DAYS, CONNECTIONS_PER_ADDRESS, HANDSHAKES_PER_MINUTE, MAX_CLIENTS, MAX_MESSAGE_BYTES, MAX_ROOM_SIZE,
    MAX_WEBTRANSPORT_SESSIONS, RESUME_WINDOW, ROOM_SIZE, SKIPS_PER_MINUTE, STATIC_DIR, Config, StartupError,
)
from core.identity import Visitor, browser_in, identify, identity_from_token, issue_token, new_browser_id, plain, set_cookie
from core.link import Link
from core.lobby import Client, Lobby, expel_banned
from core.relay import flooding, relay
from core.resume import release_held
from core.safety import FOREVER, bans_file_locked, ban_target, file_watcher, live, read_bans_file, watch_bans, write_bans_file
from core.session import (
    BAD_ROOM_NAME, ROOM_NAME, arrive, closed, control, depart, newcomer, opened, screen, screen_visitor, visit_of,
)
from core.shared import BANS_KEY, BANS_VERSION_KEY, SharedLobby, redact
from core.webtransport import Endpoint, Refusal, WebTransportRequest, WebTransportSession
from core.websocket import FastWebSocketLink, WebSocketLink, choose_route

__all__ = ["Config", "handler", "main", "make_server", "run"]

# Where `duoduel.py ban` keeps bans without --redis, and the server looks for them.
BANS_FILE = Path(__file__).resolve().parent / "bans.json"

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

ROOM_PAGE = re.compile("/r/" + ROOM_NAME.pattern)
# Where a page learns how to open a WebTransport session (static/transport.js asks it).
OFFER_PATH = "/webtransport.json"
REFUSAL_PATH = "/refusal.json"  # why the page's last connection was turned away (core.safety.Refusals)
# A Host header we are willing to echo into the Content-Security-Policy.
SAFE_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

log = logging.getLogger("duoduel")


# The handlers: a page's stay, as the protocol goes (core.session), on a WebSocket or a WebTransport session.


async def handler(websocket: WebSocketLink, lobby: Lobby) -> None:
    """A page's WebSocket: it arrives (or resumes its place), talks until it leaves, and departs."""
    await stay(lobby, websocket, websocket.request.path, websocket.id.hex[:8], websocket.visitor)


async def session_handler(session: WebTransportSession, lobby: Lobby) -> None:
    """A page's WebTransport session, once its control stream opened: the same stay as a WebSocket's.

    A session carries no cookie: its browser id comes in the URL's id= token (the page had it from its offer), and
    without a valid one its visitor is its address alone. Screened (bans and limits) here.
    """
    config = lobby.config
    visitor = identify(token_browser(lobby, session.path), session.remote_address[0], None, config.trusted_proxies)
    unwelcome = await screen_visitor(lobby, visitor)
    if unwelcome is not None:
        lobby.metrics.rejections[unwelcome.label] += 1
        lobby.safety.refusals.note(visitor.browser, unwelcome.line, unwelcome.retry_after)
        await session.close(1008, unwelcome.line)
        return
    lobby.safety.refusals.forget(visitor.browser)
    await stay(lobby, session, session.path, session.id, visitor)


def token_browser(lobby: Lobby, path: str) -> str | None:
    """The browser id a session's id= token carries, or None: missing, forged or expired (never an error: the call goes on)."""
    tokens = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("id")
    return identity_from_token(lobby.safety.secret, tokens[0]) if tokens is not None and len(tokens) == 1 else None


async def stay(lobby: Lobby, link: Link, path: str, name: str, visitor: Visitor) -> None:
    """A page's link: it arrives (or resumes its place), talks until it leaves, and departs."""
    visit = visit_of(urllib.parse.urlsplit(path).query)
    client = newcomer(link, visit, name, visitor)
    opened(lobby, visitor)
    try:
        if arrived := await arrive(lobby, client, visit):
            client = arrived  # itself, or the client whose place it resumed
            await converse(lobby, client, link)
    finally:
        closed(lobby, visitor)
        await depart(lobby, client, link)


async def converse(lobby: Lobby, client: Client, link: Link) -> None:
    """Relay the client's audio and obey its control messages until its link closes, or it resumes on another."""
    link.start_relay(lobby, client)  # from now on, on the fast route and over WebTransport, its audio goes to relay() as read
    with contextlib.suppress(ConnectionClosed):
        async for message in link:  # control messages; audio too on the public route, or if fragmented
            if client.link is not link:
                break  # the page resumed on another link: this one has nothing more to say
            if flooding(lobby, client):
                continue
            if isinstance(message, str):
                await control(lobby, client, message)
            else:
                relay(lobby, client, message)


def relay_datagram(lobby: Lobby, client: Client, frame: bytes) -> None:
    """An audio datagram from a WebTransport page: relayed as a WebSocket's binary frame is, behind the same flood check."""
    if not flooding(lobby, client):
        relay(lobby, client, frame)


# HTTP: the page, health, metrics, the WebTransport offer, and the gate in front of /ws.


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


@dataclasses.dataclass
class Transports:
    """What the HTTP side tells pages of WebTransport: the endpoint, once it serves (None: off, or not yet)."""

    webtransport: Endpoint | None = None


def make_process_request(
    lobby: Lobby, config: Config, transports: Transports | None = None
) -> Callable[[ServerConnection, Request], Response | None]:
    """Build the HTTP hook: serve pages, /healthz, /metrics and the WebTransport offer, and guard /ws."""
    transports = transports or Transports()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        """Answer an HTTP request, or return None to let /ws become a WebSocket."""
        url = urllib.parse.urlsplit(request.path)
        if url.path == "/ws":
            return gate(connection, request, url.query)
        if request.method not in ("GET", "HEAD"):
            return refuse(request, "method", HTTPStatus.METHOD_NOT_ALLOWED, "Only GET and HEAD are allowed.", [("Allow", "GET, HEAD")])
        if url.path == "/healthz":
            return respond(request, HTTPStatus.OK, json.dumps(health_report(lobby)).encode(), "application/json")
        if url.path == "/metrics":
            text = metrics_text(lobby, transports.webtransport)
            return respond(request, HTTPStatus.OK, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        if url.path == OFFER_PATH:
            return offer(request)
        if url.path == REFUSAL_PATH:
            return refusal(request)
        if url.path.startswith("/r/") and not ROOM_PAGE.fullmatch(url.path):
            return refuse(request, "bad_room", HTTPStatus.BAD_REQUEST, BAD_ROOM_NAME)
        file = resolve_static(config.static_dir, url.path)
        if file is None or file.suffix.lower() not in CONTENT_TYPES:
            return refuse(request, "not_found", HTTPStatus.NOT_FOUND, "Not found.")
        response = static_file(request, file, webtransport=transports.webtransport is not None)
        if file.suffix == ".html" and browser_in(request.headers.get("Cookie")) is None:
            response.headers["Set-Cookie"] = set_cookie(new_browser_id(), secure_cookies(config))  # the page's first load
        return response

    def offer(request: Request) -> Response:
        """Where and how a page opens a WebTransport session (the UDP port, the path, the certificate's hash), and a
        token that carries the page's browser id there: a session gets no cookie. Never cached: the token is this browser's."""
        if transports.webtransport is None:
            return refuse(request, "not_found", HTTPStatus.NOT_FOUND, "WebTransport is off here: use the WebSocket.")
        browser = browser_in(request.headers.get("Cookie"))
        fresh, browser = browser is None, browser or new_browser_id()
        seconds = config.id_token_seconds
        token = issue_token(lobby.safety.secret, browser, seconds)
        body = json.dumps({**transports.webtransport.offer(), "token": token, "tokenSeconds": seconds}).encode()
        response = respond(request, HTTPStatus.OK, body, "application/json", [("Cache-Control", "no-store")])
        if fresh:
            response.headers["Set-Cookie"] = set_cookie(browser, secure_cookies(config))  # as the page's first load would
        return response

    def refusal(request: Request) -> Response:
        """Why this browser's last connection was turned away (a ban, a limit, a full server), if it was in the last
        minute: a browser hides the body of a refused WebSocket handshake from its page, so the page asks here."""
        turned = lobby.safety.refusals.of(browser_in(request.headers.get("Cookie")))
        if turned is None:  # not counted among the refusals: a page asks whenever a link did not open
            return respond(request, HTTPStatus.NOT_FOUND, b"Nothing was refused.\n", "text/plain; charset=utf-8")
        retry = None if turned.retry_at is None else max(1, math.ceil(turned.retry_at - time.monotonic()))
        body = json.dumps({"line": turned.line, "retryAfter": retry}).encode()
        return respond(request, HTTPStatus.OK, body, "application/json", [("Cache-Control", "no-store")])

    def gate(connection: ServerConnection, request: Request, query: str) -> Response | Awaitable[Response | None] | None:
        """Let a WebSocket handshake through, or say why not; then admit() its visitor."""
        if request.method != "GET":
            return refuse(request, "method", HTTPStatus.METHOD_NOT_ALLOWED, "Only GET opens a WebSocket.", [("Allow", "GET")])
        origin = request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, request.headers.get("Host"), config):
            log.info("refused a handshake from origin %.100r", origin)
            return refuse(request, "origin", HTTPStatus.FORBIDDEN, "Cross-site WebSocket connections are not allowed.")
        peer = connection.remote_address[0] if connection.remote_address else ""
        visitor = identify(browser_in(request.headers.get("Cookie")), peer, request.headers.get("X-Forwarded-For"), config.trusted_proxies)
        return admit(connection, request, query, visitor)

    async def admit(connection: ServerConnection, request: Request, query: str, visitor: Visitor) -> Response | None:
        """Refuse a banned visitor, one past its address's limits, or a bad query; else note the visitor on its connection."""
        unwelcome = await screen_visitor(lobby, visitor) or screen(lobby, query)
        if unwelcome is not None:
            lobby.safety.refusals.note(visitor.browser, unwelcome.line, unwelcome.retry_after)  # the page asks why
            retry = [] if unwelcome.retry_after is None else [("Retry-After", str(unwelcome.retry_after))]
            return refuse(request, unwelcome.label, unwelcome.status, unwelcome.line, retry)
        lobby.safety.refusals.forget(visitor.browser)
        connection.visitor = visitor
        return None

    def refuse(
        request: Request, reason: str, status: HTTPStatus, line: str, extra: Sequence[tuple[str, str]] = ()
    ) -> Response:
        """Answer with one line of plain text that says what is wrong, and count it by reason."""
        lobby.metrics.rejections[reason] += 1
        headers = [("X-Content-Type-Options", "nosniff"), *extra]
        return respond(request, status, f"{line}\n".encode(), "text/plain; charset=utf-8", headers)

    return process_request


def make_process_response(config: Config) -> Callable[[ServerConnection, Request, Response], None]:
    """Build the hook that gives a handshake that came without the id cookie a new one, on the 101."""

    def process_response(connection: ServerConnection, request: Request, response: Response) -> None:
        visitor: Visitor | None = getattr(connection, "visitor", None)
        if visitor is not None and visitor.fresh and response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
            response.headers["Set-Cookie"] = set_cookie(visitor.browser, secure_cookies(config))

    return process_response


def secure_cookies(config: Config) -> bool:
    """Whether browsers reach this server over HTTPS (here, or at the proxy in front of it): then cookies are Secure."""
    return config.tls is not None or (config.public_url or "").startswith("https:")


def census(lobby: Lobby) -> dict[str, int]:
    """How many clients are connected, waiting and talking, and in how many rooms.

    A group room's lone member waits, as in a room of two; a group room of two or
    more is one group call. Room names are secrets: never list them.
    """
    grouped = [len(room.members) for room in lobby.rooms.values()] if lobby.config.room_size > 2 else []
    shared = len(lobby.shared.waiters) if lobby.shared is not None else 0
    return {
        "clients": len(lobby.clients),
        "waiting": len(lobby.waiting) + len(lobby.queue) + shared + grouped.count(1),
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


def static_file(request: Request, file: Path, webtransport: bool = False) -> Response:
    """Send a file from static/, or 304 when the browser's copy is current."""
    stat = file.stat()
    etag = '"' + hashlib.blake2s(f"{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=8).hexdigest() + '"'
    headers = [
        ("ETag", etag),
        ("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True)),
        ("Cache-Control", "no-cache"),
        *security_headers(request, webtransport),
    ]
    if etag in request.headers.get("If-None-Match", ""):
        return respond(request, HTTPStatus.NOT_MODIFIED, b"", None, headers)
    return respond(request, HTTPStatus.OK, file.read_bytes(), CONTENT_TYPES[file.suffix.lower()], headers)


def security_headers(request: Request, webtransport: bool = False) -> list[tuple[str, str]]:
    """Headers that keep the page from running anything but its own scripts, nor connect anywhere but here."""
    host = request.headers.get("Host", "")
    sockets = ""
    if SAFE_HOST.fullmatch(host):
        sockets = f" ws://{host} wss://{host}"
        if webtransport:
            # Any port of this host: behind a proxy the page and its offer may come from two processes, each with
            # a UDP port of its own (docs/deploy.md).
            sockets += f" https://{host_name(host)}:*"
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


def host_name(host: str) -> str:
    """A Host header (or an :authority) without its port: "[::1]:8080" is "[::1]", "localhost:8080" "localhost"."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0]


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


def metrics_text(lobby: Lobby, endpoint: Endpoint | None = None) -> str:
    """Render the counters in the Prometheus text format."""
    m = lobby.metrics
    now = census(lobby)
    lines: list[str] = []

    def metric(name: str, kind: str, help: str, samples: list[tuple[str, int]]) -> None:
        lines.append(f"# HELP duoduel_{name} {help}")
        lines.append(f"# TYPE duoduel_{name} {kind}")
        lines.extend(f"duoduel_{name}{labels} {value}" for labels, value in samples)

    metric("clients", "gauge", "Connected clients, over both transports.", [("", now["clients"])])
    kinds = Counter(getattr(client.link, "kind", "websocket") for client in lobby.clients if client not in lobby.held)
    metric(
        "clients_by_transport", "gauge", "Connected clients by the transport of their link (held ones not counted).",
        [(f'{{transport="{kind}"}}', kinds[kind]) for kind in ("websocket", "webtransport")],
    )
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
    metric("blocks_total", "counter", "Partners blocked (reports included).", [("", m.blocks)])
    metric("reports_total", "counter", "Partners reported.", [("", m.reports)])
    metric("cool_downs_total", "counter", "Nexts made to wait for skipping partners at speed.", [("", m.cool_downs)])
    metric("loss_reports_total", "counter", "Reports of lost audio passed on to its senders (pages that lose datagrams).", [("", m.loss_reports)])
    if endpoint is not None:
        metric("webtransport_sessions", "gauge", "WebTransport sessions open (in the lobby or opening).", [("", len(endpoint.sessions))])
        metric("webtransport_refused_total", "counter", "WebTransport sessions refused past --max-webtransport-sessions.", [("", endpoint.refused_busy)])
        metric(
            "webtransport_datagrams_total", "counter",
            "Audio datagrams received from pages, sent to pages, and dropped (too big, or aioquic's queue full).",
            [(f'{{direction="{direction}"}}', count) for direction, count in (
                ("received", endpoint.datagrams_received), ("sent", endpoint.datagrams_sent), ("dropped", endpoint.datagrams_dropped))],
        )
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
    """Serve while in the context, with a lobby of its own, on the relay route the self-check allows.

    With config.webtransport, WebTransport too, on UDP; the server's `webtransport` is its Endpoint (else None).
    """
    lobby = Lobby(config)
    transports = Transports()
    connection, problem = await choose_route(config)
    listen = serve if config.unix_socket is None else unix_serve
    where = {"host": config.host, "port": config.port} if config.unix_socket is None else {"path": config.unix_socket}
    async with holds_released(lobby), shared_lobby(lobby), bans_watched(lobby), listen(
        lambda websocket: handler(websocket, lobby),
        **where,
        process_request=make_process_request(lobby, config, transports),
        process_response=make_process_response(config),
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
        if config.unix_socket is not None:
            # The proxy runs as a user of its own; any user of this machine reaches a loopback port as well.
            config.unix_socket.chmod(0o666)
        async with webtransport_endpoint(lobby, server) as endpoint:
            server.webtransport = transports.webtransport = endpoint
            if lobby.shared is not None and endpoint is not None:
                lobby.shared.offer = endpoint.offer  # published at the next heartbeat, for moves to here
            # Said once listening: a server that cannot start says only why.
            if problem is not None:
                log.warning(
                    "websockets %s failed duoduel's self-check (%s): relaying through its public API instead, "
                    "slower but correct. Install the websockets version in requirements.txt for the fast route.",
                    websockets_version, problem,
                )
            elif not issubclass(connection, FastWebSocketLink):
                log.info("relay route: websockets' public API (as configured)")
            else:
                log.info("relay route: frames cut from the byte stream (self-check passed)")
            if endpoint is not None:
                pinned = endpoint.certificate.hash
                log.info("webtransport on udp port %d%s", endpoint.port, f", certificate sha-256 {pinned.hex()}" if pinned else "")
            yield server


@contextlib.asynccontextmanager
async def webtransport_endpoint(lobby: Lobby, server: Server) -> AsyncIterator[Endpoint | None]:
    """With config.webtransport, serve /wt on UDP (the HTTP port's number unless told otherwise); else yield None."""
    config = lobby.config
    if not config.webtransport:
        yield None
        return
    # Behind a proxy on a unix socket there is no HTTP port: the UDP port must be named (start() sees to it).
    http_port = None if config.unix_socket is not None else server.sockets[0].getsockname()[1]
    port = http_port if config.webtransport_port is None else config.webtransport_port
    if port is None:
        raise StartupError("a unix socket has no port for WebTransport: give it one (--webtransport-port)")
    host = config.webtransport_host or config.host
    certificate = config.webtransport_certificate or webtransport.generate_certificate([host])
    async with contextlib.AsyncExitStack() as stack:
        try:
            endpoint = await stack.enter_async_context(webtransport.serve(
                host,
                port,
                certificate,
                admit=make_admit(lobby, http_port),
                on_session=lambda session: session_handler(session, lobby),
                on_audio=relay_datagram,
                names=[host] if certificate.hash is not None else None,  # made here: renew it before it expires
                max_sessions=config.max_webtransport_sessions,
            ))
        except OSError as exc:
            raise StartupError(
                f"cannot serve WebTransport on UDP port {port} of {host} ({exc.strerror or exc}): "
                "pick another with --webtransport-port, or add --no-webtransport"
            ) from None
        yield endpoint


def make_admit(lobby: Lobby, http_port: int | None) -> Callable[[WebTransportRequest], Refusal | None]:
    """Build the gate in front of /wt: the checks a WebSocket handshake gets, for an extended CONNECT."""
    config = lobby.config

    def admit(request: WebTransportRequest) -> Refusal | None:
        """Let a session open, or say why not: the page's own origin only, then core.session.screen()."""
        # The page's origin is the HTTP side's, on the :authority's host: the same name, another port perhaps.
        # Behind a proxy (a unix socket) it is the public one, among the allowed origins.
        page_host = None if http_port is None else host_name(request.authority)
        if http_port is not None and http_port != (443 if config.tls is not None else 80):  # no default port in an origin
            page_host += f":{http_port}"
        if request.origin is not None and not origin_allowed(request.origin, page_host, config):
            log.info("refused a webtransport session from origin %.100r", request.origin)
            lobby.metrics.rejections["origin"] += 1
            return Refusal(HTTPStatus.FORBIDDEN.value, "Cross-site WebTransport sessions are not allowed.")
        unwelcome = screen(lobby, urllib.parse.urlsplit(request.path).query)
        if unwelcome is not None:
            lobby.metrics.rejections[unwelcome.label] += 1
            return Refusal(int(unwelcome.status), unwelcome.line)
        return None

    return admit


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


@contextlib.asynccontextmanager
async def bans_watched(lobby: Lobby) -> AsyncIterator[None]:
    """Keep the bans current (in Redis with --redis, else in the bans file) while serving; a ban also ends calls."""
    if lobby.shared is not None:
        changed = lobby.shared.bans_changed
    elif lobby.config.bans_file is not None:
        changed = file_watcher(lobby.config.bans_file)
    else:
        yield
        return
    watcher = asyncio.create_task(watch_bans(lobby.safety, changed, lambda: expel_banned(lobby)))
    try:
        yield
    finally:
        watcher.cancel()


async def run(config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then close every call with 1001 and return."""
    async with make_server(config) as server:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.close)
        scheme = "https" if config.tls is not None else "http"
        for sock in server.sockets:
            if sock.family == socket.AF_UNIX:
                log.info("duoduel listening on the unix socket %s (%s, for a proxy)", sock.getsockname(), scheme)
                continue
            host, port = sock.getsockname()[:2]
            log.info("duoduel listening on %s://%s:%d/", scheme, f"[{host}]" if ":" in host else host, port)
        await server.wait_closed()
    log.info("duoduel stopped")


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


def key_path(cert: Path, key: Path | None) -> Path:
    """The private key's file: --key, else key.pem beside the certificate, else the certificate's own file."""
    if key is None:
        beside = cert.with_name("key.pem")
        key = beside if beside.exists() else cert
    return key


def tls_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    """Load the certificate and key; the key defaults to key.pem beside the certificate."""
    key = key_path(cert, key)
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


def webtransport_certificate(args: argparse.Namespace) -> webtransport.ServerCertificate:
    """With --https, QUIC serves the same certificate if a CA issued it; a self-signed one is replaced (load_certificate)."""
    try:
        return webtransport.load_certificate(args.cert, key_path(args.cert, args.key), [args.host])
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot use {args.cert} for WebTransport ({exc}): make a new pair with ./gen_cert.sh --force, or add --no-webtransport") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description="duoduel: a voice-chat server: two people in a call, or a small group in a private room.")
    parser.add_argument("--host", default="localhost", help="address to listen on (default: localhost; 0.0.0.0 for the LAN)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 8080, or 8443 with --https)")
    parser.add_argument("--unix", type=Path, metavar="PATH", help="listen on this unix socket instead of --host and --port, for a proxy on this machine (deploy/nginx-duoduel.conf)")
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
    parser.add_argument("--relay-route", choices=["auto", "public"], default="auto", help="auto: cut audio frames from the byte stream when websockets passes the start-up self-check, else its public API; public: always websockets' public API (default: auto)")
    parser.add_argument("--no-webtransport", dest="webtransport", action="store_false", help="serve no WebTransport: every page talks over the WebSocket")
    parser.add_argument("--webtransport-port", type=port_number, default=None, metavar="PORT", help="UDP port of WebTransport (default: the HTTP port's number; open it in the firewall)")
    parser.add_argument("--webtransport-host", default=None, metavar="HOST", help="address WebTransport listens on (default: --host's; behind a proxy that carries TCP only, a public one)")
    parser.add_argument("--max-webtransport-sessions", type=int, default=MAX_WEBTRANSPORT_SESSIONS, metavar="N", help=f"past this many WebTransport sessions, pages use the WebSocket (default: {MAX_WEBTRANSPORT_SESSIONS})")
    parser.add_argument("--block-days", type=positive, default=BLOCK_DAYS, metavar="DAYS", help=f"keep two browsers that blocked each other apart this long (default: {BLOCK_DAYS:g})")
    parser.add_argument("--report-log", type=Path, metavar="FILE", help="append reports here, one JSON line each (default: the log)")
    parser.add_argument("--bans-file", type=Path, default=BANS_FILE, metavar="FILE", help=f"without --redis: the bans `duoduel.py ban` writes and the server watches (default: {BANS_FILE.name} beside duoduel.py)")
    parser.add_argument("--connections-per-address", type=whole, default=CONNECTIONS_PER_ADDRESS, metavar="N", help=f"connections one address may have open at once; past it, HTTP 429 (default: {CONNECTIONS_PER_ADDRESS})")
    parser.add_argument("--handshakes-per-minute", type=whole, default=HANDSHAKES_PER_MINUTE, metavar="N", help=f"handshakes one address may make a minute; past it, HTTP 429 (default: {HANDSHAKES_PER_MINUTE})")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS", help="a proxy whose X-Forwarded-For names the address that counts, e.g. 127.0.0.1 for nginx on this machine (repeatable); without one, loopback is not limited")
    parser.add_argument("--skips-per-minute", type=whole, default=SKIPS_PER_MINUTE, metavar="N", help=f"Nexts a minute before each further one waits a growing cool-down (default: {SKIPS_PER_MINUTE}, at most 50)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default: info")
    return parser.parse_args(argv)


Number = TypeVar("Number", int, float)


def in_range(read: Callable[[str], Number], low: float, high: float, what: str, above: bool = False) -> Callable[[str], Number]:
    """An argparse type: read(text) (int or float) from low (or above it) to high, else one line: "'TEXT' is not WHAT"."""

    def value(text: str) -> Number:
        try:
            number = read(text)
        except ValueError:
            number = None
        if number is None or not (low < number if above else low <= number) or not number <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return number

    return value


port_number = in_range(int, 0, 65535, "a port: give a whole number from 0 to 65535")  # 0: any free one
positive = in_range(float, 0, 36500, "a positive number", above=True)  # days or hours
whole = in_range(int, 1, 100_000, "a whole number from 1 to 100000")
room_size = in_range(int, 2, MAX_ROOM_SIZE, f"a room size: give a whole number from 2 to {MAX_ROOM_SIZE}")
resume_window = in_range(float, 0, 600, "a resume window: give seconds from 0 to 600")


def trusted_proxy(text: str) -> str:
    """Read --trusted-proxy: an IP address."""
    import ipaddress

    try:
        return plain(str(ipaddress.ip_address(text.strip("[]"))))
    except ValueError:
        raise StartupError(f"--trusted-proxy {text!r} is not an IP address: give the proxy's, e.g. 127.0.0.1") from None


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
    """Parse the command line and serve until stopped, or change the bans; exit 2 with one line if it cannot."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in ("ban", "unban", "bans"):
            return manage_bans(parse_ban_args(argv))
        start(parse_args(argv))
    except StartupError as exc:
        print(f"duoduel: {exc}", file=sys.stderr)
        return 2
    return 0


# The operator's bans: `duoduel.py ban ID-or-ADDRESS [--hours N]`, `unban`, `bans`.


def parse_ban_args(argv: list[str]) -> argparse.Namespace:
    """Read `ban`, `unban` or `bans` and where the bans are kept."""
    parser = argparse.ArgumentParser(prog="duoduel.py", description="Ban a browser id or an address, lift a ban, or list the bans.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (("ban", "refuse a browser id (from a report) or an address"), ("unban", "lift a ban"), ("bans", "list the bans in force")):
        command = commands.add_parser(name, help=what, description=what)
        if name != "bans":
            command.add_argument("target", metavar="ID-or-ADDRESS")
        if name == "ban":
            command.add_argument("--hours", type=positive, help="for this many hours (default: until lifted)")
        command.add_argument("--redis", metavar="URL", help="the Redis of the shared lobby, as the servers were given")
        command.add_argument("--bans-file", type=Path, default=BANS_FILE, metavar="FILE", help=f"without --redis: the servers' bans file (default: {BANS_FILE.name} beside duoduel.py)")
    return parser.parse_args(argv)


def manage_bans(args: argparse.Namespace) -> int:
    """Change or list the bans, where every server reads them within a second."""
    target = None
    if args.command != "bans":
        try:
            target = ban_target(args.target)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
    until = FOREVER if getattr(args, "hours", None) is None else time.time() + args.hours * 3600
    bans = (redis_bans if args.redis else file_bans)(args, target, until)
    if args.command == "ban":
        print(f"banned {target} {ban_end(until)}")
    elif args.command == "unban":
        print(f"unbanned {target}" if target in bans else f"{target} was not banned")
    else:
        for banned, end in sorted(live(bans).items(), key=lambda item: item[1]):
            print(f"{banned} {ban_end(end)}")
        if not live(bans):
            print("no bans")
    return 0


def file_bans(args: argparse.Namespace, target: str | None, until: float) -> dict[str, float]:
    """Apply the command to the bans file; return the bans before an unban, or after a ban."""
    with bans_file_locked(args.bans_file):
        try:
            bans = read_bans_file(args.bans_file)
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot read the bans file {args.bans_file} ({exc}): fix or remove it") from None
        if args.command == "ban":
            bans[target] = until
        if args.command != "bans":
            write_bans_file(args.bans_file, {k: v for k, v in bans.items() if args.command == "ban" or k != target})
    return bans


def redis_bans(args: argparse.Namespace, target: str | None, until: float) -> dict[str, float]:
    """Apply the command to the bans in Redis; return the bans before an unban, or after a ban."""
    try:
        import redis
    except ImportError:
        raise StartupError("--redis needs the redis package: pip install redis") from None
    try:
        client = redis.Redis.from_url(args.redis, decode_responses=True, socket_timeout=5)
        bans = {k: float(v) for k, v in client.hgetall(BANS_KEY).items()}
        with client.pipeline() as change:
            if args.command == "ban":
                bans[target] = until
                change.hset(BANS_KEY, target, until)
            elif args.command == "unban":
                change.hdel(BANS_KEY, target)
            for ended in set(bans) - set(live(bans)):
                change.hdel(BANS_KEY, ended)
            change.incr(BANS_VERSION_KEY)
            change.execute()
    except redis.RedisError as exc:
        raise StartupError(f"cannot reach Redis at {redact(args.redis)} ({exc.__class__.__name__}): check --redis") from None
    return bans


def ban_end(until: float) -> str:
    """When a ban ends, in words."""
    if until >= FOREVER:
        return "until lifted"
    return "until " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))


def start(args: argparse.Namespace) -> None:
    """Configure logging, TLS and the event loop, then serve."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=args.log_level.upper())
    # websockets logs every refused handshake and dropped socket at INFO.
    logging.getLogger("websockets").setLevel(logging.DEBUG if args.log_level == "debug" else logging.WARNING)
    logging.getLogger("quic").setLevel(logging.DEBUG if args.log_level == "debug" else logging.WARNING)  # aioquic's, per connection
    if not args.static.is_dir():
        raise StartupError(f"{args.static} is not a folder: pass the page's folder with --static")
    if args.unix is not None and args.https:
        raise StartupError("--unix is for a proxy that ends TLS in front of duoduel: leave out --https, or --unix")
    config = Config(
        host=args.host,
        unix_socket=args.unix,
        port=args.port if args.port is not None else (8443 if args.https else 8080),
        static_dir=args.static,
        tls=tls_context(args.cert, args.key) if args.https else None,
        # Behind a proxy on a unix socket there is no HTTP port to take the number of: only with --webtransport-port.
        webtransport=args.webtransport and (args.unix is None or args.webtransport_port is not None),
        webtransport_port=args.webtransport_port,
        webtransport_host=args.webtransport_host,
        max_webtransport_sessions=args.max_webtransport_sessions,
        webtransport_certificate=webtransport_certificate(args) if args.https and args.webtransport else None,
        allowed_origins=frozenset(origin.rstrip("/") for origin in args.allow_origin),
        max_clients=args.max_clients,
        room_size=args.room_size,
        resume_window=args.resume_window,
        relay_route=args.relay_route,
        redis_url=args.redis,
        public_url=public_url(args),
        block_days=args.block_days,
        report_log=args.report_log,
        bans_file=args.bans_file,
        connections_per_address=args.connections_per_address,
        handshakes_per_minute=args.handshakes_per_minute,
        trusted_proxies=frozenset(trusted_proxy(address) for address in args.trusted_proxy),
        skips_per_minute=min(args.skips_per_minute, 50),
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
        if config.unix_socket is not None:
            raise StartupError(f"cannot listen on the unix socket {config.unix_socket}: {exc.strerror or exc}") from None
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {config.port} is already in use on {config.host}: stop the other server or pick another with --port") from None
        raise StartupError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
