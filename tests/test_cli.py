"""duoduel.py as a person runs it: the command line, HTTPS with gen_cert.sh, errors, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import sys
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from conftest import ROOT, http_request, join, join_pair, receive_json, run_command


async def test_sigterm_closes_every_call_with_1001_and_exits_0(start_process):
    """On SIGTERM every client is told the server is going away, and the process exits cleanly."""
    process = start_process()
    first, second = await join_pair(process.running)
    waiter, _ = await join(process.running)
    process.popen.send_signal(signal.SIGTERM)
    for websocket in (first, second, waiter):
        try:
            await asyncio.wait_for(websocket.recv(), 5)
        except ConnectionClosed:
            pass
        assert websocket.close_code == 1001
    assert await asyncio.to_thread(process.popen.wait, 10) == 0


async def test_sigint_exits_0_without_a_traceback(start_process):
    """Ctrl-C in a terminal stops the server quietly."""
    process = start_process()
    process.popen.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(process.popen.wait, 10) == 0
    output = process.popen.stdout.read()
    assert "Traceback" not in output
    assert "duoduel stopped" in output


def gen_cert(folder: Path, *args: str):
    return run_command("bash", str(ROOT / "gen_cert.sh"), *args, str(folder))


async def test_https_and_wss_with_a_certificate_gen_cert_made(start_process, tmp_path):
    """./gen_cert.sh, then --https --cert: the page and the pairing work over TLS."""
    made = gen_cert(tmp_path)
    assert made.returncode == 0, made.stderr
    cert = tmp_path / "cert.pem"
    assert (tmp_path / "key.pem").is_file()
    process = start_process("--https", "--cert", str(cert))  # the key is found beside it
    assert process.scheme == "https"
    trust = ssl.create_default_context(cafile=cert)  # verifies the chain and the name 127.0.0.1
    reply = await http_request(process.running, "/", ssl=trust)
    assert reply.status == 200 and b"<html" in reply.body.lower()
    first, _ = await join(process.running, ssl=trust)
    second, told = await join(process.running, ssl=trust)
    assert told == {"type": "connected"}
    assert await receive_json(first) == {"type": "connected"}
    await first.send(b"over tls")
    assert await second.recv() == b"over tls"
    await first.close()
    await second.close()


def test_gen_cert_names_localhost_and_keeps_existing_files(tmp_path):
    """The certificate covers localhost and 127.0.0.1; a second run keeps it unless --force."""
    assert gen_cert(tmp_path).returncode == 0
    text = run_command("openssl", "x509", "-in", str(tmp_path / "cert.pem"), "-noout", "-ext", "subjectAltName").stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    before = (tmp_path / "cert.pem").read_bytes()
    again = gen_cert(tmp_path)
    assert again.returncode == 0 and "--force" in again.stderr
    assert (tmp_path / "cert.pem").read_bytes() == before
    assert gen_cert(tmp_path, "--force").returncode == 0
    assert (tmp_path / "cert.pem").read_bytes() != before


def test_key_may_be_in_the_certificate_file(tmp_path):
    """A single PEM holding both certificate and key works as --cert alone."""
    assert gen_cert(tmp_path).returncode == 0
    both = tmp_path / "both" / "server.pem"
    both.parent.mkdir()
    both.write_bytes((tmp_path / "cert.pem").read_bytes() + (tmp_path / "key.pem").read_bytes())
    context = __import__("duoduel").tls_context(both, None)
    assert isinstance(context, ssl.SSLContext)


def test_missing_certificate_is_one_line_and_exit_2(tmp_path):
    """No traceback: one line naming the file and how to make one."""
    result = run_command(sys.executable, "duoduel.py", "--https", "--cert", str(tmp_path / "nope.pem"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"duoduel: cannot read {tmp_path / 'nope.pem'}: no such file. Make a certificate with ./gen_cert.sh"
    ]


def test_unreadable_certificate_is_one_line_and_exit_2(tmp_path):
    """A file that is not a certificate gets one line too."""
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    result = run_command(sys.executable, "duoduel.py", "--https", "--cert", str(bad))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"duoduel: cannot load the certificate {bad}") and "./gen_cert.sh" in line


def test_port_in_use_is_one_line_and_exit_2():
    """Starting on a busy port says so in one line."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_command(sys.executable, "duoduel.py", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"duoduel: port {port} is already in use on 127.0.0.1: stop the other server or pick another with --port"
    ]


def test_help_lists_the_flags():
    result = run_command(sys.executable, "duoduel.py", "--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--https", "--cert", "--key", "--static", "--allow-origin", "--max-clients",
                 "--relay-route", "--no-webtransport", "--webtransport-port", "--webtransport-host",
                 "--max-webtransport-sessions", "--log-level"):
        assert flag in result.stdout


