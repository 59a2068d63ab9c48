"""deploy/: two duoduel processes started by the systemd unit's command line, behind the nginx config, sharing Redis."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bench import nginx
from cluster import Duoduel, RedisServer, arrive, until_connected
from conftest import ROOT, Running, http_request, open_at
from core.config import RESUME_WINDOW
from pages import TONES, Page, forget_status, wait_hearing, wait_status, without_webtransport
from ports import free_port, wait_for_port

pytestmark = pytest.mark.timeout(60)

DEPLOY = ROOT / "deploy"
CLOSE = {"Connection": "close"}  # nginx keeps a connection open otherwise, and http_request reads to its end


@dataclass
class Proxied:
    """nginx in front of two duoduel processes: the public address, and the processes."""

    port: int
    ports: tuple[int, int]
    tls: ssl.SSLContext
    processes: list[Duoduel]

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"wss://127.0.0.1:{self.port}{path}"


def unit_command(port: int, redis_url: str, public: str) -> list[str]:
    """deploy/duoduel@.service's ExecStart for instance PORT, with this checkout in place of /opt/duoduel."""
    unit = (DEPLOY / "duoduel@.service").read_text()
    line = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)[1]
    line = line.replace("%i", str(port)).replace("${DUODUEL_REDIS}", redis_url).replace("${DUODUEL_PUBLIC}", public)
    command = shlex.split(line)
    assert command[:2] == ["/opt/duoduel/venv/bin/python", "/opt/duoduel/duoduel.py"]
    return [sys.executable, str(ROOT / "duoduel.py"), *command[2:]]


@pytest.fixture
def proxied(tmp_path) -> Iterator[Proxied]:
    """redis-server, two duoduel processes as the unit starts them, nginx with the deploy config in front."""
    binary = nginx.binary()
    subprocess.run([str(ROOT / "gen_cert.sh"), str(tmp_path / "cert")], check=True, capture_output=True)
    redis = RedisServer(tmp_path)
    redis.start()
    port, ports = free_port(), (free_port(), free_port())
    processes = []
    for own in ports:
        log = tmp_path / f"duoduel-{own}.log"
        with log.open("w") as out:
            popen = subprocess.Popen(unit_command(own, redis.url, f"https://127.0.0.1:{port}"), stdout=out, stderr=subprocess.STDOUT)
        processes.append(Duoduel(own, popen, log, f"https://127.0.0.1:{port}/p/{own}"))
        wait_for_port(own, popen, log)
    site = nginx.site_config(list(ports), port, tmp_path / "cert" / "cert.pem", tmp_path / "cert" / "key.pem")
    config = nginx.write_config(tmp_path, site)
    test = subprocess.run([binary, "-t", "-c", str(config)], capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    errors = tmp_path / "error.log"
    errors.touch()
    proxy = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proxy, errors)
        tls = ssl.create_default_context(cafile=tmp_path / "cert" / "cert.pem")
        yield Proxied(port, ports, tls, processes)
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        for process in processes:
            process.kill()
        redis.stop()


