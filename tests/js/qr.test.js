// Tests for static/qr.js: the QR matrices it makes must decode back to their input.
//
// There is no QR scanner on CI machines, so tests/js/qr-decode.js is a small decoder written
// from ISO/IEC 18004, independently of the vendored encoder; it verifies the function
// patterns, format and version information and every Reed-Solomon block before reading bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { qrMatrix, svgPath, svgString, QUIET_ZONE } from '../../static/qr.js';
import { decodeQr, formatBits, versionBits, syndromes } from './qr-decode.js';

const decodeText = (modules) => new TextDecoder().decode(decodeQr(modules).bytes);

test('decoder_reference_values', () => {
  // Sanity-check the decoder against values printed in ISO/IEC 18004 (annexes C and D).
  assert.equal(formatBits(0b00, 0b101), 0b100000011001110); // level M, mask 5: 100000011001110
  assert.equal(formatBits(0b01, 0b000), 0b111011111000100); // level L, mask 0: 111011111000100
  assert.equal(versionBits(7), 0b000111110010010100); // version 7: 000111 110010010100
  // "01234567" 1-M from the standard's annex I: data + EC codewords form an intact RS codeword.
  const codeword = [
    0x10, 0x20, 0x0c, 0x56, 0x61, 0x80, 0xec, 0x11, 0xec, 0x11, 0xec, 0x11, 0xec, 0x11, 0xec, 0x11,
    0xa5, 0x24, 0xd4, 0xc1, 0xed, 0x36, 0xc7, 0x87, 0x2c, 0x55,
  ];
  assert.deepEqual(syndromes(codeword, 10), new Array(10).fill(0));
  codeword[3] ^= 1;
  assert.notDeepEqual(syndromes(codeword, 10), new Array(10).fill(0));
});

test('qrMatrix_room_url_round_trips', () => {
  const url = 'https://duoduel.example:8443/r/Ab3_-xYz0123456789abcd';
  const { version, size, modules } = qrMatrix(url);
  assert.equal(size, 17 + 4 * version);
  assert.equal(modules.length, size);
  assert.ok(modules.every((line) => line.length === size && line.every((m) => typeof m === 'boolean')));
  const decoded = decodeQr(modules);
  assert.equal(decoded.ecl, 'M');
  assert.equal(new TextDecoder().decode(decoded.bytes), url);
});

test('qrMatrix_finder_patterns_in_place', () => {
  const { size, modules } = qrMatrix('http://localhost:8080/r/x');
  for (const [r0, c0] of [[0, 0], [0, size - 7], [size - 7, 0]]) {
    for (let r = 0; r < 7; r++) {
      for (let c = 0; c < 7; c++) {
        const d = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        assert.equal(modules[r0 + r][c0 + c], d !== 2, `finder ${r0},${c0} at ${r},${c}`);
      }
    }
  }
});

test('qrMatrix_every_version_1_to_10_round_trips', () => {
  // Byte capacity at level M per version (ISO/IEC 18004 table 7): the longest text fits exactly.
  const capacity = [14, 26, 42, 62, 84, 106, 122, 152, 180, 213];
  capacity.forEach((bytes, i) => {
    const text = 'h'.repeat(bytes - 10) + '/r/0123456'.slice(0, 10);
    const { version, modules } = qrMatrix(text);
    assert.equal(version, i + 1, `${bytes} bytes should need version ${i + 1}`);
    assert.equal(decodeText(modules), text);
    assert.equal(qrMatrix(text + 'x').version, i + 2, `${bytes + 1} bytes should need version ${i + 2}`);
  });
});

test('qrMatrix_utf8_text_round_trips', () => {
  const text = 'https://例え.jp/r/ünïcödé-😀';
  assert.equal(decodeText(qrMatrix(text).modules), text);
});

test('qrMatrix_many_room_links_round_trip', () => {
  // Different inputs make the encoder pick different masks; each must still decode.
  const masks = new Set();
  for (let i = 0; i < 200; i++) {
    const url = `https://host${i}.example/r/${(i * 7919).toString(36).padStart(22, 'k')}`;
    const { modules } = qrMatrix(url);
    const decoded = decodeQr(modules);
    masks.add(decoded.mask);
    assert.equal(new TextDecoder().decode(decoded.bytes), url);
  }
  assert.ok(masks.size >= 5, `masks seen: ${[...masks]}`);
});

test('svgPath_draws_one_square_per_dark_module', () => {
  const modules = [
    [true, false],
    [false, true],
  ];
  assert.equal(svgPath(modules, 1), 'M1 1h1v1h-1zM2 2h1v1h-1z');
  const darkCount = qrMatrix('abc').modules.flat().filter(Boolean).length;
  assert.equal(svgPath(qrMatrix('abc').modules).match(/M/g).length, darkCount);
});

test('svgString_has_quiet_zone_and_white_background', () => {
  const { size, modules } = qrMatrix('abc');
  const svg = svgString(modules, { title: 'a <b>' });
  const extent = size + 2 * QUIET_ZONE;
  assert.match(svg, new RegExp(`viewBox="0 0 ${extent} ${extent}"`));
  assert.match(svg, /<rect width="\d+" height="\d+" fill="#fff"\/>/);
  assert.match(svg, /<title>a &#60;b&#62;<\/title>/);
});
