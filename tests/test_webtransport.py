"""The WebTransport endpoint (core/webtransport.py) on real UDP with a raw aioquic client: sessions, the control
stream's lines, datagrams, closes, refusals, bad input, certificates.

The lobby is not here: a small echo handler stands in for it, answering each control line and returning each
audio datagram to its sender once its relay is started.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aioquic.h3.connection import ErrorCode
from aioquic.quic.packet import QuicErrorCode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core import webtransport
from wt_client import connection, open_session, request
from wt_harness import Echo

pytestmark = pytest.mark.timeout(60)


@dataclass
class Served:
    endpoint: webtransport.Endpoint
    echo: Echo
    certificate: webtransport.ServerCertificate

    @property
    def port(self) -> int:
        return self.endpoint.port


@pytest.fixture
def certificate() -> webtransport.ServerCertificate:
    return webtransport.generate_certificate()


@pytest.fixture
async def served(certificate) -> AsyncIterator[Served]:
    echo = Echo()
    async with webtransport.serve(
        "127.0.0.1", 0, certificate, admit=echo.admit, on_session=echo.on_session, on_audio=echo.on_audio,
        idle_timeout=2.0,
    ) as endpoint:
        yield Served(endpoint, echo, certificate)


async def test_settings_include_what_safari_needs(served):
    """The server's HTTP/3 SETTINGS offer WebTransport with datagrams, and the session limits Safari requires."""
    async with connection(served.port, served.certificate) as client:
        request(client, served.port, "/wt")
        await asyncio.wait_for(asyncio.shield(client.session.response), 5)
        settings = client.settings
    assert settings[0x33] == 1  # H3_DATAGRAM
    assert settings[0x2B603742] == 1  # ENABLE_WEBTRANSPORT (draft-02: Chromium, Firefox)
    assert settings[webtransport.WT_MAX_SESSIONS] >= 1
    for setting in (webtransport.WT_INITIAL_MAX_DATA, webtransport.WT_INITIAL_MAX_STREAMS_BIDI,
                    webtransport.WT_INITIAL_MAX_STREAMS_UNI):
        assert settings[setting] > 0


async def test_session_carries_control_lines_both_ways(served):
    """Each line the page writes on its control stream reaches the handler, and each answer comes back a line."""
    async with open_session(served.port, "/wt?room=abc", served.certificate, origin="http://localhost:8080") as session:
        session.send_line('{"type": "ping", "t": 1}')
        session.send_bytes(b'{"type": "ping", "t": 2}\n{"type": ')  # lines cut anywhere are joined again
        session.send_bytes(b'"ping", "t": 3}\n')
        answers = [json.loads(await session.line()) for _ in range(3)]
    assert [answer["got"]["t"] for answer in answers] == [1, 2, 3]
    assert served.echo.requests[0] == webtransport.WebTransportRequest(
        "/wt?room=abc", f"localhost:{served.port}", "http://localhost:8080")


async def test_datagrams_go_to_the_relay_once_started(served):
    """Audio datagrams sent before the control stream opens are dropped; after it they reach on_audio."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_datagram(b"early")
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        frames = [bytes([i]) * 100 for i in range(20)]
        for frame in frames:
            session.send_datagram(frame)
        back = [await session.datagram() for _ in frames]
        assert sorted(back) == sorted(frames)  # datagrams may be reordered, never changed
        with pytest.raises(asyncio.TimeoutError):
            await session.datagram(timeout=0.3)  # and "early" never came back


async def test_acknowledgements_ride_on_the_audio_sent_back(served):
    """A page whose audio comes back gets one packet per frame: the server's ACK rides on the audio, not alone."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        received = count_datagrams(session.connection)
        frames = 20
        for i in range(frames):  # a frame every 20 ms, as a page sends them
            session.send_datagram(bytes([i]) * 100)
            assert await session.datagram() == bytes([i]) * 100
            await asyncio.sleep(0.02)
    # aioquic alone sends an ACK by itself 1 ms after each frame arrives, besides the frame sent back: 2 per frame.
    # One more may come: the ACK of the control line, alone if no frame left within ACK_DELAY of it (a busy machine).
    assert frames <= received[0] <= frames + 1


