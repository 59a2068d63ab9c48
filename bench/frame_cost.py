#!/usr/bin/env python3
"""Python CPU per relayed frame on the fast route, without the system calls around it.

usage: python bench/frame_cost.py [--server PATH] [--frame-bytes 120] [--frames 200000]

Starts duoduel (this checkout's, or the duoduel.py given with --server, to compare two versions) in this process,
pairs two clients, replaces the receiver's transport with one that discards what it is given, and feeds one complete
masked binary frame at a time to the sender's data_received(): what duoduel's own code costs per frame, apart from the
read, the write and the event loop that bench/relay.py also measures. Prints JSON; best of 5 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "duoduel.py"


class Discard:
    """A transport that takes every write and never has a backlog."""

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def masked_frame(payload: bytes, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A client's final binary frame (RFC 6455 5.2)."""
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return b"\x82" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def measure(args: argparse.Namespace) -> dict:
    """Pair two clients on an in-process server and time data_received on the sender's connection."""
    sys.path.insert(0, str(args.server.resolve().parent))  # its core/ package, if it has one
    spec = importlib.util.spec_from_file_location("duoduel_under_test", args.server)
    duoduel = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = duoduel  # dataclasses look their module up
    spec.loader.exec_module(duoduel)
    if hasattr(duoduel.Config, "max_messages_per_second"):
        config = duoduel.Config(host="127.0.0.1", port=0, max_messages_per_second=1 << 62)
    else:  # before issue 10 the limit was a module constant
        duoduel.MAX_MESSAGES_PER_SECOND = 1 << 62
        config = duoduel.Config(host="127.0.0.1", port=0)
    async with duoduel.make_server(config) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
        first = await connect(url)
        await first.recv()
        second = await connect(url)
        await second.recv()
        await first.recv()
        sender = next(c for c in server.connections if getattr(c, "client", None) is not None)
        partner = sender.client.partner
        receiver = partner.link if hasattr(partner, "link") else partner.websocket  # Client.link since the Link
        saved = receiver.transport, getattr(receiver, "wire", None), getattr(receiver, "backlog", None)
        discard = Discard()
        receiver.transport = receiver.wire = discard  # the name before issue 10, and after
        receiver.backlog = discard.get_write_buffer_size
        frame = masked_frame(os.urandom(16 + args.frame_bytes))  # with frame.js's 16-byte header, as bench/relay.py
        rounds = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(args.frames):
                sender.data_received(frame)
            rounds.append((time.process_time() - start) / args.frames)
        receiver.transport, receiver.wire, receiver.backlog = saved
        await first.close()
        await second.close()
    return {"server": str(args.server), "message_bytes": 16 + args.frame_bytes,
            "python_ns_per_frame": round(min(rounds) * 1e9), "rounds_ns": [round(r * 1e9) for r in rounds]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", type=Path, default=SERVER_SCRIPT, metavar="PATH", help="duoduel.py to measure")
    parser.add_argument("--frame-bytes", type=int, default=120, help="payload after the 16-byte header (< 65520)")
    parser.add_argument("--frames", type=int, default=200_000, help="frames per round")
    print(json.dumps(asyncio.run(measure(parser.parse_args())), indent=1))
