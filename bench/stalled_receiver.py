#!/usr/bin/env python3
"""How much audio waits for a receiver that stops reading, on each of bench/relay.py's routes.

usage: python bench/stalled_receiver.py [--routes plain,tls,nginx] [--proxy nginx:SITE] [--frames 4000] [--rate 200]

duoduel drops audio for a receiver whose backlog passes 5 frames, and closes one that stays stalled: a bound on the
audio that waits for it, which should hold whatever carries the connection. Per route (servers started as
bench/relay.py starts them), one client waits, a second one, whose kernel receive buffer is 4 KiB, is paired with it
and then stops reading; the first sends --frames frames of 120 bytes at --rate a second (under the server's flood
limit). Prints, as JSON, how many frames duoduel wrote for the stopped receiver before it dropped the first one (from
its /metrics), or that it dropped none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import ssl
import sys
import urllib.request
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

import relay

RECEIVE_BUFFER = 4096


def stopped_receiver(url: str, tls: ssl.SSLContext | None) -> socket.socket:
    """Open a WebSocket with a small receive buffer, read up to its first message, and return it unread from then on."""
    parts = urlsplit(url)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connect: the window stays small
    raw.connect((parts.hostname, parts.port))
    sock = tls.wrap_socket(raw, server_hostname=parts.hostname) if parts.scheme == "wss" else raw
    origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 f"Origin: {origin}\r\n\r\n".encode())
    seen = b""
    while b'"connected"' not in seen:  # the 101 and the text frame that pairs it
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit(f"stalled_receiver.py: the server closed the receiver's connection: {seen[:300]!r}")
        seen += chunk
    return sock


def relayed_and_dropped(url: str, tls: ssl.SSLContext | None) -> tuple[int, int]:
    """duoduel's frames_relayed_total and frames_dropped_total, from its own /metrics."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls))
    with opener.open(url, timeout=5) as response:
        counters = dict(line.split()[:2] for line in response.read().decode().splitlines()
                        if line.startswith("duoduel_frames_"))
    return int(float(counters["duoduel_frames_relayed_total"])), int(float(counters["duoduel_frames_dropped_total"]))


async def stall(url: str, metrics: str, tls: ssl.SSLContext | None, frames: int, rate: float) -> dict:
    """Pair a sender with a receiver that stops reading; send until duoduel drops a frame, or frames are sent."""
    parts = urlsplit(url)
    origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    sender = await connect(url, ssl=tls if parts.scheme == "wss" else None, origin=origin, compression=None)
    assert json.loads(await sender.recv())["type"] == "waiting"
    receiver = await asyncio.to_thread(stopped_receiver, url, tls)
    try:
        assert json.loads(await sender.recv())["type"] == "connected"
        for sent in range(1, frames + 1):
            await sender.send(bytes(120))
            await asyncio.sleep(1 / rate)
            if sent % 25 == 0:
                relayed, dropped = await asyncio.to_thread(relayed_and_dropped, metrics, tls)
                if dropped:
                    return {"frames_sent": sent, "written_before_first_drop": relayed, "dropped": dropped}
        return {"frames_sent": frames, "written_before_first_drop": None, "dropped": 0}
    finally:
        receiver.close()
        await sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=4000, help="frames to send at most (default 4000)")
    parser.add_argument("--rate", type=float, default=200, help="frames a second (default 200, under the flood limit)")
    own, routes = parser.parse_known_args()  # the rest chooses routes as bench/relay.py's options do
    args = relay.parse_args(["--pairs", "1", "--seconds", "1", *(routes or ["--routes", "plain,tls,nginx"])])
    results = {}
    with contextlib.ExitStack() as stack:
        relay.make_certificate(args, stack)
        tls = ssl.create_default_context(cafile=args.cafile)
        for name in args.routes:
            with contextlib.ExitStack() as route_stack:
                endpoint = relay.ROUTES[name](args, route_stack)
                results[name] = asyncio.run(stall(endpoint.urls[0], endpoint.metrics[0], tls, own.frames, own.rate))
    print(json.dumps({"frame_bytes": 120, "rate": own.rate, "receiver_kernel_buffer": RECEIVE_BUFFER,
                      "routes": results}, indent=1))


if __name__ == "__main__":
    main()
