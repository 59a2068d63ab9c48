"""How long audio datagrams take across a lossy path, each way, through the WebTransport endpoint (root).

usage: python bench/datagram_delay.py [--path delay=75,loss=2] [--seconds 15] [--seed 1] [--root DIR]

A raw aioquic client (tests/wt_client.py) in the far namespace of bench/netpath.py opens a session on
core/webtransport.py's endpoint and sends a 150-byte datagram every 10 ms, as a page sends 10 ms frames with
their copies; the endpoint sends each one straight back (the echo of tests/wt_harness.py). Each datagram carries
the client's send time and the server's, one clock on one machine, so each way is measured apart: "up" is the
client's aioquic stack sending across the path, "down" the endpoint's. It prints JSON: per direction the
datagrams that arrived and their one-way delay (p50, p95, p99, max, and how many took more than the path's delay
plus 20 ms), and what the endpoint dropped.

--root DIR takes core/webtransport.py from another checkout (e.g. `git archive main | tar -x -C /tmp/old`), to
compare the endpoint before and after a change: run the two alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = struct.Struct("!Idd")  # index, the client's send time, the server's
DATAGRAM_BYTES = 150
FRAME_GAP_S = 0.010


def summary(delays_ms: list[float], late_ms: float) -> dict:
    ordered = sorted(delays_ms)
    if not ordered:
        return {"n": 0}

    def at(p: float) -> float:
        return round(ordered[int(p * (len(ordered) - 1))], 1)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": at(1.0),
            f"over_{late_ms:g}_ms": sum(delay > late_ms for delay in ordered)}


async def measure(shape: str, seconds: float, seed: int) -> dict:
    from bench.netpath import NetPath, Shape
    from core import webtransport
    from wt_client import open_session
    from wt_harness import Echo

    def echo_stamped(lobby, sender, frame: bytes) -> None:
        index, sent, _ = STAMP.unpack_from(frame)
        sender.send_frame(STAMP.pack(index, sent, time.monotonic()) + frame[STAMP.size:])

    echo = Echo()
    certificate = webtransport.generate_certificate()
    parsed = Shape.parse(shape)
    with NetPath(parsed, seed=seed) as path:
        async with webtransport.serve(path.server_address, 0, certificate, admit=echo.admit,
                                      on_session=echo.on_session, on_audio=echo_stamped) as endpoint:
            async with open_session(endpoint.port, "/wt", certificate, host=path.server_address,
                                    sock=path.socket(socket.SOCK_DGRAM)) as session:
                session.send_line('{"type": "ping", "t": 1}')
                await session.line()
                up: list[float] = []
                down: list[float] = []

                async def receive() -> None:
                    while True:
                        index, sent, echoed = STAMP.unpack_from(await session.datagrams.get())
                        up.append((echoed - sent) * 1000)
                        down.append((time.monotonic() - echoed) * 1000)

                receiving = asyncio.create_task(receive())
                padding = bytes(DATAGRAM_BYTES - STAMP.size)
                count = int(seconds / FRAME_GAP_S)
                start = time.monotonic()
                for index in range(count):
                    session.send_datagram(STAMP.pack(index, time.monotonic(), 0.0) + padding)
                    await asyncio.sleep(max(0.0, start + (index + 1) * FRAME_GAP_S - time.monotonic()))
                await asyncio.sleep(1.0)
                receiving.cancel()
            late_ms = parsed.delay + 20
            return {"path": shape, "seconds": seconds, "sent": count,
                    "up": summary(up, late_ms), "down": summary(down, late_ms),
                    "endpoint_dropped": endpoint.datagrams_dropped, "netpath": path.stats()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="delay=75,loss=2", help="bench/netpath.py's shape, both ways")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose core/webtransport.py serves")
    args = parser.parse_args()
    sys.path[:0] = [str(args.root.resolve()), str(ROOT), str(ROOT / "tests")]
    print(json.dumps(asyncio.run(measure(args.path, args.seconds, args.seed)), indent=2))


if __name__ == "__main__":
    main()
