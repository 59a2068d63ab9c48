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



def test_relay_bench_conversation_with_dtx_sends_a_pause_as_the_page_does():
    """--conversation --dtx: a client sends every frame of a talk spurt and of the first 200 ms of a pause, then one
    at the end of every 400 ms, as static/silence-gate.js lets the page; without --dtx, every frame."""
    sys.path.insert(0, str(ROOT / "bench"))
    from relay import Talker

    frame_s = 0.01
    times = [k * frame_s for k in range(3000)]  # 30 s of 10 ms frames
    for cid in range(4):
        plain, talker = Talker(cid, dtx=False), Talker(cid, dtx=True)
        assert all(plain.sends(t) for t in times)
        sent = [k for k, t in enumerate(times) if talker.sends(t)]
        runs, gaps = [1], []  # frames sent back to back, and the frames left out after each run
        for a, b in zip(sent, sent[1:]):
            if b == a + 1:
                runs[-1] += 1
            else:
                gaps.append(b - a - 1)
                runs.append(1)
        # Before each gap: talk and the pause's first 200 ms (20 frames or more), or a pause's lone update.
        assert all(run == 1 or run >= 20 for run in runs[:-1]), runs
        # Each gap: the 39 frames of a 400 ms update period (one either way: the model keeps time in floats), or fewer
        # when talk comes back first.
        assert gaps and max(gaps) <= 40 and sum(38 <= gap <= 40 for gap in gaps) >= len(gaps) / 2, gaps
        assert 0.3 < len(sent) / len(times) < 0.7, len(sent) / len(times)