async def test_log_lines_name_the_client_and_its_address(start_process):
    """The operator sees connect, pair and disconnect lines with a short id and the peer address."""
    process = start_process()
    first, second = await join_pair(process.running)
    await first.close()
    await second.close()
    process.popen.send_signal(signal.SIGTERM)
    await asyncio.to_thread(process.popen.wait, 10)
    output = process.popen.stdout.read()
    assert output.count("connected from 127.0.0.1") == 2
    assert output.count(" paired with ") == 1
    assert output.count(" disconnected (1000)") == 2


async def relay_one_frame(process) -> None:
    """Pair two clients on the process and pass one audio frame between them."""
    first, second = await join_pair(process.running)
    await first.send(b"audio")
    assert await asyncio.wait_for(second.recv(), 5) == b"audio"
    await first.close()
    await second.close()


async def test_relay_route_public_on_the_command_line(start_process):
    """--relay-route public: the operator forces websockets' public API, the log says so, and audio still goes through."""
    process = start_process("--relay-route", "public")
    assert any("relay route: websockets' public API (as configured)" in line for line in process.started)
    await relay_one_frame(process)


async def test_relay_route_auto_takes_the_fast_route(start_process):
    """By default (--relay-route auto) the server cuts frames itself once the self-check passes."""
    process = start_process("--relay-route", "auto")
    assert any("relay route: frames cut from the byte stream (self-check passed)" in line for line in process.started)
    await relay_one_frame(process)


def test_unknown_relay_route_is_refused():
    """A route that does not exist is an error naming the choices, not a silent default."""
    result = run_command(sys.executable, "duoduel.py", "--relay-route", "fastest")
    assert result.returncode == 2
    assert "--relay-route: invalid choice: 'fastest' (choose from auto, public)" in result.stderr.replace("'auto', 'public'", "auto, public")


async def test_every_module_is_loaded_once(start_process):
    """Run as __main__, duoduel.py is not imported back under its own name: each module is loaded once, and serves."""
    process = start_process(python=["-X", "importtime"])
    # -X importtime prints a line per module as it is first loaded: "import time: self | cumulative | name".
    loaded = [line.rsplit("|", 1)[1].strip() for line in process.started if line.startswith("import time:")][1:]
    core = [name for name in loaded if name == "core" or name.startswith("core.")]
    assert sorted(core) == sorted(set(core)) and len(core) >= 8, f"core modules loaded: {core}"
    assert "duoduel" not in loaded, "a module imported duoduel: it ran twice, as __main__ and as duoduel"
    assert sum("relay route:" in line for line in process.started) == 1
    await relay_one_frame(process)


async def test_webtransport_is_on_by_default_on_the_http_port_number(start_process):
    """`python duoduel.py` serves WebTransport on the UDP port of the HTTP port's number, with a certificate it made,
    and the page's offer says so."""
    process = start_process()
    offer = json.loads((await http_request(process.running, "/webtransport.json")).body)
    assert offer["port"] == process.port and offer["path"] == "/wt"
    assert len(offer["certificateHashes"]) == 1
    said = f"webtransport on udp port {process.port}, certificate sha-256 {offer['certificateHashes'][0]}"
    assert any(said in line for line in process.started)


async def test_no_webtransport_serves_the_websocket_alone(start_process):
    """--no-webtransport: no offer (404), nothing on UDP, and the page's policy names no https:// port."""
    process = start_process("--no-webtransport")
    assert (await http_request(process.running, "/webtransport.json")).status == 404
    assert "https://" not in (await http_request(process.running, "/")).headers["content-security-policy"]
    assert not any("webtransport" in line for line in process.started)


async def test_webtransport_port_names_another_udp_port(start_process):
    """--webtransport-port puts WebTransport on that UDP port, whatever the HTTP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = start_process("--webtransport-port", str(port))
    offer = json.loads((await http_request(process.running, "/webtransport.json")).body)
    assert offer["port"] == port


def test_udp_port_in_use_is_one_line_and_exit_2():
    """A busy UDP port for WebTransport is one line naming the way out, and exit 2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = run_command(sys.executable, "duoduel.py", "--host", "127.0.0.1", "--port", "0", "--webtransport-port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"duoduel: cannot serve WebTransport on UDP port {port} of 127.0.0.1")
    assert lines[0].endswith("pick another with --webtransport-port, or add --no-webtransport")


async def test_https_self_signed_certificate_is_named_by_hash_for_webtransport(start_process, tmp_path):
    """With gen_cert.sh's self-signed certificate, WebTransport serves one it made (valid days, not a year) and the
    offer names its hash: browsers take no self-signed certificate for WebTransport otherwise."""
    assert gen_cert(tmp_path).returncode == 0
    process = start_process("--https", "--cert", str(tmp_path / "cert.pem"))
    trust = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    offer = json.loads((await http_request(process.running, "/webtransport.json", ssl=trust)).body)
    assert offer["port"] == process.port and len(offer["certificateHashes"]) == 1
