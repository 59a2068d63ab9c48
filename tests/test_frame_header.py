"""read_header alone, no socket: every header length cut at every byte, and every header a client may not send."""

from __future__ import annotations

import pytest

from core.config import MAX_MESSAGE_BYTES
from core.websocket import Refusal, read_header

pytestmark = pytest.mark.relay

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])
LARGE = 1 << 20  # a max_length that lets the 64-bit form through


def header(first: int, length: int, masked: bool = True) -> bytes:
    """The header of a client frame (RFC 6455 5.2), masking key included, in the shortest length form."""
    bit = 0x80 if masked else 0
    if length < 126:
        head = bytes([first, bit | length])
    elif length < 65536:
        head = bytes([first, bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + length.to_bytes(8, "big")
    return head + (MASK if masked else b"")


# (first byte, payload length, what read_header says: fin, opcode, payload length, header size)
VALID = [
    pytest.param(0x82, 0, (True, 2, 0, 6), id="empty binary"),
    pytest.param(0x82, 120, (True, 2, 120, 6), id="opus-sized binary, 7-bit length"),
    pytest.param(0x82, 125, (True, 2, 125, 6), id="longest 7-bit length"),
    pytest.param(0x82, 126, (True, 2, 126, 8), id="shortest 16-bit length"),
    pytest.param(0x82, 1920, (True, 2, 1920, 8), id="pcm16-sized binary, 16-bit length"),
    pytest.param(0x82, 65535, (True, 2, 65535, 8), id="longest 16-bit length"),
    pytest.param(0x82, 65536, (True, 2, 65536, 14), id="shortest 64-bit length"),
    pytest.param(0x02, 300, (False, 2, 300, 8), id="first fragment of a binary message"),
    pytest.param(0x00, 300, (False, 0, 300, 8), id="middle fragment"),
    pytest.param(0x80, 70000, (True, 0, 70000, 14), id="last fragment, 64-bit length"),
    pytest.param(0x81, 19, (True, 1, 19, 6), id="text"),
    pytest.param(0x88, 2, (True, 8, 2, 6), id="close"),
    pytest.param(0x89, 125, (True, 9, 125, 6), id="longest ping"),
    pytest.param(0x8A, 0, (True, 10, 0, 6), id="empty pong"),
]


@pytest.mark.parametrize(("first", "length", "expected"), VALID)
def test_a_complete_header_is_read(first, length, expected):
    """FIN, opcode, payload length and header size (masking key included) come out as sent."""
    assert read_header(header(first, length), max_length=LARGE) == expected


@pytest.mark.parametrize(("first", "length", "expected"), VALID)
def test_a_header_cut_at_any_byte_needs_more(first, length, expected):
    """Whatever byte a header is cut at, nothing is decided until the masking key is there too."""
    whole = header(first, length)
    for cut in range(len(whole)):
        assert read_header(whole[:cut], max_length=LARGE) is None, f"cut after {cut} bytes"


@pytest.mark.parametrize(("first", "length", "expected"), VALID)
def test_a_header_is_read_where_it_starts_whatever_surrounds_it(first, length, expected):
    """The previous frame's bytes before it and its payload after it change nothing."""
    before = header(0x82, 3) + b"abc"
    data = before + header(first, length) + bytes(min(length, 200))
    assert read_header(data, len(before), max_length=LARGE) == expected
    for cut in range(len(before), len(before) + len(header(first, length))):
        assert read_header(data[:cut], len(before), max_length=LARGE) is None


# (header bytes, close code, how many bytes it takes to tell)
REFUSED = [
    pytest.param(header(0x82, 10, masked=False), 1002, 2, id="unmasked binary"),
    pytest.param(header(0x82, 1920, masked=False), 1002, 2, id="unmasked, 16-bit length"),
    pytest.param(header(0x81, 5, masked=False), 1002, 2, id="unmasked text"),
    pytest.param(header(0xC2, 10), 1002, 2, id="RSV1 set"),
    pytest.param(header(0xA2, 10), 1002, 2, id="RSV2 set"),
    pytest.param(header(0x92, 10), 1002, 2, id="RSV3 set"),
    pytest.param(header(0x83, 10), 1002, 2, id="reserved data opcode 3"),
    pytest.param(header(0x87, 10), 1002, 2, id="reserved data opcode 7"),
    pytest.param(header(0x8B, 10), 1002, 2, id="reserved control opcode 0xB"),
    pytest.param(header(0x8F, 10), 1002, 2, id="reserved control opcode 0xF"),
    pytest.param(header(0x09, 4), 1002, 2, id="fragmented ping"),
    pytest.param(header(0x08, 2), 1002, 2, id="fragmented close"),
    pytest.param(header(0x89, 126), 1002, 2, id="ping over 125 bytes"),
    pytest.param(header(0x88, 70000), 1002, 2, id="close with a 64-bit length"),
    pytest.param(header(0x82, MAX_MESSAGE_BYTES + 1), 1009, 10, id="oversize, 64-bit length"),
    pytest.param(header(0x82, 1 << 40), 1009, 10, id="a terabyte announced"),
    pytest.param(bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + MASK, 1002, 10, id="64-bit length, top bit set"),
]


@pytest.mark.parametrize(("data", "code", "decided_at"), REFUSED)
def test_a_header_no_client_may_send_is_refused_as_soon_as_it_can_be_told(data, code, decided_at):
    """Too few bytes to tell: need more. From then on, whatever follows: refused, with the close code and why."""
    for cut in range(len(data) + 1):
        result = read_header(data[:cut])
        if cut < decided_at:
            assert result is None, f"cut after {cut} bytes"
        else:
            assert isinstance(result, Refusal) and result.code == code, f"cut after {cut} bytes: {result}"
            assert result.reason


def test_oversize_is_judged_against_the_limit_given():
    """A 16-bit length over a smaller limit is refused with 1009 once the length is there; at the limit it is not."""
    assert read_header(header(0x82, 1920)[:4], max_length=1919) == Refusal(1009, "frame of 1920 bytes, over the limit of 1919")
    assert read_header(header(0x82, 1920), max_length=1920) == (True, 2, 1920, 8)
    assert read_header(header(0x82, MAX_MESSAGE_BYTES)) == (True, 2, MAX_MESSAGE_BYTES, 14)