async def test_page_that_sends_no_audio_is_still_acknowledged(served):
    """A page that sends no audio for an ACK to ride back on (here a QUIC PING) is acknowledged all the same."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        await asyncio.wait_for(session.connection.ping(), 1)  # the idle timeout is 2 s: only the ACK's timer sends


def count_datagrams(client) -> list[int]:
    """From now on, count the UDP datagrams the client receives (in a list of one, to read later)."""
    count = [0]
    receive = client.datagram_received

    def counting(data: bytes, addr) -> None:
        count[0] += 1
        receive(data, addr)

    client.datagram_received = counting
    return count


async def test_refused_session_gets_the_status_and_one_line(served):
    """A CONNECT that admit() refuses gets its status and the line saying why; no session opens."""
    served.echo.refusal = webtransport.Refusal(403, "Cross-site WebTransport sessions are not allowed.")
    async with connection(served.port, served.certificate) as client:
        session = request(client, served.port, "/wt", origin="https://evil.example")
        assert await asyncio.wait_for(asyncio.shield(session.response), 5) == 403
        await session.wait_closed()
    assert b"Cross-site WebTransport sessions are not allowed." in session.body
    assert served.echo.sessions == [] and served.endpoint.sessions == set()


@pytest.mark.parametrize(("method", "path", "protocol"), [
    (b"GET", "/", b""), (b"CONNECT", "/ws", b"webtransport"), (b"CONNECT", "/wt", b"websocket"),
])
async def test_other_requests_are_not_found(served, method, path, protocol):
    """Over HTTP/3 only WebTransport at /wt is served: anything else is a 404 with a line saying so."""
    async with connection(served.port, served.certificate) as client:
        session = request(client, served.port, path, method=method, protocol=protocol)
        assert await asyncio.wait_for(asyncio.shield(session.response), 5) == 404
        await session.wait_closed()
    assert b"Only WebTransport sessions at /wt" in session.body
    assert served.echo.requests == []


async def test_second_session_on_one_connection_is_refused(served):
    """One session per connection, as the SETTINGS say: a second CONNECT is refused with 429."""
    async with connection(served.port, served.certificate) as client:
        first = request(client, served.port, "/wt")
        assert await asyncio.wait_for(asyncio.shield(first.response), 5) == 200
        second = request(client, served.port, "/wt")
        assert await asyncio.wait_for(asyncio.shield(second.response), 5) == 429


@pytest.mark.parametrize(("sent", "code"), [
    (b"x" * (webtransport.MAX_LINE + 1), 1009),  # a line longer than any control message, not yet ended
    (b'{"type": "\xff"}\n', 1007),  # not UTF-8
])
async def test_bad_control_line_closes_the_session_saying_why(served, sent, code):
    """An oversize or undecodable control line closes that session with the code a WebSocket would get."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_bytes(sent)
        closed = await session.wait_closed()
    assert closed.code == code
    assert closed.reason


async def test_second_stream_closes_the_session(served):
    """A page opens one control stream; a second stream is bad input and closes that session (1002)."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        session.open_stream()
        closed = await session.wait_closed()
    assert (closed.code, closed.reason) == (1002, "one control stream per session")


async def test_unidirectional_control_stream_is_refused(served):
    """The control stream must be bidirectional: a page that opens a unidirectional one first is told so."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.open_stream(unidirectional=True)
        closed = await session.wait_closed()
    assert closed.code == 1002
    assert served.echo.sessions == []


async def test_session_without_control_stream_is_closed(served, monkeypatch):
    """A session whose page never opens its control stream (it fell back, or it is idle) is closed."""
    monkeypatch.setattr(webtransport, "CONTROL_STREAM_TIMEOUT", 0.3)
    async with open_session(served.port, "/wt", served.certificate) as session:
        closed = await session.wait_closed()
    assert (closed.code, closed.reason) == (1002, "no control stream opened")
    assert served.echo.sessions == []  # it never reached the handler (the lobby)


