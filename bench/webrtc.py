#!/usr/bin/env python3
"""The plain WebRTC call that duoduel is measured against: bench/webrtc.html and its signalling.

usage: python bench/webrtc.py [--host 127.0.0.1] [--port 8090]

Serves the page at / and, at /ws, pairs the pages two by two in the order they come and relays what one
sends (offer, answer, ICE candidates: JSON, unread) to the other. The audio goes between the browsers, over
UDP, never through here. It also serves duoduel's capture worklet (/capture-processor.js and the
/constants.js it imports) so that bench/latency.py taps both calls with the same code. Prints
"listening on http://HOST:PORT/" like duoduel.py, so a bench starts either the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

HERE = Path(__file__).resolve().parent
FILES = {
    "/": HERE / "webrtc.html",
    "/capture-processor.js": HERE.parent / "static" / "capture-processor.js",
    "/constants.js": HERE.parent / "static" / "constants.js",
    "/figures.js": HERE.parent / "static" / "figures.js",
}
MAX_MESSAGE_BYTES = 64 * 1024  # an SDP is a few kB


@dataclass
class Lobby:
    """The page waiting for a partner, if any, and who is paired with whom."""

    waiting: ServerConnection | None = None
    partners: dict[ServerConnection, ServerConnection] = field(default_factory=dict)


def serve_file(connection: ServerConnection, request: Request) -> Response | None:
    """The page and the worklet; None lets /ws through to the handler."""
    if request.path == "/ws":
        return None
    file = FILES.get(request.path.split("?")[0])
    if file is None:
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    body = file.read_bytes()
    kind = "text/javascript" if file.suffix == ".js" else mimetypes.guess_type(file.name)[0]
    headers = Headers([("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Connection", "close")])
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


async def signal(lobby: Lobby, connection: ServerConnection) -> None:
    """Pair this page with the one waiting (the newcomer makes the offer), then relay until either leaves."""
    if lobby.waiting is None:
        lobby.waiting = connection
        await connection.send('{"type": "waiting"}')
    else:
        partner, lobby.waiting = lobby.waiting, None
        lobby.partners[connection], lobby.partners[partner] = partner, connection
        await partner.send('{"type": "paired", "offer": false}')
        await connection.send('{"type": "paired", "offer": true}')
    try:
        async for message in connection:
            partner = lobby.partners.get(connection)
            if partner is not None:
                await partner.send(message)
    except ConnectionClosed:
        pass
    finally:
        if lobby.waiting is connection:
            lobby.waiting = None
        partner = lobby.partners.pop(connection, None)
        if partner is not None:
            lobby.partners.pop(partner, None)
            try:
                await partner.send('{"type": "left"}')
            except ConnectionClosed:
                pass


async def main_async(host: str, port: int) -> None:
    lobby = Lobby()
    async with serve(lambda connection: signal(lobby, connection), host, port, process_request=serve_file,
                     max_size=MAX_MESSAGE_BYTES) as server:
        bound = server.sockets[0].getsockname()
        print(f"webrtc bench: listening on http://{bound[0]}:{bound[1]}/", flush=True)
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port (default 8090; 0: any free one)")
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
