#!/usr/bin/env python3
"""The browser's cost of a group room: one real Chromium page decoding K-1 members' Opus streams.

usage: flock /tmp/duoduel-heavy.lock python bench/group_page.py [--members 2,3,8] [--seconds 15] [--runs 3]

Eight headless Chromium pages are too heavy for a 2-core machine, so the room holds one real page and
K-1 scripted members. The scripted members send real Opus: first a page records 3 s of what it sends
(its own frames, through the public `session.measure.sent` hook, with a fake microphone playing a
tone); then each scripted member loops that recording every 20 ms with its own sequence numbers and
capture times, sealed with the room's key as a page seals them (tests/sframe.py). Chromium runs on CPU 0; the server (`--room-size 8`) and the scripted members on CPU 1.
Over `--seconds` of steady state it reads /proc for the page's renderer (which runs the decoders, the
jitter buffers and the playback worklets) and for all of Chromium's processes together (the audio
service writes to the null output), and prints a JSON line per room size: CPU as % of one core,
medians over --runs, and the page's own counters (lost frames and buffer per member) to show it kept up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import launch_args, write_tone  # noqa: E402
from pages import ROOM_KEY, room_path  # noqa: E402
from ports import free_port  # noqa: E402
from sframe import RoomSender, room_key_from_link  # noqa: E402

FRAME_S = 0.020
RECORD_S = 3.0
WARMUP_S = 4.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

COUNTERS_JS = """() => window.duoduel.group.members.map((m) => {
  const s = window.duoduel.session.memberStats(m.slot) || {lostFrames: 0, decoderDrops: 0, jitterMs: 0};
  return {lost: s.lostFrames, decoderDrops: s.decoderDrops, bufferMs: Math.round(s.jitterMs)};
})"""

RECORD_JS = """(seconds) => new Promise((resolve) => {
  const frames = [];
  window.duoduel.session.measure.sent = (frame) => frames.push(Array.from(new Uint8Array(frame)));
  setTimeout(() => { window.duoduel.session.measure.sent = null; resolve(frames); }, seconds * 1000);
})"""


def descendants(pid: int) -> list[int]:
    """Every process below pid, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def is_renderer(pid: int) -> bool:
    try:
        return b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def record_frames(playwright, origin: str, folder: Path) -> list[bytes]:
    """RECORD_S of the Opus frames a real page sends."""
    browser = await playwright.chromium.launch(**launch_args(write_tone(folder / "rec.wav", 440.0)))
    try:
        page = await browser.new_page()
        await page.goto(origin + room_path("bench-record"))
        await page.click("#start")
        await page.wait_for_function("() => window.duoduel.session && window.duoduel.session.codec === 'opus'")
        frames = await page.evaluate(RECORD_JS, RECORD_S)
    finally:
        await browser.close()
    if len(frames) < RECORD_S / FRAME_S / 2:
        raise SystemExit(f"recorded only {len(frames)} frames: is the page sending Opus?")
    return [bytes(f) for f in frames]


async def scripted_member(url: str, room: str, frames: list[bytes], stop: asyncio.Event) -> None:
    """Join the room and send the recorded frames in a loop, 20 ms apart, sealed, as a member's page would."""
    from websockets.asyncio.client import connect

    sender = RoomSender(room_key_from_link(ROOM_KEY), room)
    async with connect(url, origin=url.replace("ws://", "http://").split("/ws")[0]) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "room", first

        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(drain())
        loop = asyncio.get_running_loop()
        start = loop.time()
        seq = 0
        while not stop.is_set():
            frame = bytearray(frames[seq % len(frames)])
            struct.pack_into("<H", frame, 2, seq % 65536)  # the header's seq and capture time are ours
            struct.pack_into("<d", frame, 8, time.time() * 1000)
            await ws.send(sender.seal(bytes(frame)))
            seq += 1
            await asyncio.sleep(max(0.0, start + seq * FRAME_S - loop.time()))
        reader.cancel()


async def measure_room(playwright, origin: str, frames: list[bytes], folder: Path, members: int, seconds: float,
                       run: int) -> dict:
    """One real page in a room with members-1 scripted members: its CPU over seconds."""
    room = f"bench-{members}-{run}"
    os.sched_setaffinity(0, {0})  # Chromium inherits CPU 0 ...
    browser = await playwright.chromium.launch(**launch_args(write_tone(folder / "page.wav", 660.0)))
    os.sched_setaffinity(0, {1})  # ... and the scripted members share CPU 1 with the server
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        page = await browser.new_page()
        await page.goto(origin + room_path(room))
        await page.click("#start")
        await page.wait_for_function("() => window.duoduel.group.group")
        url = origin.replace("http://", "ws://") + f"/ws?room={room}"
        for _ in range(members - 1):
            tasks.append(asyncio.create_task(scripted_member(url, room, frames, stop)))
        await page.wait_for_function("(n) => window.duoduel.session.memberCount === n", arg=members - 1)
        await asyncio.sleep(WARMUP_S)
        counters = await page.evaluate(COUNTERS_JS)
        pids = descendants(os.getpid())
        renderers = [pid for pid in pids if is_renderer(pid)]
        before = {pid: cpu_seconds(pid) for pid in pids}
        wall = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - wall
        after = {pid: cpu_seconds(pid) for pid in pids}
        used = {pid: after[pid] - before[pid] for pid in pids}
        figures = await page.evaluate(COUNTERS_JS)
        return {
            "members": members,
            "streams_decoded": members - 1,
            "renderer_cpu_pct": 100 * sum(used[pid] for pid in renderers) / wall,
            "chromium_cpu_pct": 100 * sum(used.values()) / wall,
            # Over the measured span only, per member: frames lost (late or missing) and dropped before decoding.
            "lost_frames": [f["lost"] - c["lost"] for f, c in zip(figures, counters)],
            "decoder_drops": [f["decoderDrops"] - c["decoderDrops"] for f, c in zip(figures, counters)],
            "buffer_ms": [f["bufferMs"] for f in figures],
        }
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await browser.close()


async def run(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(ROOT / "duoduel.py"), "--host", "127.0.0.1",
                               "--port", str(port), "--room-size", "8", "--log-level", "warning"])
    os.sched_setaffinity(0, {1})
    origin = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        folder = Path(tempfile.mkdtemp(prefix="duoduel-group-bench-"))
        async with async_playwright() as playwright:
            frames = await record_frames(playwright, origin, folder)
            for members in args.members:
                results = [await measure_room(playwright, origin, frames, folder, members, args.seconds, run)
                           for run in range(args.runs)]
                print(json.dumps({
                    "members": members,
                    "streams_decoded": members - 1,
                    "renderer_cpu_pct": round(statistics.median(r["renderer_cpu_pct"] for r in results), 1),
                    "chromium_cpu_pct": round(statistics.median(r["chromium_cpu_pct"] for r in results), 1),
                    "runs": args.runs,
                    "seconds": args.seconds,
                    "last_run_lost_frames": results[-1]["lost_frames"],
                    "last_run_decoder_drops": results[-1]["decoder_drops"],
                    "last_run_buffer_ms": results[-1]["buffer_ms"],
                }), flush=True)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=lambda s: [int(x) for x in s.split(",")], default=[2, 3, 8],
                        help="room sizes to measure, comma-separated (the page plus K-1 scripted members)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
