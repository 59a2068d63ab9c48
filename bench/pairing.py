#!/usr/bin/env python3
"""Pairing latency in the shared lobby: clients arrive at a steady rate, alternately at two duoduel processes.

usage: python bench/pairing.py [--arrivals 1000] [--rate 100] [--servers 2] [--no-redis] [--cpu 1]
                              [--server DUODUEL_PY --server OTHER_DUODUEL_PY --rounds 5]

Starts a redis-server of its own (no persistence) and the servers with --redis, all pinned to core 0; the arrivals
come from this process, pinned to --cpu. A client that finds a partner waiting is timed from the start of its TCP
connect to {"type": "connected"}, the move to the waiter's process included when there is one. Prints one JSON
object: p50/p99 of that time for moved and unmoved newcomers, the servers' CPU per arrival (its handshakes, its
pairing, its close), and Redis commands per call (INFO commandstats over the run, minus the heartbeats counted while
idle). --no-redis: one process, no Redis, the baseline; with --back-to-back, the arrivals come two by two, each pair
leaving before the next comes, for the CPU alone. Loopback only; every client is closed at the end.

--server (twice or more) compares versions side by side: each round runs every version in turn, in reverse order
every other round (a fresh Redis and fresh processes for each), and the medians over the rounds are printed per
version. An older version to compare with: git archive COMMIT | tar -x -C /tmp/duoduel-old (an empty folder),
then --server /tmp/duoduel-old/duoduel.py --server duoduel.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import socket
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

SERVER = Path(__file__).resolve().parent.parent / "duoduel.py"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay import free_port, redis_calls, spawn_redis  # noqa: E402


def start_server(redis_port: int | None, server: Path = SERVER) -> tuple[subprocess.Popen, int]:
    """A duoduel process on core 0, in the shared lobby if redis_port is given."""
    port = free_port()
    extra = ["--redis", f"redis://127.0.0.1:{redis_port}/0", "--public-url", f"http://127.0.0.1:{port}"] if redis_port else []
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, str(server), "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning", "--max-clients", "100000", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    sys.exit("pairing.py: a server did not listen within 10 s")


async def arrive(url: str, kept: list, timings: list) -> None:
    """Connect, follow a move, and if told "connected" at once record how long it took (and whether it moved)."""
    started, moved = time.monotonic_ns(), False
    websocket = await connect(url, open_timeout=30)
    while True:
        told = json.loads(await asyncio.wait_for(websocket.recv(), 30))
        if told["type"] == "moved":
            await websocket.close()
            websocket, moved = await connect(told["url"], open_timeout=30), True
        elif told["type"] == "connected":
            timings.append((moved, time.monotonic_ns() - started))
            break
        elif told["type"] == "waiting":
            break
    kept.append(websocket)


async def back_to_back(url: str, arrivals: int) -> None:
    """Arrivals two by two, with nothing else going on: one waits, the next pairs with it, both leave."""
    for _ in range(arrivals // 2):
        waiter = await connect(url)
        await waiter.recv()
        newcomer = await connect(url)
        await newcomer.recv()
        await waiter.recv()
        await waiter.close()
        await newcomer.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[int]) -> dict[str, float | None]:
    """Nearest-rank p50 and p99 of nanosecond samples, in milliseconds."""
    values = sorted(values)
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 2) if values else None  # noqa: E731
    return {"n": len(values), "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


async def run(args: argparse.Namespace, urls: list[str]) -> tuple[list, float]:
    """Let args.arrivals clients arrive at args.rate a second, alternately at each server."""
    kept, timings, tasks = [], [], []
    start = time.monotonic()
    for i in range(args.arrivals):
        await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
        tasks.append(asyncio.create_task(arrive(urls[i % len(urls)], kept, timings)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    await asyncio.gather(*(websocket.close() for websocket in kept))
    return timings, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrivals", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100, help="arrivals per second")
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--no-redis", action="store_true", help="one process without Redis: the baseline")
    parser.add_argument("--cpu", type=int, default=1, help="core for this load generator (servers and Redis: core 0)")
    parser.add_argument("--server", type=Path, action="append", help="a duoduel.py to run (repeat to compare versions; default: this one)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every version, alternating (default: 1)")
    parser.add_argument("--back-to-back", action="store_true",
                        help="with --no-redis: the arrivals two by two, each pair leaving before the next comes, for the "
                             "servers' CPU per arrival without the load's noise (no latency figures)")
    args = parser.parse_args()
    if args.back_to_back and not args.no_redis:
        parser.error("--back-to-back needs --no-redis: it measures one process")
    os.sched_setaffinity(0, {args.cpu})
    versions = args.server or [SERVER]
    if len(versions) == 1 and args.rounds == 1:
        print(json.dumps(measure(args, versions[0]), indent=1))
        return
    reports: dict[Path, list[dict]] = {version: [] for version in versions}
    for round_ in range(args.rounds):
        for version in versions if round_ % 2 == 0 else versions[::-1]:  # ABBA: neither always goes first
            reports[version].append(measure(args, version))
            print(f"round {round_ + 1}: {version}: {json.dumps(summary(reports[version][-1]))}", file=sys.stderr)
    print(json.dumps({str(version): medians(runs) for version, runs in reports.items()}, indent=1))


def summary(report: dict) -> dict:
    """The figures compared between versions."""
    figures = {f"{kind}_{q}": report[kind][q] for kind in ("moved", "not_moved", "all") for q in ("p50_ms", "p99_ms")}
    figures["calls"] = report["calls"]
    figures["server_cpu_us_per_arrival"] = report["server_cpu_us_per_arrival"]
    if "redis_commands_per_call" in report:
        figures["redis_commands_per_call"] = report["redis_commands_per_call"]
    return figures


def medians(runs: list[dict]) -> dict:
    """Each figure's median over the rounds."""
    figures = [summary(run) for run in runs]
    return {
        key: statistics.median(values) if (values := [f[key] for f in figures if f[key] is not None]) else None
        for key in figures[0]
    } | {"rounds": len(runs)}


