// Tests for static/room.js: room names, page and WebSocket URLs, reconnect delay.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  base64url,
  isValidRoomName,
  newRoomName,
  reconnectDelay,
  roomFromLocation,
  roomUrl,
  wsUrl,
} from '../../static/room.js';

test('isValidRoomName_accepts_1_to_64_url_safe_characters', () => {
  for (const name of ['a', 'Z', '0', '-', '_', 'abc-DEF_123', 'x'.repeat(64)]) {
    assert.equal(isValidRoomName(name), true, name);
  }
});

test('isValidRoomName_rejects_everything_else', () => {
  for (const name of ['', 'x'.repeat(65), 'a b', 'a/b', 'a.b', 'a%20', 'é', '..', 'a?b', 'a#b', null, undefined, 42]) {
    assert.equal(isValidRoomName(name), false, String(name));
  }
});

test('roomFromLocation_lobby_is_null', () => {
  assert.equal(roomFromLocation('/', ''), null);
  assert.equal(roomFromLocation('/index.html', '?x=1'), null);
  assert.equal(roomFromLocation('/r', ''), null);
});

test('roomFromLocation_reads_path_and_query', () => {
  assert.equal(roomFromLocation('/r/abc', ''), 'abc');
  assert.equal(roomFromLocation('/r/abc/', ''), 'abc');
  assert.equal(roomFromLocation('/', '?room=xyz'), 'xyz');
  assert.equal(roomFromLocation('/', '?a=1&room=x_y-z'), 'x_y-z');
  assert.equal(roomFromLocation('/r/path', '?room=query'), 'path');
});

test('roomFromLocation_bad_name_is_an_error', () => {
  for (const [path, search] of [
    ['/r/', ''],
    ['/r/a.b', ''],
    ['/r/a%20b', ''],
    ['/r/%E0%A4%A', ''],
    ['/r/' + 'x'.repeat(65), ''],
    ['/', '?room='],
    ['/', '?room=a+b'],
    ['/', '?room=%2e%2e'],
  ]) {
    const result = roomFromLocation(path, search);
    assert.equal(typeof result, 'object', `${path}${search}`);
    assert.match(result.error, /1 to 64 letters, digits/);
  }
});

test('base64url_matches_node_encoding', () => {
  for (let n = 0; n < 40; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n * 11) & 255);
    assert.equal(base64url(bytes), Buffer.from(bytes).toString('base64url'));
  }
});

test('newRoomName_is_22_url_safe_characters_from_16_bytes', () => {
  let asked = 0;
  const name = newRoomName((n) => {
    asked = n;
    return new Uint8Array(n).fill(255);
  });
  assert.equal(asked, 16);
  assert.equal(name, '_'.repeat(21) + 'w');
  const fresh = newRoomName();
  assert.match(fresh, /^[A-Za-z0-9_-]{22}$/);
  assert.notEqual(fresh, newRoomName());
  assert.ok(isValidRoomName(fresh));
});

test('newRoomName_rejects_short_randomness', () => {
  assert.throws(() => newRoomName(() => new Uint8Array(8)), /16 bytes/);
});

test('roomUrl_joins_origin_name_and_key', () => {
  assert.equal(roomUrl('https://h.example:8443', 'abc'), 'https://h.example:8443/r/abc');
  assert.equal(roomUrl('http://localhost:8080/', 'a_b'), 'http://localhost:8080/r/a_b');
  assert.equal(roomUrl('http://localhost:8080', 'a_b', 'ABEiM0RVZneImaq7zN3u_w'),
    'http://localhost:8080/r/a_b#ABEiM0RVZneImaq7zN3u_w', 'the key in the fragment');
  assert.throws(() => roomUrl('http://x', 'a/b'), /Bad room name/);
});

test('wsUrl_follows_page_scheme_and_host', () => {
  assert.equal(wsUrl({ protocol: 'http:', host: 'localhost:8080' }), 'ws://localhost:8080/ws');
  assert.equal(wsUrl({ protocol: 'https:', host: 'h.example' }, null), 'wss://h.example/ws');
  assert.equal(wsUrl({ protocol: 'https:', host: '[::1]:8443' }, 'abc'), 'wss://[::1]:8443/ws?room=abc');
  assert.throws(() => wsUrl({ protocol: 'http:', host: 'h' }, 'a&b=c'), /Bad room name/);
});

test('reconnectDelay_doubles_from_half_a_second_to_ten_with_jitter', () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.equal(reconnectDelay(0, low), 250);
  assert.equal(reconnectDelay(0, high), 500);
  assert.equal(reconnectDelay(1, high), 1000);
  assert.equal(reconnectDelay(4, high), 8000);
  assert.equal(reconnectDelay(5, high), 10000);
  assert.equal(reconnectDelay(50, high), 10000);
  assert.equal(reconnectDelay(50, low), 5000);
  for (let i = 0; i < 100; i++) {
    const d = reconnectDelay(3);
    assert.ok(d >= 2000 && d <= 4000, String(d));
  }
});