async def test_server_close_reaches_the_page_with_code_and_reason(served):
    """The code and reason the server closes with are what the page reads."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line(json.dumps({"type": "close", "code": 1008, "reason": "too many messages"}))
        closed = await session.wait_closed()
        handled = await asyncio.wait_for(served.echo.handled.get(), 5)
    assert (closed.code, closed.reason) == (1008, "too many messages")
    assert handled.close_code == 1008 and not handled.is_open
    assert not handled.send_frame(b"late")  # a closed link takes no audio


@pytest.mark.parametrize("cut_at", [None, 3], ids=["whole", "cut"])
async def test_page_close_gives_its_code_to_the_server(served, cut_at):
    """A page that closes says goodbye: the server's session ends with the page's code, not as a drop, even
    when its close capsule arrives in pieces."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        session.close(1000, "leaving", cut_at=cut_at)
        handled = await asyncio.wait_for(served.echo.handled.get(), 5)
    assert (handled.close_code, handled.close_reason) == (1000, "leaving")


async def test_vanished_page_is_a_drop(served):
    """A page whose network went away says nothing: its session ends as a drop (1006) at the idle timeout."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        session.drop()
        handled = await asyncio.wait_for(served.echo.handled.get(), 10)
    assert handled.close_code == webtransport.ABNORMAL_CLOSURE


async def test_browser_that_closes_the_connection_is_going_away(served):
    """A browser that closes the whole connection with HTTP/3's "no error" (Firefox leaving a page, sometimes before
    the session's close goes out) went away on purpose: its session ends with 1001 at once, not as a drop."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        session.close_connection(ErrorCode.H3_NO_ERROR)
        handled = await asyncio.wait_for(served.echo.handled.get(), 1)  # far within the idle timeout
    assert handled.close_code == webtransport.GOING_AWAY


@pytest.mark.parametrize("error_code, transport", [
    (ErrorCode.H3_INTERNAL_ERROR, False), (QuicErrorCode.INTERNAL_ERROR, True), (0x100, True),
], ids=["h3-error", "transport-error", "tls-alert"])
async def test_connection_closed_with_an_error_is_a_drop(served, error_code, transport):
    """A connection closed with an error (HTTP/3's or QUIC's, even one whose number is H3_NO_ERROR's, a TLS alert
    in a transport close) is no goodbye: the session ends as a drop (1006), its place held for a resume."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        session.close_connection(error_code, transport=transport)
        handled = await asyncio.wait_for(served.echo.handled.get(), 1)
    assert handled.close_code == webtransport.ABNORMAL_CLOSURE


async def test_audio_for_a_page_that_stopped_reading_is_dropped_not_queued(served):
    """A receiver that takes nothing (no acknowledgements) holds only the audio of the last MAX_DATAGRAM_AGE; the rest is dropped."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        server_side = served.echo.sessions[0]
        session.drop()
        frame = bytes(1000)
        for _ in range(150):  # 1.5 s of 10 ms frames, more than the congestion window lets out unacknowledged
            assert server_side.send_frame(frame)
            await asyncio.sleep(0.01)
        # Frames come 10 ms apart (or more, on a loaded machine): no more than MAX_DATAGRAM_AGE of them wait.
        most = int(webtransport.MAX_DATAGRAM_AGE / 0.01) + 1
        assert 0 < server_side.backlog() <= most * (len(frame) + 1)
        assert server_side.datagrams_dropped > 0


async def test_offer_names_the_port_and_the_hash(served, certificate):
    """What the page is given: the UDP port, the path, and the hash of the certificate it must accept."""
    assert served.endpoint.offer() == {
        "port": served.port, "path": "/wt", "certificateHashes": [certificate.hash.hex()],
    }


