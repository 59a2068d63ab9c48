"""bench/relay_webtransport.py end to end: a tiny load of WebTransport calls through webtransport.py, its server and
its clients started and stopped by the bench."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_webtransport_bench_relays_each_datagram_to_the_partner():
    """Two calls for one second: each client hears its partner's datagrams and no one else's, and the report gives the
    server's CPU and the packets it sent per relayed datagram (one: the ACKs ride on the audio)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay_webtransport.py"), "--pairs", "2", "--seconds", "1",
         "--rounds", "1", "--websocket", ""],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"variant"')]
    assert run["calls_ready"] == 2 and run["unsettled_at_takeover"] == 0, run
    assert run["sent"] >= 2 * 2 * 40, run  # 50 a second from each of 4 clients
    assert run["received"] > run["sent"] / 2, run  # UDP: on a busy machine a few may be lost, never many
    assert run["misrouted"] == 0 and run["undecryptable"] == 0 and run["server_errors"] == 0, run
    assert 0.9 <= run["server_packets_out_per_relayed"] <= 1.5, run  # 2 when every ACK went alone
    row = json.loads(result.stdout)["medians"]["2"]["webtransport"]
    assert row["cpu_us_per_relayed"] is not None and row["p99_ms"] is not None, row


def test_webtransport_bench_measures_duoduel_itself():
    """--variant NAME=duoduel: the same load through duoduel.py's own lobby and relay, every datagram to the partner."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay_webtransport.py"), "--pairs", "2", "--seconds", "1",
         "--rounds", "1", "--websocket", "", "--variant", "duoduel=duoduel"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"variant"')]
    assert run["calls_ready"] == 2 and run["misrouted"] == 0 and run["undecryptable"] == 0, run
    assert run["received"] > run["sent"] / 2, run
    assert json.loads(result.stdout)["medians"]["2"]["duoduel"]["cpu_us_per_relayed"] is not None
