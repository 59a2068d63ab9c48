"""A raw WebTransport client on aioquic's client side, for tests and benches: what a page does, and what a
hostile client might.

    async with open_session(port, "/wt?room=a", certificate) as session:
        session.send_line('{"type": "ping", "t": 1}')   # opens the control stream with its first bytes
        print(await session.line())
        session.send_datagram(frame)
        print(await session.datagram())

Every wait has a deadline (asyncio.timeout in the helpers), so a server that stops answering fails the
test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError, encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from cryptography.hazmat.primitives import serialization

TIMEOUT_S = 5
CLOSE_WEBTRANSPORT_SESSION = 0x2843


@dataclass
class Closed:
    """How a session ended, as the client saw it: the close capsule's code and reason, or the connection's end."""

    code: int | None
    reason: str


class ClientConnection(QuicConnectionProtocol):
    """HTTP/3 with WebTransport on the client side; events go to the one session it opens."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session: Session | None = None
        self.settings: dict[int, int] | None = None  # the server's SETTINGS, once received

    def quic_event_received(self, event: QuicEvent) -> None:
        for http_event in self.h3.handle_event(event):
            self.http_event_received(http_event)
        if self.h3._received_settings is not None:
            self.settings = dict(self.h3._received_settings)
        if isinstance(event, ConnectionTerminated) and self.session is not None:
            self.session.ended(Closed(None, event.reason_phrase))

    def http_event_received(self, event: H3Event) -> None:
        session = self.session
        if session is None:
            return
        if isinstance(event, HeadersReceived) and event.stream_id == session.session_id:
            headers = dict(event.headers)
            if not session.response.done():
                session.response.set_result(int(headers[b":status"]))
            if event.stream_ended:
                session.ended(Closed(None, "stream ended"))
        elif isinstance(event, DataReceived) and event.stream_id == session.session_id:
            session.connect_data_received(event.data, event.stream_ended)
        elif isinstance(event, WebTransportStreamDataReceived):
            session.stream_data_received(event.stream_id, event.data)
        elif isinstance(event, DatagramReceived) and event.stream_id == session.session_id:
            session.datagrams.put_nowait(event.data)


class Session:
    """A WebTransport session (or the attempt at one) seen from the client."""

    def __init__(self, connection: ClientConnection, session_id: int) -> None:
        self.connection = connection
        self.session_id = session_id
        self.response: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[Closed] = asyncio.get_running_loop().create_future()
        self.body = b""  # what the CONNECT stream carried after the headers (a refusal's text, or capsules)
        self.control_stream: int | None = None
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self._partial = b""

    @property
    def h3(self) -> H3Connection:
        return self.connection.h3

    def ended(self, how: Closed) -> None:
        if not self.closed.done():
            self.closed.set_result(how)

    def connect_data_received(self, data: bytes, ended: bool) -> None:
        self.body += data
        buffer = Buffer(data=self.body)
        with contextlib.suppress(BufferReadError):
            while not buffer.eof():
                kind, length = buffer.pull_uint_var(), buffer.pull_uint_var()
                payload = buffer.pull_bytes(length)
                if kind == CLOSE_WEBTRANSPORT_SESSION:
                    self.ended(Closed(int.from_bytes(payload[:4], "big"), payload[4:].decode()))
        if ended:
            self.ended(Closed(None, "stream ended"))

    def stream_data_received(self, stream_id: int, data: bytes) -> None:
        if stream_id != self.control_stream:
            return
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            self.lines.put_nowait(line.decode())

    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes on the control stream (opened by the first write)."""
        if self.control_stream is None:
            self.control_stream = self.h3.create_webtransport_stream(self.session_id)
            # aioquic's client would parse the server's answers on a stream it opened as HTTP/3 frames;
            # mark the stream as WebTransport's, as the server side marks the streams it receives.
            with self.h3._get_or_create_stream(self.control_stream) as stream:
                stream.frame_type, stream.session_id = FrameType.WEBTRANSPORT_STREAM, self.session_id
        self.connection._quic.send_stream_data(self.control_stream, data)
        self.connection.transmit()

    def send_line(self, text: str) -> None:
        self.send_bytes(text.encode() + b"\n")

    def open_stream(self, unidirectional: bool = False) -> int:
        """Open another stream on the session and write a byte on it (what no page does)."""
        stream_id = self.h3.create_webtransport_stream(self.session_id, is_unidirectional=unidirectional)
        self.connection._quic.send_stream_data(stream_id, b"x")
        self.connection.transmit()
        return stream_id

    def send_datagram(self, data: bytes) -> None:
        self.h3.send_datagram(self.session_id, data)
        self.connection.transmit()

    def close(self, code: int = 1000, reason: str = "", cut_at: int | None = None) -> None:
        """Close the session as a page does: the close capsule, then the end of the CONNECT stream.

        cut_at: send the capsule in two DATA frames, cut there, as a network may deliver it.
        """
        payload = code.to_bytes(4, "big") + reason.encode()
        capsule = encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(len(payload)) + payload
        if cut_at is not None:
            self.h3.send_data(self.session_id, capsule[:cut_at], end_stream=False)
            self.connection.transmit()
            capsule = capsule[cut_at:]
        self.h3.send_data(self.session_id, capsule, end_stream=True)
        self.connection.transmit()

    def close_connection(self, error_code: int, transport: bool = False) -> None:
        """Close the whole QUIC connection, not the session first: with an application error code (HTTP/3's) as
        Firefox does when a page it leaves goes before its session's close, or with a transport error code."""
        self.connection._quic.close(error_code=error_code, frame_type=0 if transport else None)
        self.connection.transmit()

    def drop(self) -> None:
        """Vanish without a word, as a page whose network went away: the server hears nothing more."""
        self.connection._transport.close()

    async def line(self, timeout: float = TIMEOUT_S) -> str:
        return await asyncio.wait_for(self.lines.get(), timeout)

    async def datagram(self, timeout: float = TIMEOUT_S) -> bytes:
        return await asyncio.wait_for(self.datagrams.get(), timeout)

    async def wait_closed(self, timeout: float = TIMEOUT_S) -> Closed:
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)


