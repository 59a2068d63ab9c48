#!/usr/bin/env python3
"""How long Start takes to bring a call up, with UDP open (WebTransport) and dropped (the WebSocket fallback).

usage: python bench/fallback.py [--runs 5]

duoduel runs in this process with WebTransport on; two headless Chromium pages (fake microphones) open its page.
Ann presses Start and waits; then Bob presses Start, and the call is up when both pages say Connected. Each run
measures, on Bob's page, the time from his press to Connected (the figure issue 20 asks for: within 2 s with UDP
dropped), and which transport carried it. "dropped" runs make every UDP packet to the server vanish (its
listeners read them and answer none, as a firewall that drops them: no error comes back), so the page waits out
its 1 s head start for WebTransport, then opens its WebSocket. The two cases alternate, each with fresh browsers
(a page that fell back remembers it); the report gives each case's times and median as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import duoduel  # noqa: E402
from browser import write_tone  # noqa: E402
from pages import ChromiumPage  # noqa: E402

CONNECTED_JS = "() => document.getElementById('status').textContent === 'Connected'"


async def one_run(playwright, folder: Path, udp: str) -> dict:
    """One call: Ann waits, Bob presses Start; Bob's time to Connected and the transports."""
    config = duoduel.Config(host="127.0.0.1", port=0, webtransport=True, webtransport_port=0, room_size=2)
    async with duoduel.make_server(config) as server:
        if udp == "dropped":
            for listener in server.webtransport.servers:
                listener.datagram_received = lambda data, addr: None
        origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        pages = []
        try:
            for person, hz in (("ann", 440.0), ("bob", 660.0)):
                page = await ChromiumPage.launch(playwright, person, write_tone(folder / f"{person}.wav", hz))
                pages.append(page)
                await page.goto(origin)
            ann, bob = pages
            await ann.click("#start")
            await ann.wait_for("() => document.getElementById('status').textContent.startsWith('Waiting')",
                               what="Ann waiting")
            # The press and the wait both in the page: its own clock, no round trip to the driver counted.
            elapsed = await bob.evaluate("""async () => {
              const started = performance.now();
              document.getElementById('start').click();
              while (document.getElementById('status').textContent !== 'Connected') {
                await new Promise((resolve) => setTimeout(resolve, 5));
                if (performance.now() - started > 10000) return null;
              }
              return performance.now() - started;
            }""", timeout=15)
            await ann.wait_for(CONNECTED_JS, what="Ann connected")
            kinds = [await page.evaluate("() => window.duoduel.link && window.duoduel.link.kind") for page in pages]
            return {"udp": udp, "start_to_connected_ms": None if elapsed is None else round(elapsed, 1), "links": kinds}
        finally:
            await asyncio.gather(*(page.close() for page in pages))


async def bench(runs: int) -> dict:
    from playwright.async_api import async_playwright

    results: dict[str, list[dict]] = {"open": [], "dropped": []}
    with tempfile.TemporaryDirectory(prefix="fallback-") as folder:
        async with async_playwright() as playwright:
            for i in range(runs):
                for udp in (("open", "dropped") if i % 2 == 0 else ("dropped", "open")):
                    run = await one_run(playwright, Path(folder), udp)
                    print(json.dumps(run), file=sys.stderr, flush=True)
                    results[udp].append(run)
    report = {}
    for udp, them in results.items():
        times = [r["start_to_connected_ms"] for r in them if r["start_to_connected_ms"] is not None]
        report[udp] = {
            "start_to_connected_ms": times,
            "median_ms": round(statistics.median(times), 1) if times else None,
            "max_ms": max(times) if times else None,
            "links": sorted({kind for r in them for kind in r["links"] if kind}),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each case (alternating)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bench(args.runs)), indent=1))


if __name__ == "__main__":
    main()
