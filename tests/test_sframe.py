"""tests/sframe.py, the Python sealer that scripted room members use: RFC 9605's vector, and a frame it seals is
opened by the page's own code (static/e2ee.js, in node) as a room member's."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import ROOT
from sframe import RoomSender, encode_header, room_key_from_link, seal, sframe_key_salt

# RFC 9605, Appendix C.3: AES_128_GCM_SHA256_128 (0x0004).
C3 = {
    "kid": 0x123, "ctr": 0x4567,
    "base_key": "000102030405060708090a0b0c0d0e0f",
    "sframe_key": "d34f547f4ca4f9a7447006fe7fcbf768",
    "sframe_salt": "75234edefe07819026751816",
    "metadata": "4945544620534672616d65205747",
    "pt": "64726166742d696574662d736672616d652d656e63",
    "ct": "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb",
}

OPEN_IN_NODE = """
import { FrameOpener, KeyContext, roomKeyFromFragment } from './static/e2ee.js';
const [fragment, room, sealed] = JSON.parse(process.argv[1]);
const context = await KeyContext.forRoom(roomKeyFromFragment('#' + fragment), room);
const opener = new FrameOpener(context, {
  onFrame: (source, frame) => console.log(Buffer.from(frame).toString('hex')),
  onVerdict: (verdict) => verdict === 'wrong' && console.log('wrong'),
});
for (const hex of sealed) opener.open(0, Buffer.from(hex, 'hex'));
"""


def test_the_sealer_matches_rfc_9605_appendix_c3_byte_for_byte():
    """Key and salt derivation, header and AES-GCM give the RFC's ciphertext."""
    key, salt = sframe_key_salt(bytes.fromhex(C3["base_key"]), C3["kid"])
    assert (key.hex(), salt.hex()) == (C3["sframe_key"], C3["sframe_salt"])
    sealed = seal(key, salt, C3["kid"], C3["ctr"], bytes.fromhex(C3["pt"]), bytes.fromhex(C3["metadata"]))
    assert sealed.hex() == C3["ct"]
    assert [encode_header(k, c).hex() for k, c in ((0, 0), (0, 0xFF), (1, 0x10000), (2**64 - 1, 0x100))] == [
        "00", "08ff", "1a010000", "f9ffffffffffffffff0100"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_a_room_member_sealed_here_is_opened_by_the_page_code_and_only_with_the_room_key():
    """Three frames sealed with the room's key open in static/e2ee.js as they were; under another room's name
    (the same key) none does."""
    fragment = "ZHVvZHVlbCB0ZXN0IGtleQ"
    sender = RoomSender(room_key_from_link(fragment), "py-room")
    frames = [bytes([1, 1, n, 0]) + bytes(12) + bytes([n]) * 70 for n in range(3)]
    sealed = [sender.seal(frame).hex() for frame in frames]

    def opened(room: str) -> list[str]:
        run = subprocess.run(["node", "--input-type=module", "-e", OPEN_IN_NODE, json.dumps([fragment, room, sealed])],
                             cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        return run.stdout.split()

    assert opened("py-room") == [frame.hex() for frame in frames]
    assert opened("another-room") == []
