"""The WebSocket as a Link, on two routes, and every websockets internal that duoduel uses.

The public route (WebSocketLink) takes every message from websockets' parser,
through the handler's `async for`. The fast route (FastWebSocketLink) cuts
complete audio frames from the byte stream itself and hands them straight to
relay(); the server takes it when check_fast_route() passes at start-up.

websockets internals: everything duoduel uses of websockets that websockets
does not document is in this module. Both routes use the first; only the fast
route uses the others.

1. connection_made(): websockets' asyncio connection is the asyncio Protocol of
   its socket. Both routes keep the transport it is given: deliver() reads its
   write buffer's size as the receiver's backlog, and the fast route writes
   audio frames to it.
2. apply_mask (websockets.speedups, or websockets.utils without the C
   extension) unmasks a payload.
3. Connection.data_received: FastWebSocketLink overrides it, keeps the complete
   final binary frames, and passes every other frame on whole to
   super().data_received(), which parses it as if it had read it itself.
4. protocol.state, the sans-I/O state under the public websocket.state
   property: read directly, once per read for the sender and once per frame
   for the receiver, to relay nothing to or from a closing connection.
5. Writing a whole frame with a header of our own straight to the transport.
   Safe because websockets too writes only whole frames, duoduel never sends
   a fragmented message, and compression is off.
6. The fragmented flag mirrors websockets' parser: "inside a fragmented
   message", from the data frames we pass on. A binary frame inside one must
   reach websockets, which refuses it (RFC 6455 5.4).

check_fast_route() exercises 2 to 6 through a real connection on loopback at
start-up; if anything fails, duoduel logs one warning and takes the public
route instead. The public route relies on 1 alone, which every test exercises.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.protocol import State

from core.config import MAX_MESSAGE_BYTES, Config
from core.lobby import Client, Lobby
from core.relay import flooding, relay

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    try:
        from websockets.utils import apply_mask
    except ImportError:
        apply_mask = None  # the self-check then chooses the public route


class WebSocketLink(ServerConnection):
    """A WebSocket as a Link, through websockets' public API: the public route.

    Every message comes out of websockets' parser into the handler's `async
    for`, which hands binary ones to relay(); audio goes out with broadcast(),
    which never waits. Slower than the fast route, just as safe: the backlog
    drop, the stall close, the rate and size limits all hold.
    """

    kind = "websocket"  # Link.kind
    wire: asyncio.Transport
    backlog: Callable[[], int]  # Link.backlog(): the transport's own method, with no call of ours around it per frame

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.wire = transport  # type: ignore[assignment]
        self.backlog = self.wire.get_write_buffer_size
        super().connection_made(transport)

    @property
    def is_open(self) -> bool:
        """Open for relaying: neither closing nor closed."""
        return self.state is State.OPEN

    def send_text(self, message: str) -> None:
        """Queue a control message at once; nothing if the connection is closing.

        websockets' send() waits for a slow reader to drain its buffer, and
        nothing may wait for another client. broadcast() writes at once and
        skips a connection that is not open: exactly this, through its public API.
        """
        broadcast((self,), message)

    def send_frame(self, frame: bytes) -> bool:
        """Queue an audio frame at once; return False if the connection is closing."""
        if self.state is not State.OPEN:
            return False
        broadcast((self,), frame)
        return True

    def start_relay(self, lobby: Lobby, client: Client) -> None:
        """From now on the client's audio goes to relay(): here, through the handler's loop."""

    def stop_relay(self) -> None:
        """The client resumed on another link: relay nothing more from this one (the handler's loop stops)."""


async def choose_route(config: Config) -> tuple[type[WebSocketLink], str | None]:
    """The fast route if the configuration allows it and the self-check passes, else the public route; and why not."""
    if config.relay_route == "public":
        return WebSocketLink, None
    problem = await check_fast_route()
    return (WebSocketLink, problem) if problem is not None else (FastWebSocketLink, None)


# The fast route.

# A server's frames are unmasked: the header is all the framing there is.
SHORT_HEADERS = [bytes((0x82, length)) for length in range(126)]  # an Opus frame's, ready-made
MEDIUM_HEADER = struct.Struct("!BBH").pack
LONG_HEADER = struct.Struct("!BBQ").pack


def binary_header(length: int) -> bytes:
    """The RFC 6455 header of a final, unmasked binary frame of this length."""
    if length < 126:
        return SHORT_HEADERS[length]
    if length < 65536:
        return MEDIUM_HEADER(0x82, 126, length)
    return LONG_HEADER(0x82, 127, length)


class FastWebSocketLink(WebSocketLink):
    """A WebSocket as a Link that cuts complete binary frames from the byte stream itself: the fast route.

    websockets parses frames with generators and hands each message to the
    handler through a queue, a future and a task switch: most of the server's
    CPU per audio frame. Here each complete, final, masked binary frame goes
    straight to relay(); every other frame (text, ping, pong, close, fragments)
    is fed whole to websockets, which stays in step because it only ever sees
    whole frames. read_header() reads headers; this class is the state machine.
    """

    lobby: Lobby
    client: Client | None = None  # set by start_relay()
    cutting: bool | None = None  # decided when the first bytes after the handshake arrive
    pending: bytes = b""  # the start of a frame still incomplete
    fragmented: bool = False  # websockets is inside a fragmented message
    request_tail: bytes = b""  # the last bytes of the request so far, to find its end across reads
    early: bool | None = None  # None until the request's end is seen; then, did bytes follow it?

    def start_relay(self, lobby: Lobby, client: Client) -> None:
        """From now on, the client's complete audio frames go straight from the socket to relay()."""
        self.lobby, self.client = lobby, client

    def stop_relay(self) -> None:
        """The client resumed on another link: from now on every frame read here goes to websockets."""
        self.client = None

    def send_frame(self, frame: bytes) -> bool:
        """Queue an audio frame at once; return False if the connection is closing."""
        if self.protocol.state is not State.OPEN:
            return False
        length = len(frame)
        self.wire.write((SHORT_HEADERS[length] if length < 126 else binary_header(length)) + frame)
        return True

    def data_received(self, data: bytes) -> None:
        if not self.cutting:
            if self.cutting is None:
                if self.state is State.CONNECTING:
                    self.watch_request(data)
                else:
                    # RFC 6455 4.1: a client sends no frame before the server's
                    # 101. One that did may have had part of a frame parsed by
                    # websockets already: then websockets parses this connection
                    # alone, since we cannot tell where its next frame starts.
                    self.cutting = self.early is False
            if not self.cutting:
                return super().data_received(data)
        if self.pending:
            data, self.pending = self.pending + data, b""
        client = self.client
        # The state changes during this call only through what we feed websockets.
        relaying = client is not None and self.protocol.state is State.OPEN
        start, size_of_data = 0, len(data)
        while start < size_of_data:
            header = read_header(data, start)
            if header is None:
                self.pending = data[start:]
                return
            if type(header) is Refusal:
                # websockets fails the connection with the right close code.
                self.cutting = False
                return super().data_received(data[start:])
            fin, opcode, length, size = header
            end = start + size + length
            if end > size_of_data:
                self.pending = data[start:]
                return
            if opcode == 2 and fin and relaying and not self.fragmented:
                payload = start + size
                if not flooding(self.lobby, client):
                    relay(self.lobby, client, apply_mask(data[payload:end], data[payload - 4 : payload]))
            else:
                if opcode < 3:  # a data frame: its message goes on unless FIN is set
                    self.fragmented = not fin
                super().data_received(data if end - start == size_of_data else data[start:end])
                relaying = client is not None and self.protocol.state is State.OPEN
            start = end

    def watch_request(self, data: bytes) -> None:
        """Before the 101: note whether any byte follows the end of the HTTP request."""
        if self.early is not None:
            self.early = True
            return
        seen = self.request_tail + data
        end = seen.find(b"\r\n\r\n")  # websockets requires CRLF: the first empty line ends the headers
        if end < 0:
            self.request_tail = seen[-3:]
        else:
            self.early = end + 4 < len(seen)


# Reading a client's frame header (RFC 6455 5.2): a pure function, tested
# without a socket in tests/test_frame_header.py.

FrameHeader = tuple[bool, int, int, int]
"""(fin, opcode, payload length, header size) of a masked client frame.

A plain tuple: it is made once per audio frame, and a NamedTuple costs three
times as much to make. The masking key is the last 4 bytes of the header.
"""


@dataclass(frozen=True)
class Refusal:
    """A header no client may send: the close code RFC 6455 gives it, and why."""

    code: int
    reason: str


def read_header(data: bytes, start: int = 0, max_length: int = MAX_MESSAGE_BYTES) -> FrameHeader | Refusal | None:
    """Read the header of the client frame at data[start:]; None if more bytes are needed.

    Refuses, as soon as the bytes present tell, reserved bits (no extension is
    ever agreed), unknown opcodes, unmasked frames, fragmented or long control
    frames, and payloads over max_length.
    """
    available = len(data) - start
    if available < 2:
        return None
    first = data[start]
    second = data[start + 1]
    opcode = first & 0x0F
    length = second & 0x7F
    if first & 0x70:
        return Refusal(1002, "reserved bits set, but no extension was agreed")
    if opcode > 2 and not 8 <= opcode <= 10:
        return Refusal(1002, f"unknown opcode {opcode}")
    if not second & 0x80:
        return Refusal(1002, "unmasked frame from a client")
    if opcode >= 8 and (length > 125 or first < 128):
        return Refusal(1002, "control frame fragmented or over 125 bytes")
    if length < 126:
        size = 6
    elif length == 126:
        if available < 4:
            return None
        length = data[start + 2] << 8 | data[start + 3]
        size = 8
    else:
        if available < 10:
            return None
        length = int.from_bytes(data[start + 2 : start + 10], "big")
        if length >> 63:
            return Refusal(1002, "payload length with its most significant bit set")
        size = 14
    if length > max_length:
        return Refusal(1009, f"frame of {length} bytes, over the limit of {max_length}")
    if available < size:
        return None
    return (first > 127, opcode, length, size)


async def check_fast_route() -> str | None:
    """Relay frames through a FastWebSocketLink on loopback; return what went wrong, or None.

    One client is its own partner. Two binary frames (7-bit and 16-bit lengths)
    must come back whole through relay(), and a text frame between them must
    reach the handler through websockets and be answered with send_text().
    """
    if apply_mask is None:
        return "websockets has no apply_mask"
    lobby = Lobby()

    async def echo(websocket: FastWebSocketLink) -> None:
        client = Client(websocket, None, "self-check")
        client.partner = client
        websocket.start_relay(lobby, client)
        async for message in websocket:
            if isinstance(message, str):
                websocket.send_text(message)

    short, medium, text = bytes(range(120)), bytes(range(256)) * 2, b'{"type": "ping"}'
    try:
        async with asyncio.timeout(5), serve(
            echo, "127.0.0.1", 0, create_connection=FastWebSocketLink, compression=None, max_size=MAX_MESSAGE_BYTES
        ) as server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            try:
                writer.write(
                    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                if not (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101"):
                    return "the handshake failed"
                writer.write(masked_frame(0x82, short) + masked_frame(0x81, text) + masked_frame(0x82, medium))
                got = [await read_frame(reader) for _ in range(3)]
                writer.write(masked_frame(0x88, (1000).to_bytes(2, "big")))
                if await read_frame(reader) != (0x88, (1000).to_bytes(2, "big")):
                    return "the close handshake failed"
            finally:
                writer.close()
    except Exception as exc:  # anything at all: the fast route is not for this websockets
        return f"{exc.__class__.__name__}: {exc}"
    if [frame for frame in got if frame[0] == 0x82] != [(0x82, short), (0x82, medium)] or (0x81, text) not in got:
        return "frames came back wrong"
    if lobby.metrics.frames_relayed != 2:
        return "audio did not take the fast route"
    return None


def masked_frame(first: int, payload: bytes, mask: bytes = b"\x5a\xc3\x0f\x96") -> bytes:
    """Encode a client's frame (RFC 6455 5.2), masked without apply_mask, for the self-check."""
    length = len(payload)
    size = bytes((length,)) if length < 126 else bytes((126,)) + length.to_bytes(2, "big")
    return bytes((first, 0x80 | size[0])) + size[1:] + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one unmasked server frame: its first byte and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length >= 126:
        length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8), "big")
    return first, await reader.readexactly(length)
