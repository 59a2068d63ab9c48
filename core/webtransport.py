"""WebTransport beside the WebSocket: QUIC and HTTP/3 (aioquic) on UDP, in the same event loop.

A page opens a session with an extended CONNECT (:protocol webtransport) to
https://HOST:PORT/wt?QUERY, the query as on /ws (room=, resume=, resumable=,
call=). The server checks it as it checks a WebSocket handshake (admit), and
answers 200. The page then opens one bidirectional stream, the control stream:
the same JSON control messages as on /ws, one per line (UTF-8, each ended by a
line feed, at most MAX_LINE bytes). The session's handler (on_session) starts
when the first bytes arrive on it: a session given up before then (the page
fell back to its WebSocket) never enters the lobby. Audio frames are HTTP/3
datagrams (RFC 9297) carrying exactly the bytes of a WebSocket binary message;
they are never queued behind congestion: a frame that cannot leave soon is
dropped, and an unreliable datagram lost on the way is not sent again.

Nothing here knows the lobby. Endpoint is given three functions: admit (the
handshake's checks), on_session (the handler), and on_audio (called for every
audio datagram of a session whose relay was started, in the datagram's own
callback: no task, no queue). A session is a `Link`, as a WebSocket
connection is: send_text, send_frame, backlog, is_open, close_code,
remote_address, close, start_relay, stop_relay.

Certificates: browsers take a certificate they do not otherwise trust when the
page gives its SHA-256 hash (serverCertificateHashes), if it is ECDSA P-256 and
valid for at most 14 days. generate_certificate() makes such a one at start,
and Endpoint renews it before it expires; offer() is what the page needs to
connect (the UDP port and the hashes), served to it over the page it already
trusts.

aioquic internals, which is why requirements.txt pins aioquic: the HTTP/3
SETTINGS come from H3Connection._get_local_settings() (SessionSettingsH3), the
audio backlog is QuicConnection._datagrams_pending (an unbounded deque that
only congestion control drains, and from whose front audio too late to send
is taken), congestion control is a registered algorithm (AudioCongestion,
a subclass of aioquic's NewReno), the control stream's unacknowledged bytes are
its QuicStreamSender's _buffer_stop less _buffer_start (reached through
QuicConnection._streams), QuicConnectionProtocol._loop times the
control stream's deadline, and acknowledgements are paced through
QuicConnection._ack_delay (how long an ACK may wait), the 1-RTT packet space's
ack_at (when it is due: brought forward to ride on audio) and the protocol's
timer (_timer, _timer_at, _handle_timer: armed without sending after a packet
that calls for nothing at once). tests/test_webtransport.py exercises each
through a real connection: the settings a client reads, the backlog of a
receiver that stopped acknowledging, a session closed for want of a control
stream, the packets a page receives for its echoed audio, a page that sends
no audio still acknowledged, a page that acknowledges no control message;
tests/test_webtransport_congestion.py the age of audio after a congestion
window filled, across a real path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import hashlib
import ipaddress
import json
import logging
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer, BufferReadError, encode_uint_var
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.congestion.base import register_congestion_control
from aioquic.quic.congestion.reno import RenoCongestionControl
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent
from aioquic.quic.packet import QuicErrorCode
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "Endpoint", "Refusal", "ServerCertificate", "WebTransportRequest", "WebTransportSession",
    "generate_certificate", "load_certificate", "serve",
]

log = logging.getLogger("duoduel")

PATH = "/wt"
# A control line: the largest control message is far smaller. A longer line is refused (1009, as on /ws).
MAX_LINE = 4096
# Control lines read and not yet handled; a page that sends this many before the handler catches up floods.
MAX_PENDING_LINES = 64
# How long an audio datagram may wait in aioquic's queue (congestion control or pacing holding it) before it
# is dropped instead of sent: two 10 ms frames. Late audio is worth less than none: the page's jitter buffer
# would wait for it, and conceal it anyway. The relay's own bound (core.relay.deliver(), through backlog())
# drops a page's audio first when its queue stays full, and counts the stall.
MAX_DATAGRAM_AGE = 0.020
# The least congestion window an audio connection keeps (bytes), whatever losses it sees: see AudioCongestion.
AUDIO_WINDOW = 64 * 1024
# The largest audio frame sent as a datagram. A datagram must fit in one QUIC packet of 1,200 bytes (what
# aioquic sends, and the least any path carries), after a short header with a 20-byte connection ID, the
# packet number, the AEAD tag and the frame's own header: 1,154 bytes at worst. aioquic keeps one that
# does not fit at the head of its queue forever, so no larger frame is ever handed to it. Opus frames are a
# few hundred bytes at most; PCM16's 1,920 (a browser without an Opus encoder) never fit.
MAX_DATAGRAM_PAYLOAD = 1100
TOO_BIG = (
    "audio frames of {size} bytes do not fit in a WebTransport datagram (at most {limit}): your partner sends "
    "uncompressed audio. Reload the page to talk over the WebSocket."
)
# Control messages sent and not yet acknowledged by the page: a page this far behind has stopped reading
# (the largest message, a group room's notice, is under 1 KB), and is closed rather than buffered for.
MAX_CONTROL_BACKLOG = 64 * 1024
# QUIC connections open at once without a WebTransport session (in their handshake, or before the CONNECT):
# past these a new connection is refused, so that handshakes cannot fill the memory. Retry (serve()) has
# already checked each one's address.
MAX_CONNECTIONS_WITHOUT_SESSION = 256
# Sessions open at once (--max-webtransport-sessions): aioquic costs about three times a wss:// frame per
# datagram (docs/performance.md: about 40 calls per core), so past these a page is refused (503) and
# falls back to the WebSocket, which costs less.
MAX_SESSIONS = 80
BUSY = "WebTransport is busy here: the page uses the WebSocket instead."
# How long an ACK may wait to ride on an audio datagram before it goes alone: the max_ack_delay aioquic
# announces to the page (25 ms), which a page sending a frame every 20 ms nearly always beats.
ACK_DELAY = 0.025
# A datagram frame's largest size, as the transport parameter says: no UDP packet carries more. A peer
# that sends a larger one breaks QUIC's rules and its connection is closed (PROTOCOL_VIOLATION).
MAX_DATAGRAM_FRAME = 1500
# A connection silent this long is gone: the page pings every 2 s, in a call or waiting.
IDLE_TIMEOUT = 15.0
# A session accepted but whose page opens no control stream within this is closed; so is a connection that
# asks for no session within it.
CONTROL_STREAM_TIMEOUT = 10.0
# After the server closes a session, how long the page has to read the close before the connection goes.
CLOSE_GRACE = 1.0
# What the page's close code and reason may hold (draft-ietf-webtrans-http3, CLOSE_WEBTRANSPORT_SESSION).
MAX_REASON_BYTES = 1024
# The close code of a session whose connection dropped without a close (as a WebSocket's 1006).
ABNORMAL_CLOSURE = 1006
# The close code of a session whose page's browser closed the whole connection without closing the session
# first (as a WebSocket's 1001 when a tab closes).
GOING_AWAY = 1001
# Certificates made here: valid 10 days (browsers take at most 14 for a hash), renewed after 7.
CERTIFICATE_DAYS = 10
RENEW_AFTER_DAYS = 7

# Capsules on the CONNECT stream (draft-ietf-webtrans-http3, section 5); a page sends little else.
CLOSE_WEBTRANSPORT_SESSION = 0x2843
MAX_CAPSULE = 4 + MAX_REASON_BYTES

# HTTP/3 settings that aioquic does not send. Safari (26.4 and later) refuses a server whose
# SETTINGS lack SETTINGS_WT_MAX_SESSIONS, and wants the WT_INITIAL_MAX_* flow-control settings
# beside it (aioquic issue 644; webtransport-go 261 and 355). One session per connection; the
# stream and data limits are the QUIC connection's own, so the session adds none of its own.
WT_MAX_SESSIONS = 0x14E9CD29
WT_INITIAL_MAX_DATA = 0x2B61
WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65
UNLIMITED = 1 << 60
EXTRA_SETTINGS = {
    WT_MAX_SESSIONS: 1,
    WT_INITIAL_MAX_DATA: UNLIMITED,
    WT_INITIAL_MAX_STREAMS_UNI: UNLIMITED,
    WT_INITIAL_MAX_STREAMS_BIDI: UNLIMITED,
}


@dataclass(frozen=True)
class WebTransportRequest:
    """The extended CONNECT that opens a session, as admit() sees it."""

    path: str  # with its query, raw, as on /ws
    authority: str
    origin: str | None


@dataclass(frozen=True)
class Refusal:
    """Why a session is not opened: an HTTP status, and one line that says what to do."""

    status: int
    line: str


Admit = Callable[[WebTransportRequest], Refusal | None]
OnSession = Callable[["WebTransportSession"], Awaitable[None]]
OnAudio = Callable[[Any, Any, bytes], None]


@dataclass(frozen=True)
class ServerCertificate:
    """The certificate QUIC serves, and its SHA-256 when the page must name it (None: browsers trust it)."""

    chain: tuple[x509.Certificate, ...]
    key: Any
    hash: bytes | None

    @property
    def not_after(self) -> datetime.datetime:
        return self.chain[0].not_valid_after_utc


def generate_certificate(names: Sequence[str] = ("localhost",), days: float = CERTIFICATE_DAYS) -> ServerCertificate:
    """A self-signed ECDSA P-256 certificate valid for `days` (at most 14), held in memory only."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duoduel")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alternatives: list[x509.GeneralName] = []
    for name in dict.fromkeys([*names, "localhost", "127.0.0.1", "::1"]):
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if name:
                alternatives.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # The whole validity period counts towards the 14 days, the minute before now too.
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days) - datetime.timedelta(minutes=1))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ServerCertificate((certificate,), key, fingerprint(certificate))


