// Tests for static/sframe.js: RFC 9605's test vectors for the suite duoduel uses, AES_128_GCM_SHA256_128.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  decodeHeader, decrypt, deriveKeySalt, deriveKeySaltBytes, encodeHeader, encrypt, nonce,
} from '../../static/sframe.js';

const hex = (text) => Uint8Array.from(text.match(/../g), (pair) => parseInt(pair, 16));
const toHex = (bytes) => Buffer.from(bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes).toString('hex');

// RFC 9605, Appendix C.1: headers (a selection covering the four forms and every length).
const HEADER_VECTORS = [
  [0x0n, 0x0n, '00'],
  [0x0n, 0x1n, '01'],
  [0x0n, 0xffn, '08ff'],
  [0x0n, 0x100n, '090100'],
  [0x0n, 0xffffffn, '0affffff'],
  [0x0n, 0x1000000n, '0b01000000'],
  [0x0n, 0x100000000n, '0c0100000000'],
  [0x0n, 0x10000000000n, '0d010000000000'],
  [0x0n, 0x1000000000000n, '0e01000000000000'],
  [0x0n, 0xffffffffffffffffn, '0fffffffffffffffff'],
  [0x1n, 0x0n, '10'],
  [0x1n, 0xffn, '18ff'],
  [0x1n, 0x10000n, '1a010000'],
  [0xffn, 0x0n, '80ff'],
  [0x100000000n, 0x0n, 'c00100000000'],
  [0xffffffffffffffffn, 0x0n, 'f0ffffffffffffffff'],
  [0xffffffffffffffffn, 0x1n, 'f1ffffffffffffffff'],
  [0xffffffffffffffffn, 0x100n, 'f9ffffffffffffffff0100'],
  [0xffffffffffffffffn, 0x100000000000000n, 'ffffffffffffffffff0100000000000000'],
  [0xffffffffffffffffn, 0xffffffffffffffffn, 'ffffffffffffffffffffffffffffffffff'],
];

test('sframe_headers_match_rfc_9605_appendix_c1', () => {
  for (const [kid, ctr, encoded] of HEADER_VECTORS) {
    assert.equal(toHex(encodeHeader(kid, ctr)), encoded, `kid ${kid} ctr ${ctr}`);
    assert.deepEqual(decodeHeader(hex(encoded)), { kid, ctr, length: encoded.length / 2 });
  }
});

test('sframe_header_decoding_refuses_a_truncated_header', () => {
  assert.equal(decodeHeader(new Uint8Array(0)), null);
  assert.equal(decodeHeader(hex('f9ffffffffffffffff01')), null);
  assert.throws(() => encodeHeader(-1n, 0n), RangeError);
  assert.throws(() => encodeHeader(0n, 1n << 64n), RangeError);
  assert.throws(() => encodeHeader(0, 0n), RangeError);
});

// RFC 9605, Appendix C.3: AES_128_GCM_SHA256_128 (0x0004), every intermediate value.
const C3 = {
  kid: 0x123n,
  ctr: 0x4567n,
  baseKey: '000102030405060708090a0b0c0d0e0f',
  sframeKey: 'd34f547f4ca4f9a7447006fe7fcbf768',
  sframeSalt: '75234edefe07819026751816',
  metadata: '4945544620534672616d65205747',
  nonce: '75234edefe07819026755d71',
  pt: '64726166742d696574662d736672616d652d656e63',
  ct: '9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb',
};

test('sframe_aes_128_gcm_sha256_128_matches_rfc_9605_appendix_c3_byte_for_byte', async () => {
  const bytes = await deriveKeySaltBytes(hex(C3.baseKey), C3.kid);
  assert.equal(toHex(bytes.key), C3.sframeKey);
  assert.equal(toHex(bytes.salt), C3.sframeSalt);
  const keys = await deriveKeySalt(hex(C3.baseKey), C3.kid);
  assert.equal(toHex(nonce(keys.salt, C3.ctr)), C3.nonce);
  const sealed = await encrypt(keys, C3.kid, C3.ctr, hex(C3.pt), hex(C3.metadata));
  assert.equal(toHex(sealed), C3.ct);
  const header = decodeHeader(hex(C3.ct));
  assert.equal(toHex(await decrypt(keys, header, hex(C3.ct), hex(C3.metadata))), C3.pt);
});

test('sframe_decrypt_rejects_any_changed_byte_and_a_changed_metadata', async () => {
  const keys = await deriveKeySalt(hex(C3.baseKey), C3.kid);
  const ct = hex(C3.ct);
  for (let i = 0; i < ct.length; i++) {
    const bad = Uint8Array.from(ct);
    bad[i] ^= 0x01;
    const header = decodeHeader(bad);
    await assert.rejects(decrypt(keys, header, bad, hex(C3.metadata)), `byte ${i}`);
  }
  await assert.rejects(decrypt(keys, decodeHeader(ct), ct, hex('00')));
});
