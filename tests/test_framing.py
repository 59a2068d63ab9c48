"""Whatever the packets, frames arrive whole and in order, and a broken frame closes only its sender: on both routes.

A raw TCP client writes WebSocket frames byte for byte as it likes; its partner is an ordinary websockets client. Every
test runs on the fast route (frames cut from the byte stream by duoduel) and on the public route (websockets alone).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

import duoduel
from conftest import join, receive_json, round_trip

pytestmark = pytest.mark.relay

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def client_frame(first_byte: int, payload: bytes, masked: bool = True, mask: bytes = MASK) -> bytes:
    """Encode one client-to-server frame (RFC 6455 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes([first_byte, length | (0x80 if masked else 0)])
    elif length < 65536:
        header = bytes([first_byte, 126 | (0x80 if masked else 0)]) + length.to_bytes(2, "big")
    else:
        header = bytes([first_byte, 127 | (0x80 if masked else 0)]) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    return header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


BINARY, TEXT_START, CONTINUATION_END, BINARY_START = 0x82, 0x01, 0x80, 0x02


@pytest.fixture(params=["auto", "public"])
def config(request) -> duoduel.Config:
    """Both relay routes: "auto" cuts frames itself (its self-check passes here), "public" leaves them to websockets."""
    return duoduel.Config(host="127.0.0.1", port=0, relay_route=request.param)


async def raw_client(running):
    """Open /ws by hand and read the 101; return the streams."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {running.host}:{running.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def expect_close(reader, writer, code: int) -> None:
    """Read the server's close frame, check its code, and answer it as a client does."""
    first, payload = await asyncio.wait_for(read_server_frame(reader), 5)
    assert (first, int.from_bytes(payload[:2], "big")) == (0x88, code)
    writer.write(client_frame(0x88, payload[:2]))
    writer.close()


async def read_server_frame(reader) -> tuple[int, bytes]:
    """Read one unmasked server frame: its first byte and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first, await reader.readexactly(length)


@pytest.fixture
async def raw_pair(server):
    """A raw client paired with a websockets client."""
    reader, writer = await raw_client(server)
    assert await read_server_frame(reader) == (0x81, b'{"type": "waiting"}')
    partner, told = await join(server)
    assert told == {"type": "connected"}
    assert await read_server_frame(reader) == (0x81, b'{"type": "connected"}')
    yield reader, writer, partner
    writer.close()
    await partner.close()


async def test_frames_split_across_packets_are_relayed_whole(raw_pair):
    """A frame that arrives a few bytes at a time is relayed once it is complete, byte for byte."""
    reader, writer, partner = raw_pair
    payloads = [os.urandom(size) for size in (1920, 120, 125, 126, 65535)]
    for payload in payloads:
        encoded = client_frame(BINARY, payload)
        for cut in range(0, len(encoded), 7):
            writer.write(encoded[cut : cut + 7])
            await writer.drain()
    for payload in payloads:
        assert await asyncio.wait_for(partner.recv(), 5) == payload


async def test_frames_batched_in_one_packet_are_all_relayed_in_order(raw_pair):
    """Many frames in one write, control messages between them: every one is handled, in order."""
    reader, writer, partner = raw_pair
    frames = [client_frame(BINARY, bytes([index]) * 200) for index in range(20)]
    ping = client_frame(TEXT_START | 0x80, json.dumps({"type": "ping", "t": 7}).encode())
    writer.write(b"".join(frames[:10]) + ping + b"".join(frames[10:]))
    await writer.drain()
    for index in range(20):
        assert await asyncio.wait_for(partner.recv(), 5) == bytes([index]) * 200
    assert await read_server_frame(reader) == (0x81, b'{"type": "pong", "t": 7}')


async def test_fragmented_binary_message_is_relayed_whole(raw_pair):
    """A binary message in two fragments reaches the partner as one message."""
    reader, writer, partner = raw_pair
    writer.write(client_frame(BINARY_START, b"first half, ") + client_frame(CONTINUATION_END, b"second half"))
    await writer.drain()
    assert await asyncio.wait_for(partner.recv(), 5) == b"first half, second half"


async def test_binary_frame_inside_a_fragmented_text_message_is_a_protocol_error(raw_pair):
    """A new message before the last one ended breaks RFC 6455: that client is closed with 1002, nothing relayed."""
    reader, writer, partner = raw_pair
    writer.write(client_frame(TEXT_START, b'{"type": ') + client_frame(BINARY, b"sneaked in"))
    await writer.drain()
    await expect_close(reader, writer, 1002)
    assert await receive_json(partner) == {"type": "disconnected"}
    assert await round_trip(partner) == []


async def test_unmasked_frame_is_a_protocol_error(raw_pair):
    """Clients must mask their frames: an unmasked one closes that client with 1002."""
    reader, writer, partner = raw_pair
    writer.write(client_frame(BINARY, b"in the clear", masked=False))
    await writer.drain()
    await expect_close(reader, writer, 1002)
    assert await receive_json(partner) == {"type": "disconnected"}


async def test_oversize_frame_announced_in_its_header_closes_with_1009(raw_pair):
    """A header announcing more than 64 KiB is refused before the payload is waited for."""
    reader, writer, partner = raw_pair
    writer.write(bytes([BINARY, 127 | 0x80]) + (1 << 40).to_bytes(8, "big") + MASK)
    await writer.drain()
    await expect_close(reader, writer, 1009)
    assert await receive_json(partner) == {"type": "disconnected"}


async def test_frame_split_inside_its_extended_length_is_relayed_whole(raw_pair):
    """A header cut between the two bytes of its 16-bit length, then again inside the masking key: one frame arrives."""
    reader, writer, partner = raw_pair
    payload = os.urandom(1920)
    encoded = client_frame(BINARY, payload)
    for piece in (encoded[:3], encoded[3:6], encoded[6:]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.01)  # let the server read each piece on its own
    assert await asyncio.wait_for(partner.recv(), 5) == payload


@pytest.mark.parametrize("early", [2, 5, 6], ids=["header", "header and part of the key", "header and key"])
async def test_audio_sent_before_the_handshake_completes_is_parsed_by_websockets_alone(server, early):
    """Bytes of a frame written before the 101 (RFC 6455 4.1 forbids it): that connection is parsed by websockets alone,
    whatever part of the frame it had consumed, and its audio still arrives whole."""
    partner, told = await join(server)
    assert told == {"type": "waiting"}
    # A masking key that reads as a binary frame's header: cutting from the wrong byte would relay garbage.
    early_frame = client_frame(BINARY, b"too early", mask=bytes([0x82, 0x85, 0x01, 0x02]))
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + early_frame[:early]
    )
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    assert await read_server_frame(reader) == (0x81, b'{"type": "connected"}')
    assert await receive_json(partner) == {"type": "connected"}
    writer.write(early_frame[early:] + client_frame(BINARY, b"and after"))
    await writer.drain()
    assert await asyncio.wait_for(partner.recv(), 5) == b"too early"
    assert await asyncio.wait_for(partner.recv(), 5) == b"and after"
    writer.close()
    await partner.close()


async def test_binary_flood_on_the_fast_path_closes_with_1008(raw_pair, config):
    """Complete binary frames far faster than audio: the sender is closed with 1008, its partner told."""
    reader, writer, partner = raw_pair
    writer.write(client_frame(BINARY, bytes(120)) * (2 * config.max_messages_per_second))
    await writer.drain()
    await expect_close(reader, writer, 1008)
    relayed = 0
    while isinstance(message := await asyncio.wait_for(partner.recv(), 5), bytes):
        relayed += 1
    assert json.loads(message) == {"type": "disconnected"}
    assert relayed <= config.max_messages_per_second + 1
