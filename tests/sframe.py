"""A private room's frames sealed as a page seals them (static/sframe.js, static/e2ee.js), in Python: for scripted
room members that must be heard by real pages (bench/group_page.py), and to check the page's format from outside.

    sender = RoomSender(room_key_from_link("ZHVvZHVlbCB0ZXN0IGtleQ"), "room-name")
    message = sender.seal(frame)   # the SFrame ciphertext of one duoduel frame: header, AES-GCM, tag

SFrame (RFC 9605) with AES_128_GCM_SHA256_128; a sender's base key is HKDF-SHA256 of the room's key, salted with
"duoduel room " + the room's name, for "duoduel sender " + its KID (docs/design.md, End-to-end encryption). AES-GCM
is the `cryptography` package's; HKDF is written out with hmac, as RFC 5869 gives it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CIPHER_SUITE = 0x0004
KEY_BYTES, NONCE_BYTES = 16, 12


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract, then expand to length bytes."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def encode_header(kid: int, ctr: int) -> bytes:
    """RFC 9605's header: a config byte |X|KKK|Y|CCC|, then KID and CTR in as few big-endian bytes as they need."""
    def field(value: int) -> tuple[int, bytes]:
        if value < 8:
            return value, b""
        data = value.to_bytes(max(1, -(-value.bit_length() // 8)), "big")
        return 0x8 | (len(data) - 1), data

    k, kid_bytes = field(kid)
    c, ctr_bytes = field(ctr)
    return bytes([k << 4 | c]) + kid_bytes + ctr_bytes


def sframe_key_salt(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """sframe_key and sframe_salt for one KID (RFC 9605, section 4.4.2)."""
    suffix = kid.to_bytes(8, "big") + CIPHER_SUITE.to_bytes(2, "big")
    return (hkdf(base_key, b"", b"SFrame 1.0 Secret key " + suffix, KEY_BYTES),
            hkdf(base_key, b"", b"SFrame 1.0 Secret salt " + suffix, NONCE_BYTES))


def seal(key: bytes, salt: bytes, kid: int, ctr: int, plaintext: bytes, metadata: bytes = b"") -> bytes:
    """Header + AES-GCM(plaintext), with the header (and metadata) as associated data."""
    header = encode_header(kid, ctr)
    nonce = (int.from_bytes(salt, "big") ^ ctr).to_bytes(NONCE_BYTES, "big")
    return header + AESGCM(key).encrypt(nonce, plaintext, header + metadata)


def room_key_from_link(fragment: str) -> bytes:
    """The 16 bytes of a room's key as its link spells it after "#"."""
    key = base64.urlsafe_b64decode(fragment + "==")
    assert len(key) == 16, fragment
    return key


class RoomSender:
    """One member of a private room: a KID of its own, its counter from 0."""

    def __init__(self, room_key: bytes, room: str, kid: int | None = None):
        self.kid = secrets.randbits(64) if kid is None else kid
        base_key = hkdf(room_key, f"duoduel room {room}".encode(), b"duoduel sender " + self.kid.to_bytes(8, "big"), 16)
        self._key, self._salt = sframe_key_salt(base_key, self.kid)
        self.ctr = 0

    def seal(self, frame: bytes) -> bytes:
        sealed = seal(self._key, self._salt, self.kid, self.ctr, frame)
        self.ctr += 1
        return sealed