def measure(args: argparse.Namespace, version: Path) -> dict:
    """One run: a fresh Redis and fresh processes of this version, the arrivals, the report."""
    redis, redis_port = (None, None) if args.no_redis else spawn_redis()
    servers = [start_server(redis_port, version) for _ in range(1 if args.no_redis else args.servers)]
    try:
        idle = 0.0
        if redis_port:
            time.sleep(1.0)
            before = redis_calls(redis_port)
            time.sleep(3.0)
            idle = (redis_calls(redis_port) - before) / 3.0  # heartbeats a second, all processes together
            calls0 = redis_calls(redis_port)
        cpu0 = sum(cpu_seconds(proc.pid) for proc, _ in servers)
        if args.back_to_back:
            started = time.monotonic()
            asyncio.run(back_to_back(f"ws://127.0.0.1:{servers[0][1]}/ws", args.arrivals))
            timings, elapsed = [], time.monotonic() - started
        else:
            timings, elapsed = asyncio.run(run(args, [f"ws://127.0.0.1:{port}/ws" for _, port in servers]))
        cpu = sum(cpu_seconds(proc.pid) for proc, _ in servers) - cpu0  # the arrivals, the moves, the closes at the end
        report = {
            "servers": len(servers), "redis": redis_port is not None, "arrivals": args.arrivals,
            "rate_per_s": args.rate, "achieved_rate_per_s": round(args.arrivals / elapsed, 1),
            "calls": len(timings),
            "moved": percentiles([t for moved, t in timings if moved]),
            "not_moved": percentiles([t for moved, t in timings if not moved]),
            "all": percentiles([t for _, t in timings]),
            "server_cpu_us_per_arrival": round(cpu / args.arrivals * 1e6, 1),
        }
        if redis_port:
            commands = redis_calls(redis_port) - calls0 - idle * elapsed
            report["redis_commands_per_call"] = round(commands / max(1, len(timings)), 2)
            report["redis_heartbeat_commands_per_s"] = round(idle, 1)
        return report
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(5)
        if redis:
            redis.kill()


if __name__ == "__main__":
    main()