def client_configuration(certificate) -> QuicConfiguration:
    """QUIC for HTTP/3 with datagrams, trusting exactly the server's certificate (as a hash pins it).

    certificate: the server's ServerCertificate, or the hex SHA-256 of it (an offer's certificateHashes[0]),
    which connection() checks once connected, as a page's serverCertificateHashes does.
    """
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    if isinstance(certificate, str):
        configuration.verify_mode = ssl.CERT_NONE
        return configuration
    configuration.cadata = certificate.chain[-1].public_bytes(serialization.Encoding.PEM)
    configuration.verify_mode = ssl.CERT_REQUIRED
    configuration.server_name = "localhost"
    return configuration


@contextlib.asynccontextmanager
async def connection(port: int, certificate, host: str = "127.0.0.1",
                     sock: socket.socket | None = None) -> AsyncIterator[ClientConnection]:
    """A QUIC connection with HTTP/3 to the server, closed at the end.

    sock: a UDP socket to connect from (e.g. one in a network namespace: NetPath.socket()), else a new one.
    """
    async with asyncio.timeout(TIMEOUT_S):
        if sock is None:
            manager = connect(host, port, configuration=client_configuration(certificate), create_protocol=ClientConnection)
        else:
            manager = connect_from(sock, host, port, client_configuration(certificate))
        client = await manager.__aenter__()
    try:
        if isinstance(certificate, str):
            served = client._quic.tls._peer_certificate.public_bytes(serialization.Encoding.DER)
            assert hashlib.sha256(served).hexdigest() == certificate, "the server's certificate is not the pinned one"
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(manager.__aexit__(None, None, None), TIMEOUT_S)


@contextlib.asynccontextmanager
async def connect_from(sock: socket.socket, host: str, port: int,
                       configuration: QuicConfiguration) -> AsyncIterator[ClientConnection]:
    """aioquic's connect(), from a socket made elsewhere."""
    sock.setblocking(False)
    _, client = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: ClientConnection(QuicConnection(configuration=configuration)), sock=sock)
    try:
        client.connect((host, port))
        await client.wait_connected()
        yield client
    finally:
        client.close()
        await client.wait_closed()


def request(client: ClientConnection, port: int, path: str, origin: str | None = None,
            protocol: bytes = b"webtransport", method: bytes = b"CONNECT") -> Session:
    """Send an extended CONNECT (or any request) and return the session it may open."""
    stream_id = client._quic.get_next_available_stream_id()
    headers = [(b":method", method), (b":scheme", b"https"), (b":authority", f"localhost:{port}".encode()),
               (b":path", path.encode())]
    if method == b"CONNECT":
        headers.insert(1, (b":protocol", protocol))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    client.session = Session(client, stream_id)
    client.h3.send_headers(stream_id, headers, end_stream=method != b"CONNECT")
    client.transmit()
    return client.session


@contextlib.asynccontextmanager
async def open_session(port: int, path: str, certificate, origin: str | None = None,
                       host: str = "127.0.0.1", sock: socket.socket | None = None) -> AsyncIterator[Session]:
    """Open a session (the server must accept it: status 200) and yield it."""
    async with connection(port, certificate, host, sock) as client:
        session = request(client, port, path, origin)
        status = await asyncio.wait_for(asyncio.shield(session.response), TIMEOUT_S)
        assert status == 200, f"the server refused the session: {status} {session.body!r}"
        yield session