def fingerprint(certificate: x509.Certificate) -> bytes:
    """The SHA-256 of the certificate's DER encoding: what serverCertificateHashes names."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


def load_certificate(cert: Path, key: Path, names: Sequence[str] = ()) -> ServerCertificate:
    """The certificate of --https for QUIC, or a generated one if browsers cannot trust it.

    A self-signed certificate (gen_cert.sh's) is trusted by a browser only
    through the warning a person clicks through for the page, and that
    exception does not reach WebTransport; nor can a page name it by its hash
    when it is valid for longer than 14 days. So a self-signed certificate is
    replaced here by a generated one, named by its hash, as on localhost. A
    certificate issued by a CA is served as it is, and the page names no hash.
    """
    chain = x509.load_pem_x509_certificates(cert.read_bytes())
    leaf = chain[0]
    if self_signed(leaf):
        return generate_certificate(names)
    private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    return ServerCertificate(tuple(chain), private_key, None)


def self_signed(certificate: x509.Certificate) -> bool:
    """Whether the certificate is its own issuer (no CA vouches for it)."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError):  # TypeError: a key type it cannot check
        return False
    return True


class AudioCongestion(RenoCongestionControl):
    """aioquic's NewReno, with a window that never falls below AUDIO_WINDOW.

    The audio's rate is fixed by the pages (a datagram per frame and member,
    about 40 kbit/s a call, 70 with copies), not by the path: a window cut after a loss
    cannot slow it, only hold it back, and audio held back is late. Reno cuts
    its window by half at every loss and to 2,400 bytes after a run of them,
    and aioquic paces every packet as if it were full-size at the window's rate
    (at 2,400 bytes and a 60 ms round trip: a packet each 30 ms, for frames
    every 10 ms). So, as a WebRTC sender does with its audio (never paced, never
    below the codec's rate), the window keeps room for what a group room of
    eight has in flight over a 500 ms round trip (7 senders, 100 datagrams of
    about 180 bytes a second each), and what the path cannot carry is lost
    there, or dropped here past MAX_DATAGRAM_AGE; the window still bounds what
    a page that stops acknowledging makes the server keep in flight.
    """

    def __init__(self, *, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self.congestion_window = max(self.congestion_window, AUDIO_WINDOW)

    def on_packets_lost(self, *, now: float, packets: Iterable[Any]) -> None:
        super().on_packets_lost(now=now, packets=packets)
        self.congestion_window = max(self.congestion_window, AUDIO_WINDOW)

    def on_persistent_congestion(self) -> None:
        super().on_persistent_congestion()
        self.congestion_window = max(self.congestion_window, AUDIO_WINDOW)


register_congestion_control("duoduel-audio", AudioCongestion)


class SessionSettingsH3(H3Connection):
    """aioquic's HTTP/3 connection with the WebTransport settings Safari needs (EXTRA_SETTINGS)."""

    def _get_local_settings(self) -> dict[int, int]:
        # aioquic internals: the one method that lists the SETTINGS sent; tests/test_webtransport.py
        # reads them back from a real connection, so an aioquic that renames it fails there.
        return {**super()._get_local_settings(), **EXTRA_SETTINGS}


class WebTransportSession:
    """One page's session: its control stream and its datagrams. A `Link`, as a WebSocket connection is."""

    kind = "webtransport"

    def __init__(self, connection: Connection, session_id: int, request: WebTransportRequest) -> None:
        self.connection = connection
        self.session_id = session_id
        self.request = request
        self.id = secrets.token_hex(4)  # a name for the log, as a WebSocket's id
        self.close_code: int | None = None
        self.close_reason = ""
        self.control_stream: int | None = None
        self.lobby: Any = None
        self.client: Any = None  # set by start_relay(): whose audio the datagrams are
        self._line = bytearray()  # the start of a control line still incomplete
        self._capsules = b""  # the start of a capsule still incomplete, on the CONNECT stream
        self._lines: deque[str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = asyncio.Event()
        self.datagrams_dropped = 0
        # When each datagram still in aioquic's queue (QuicConnection._datagrams_pending) was handed to it,
        # oldest first: aioquic sends from the front, so the first len(queue) of these are gone.
        self._queued_at: deque[float] = deque()
        self.too_big = False  # told the page once that its partner's frames do not fit

    def __repr__(self) -> str:
        # The path alone: its query holds the resume and id tokens, which no log may show.
        return f"<WebTransportSession {self.id} {self.request.path.split('?', 1)[0]!r}>"

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def is_open(self) -> bool:
        return self.close_code is None

    @property
    def remote_address(self) -> tuple[str, int] | None:
        return self.connection._quic.get_peer_address()

    # Sending.

    def send_text(self, message: str) -> None:
        """Queue a control message (a line) on the control stream now; nothing if the session is closing."""
        if self.close_code is not None or self.control_stream is None:
            return
        quic = self.connection._quic
        sender = quic._streams[self.control_stream].sender
        if sender._buffer_stop - sender._buffer_start > MAX_CONTROL_BACKLOG:
            return self.refuse(1011, "control messages not read")
        quic.send_stream_data(self.control_stream, message.encode() + b"\n")
        self.connection.transmit()

    def send_frame(self, frame: bytes) -> bool:
        """Send an audio frame as a datagram now; False if the session is closing.

        aioquic sends it at once unless congestion control or pacing holds it;
        then it waits at most MAX_DATAGRAM_AGE, and is dropped (and counted)
        rather than sent later (drop_late_audio). A frame too big for a
        datagram is dropped too, and the page told once why.
        """
        if self.close_code is not None:
            return False
        endpoint = self.connection.endpoint
        if len(frame) > MAX_DATAGRAM_PAYLOAD:
            endpoint.datagrams_dropped += 1
            if not self.too_big:
                self.too_big = True
                self.send_text(json.dumps({"type": "error", "reason": TOO_BIG.format(size=len(frame), limit=MAX_DATAGRAM_PAYLOAD)}))
            return True
        self.connection.h3.send_datagram(self.session_id, frame)
        self._queued_at.append(self.connection._loop.time())
        self.connection.transmit()
        endpoint.datagrams_sent += 1
        return True

    def drop_late_audio(self, now: float) -> None:
        """Take out of aioquic's queue the datagrams that have waited past MAX_DATAGRAM_AGE, counting them."""
        queued_at, pending = self._queued_at, self.connection._quic._datagrams_pending
        while len(queued_at) > len(pending):  # those aioquic sent
            queued_at.popleft()
        dropped = 0
        while queued_at and now - queued_at[0] > MAX_DATAGRAM_AGE:
            queued_at.popleft()
            pending.popleft()
            dropped += 1
        if dropped:
            self.datagrams_dropped += dropped
            self.connection.endpoint.datagrams_dropped += dropped

    def backlog(self) -> int:
        """Bytes of audio queued for this page and not yet sent."""
        return sum(len(datagram) for datagram in self.connection._quic._datagrams_pending)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session with a code and reason the page reads; return when its connection is gone."""
        self.close_now(code, reason)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wait_gone(), CLOSE_GRACE * 2)

    def close_now(self, code: int, reason: str) -> None:
        """Close the session at once (the page reads the code and reason); its connection goes after CLOSE_GRACE."""
        if self.close_code is not None:
            return
        self._end(code, reason)
        payload = code.to_bytes(4, "big") + reason.encode()[:MAX_REASON_BYTES]
        capsule = encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(len(payload)) + payload
        with contextlib.suppress(Exception):  # the connection may be gone already
            self.connection.h3.send_data(self.session_id, capsule, end_stream=True)
            self.connection.transmit()
        # The page closes the connection once it has read the capsule; if it does not, we do.
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self.connection.close)

    def start_relay(self, lobby: Any, client: Any) -> None:
        """From now on, every audio datagram of this session goes to on_audio(lobby, client, frame)."""
        self.lobby, self.client = lobby, client

    def stop_relay(self) -> None:
        """The page resumed on another link: relay nothing more from this one."""
        self.client = None

    # Receiving.

    def __aiter__(self) -> AsyncIterator[str]:
        return self.messages()

    async def messages(self) -> AsyncIterator[str]:
        """The control messages, in order, until the session closes."""
        while True:
            while self._lines:
                yield self._lines.popleft()
            if self.close_code is not None:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def wait_closed(self) -> None:
        """Return once the session is closed, by either side or by a drop."""
        await self._closed.wait()

    async def wait_gone(self) -> None:
        """Return once the session's connection is closed too."""
        await self.connection.wait_closed()

    def datagram_received(self, data: bytes) -> None:
        """An audio frame from the page: to on_audio if its relay was started and the session is open."""
        client = self.client
        endpoint = self.connection.endpoint
        endpoint.datagrams_received += 1
        if client is not None and self.close_code is None:
            endpoint.on_audio(self.lobby, client, data)

    def control_received(self, data: bytes, ended: bool) -> None:
        """Bytes on the control stream: cut them into lines, refuse what no page sends."""
        if self.close_code is not None:
            return
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line, self._line = bytes(self._line) + data[start:end], bytearray()
            start = end + 1
            if not self._take_line(line):
                return
        self._line += data[start:]
        if len(self._line) > MAX_LINE:
            return self.refuse(1009, f"control line over {MAX_LINE} bytes")
        if ended:
            self.refuse(1000, "control stream ended")

    def _take_line(self, line: bytes) -> bool:
        if len(line) > MAX_LINE:
            self.refuse(1009, f"control line over {MAX_LINE} bytes")
            return False
        try:
            text = line.decode()
        except UnicodeDecodeError:
            self.refuse(1007, "control line is not UTF-8")
            return False
        if len(self._lines) >= MAX_PENDING_LINES:
            self.refuse(1008, "too many messages")
            return False
        self._lines.append(text)
        self._wake()
        return True

    def refuse(self, code: int, reason: str) -> None:
        """Close the session for bad input, saying why."""
        log.info("webtransport session %s closed: %s", self.id, reason)
        self.close_now(code, reason)

    def _end(self, code: int, reason: str) -> None:
        """Mark the session closed (once) and wake whoever reads its messages."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._closed.set()
        self._wake()
        self.connection.endpoint.sessions.discard(self)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def capsules_received(self, data: bytes, ended: bool) -> None:
        """Data on the CONNECT stream: capsules (the page's close among them), then its end."""
        self._capsules += data
        buffer = Buffer(data=self._capsules)
        try:
            while not buffer.eof():
                kind, length = buffer.pull_uint_var(), buffer.pull_uint_var()
                if length > MAX_CAPSULE:
                    return self.refuse(1009, f"capsule over {MAX_CAPSULE} bytes")
                body = buffer.pull_bytes(length)
                self._capsules = self._capsules[buffer.tell():]
                buffer = Buffer(data=self._capsules)
                if kind == CLOSE_WEBTRANSPORT_SESSION and length >= 4:
                    self._end(int.from_bytes(body[:4], "big"), body[4:].decode(errors="replace"))
        except BufferReadError:
            pass  # the rest of a capsule is still on its way
        if ended:
            self._end(0, "")  # the CONNECT stream ended without a close capsule: code 0 (draft-ietf-webtrans-http3)

    def connection_lost(self, event: ConnectionTerminated) -> None:
        """The connection ended: a session not closed by either side dropped, unless the page's browser closed it."""
        if closed_by_browser(event):
            self._end(GOING_AWAY, "connection closed by the browser")
        else:
            self._end(ABNORMAL_CLOSURE, "connection lost")


def closed_by_browser(event: ConnectionTerminated) -> bool:
    """Whether the page's browser closed the connection on purpose: HTTP/3's "no error" (H3_NO_ERROR).

    Firefox leaving a page sometimes closes the connection so before the
    session's close that the page asked for in pagehide goes out (2 of 6
    leaves in tests/test_webtransport_calls.py here). A lost network sends
    nothing (the idle timeout ends it), and neither the server nor aioquic
    closes with H3_NO_ERROR: so a page that is gone is not taken for a drop,
    and no place is held for it while its partner is told "reconnecting".
    """
    return event.frame_type is None and event.error_code == ErrorCode.H3_NO_ERROR


class Connection(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3 on it, and at most one WebTransport session."""

    def __init__(self, quic: Any, stream_handler: Any = None, *, endpoint: Endpoint) -> None:
        super().__init__(quic, stream_handler)
        self.endpoint = endpoint
        self.h3: H3Connection | None = None
        self.session: WebTransportSession | None = None
        self.handler: asyncio.Task[None] | None = None  # on_session(), once the control stream opens
        self.deadline: asyncio.TimerHandle | None = None  # until then: when the session is given up
        self.refused = len(endpoint.unsessioned) >= endpoint.max_connections_without_session
        if not self.refused:
            endpoint.unsessioned.add(self)
        quic._ack_delay = ACK_DELAY

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if not self.refused:
            self.deadline = self._loop.call_later(CONTROL_STREAM_TIMEOUT, self.close)

    def settled(self) -> None:
        """The connection has its session, or has ended: it counts no more among those without one."""
        self.endpoint.unsessioned.discard(self)
        if self.deadline is not None:
            self.deadline.cancel()

    # Acknowledgements (the server's cost per datagram: docs/performance.md). aioquic acknowledges a
    # packet 1 ms after it arrives, and puts an ACK only in a packet that leaves once the ACK is due: in a
    # call, where a page sends a datagram and gets one every 20 ms, nearly every datagram received cost
    # a packet of its own a millisecond later, an ACK alone, built, encrypted and sent by a timer. Here an
    # ACK waits up to ACK_DELAY, rides on the next audio datagram to the page, and goes alone only when
    # none leaves in time; and a datagram received is answered by nothing but that timer.

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """A UDP datagram from the page: aioquic reads it; what it calls for is sent now, or on the timer.

        Once the session's control stream is open, a packet from the page asks
        for nothing at once: the audio it brings leaves on the partner's
        connection, its ACK on the next datagram or the timer, and a control
        line is answered by the handler, which sends its own. Only audio that
        congestion control held back is sent now (the page's ACK may free it).
        Before that (the handshake, the CONNECT), every answer leaves at once.
        """
        quic = self._quic
        quic.receive_datagram(data, addr, now=self._loop.time())
        if self.refused:  # too many connections without a session: close this one in its first packet
            self.refused = False
            quic.close(error_code=QuicErrorCode.CONNECTION_REFUSED, reason_phrase="busy: too many handshakes")
        self._process_events()
        session = self.session
        if session is None or session.control_stream is None or quic._datagrams_pending:
            self.transmit()
        else:
            self.arm_timer()

    def transmit(self) -> None:
        """Send what aioquic holds but audio too late to play, an ACK still waiting riding on the audio, and arm
        the timer."""
        quic = self._quic
        if quic._datagrams_pending and self.session is not None:
            self.session.drop_late_audio(self._loop.time())
        if quic._datagrams_pending:
            space = quic._spaces[tls.Epoch.ONE_RTT]
            if space.ack_at is not None:
                space.ack_at = self._loop.time()  # due now, so that aioquic writes it into this packet
        super().transmit()

    def arm_timer(self) -> None:
        """Arm the timer for aioquic's next deadline, as aioquic's own transmit() does after sending."""
        timer_at = self._quic.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            self.h3 = SessionSettingsH3(self._quic, enable_webtransport=True)
        elif isinstance(event, ConnectionTerminated):
            if self.session is not None:
                self.session.connection_lost(event)
            self.settled()
        if self.h3 is not None:
            for http_event in self.h3.handle_event(event):
                self.http_event_received(http_event)

    def http_event_received(self, event: H3Event) -> None:
        session = self.session
        if isinstance(event, DatagramReceived):
            if session is not None and event.stream_id == session.session_id:
                session.datagram_received(event.data)
        elif isinstance(event, WebTransportStreamDataReceived):
            self.stream_received(event)
        elif isinstance(event, HeadersReceived):
            if session is None or event.stream_id != session.session_id:
                self.request_received(event)
        elif isinstance(event, DataReceived):
            if session is not None and event.stream_id == session.session_id:
                session.capsules_received(event.data, event.stream_ended)

    def request_received(self, event: HeadersReceived) -> None:
        """A request: open a session if it is a WebTransport CONNECT at /wt that admit() lets through."""
        headers = {name: value for name, value in event.headers}
        method, protocol = headers.get(b":method"), headers.get(b":protocol")
        path = headers.get(b":path", b"").decode("latin-1")
        if method != b"CONNECT" or protocol != b"webtransport" or path.split("?", 1)[0] != PATH:
            return self.answer(event.stream_id, 404, f"Only WebTransport sessions at {PATH} are served here.")
        if self.session is not None:
            return self.answer(event.stream_id, 429, "One WebTransport session per connection.")
        if len(self.endpoint.sessions) >= self.endpoint.max_sessions:
            self.endpoint.refused_busy += 1
            return self.answer(event.stream_id, 503, BUSY)
        origin = headers.get(b"origin")
        request = WebTransportRequest(
            path=path,
            authority=headers.get(b":authority", b"").decode("latin-1"),
            origin=None if origin is None else origin.decode("latin-1"),
        )
        refusal = self.endpoint.admit(request)
        if refusal is not None:
            return self.answer(event.stream_id, refusal.status, refusal.line)
        self.session = WebTransportSession(self, event.stream_id, request)
        self.endpoint.sessions.add(self.session)
        self.settled()
        self.h3.send_headers(event.stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")])
        self.transmit()
        self.deadline = self._loop.call_later(
            CONTROL_STREAM_TIMEOUT, self.session.close_now, 1002, "no control stream opened"
        )

    def answer(self, stream_id: int, status: int, line: str) -> None:
        """Refuse a request with a status and one line of text."""
        self.h3.send_headers(stream_id, [(b":status", str(status).encode()), (b"content-type", b"text/plain; charset=utf-8")])
        self.h3.send_data(stream_id, f"{line}\n".encode(), end_stream=True)
        self.transmit()

    def stream_received(self, event: WebTransportStreamDataReceived) -> None:
        """Data on a WebTransport stream: the session's one control stream, opened by the page."""
        session = self.session
        if session is None or event.session_id != session.session_id:
            return self._quic.stop_stream(event.stream_id, 0)
        if session.control_stream is None:
            if event.stream_id % 4 != 0:  # not a bidirectional stream the page opened
                return session.refuse(1002, "open the control stream as a bidirectional stream")
            session.control_stream = event.stream_id
            self.deadline.cancel()
            self.handler = self._loop.create_task(self.endpoint.on_session(session))
        elif event.stream_id != session.control_stream:
            return session.refuse(1002, "one control stream per session")
        session.control_received(event.data, event.stream_ended)


@dataclass
class Endpoint:
    """The WebTransport endpoint: UDP sockets, the certificate, and the sessions open now."""

    admit: Admit
    on_session: OnSession
    on_audio: OnAudio
    certificate: ServerCertificate
    names: Sequence[str] | None = None  # the certificate was made here, for these names: renew it before it expires
    sessions: set[WebTransportSession] = field(default_factory=set)
    servers: list[QuicServer] = field(default_factory=list)
    port: int = 0
    configuration: QuicConfiguration | None = None
    max_sessions: int = MAX_SESSIONS
    max_connections_without_session: int = MAX_CONNECTIONS_WITHOUT_SESSION
    unsessioned: set[Connection] = field(default_factory=set)
    # Counters for /metrics: plain integers, bumped per datagram.
    datagrams_received: int = 0
    datagrams_sent: int = 0
    datagrams_dropped: int = 0  # too big, or aioquic's queue full (the relay's own drops are the lobby's)
    refused_busy: int = 0  # sessions refused past max_sessions

    def offer(self) -> dict[str, object]:
        """What a page needs to open a session: the UDP port, and the certificate's hash if it must name it."""
        hashes = [] if self.certificate.hash is None else [self.certificate.hash.hex()]
        return {"port": self.port, "path": PATH, "certificateHashes": hashes}

    def use_certificate(self, certificate: ServerCertificate) -> None:
        """Serve this certificate to new connections (those open keep theirs)."""
        self.certificate = certificate
        if self.configuration is not None:
            self.configuration.certificate = certificate.chain[0]
            self.configuration.certificate_chain = list(certificate.chain[1:])
            self.configuration.private_key = certificate.key

    async def renew(self, names: Sequence[str]) -> None:
        """Make a new certificate every RENEW_AFTER_DAYS, days before the one served expires."""
        while True:
            await asyncio.sleep(RENEW_AFTER_DAYS * 86400)
            self.use_certificate(generate_certificate(names))
            log.info("webtransport: new certificate, sha-256 %s", self.certificate.hash.hex())


def quic_configuration(certificate: ServerCertificate, idle_timeout: float) -> QuicConfiguration:
    """QUIC for HTTP/3 with datagrams, serving this certificate."""
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=H3_ALPN,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME,
        idle_timeout=idle_timeout,
        # Control lines are short: a small window bounds what one page can make us buffer.
        max_stream_data=64 * 1024,
        max_data=256 * 1024,
        congestion_control_algorithm="duoduel-audio",
    )
    configuration.certificate = certificate.chain[0]
    configuration.certificate_chain = list(certificate.chain[1:])
    configuration.private_key = certificate.key
    return configuration


def udp_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Bind a UDP socket on every address host resolves to, all on one port (the first's, if port is 0).

    "localhost" is both loopback addresses, whatever /etc/hosts says: browsers
    resolve it themselves (Chromium to ::1 first), and QUIC, unlike TCP, is not
    tried on the other address when the first does not answer.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    addresses = dict.fromkeys((family, address[0]) for family, _, _, _, address in infos)
    optional = set()
    if host == "localhost":
        optional = {(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")} - set(addresses)
        addresses.update(dict.fromkeys(sorted(optional)))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
            except OSError:
                if (family, address) in optional:
                    continue  # no IPv6 here
                raise
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port))
            except OSError:
                if (family, address) not in optional:
                    raise
                sockets.pop().close()
                continue
            port = sock.getsockname()[1]
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@contextlib.asynccontextmanager
async def serve(
    host: str | None,
    port: int,
    certificate: ServerCertificate,
    *,
    admit: Admit,
    on_session: OnSession,
    on_audio: OnAudio,
    names: Sequence[str] | None = None,
    idle_timeout: float = IDLE_TIMEOUT,
    retry: bool = True,
    max_sessions: int = MAX_SESSIONS,
    max_connections_without_session: int = MAX_CONNECTIONS_WITHOUT_SESSION,
) -> AsyncIterator[Endpoint]:
    """Serve WebTransport on UDP while in the context; on exit, close every connection.

    names: the certificate was made by generate_certificate(names); a new one
    is made every RENEW_AFTER_DAYS, before it expires.

    retry: validate every client's address with a Retry packet before keeping
    any state for it (RFC 9000 section 8.1), so that a spoofed address cannot
    make the server hold connections, nor send more than a Retry to a victim.

    max_sessions: sessions open at once, past which a CONNECT is answered 503;
    max_connections_without_session: QUIC connections still without a
    session, past which a new connection is refused in its first packet.
    """
    endpoint = Endpoint(admit, on_session, on_audio, certificate, names, max_sessions=max_sessions,
                        max_connections_without_session=max_connections_without_session)
    endpoint.configuration = quic_configuration(certificate, idle_timeout)
    loop = asyncio.get_running_loop()
    factory = functools.partial(Connection, endpoint=endpoint)
    renewal = loop.create_task(endpoint.renew(names)) if names is not None else None
    try:
        for sock in udp_sockets(host, port):
            _, server = await loop.create_datagram_endpoint(
                lambda: QuicServer(configuration=endpoint.configuration, create_protocol=factory, retry=retry),
                sock=sock,
            )
            endpoint.servers.append(server)
            endpoint.port = sock.getsockname()[1]
        yield endpoint
    finally:
        if renewal is not None:
            renewal.cancel()
        closing = list(endpoint.sessions)
        for session in closing:
            session.close_now(1001, "server shutting down")
        if closing:  # give the pages a moment to read why
            await asyncio.wait([loop.create_task(session.wait_gone()) for session in closing], timeout=CLOSE_GRACE)
        for server in endpoint.servers:
            server.close()