async def test_renewed_certificate_serves_new_connections(served):
    """After renewal new connections get the new certificate (a client pinned to the old one fails)."""
    old = served.certificate
    new = webtransport.generate_certificate()
    served.endpoint.use_certificate(new)
    assert served.endpoint.offer()["certificateHashes"] == [new.hash.hex()]
    async with open_session(served.port, "/wt", new):
        pass
    with pytest.raises((ConnectionError, asyncio.TimeoutError, TimeoutError)):
        async with open_session(served.port, "/wt", old):
            pass


async def test_made_certificate_is_renewed_before_it_expires(certificate, monkeypatch):
    """A server that made its certificate makes a new one every RENEW_AFTER_DAYS: the offer names the new hash."""
    monkeypatch.setattr(webtransport, "RENEW_AFTER_DAYS", 1 / 86400)  # a second here
    echo = Echo()
    async with webtransport.serve("127.0.0.1", 0, certificate, admit=echo.admit, on_session=echo.on_session,
                                  on_audio=echo.on_audio, names=["localhost"]) as endpoint:
        async with asyncio.timeout(5):
            while endpoint.certificate is certificate:
                await asyncio.sleep(0.05)
        renewed = endpoint.certificate
        assert endpoint.offer()["certificateHashes"] == [renewed.hash.hex()] != [certificate.hash.hex()]
        async with open_session(endpoint.port, "/wt", renewed):  # well within the second before the next
            pass


def test_generated_certificate_is_what_browsers_take_by_hash():
    """ECDSA P-256, valid now and for at most 14 days in all, named by the SHA-256 of its DER form."""
    made = webtransport.generate_certificate(["duoduel.test", "192.0.2.1"])
    leaf = made.chain[0]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=14)
    assert leaf.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc) < leaf.not_valid_after_utc
    digest = hashes.Hash(hashes.SHA256())
    digest.update(leaf.public_bytes(serialization.Encoding.DER))
    assert made.hash == digest.finalize()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "duoduel.test" in names.get_values_for_type(x509.DNSName)


