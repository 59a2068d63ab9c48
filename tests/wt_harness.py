"""An echo server on both transports, for trying the page's links in real browsers without the lobby.

TCP: the page's static files (no Content-Security-Policy: the test page is not duoduel's), a blank page at
/, /webtransport.json (the offer), and /ws, a WebSocket that echoes. UDP: webtransport.serve() with a
handler that echoes, or, when `udp` is "blocked", a socket that reads every packet and answers none:
what a page sees behind a firewall that drops UDP (no reply, not even an ICMP error), without touching the
machine's firewall. When `udp` is "refused", the endpoint answers every session with 403.

    async with echo_server("localhost") as served:
        await page.goto(served.origin + "/")

Echo, the WebTransport side's stand-in for the lobby, also serves tests/test_webtransport.py alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

import duoduel
from core import webtransport

BLANK_PAGE = b"<!doctype html><meta charset=utf-8><title>links</title><p>links under test\n"


@dataclass
class EchoServer:
    host: str
    port: int  # TCP: the page and /ws
    endpoint: webtransport.Endpoint | None
    offer: dict

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"


async def websocket_echo(websocket: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        async for message in websocket:
            if isinstance(message, bytes):
                await websocket.send(message)
            else:
                got = json.loads(message)
                if got.get("type") == "close":
                    await websocket.close(got["code"], got["reason"])
                else:
                    await websocket.send(json.dumps({"type": "echo", "got": got}))


@dataclass
class Echo:
    """Stands in for the lobby: answers every control line, returns every audio datagram to its sender."""

    sessions: list[webtransport.WebTransportSession] = field(default_factory=list)
    handled: asyncio.Queue = field(default_factory=asyncio.Queue)  # sessions whose handler returned
    refusal: webtransport.Refusal | None = None
    requests: list[webtransport.WebTransportRequest] = field(default_factory=list)

    def admit(self, request: webtransport.WebTransportRequest) -> webtransport.Refusal | None:
        self.requests.append(request)
        return self.refusal

    async def on_session(self, session: webtransport.WebTransportSession) -> None:
        self.sessions.append(session)
        session.start_relay(self, session)
        async for text in session:
            message = json.loads(text)
            if message.get("type") == "close":
                await session.close(message["code"], message["reason"])
            else:
                session.send_text(json.dumps({"type": "echo", "got": message}))
        self.handled.put_nowait(session)

    def on_audio(self, lobby: Echo, sender: webtransport.WebTransportSession, frame: bytes) -> None:
        sender.send_frame(frame)


def http(offer: dict):
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None
        if path == "/":
            return response(BLANK_PAGE, "text/html; charset=utf-8")
        if path == "/webtransport.json":
            return response(json.dumps(offer).encode(), "application/json")
        file = duoduel.resolve_static(duoduel.STATIC_DIR, path)
        if file is None:
            return response(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)
        return response(file.read_bytes(), duoduel.CONTENT_TYPES[file.suffix])

    return process_request


def response(body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)


@contextlib.asynccontextmanager
async def black_hole(host: str) -> AsyncIterator[int]:
    """A UDP port that takes every packet and answers none; yield its number."""
    sockets = webtransport.udp_sockets(host, 0)
    loop = asyncio.get_running_loop()
    transports = [(await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock))[0] for sock in sockets]
    try:
        yield sockets[0].getsockname()[1]
    finally:
        for transport in transports:
            transport.close()


@contextlib.asynccontextmanager
async def echo_server(host: str = "localhost", udp: str = "open") -> AsyncIterator[EchoServer]:
    """Serve the echo harness; udp is "open", "blocked" (no answer) or "refused" (403 to every session)."""
    certificate = webtransport.generate_certificate([host])
    async with contextlib.AsyncExitStack() as stack:
        if udp == "blocked":
            endpoint = None
            port = await stack.enter_async_context(black_hole(host))
            offer = {"port": port, "path": "/wt", "certificateHashes": [certificate.hash.hex()]}
        else:
            refusal = webtransport.Refusal(403, "refused by the test") if udp == "refused" else None
            echo = Echo(refusal=refusal)
            endpoint = await stack.enter_async_context(webtransport.serve(
                host, 0, certificate, admit=echo.admit, on_session=echo.on_session, on_audio=echo.on_audio))
            offer = endpoint.offer()
        # TCP on 127.0.0.1 alone (port 0 would give each localhost address a port of its own); a browser
        # that tries ::1 first falls back to it. UDP listens on every address of host.
        tcp = await stack.enter_async_context(serve(websocket_echo, "127.0.0.1", 0, process_request=http(offer)))
        yield EchoServer(host, tcp.sockets[0].getsockname()[1], endpoint, offer)
