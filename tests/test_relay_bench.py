"""bench/relay.py end to end on its encrypted routes: a tiny load over plain ws://, wss:// to duoduel.py --https and
wss:// through nginx with the deploy site file, each route's servers started and stopped by the bench."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_relay_bench_relays_every_frame_over_every_route():
    """Two pairs for one second on each route: each frame reaches the sender's partner or is one the server says it
    dropped (a receiver lagging on a busy machine), none reaches anyone else; encrypted where it should be."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay.py"), "--pairs", "2", "--seconds", "1", "--frame-bytes", "120",
         "--tls", "--proxy", "nginx"],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert list(report["runs"]) == ["plain", "tls", "nginx"]
    for route, (run,) in report["runs"].items():
        assert run["pairs"] == 2, (route, run["notes"])
        assert run["frames_sent"] >= 2 * 2 * 40, (route, run["notes"])  # 50 a second from each of 4 clients
        assert run["frames_received"] > run["frames_sent"] / 2, (route, run["notes"])
        assert run["frames_received"] + run["server_frames_dropped"] == run["frames_sent"], (route, run["notes"])
        assert run["misrouted"] == 0 and run["out_of_order"] == 0, route
        assert run["server_cpu_s"] is not None, route  # read from /proc: a second of this load may be under a tick
    runs = {route: run for route, (run,) in report["runs"].items()}
    assert runs["plain"]["tls"] is None
    assert runs["tls"]["tls"].startswith("TLSv1.3 ") and runs["nginx"]["tls"].startswith("TLSv1.3 ")
    # Through the proxy, nginx's worker did its share of the work, counted apart from duoduel's.
    assert runs["nginx"]["proxy_workers"] == 1 and runs["nginx"]["proxy_cpu_s"] is not None
    assert "proxy_cpu_s" not in runs["plain"] and "proxy_cpu_s" not in runs["tls"]
    assert set(report["routes"]) == {"plain", "tls", "nginx"}
    assert report["cores"]["duoduel"] == [0] and report["cores"]["generator"] == [1]