def write_pem(path, certificate, key):
    path.with_name("cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    path.with_name("key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_self_signed_https_certificate_is_replaced_by_a_hashed_one(tmp_path):
    """gen_cert.sh's kind (self-signed, 825 days): browsers cannot take it for WebTransport, so one is made."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duoduel")])
    now = datetime.datetime.now(datetime.timezone.utc)
    long_lived = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                  .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=825))
                  .sign(key, hashes.SHA256()))
    write_pem(tmp_path / "cert.pem", long_lived, key)
    served = webtransport.load_certificate(tmp_path / "cert.pem", tmp_path / "key.pem", ["localhost"])
    assert served.hash is not None and served.chain[0] != long_lived
    assert served.chain[0].not_valid_after_utc - served.chain[0].not_valid_before_utc <= datetime.timedelta(days=14)


def test_ca_issued_https_certificate_is_served_as_it_is(tmp_path):
    """A certificate a CA issued is what browsers trust: QUIC serves it, and the page names no hash."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duoduel.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (x509.CertificateBuilder().subject_name(leaf_name).issuer_name(ca_name).public_key(leaf_key.public_key())
            .serial_number(2).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
            .sign(ca_key, hashes.SHA256()))
    write_pem(tmp_path / "cert.pem", leaf, leaf_key)
    served = webtransport.load_certificate(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert served.hash is None and served.chain[0] == leaf


async def test_localhost_is_served_on_both_loopback_addresses():
    """"localhost" binds ::1 and 127.0.0.1 on one port whatever /etc/hosts says: browsers resolve it themselves."""
    sockets = webtransport.udp_sockets("localhost", 0)
    try:
        addresses = {sock.getsockname()[0] for sock in sockets}
        ports = {sock.getsockname()[1] for sock in sockets}
        expected = {"127.0.0.1", "::1"} if socket.has_ipv6 else {"127.0.0.1"}
        assert addresses == expected and len(ports) == 1
    finally:
        for sock in sockets:
            sock.close()


async def test_largest_frame_fits_a_datagram_and_a_larger_one_is_refused_once(served):
    """A frame of MAX_DATAGRAM_PAYLOAD bytes reaches the page in one datagram; a larger one is dropped, the page
    told once why, and the frames after it still arrive."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        server_side = served.echo.sessions[0]
        largest = bytes(range(256)) * 4 + bytes(webtransport.MAX_DATAGRAM_PAYLOAD - 1024)
        assert server_side.send_frame(largest)
        assert await session.datagram() == largest
        for _ in range(2):
            assert server_side.send_frame(bytes(1920))  # a PCM16 frame: dropped, not a closed link
        assert server_side.send_frame(b"opus")
        assert await session.datagram() == b"opus"
        error = json.loads(await session.line())
        assert error["type"] == "error" and "do not fit in a WebTransport datagram" in error["reason"]
        session.send_line('{"type": "ping", "t": 2}')
        assert json.loads(await session.line())["got"]["t"] == 2  # the next line is the answer: told once
    assert served.endpoint.datagrams_dropped == 2


async def test_control_messages_for_a_page_that_stopped_reading_close_it(served):
    """A page that acknowledges nothing more is closed once MAX_CONTROL_BACKLOG bytes of messages wait for it."""
    async with open_session(served.port, "/wt", served.certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')
        await session.line()
        server_side = served.echo.sessions[0]
        session.drop()
        line = json.dumps({"type": "joined", "label": "x" * 1000})
        for _ in range(webtransport.MAX_CONTROL_BACKLOG // len(line) + 2):
            server_side.send_text(line)
        assert (server_side.close_code, server_side.close_reason) == (1011, "control messages not read")


async def test_connections_without_a_session_are_capped(certificate):
    """Past max_connections_without_session QUIC connections still without a session, a new one is refused in its
    first packet; once one of them opens its session, a new connection is taken again."""
    echo = Echo()
    async with webtransport.serve(
        "127.0.0.1", 0, certificate, admit=echo.admit, on_session=echo.on_session, on_audio=echo.on_audio,
        max_connections_without_session=2,
    ) as endpoint, connection(endpoint.port, certificate) as first, connection(endpoint.port, certificate):
        with pytest.raises(ConnectionError):
            async with connection(endpoint.port, certificate):
                pass
        session = request(first, endpoint.port, "/wt")
        assert await asyncio.wait_for(asyncio.shield(session.response), 5) == 200
        async with connection(endpoint.port, certificate) as another:
            assert another._quic._state.name == "CONNECTED"


async def test_connection_that_opens_no_session_is_closed(certificate, monkeypatch):
    """A QUIC connection that asks for no session within CONTROL_STREAM_TIMEOUT is closed: it holds no place for long."""
    monkeypatch.setattr(webtransport, "CONTROL_STREAM_TIMEOUT", 0.3)
    echo = Echo()
    async with webtransport.serve(
        "127.0.0.1", 0, certificate, admit=echo.admit, on_session=echo.on_session, on_audio=echo.on_audio,
    ) as endpoint, connection(endpoint.port, certificate) as idle:
        await asyncio.wait_for(idle.wait_closed(), 5)
        assert not endpoint.unsessioned


async def test_sessions_past_max_sessions_are_refused_busy(certificate):
    """Past max_sessions open sessions, a CONNECT is answered 503 with a line that names the WebSocket."""
    echo = Echo()
    async with webtransport.serve(
        "127.0.0.1", 0, certificate, admit=echo.admit, on_session=echo.on_session, on_audio=echo.on_audio,
        max_sessions=1,
    ) as endpoint, open_session(endpoint.port, "/wt", certificate):
        async with connection(endpoint.port, certificate) as client:
            session = request(client, endpoint.port, "/wt")
            assert await asyncio.wait_for(asyncio.shield(session.response), 5) == 503
            await session.wait_closed()
        assert session.body.decode() == webtransport.BUSY + "\n"
        assert endpoint.refused_busy == 1