def test_unit_file_is_valid_for_systemd(tmp_path):
    """systemd-analyze reads deploy/duoduel@.service as an instance and finds nothing wrong but the missing install."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: apt-get install systemd (.ci/run does)"
    instance = tmp_path / "duoduel@8081.service"
    shutil.copy(DEPLOY / "duoduel@.service", instance)
    result = subprocess.run([analyze, "verify", "--man=no", str(instance)], capture_output=True, text=True)
    # This machine has no /opt/duoduel: that complaint shows the unit was read through to ExecStart.
    complaints = result.stderr.splitlines()
    assert any("/opt/duoduel/venv/bin/python is not executable" in line for line in complaints), result.stderr
    assert [line for line in complaints if "is not executable" not in line] == []


async def test_moved_client_reaches_the_waiter_through_the_proxy(proxied):
    """A waiter behind /p/A, a newcomer behind /p/B: the move goes through nginx to A, and audio flows there."""
    a, b = proxied.ports
    origin = {"origin": proxied.origin, "ssl": proxied.tls}
    waiter = await arrive(proxied.ws_url(f"/p/{a}/ws"), **origin)
    assert waiter.told == {"type": "waiting"}
    newcomer = await arrive(proxied.ws_url(f"/p/{b}/ws"), **origin)
    assert newcomer.moves == 1 and newcomer.url.startswith(f"wss://127.0.0.1:{proxied.port}/p/{a}/ws?call=")
    assert newcomer.told == {"type": "connected"}
    await until_connected(waiter)
    await newcomer.websocket.send(b"through nginx")
    assert await asyncio.wait_for(waiter.websocket.recv(), 5) == b"through nginx"
    await waiter.websocket.send(b"and back")
    assert await asyncio.wait_for(newcomer.websocket.recv(), 5) == b"and back"


async def test_pages_arriving_at_the_shared_address_are_all_paired(proxied):
    """Twenty pages at the one public address, spread by nginx: ten calls, each on one process."""
    origin = {"origin": proxied.origin, "ssl": proxied.tls}
    arrivals = await asyncio.gather(*(arrive(proxied.ws_url(), **origin) for _ in range(20)))
    await asyncio.gather(*(until_connected(arrival) for arrival in arrivals))
    for index, arrival in enumerate(arrivals):
        await arrival.websocket.send(bytes([index]))
    heard = {index: (await asyncio.wait_for(arrival.websocket.recv(), 5))[0] for index, arrival in enumerate(arrivals)}
    assert all(heard[heard[index]] == index != heard[index] for index in heard)
    states = [await own_health(proxied, port) for port in proxied.ports]
    assert sum(state["pairs"] for state in states) == 10


async def own_health(proxied: Proxied, port: int) -> dict:
    """/healthz of one process, reached through its prefix."""
    reply = await http_request(Running("127.0.0.1", proxied.port, "https"), f"/p/{port}/healthz", ssl=proxied.tls, headers=CLOSE)
    assert reply.status == 200
    return json.loads(reply.body)


async def test_page_through_the_proxy_allows_its_websockets(proxied):
    """The page comes through nginx with a CSP naming the public address; a foreign origin is refused."""
    reply = await http_request(Running("127.0.0.1", proxied.port, "https"), "/", ssl=proxied.tls, headers=CLOSE)
    assert reply.status == 200 and b"<html" in reply.body.lower()
    assert f"wss://127.0.0.1:{proxied.port}" in reply.headers["content-security-policy"]
    with pytest.raises(InvalidStatus) as refused:
        await connect(proxied.ws_url(), origin="https://evil.example", ssl=proxied.tls)
    assert refused.value.response.status_code == 403


# After a SIGKILL, a page whose home is the dead process tries it for the resume window, then once more
# after at most a resume delay (1 s), then goes to the public address after the first backoff (0.5 s at
# most): static/connection.js. The rest is handshakes through nginx, the pairing, and this test's polling
# of two pages on a shared 2-core machine.
PAIRED_AGAIN_S = RESUME_WINDOW + 1.0 + 0.5 + 5.0


# The pages talk over their WebSockets, through nginx, whose least_conn spreads them over the processes: a page's
# WebTransport session goes straight to the UDP port of the process that gave it its offer, which nginx does not
# choose (tests/test_shared_lobby.py moves WebTransport clients between processes).


async def call_through_the_proxy(proxied: Proxied, browsers) -> tuple[Page, Page]:
    """Ann and Bob open the public address in Chromium and press Start, one after the other: they are in a call."""
    browsers.chromium_flags.append("--ignore-certificate-errors")  # gen_cert.sh's certificate is self-signed
    ann = await open_at(browsers, "ann", "chromium", proxied.origin + "/")
    await without_webtransport(ann)
    await ann.click("#start")
    await wait_status(ann, "Waiting for a partner")
    bob = await open_at(browsers, "bob", "chromium", proxied.origin + "/")
    await without_webtransport(bob)
    await bob.click("#start")
    await wait_status(bob, "Connected")
    await wait_status(ann, "Connected")
    return ann, bob


async def test_pages_in_chromium_talk_after_a_move_through_the_proxy(proxied, browsers):
    """Two Chromium pages at the public address: nginx puts them on different processes, the second page is
    moved to the first's process at once, and each hears the other's tone."""
    ann, bob = await call_through_the_proxy(proxied, browsers)
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])
    shown = await bob.evaluate("() => window.__statusLog")
    assert not any("left" in text for text in shown), shown
    moved = 0
    for port in proxied.ports:
        metrics = await http_request(Running("127.0.0.1", proxied.port, "https"), f"/p/{port}/metrics",
                                     ssl=proxied.tls, headers=CLOSE)
        moved += int(re.search(r"^duoduel_moved_total (\d+)", metrics.body.decode(), re.MULTILINE)[1])
    assert moved == 1, "nginx put both pages on one process: nothing was moved"


async def test_pages_pair_again_through_the_public_address_after_the_process_holding_their_call_is_killed(proxied, browsers):
    """Ann and Bob talk on one process (one of them moved there, so that page's home is its /p/PORT/ws); that
    process is killed (SIGKILL): within the resume window plus a resume delay and a backoff, both pages are
    in a call again, with each other, through the public address, on the surviving process, and hear each other."""
    ann, bob = await call_through_the_proxy(proxied, browsers)
    holder = [process for process in proxied.processes if (await own_health(proxied, process.port))["pairs"] == 1]
    assert len(holder) == 1, "the call is on one process"
    survivor = next(process for process in proxied.processes if process is not holder[0])
    for page in (ann, bob):
        await forget_status(page)
    loop = asyncio.get_running_loop()
    holder[0].kill()
    deadline = loop.time() + PAIRED_AGAIN_S
    for page in (ann, bob):
        await page.wait_for(IN_A_NEW_CALL_AT_JS, proxied.ws_url("/ws?"), timeout=max(1.0, deadline - loop.time()),
                            what="a new call through the public address")
    assert (await own_health(proxied, survivor.port))["pairs"] == 1
    await wait_hearing(ann, TONES["bob"])
    await wait_hearing(bob, TONES["ann"])


# Since the status log was started afresh, the page lost its call, and now it is in a call again, over a link
# to this address.
IN_A_NEW_CALL_AT_JS = """(address) => window.__statusLog.some((text) => text.startsWith('Reconnecting'))
  && window.duoduel.connection === 'connected' && window.duoduel.link !== null
  && window.duoduel.link.url.startsWith(address)"""
