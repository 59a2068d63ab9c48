// Tests for static/transport.js and the pure part of static/webtransport-link.js: which transport the page
// uses, the fallback, the WebTransport URL and offer, the control stream's lines.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { offerFor, openLink, parseOffer, TransportChoice, webTransportUrl } from '../../static/transport.js';
import { hexBytes, LineSplitter, MAX_LINE } from '../../static/webtransport-link.js';

const HASH = 'ab'.repeat(32);
const OFFER = { port: 8443, path: '/wt', certificateHashes: [HASH] };

/** A stand-in link that records what is done to it; the test opens or closes it when it likes. */
function fakeOpener(kind, opened) {
  return (url, handlers, options) => {
    const link = {
      kind, url, handlers, options, texts: [], closedWith: null,
      sendText(text) {
        this.texts.push(text);
      },
      sendAudio() {
        return true;
      },
      close(code, reason) {
        this.closedWith = { code, reason };
        queueMicrotask(() => handlers.onClose({ code, reason }));
      },
    };
    opened.push(link);
    return link;
  };
}

/** Timers the test fires by hand. */
function manualTimers() {
  const timers = new Map();
  let next = 1;
  return {
    setTimer: (fn) => {
      timers.set(next, fn);
      return next++;
    },
    clearTimer: (id) => timers.delete(id),
    fireAll: () => {
      for (const [id, fn] of [...timers]) {
        timers.delete(id);
        fn();
      }
    },
    get pending() {
      return timers.size;
    },
  };
}

function recorder() {
  const events = [];
  return {
    events,
    onOpen: () => events.push('open'),
    onText: (text) => events.push(`text ${text}`),
    onAudio: () => events.push('audio'),
    onClose: ({ code }) => events.push(`close ${code}`),
  };
}

function setUp({ hasWebTransport = true, offer = OFFER, codec = 'opus', choice = new TransportChoice() } = {}) {
  const sockets = [];
  const sessions = [];
  const timers = manualTimers();
  const handlers = recorder();
  const link = openLink({
    webSocketUrl: 'wss://example.org:8443/ws?room=abc&resumable=1',
    offer,
    codec,
    openWebSocketLink: fakeOpener('websocket', sockets),
    openWebTransport: fakeOpener('webtransport', sessions),
    hasWebTransport,
    choice,
    setTimer: timers.setTimer,
    clearTimer: timers.clearTimer,
  }, handlers);
  return { link, sockets, sessions, timers, handlers, choice };
}

test('webTransportUrl_keeps_the_host_and_query_on_the_offered_port', () => {
  assert.equal(webTransportUrl('ws://localhost:8080/ws?room=abc&resume=T', { port: 8080, path: '/wt' }),
    'https://localhost:8080/wt?room=abc&resume=T');
  assert.equal(webTransportUrl('wss://[::1]:8443/ws', { port: 9443, path: '/wt' }), 'https://[::1]:9443/wt');
});

test('webTransportUrl_carries_the_page_token_as_id', () => {
  assert.equal(webTransportUrl('ws://localhost:8080/ws?resume=T', { port: 8080, path: '/wt' }, 'abc.123.x-y_z'),
    'https://localhost:8080/wt?resume=T&id=abc.123.x-y_z');
  assert.equal(webTransportUrl('ws://localhost:8080/ws', { port: 8080, path: '/wt' }, 'abc.1.m'),
    'https://localhost:8080/wt?id=abc.1.m');
});

test('parseOffer_takes_only_a_well_formed_offer', () => {
  const none = { token: null, tokenSeconds: null };
  assert.deepEqual(parseOffer(OFFER), { ...OFFER, ...none });
  assert.deepEqual(parseOffer({ ...OFFER, certificateHashes: [] }), { ...OFFER, certificateHashes: [], ...none });
  assert.deepEqual(parseOffer({ ...OFFER, token: 'abc.123.x-y_z', tokenSeconds: 3600 }),
    { ...OFFER, token: 'abc.123.x-y_z', tokenSeconds: 3600 });
  assert.equal(parseOffer({ ...OFFER, token: 'a&b=c' }).token, null);
  for (const bad of [0, -1, '3600', Infinity, null]) assert.equal(parseOffer({ ...OFFER, tokenSeconds: bad }).tokenSeconds, null);
  for (const bad of [null, 'x', { ...OFFER, port: 0 }, { ...OFFER, port: '8080' }, { ...OFFER, path: 'wt' },
    { ...OFFER, certificateHashes: ['xyz'] }, { ...OFFER, certificateHashes: HASH }]) {
    assert.equal(parseOffer(bad), null, JSON.stringify(bad));
  }
});

test('without_webtransport_an_offer_or_opus_the_websocket_opens_at_once', () => {
  for (const options of [{ hasWebTransport: false }, { offer: null }, { codec: 'pcm16' }]) {
    const { link, sockets, sessions } = setUp(options);
    assert.equal(sessions.length, 0);
    assert.equal(sockets.length, 1);
    assert.equal(link.kind, 'websocket');
    assert.equal(sockets[0].url, 'wss://example.org:8443/ws?room=abc&resumable=1');
  }
});

test('webtransport_that_opens_in_time_carries_the_call', () => {
  const { link, sockets, sessions, timers, handlers } = setUp();
  assert.equal(sessions[0].url, 'https://example.org:8443/wt?room=abc&resumable=1');
  assert.deepEqual(sessions[0].options, { certificateHashes: [HASH] });
  sessions[0].handlers.onOpen();
  assert.equal(timers.pending, 0);
  assert.equal(link.kind, 'webtransport');
  link.sendText('{"type":"ping"}');
  assert.deepEqual(sessions[0].texts, ['{"type":"ping"}']);
  sessions[0].handlers.onText('{"type":"waiting"}');
  sessions[0].handlers.onAudio(new ArrayBuffer(4));
  assert.deepEqual(handlers.events, ['open', 'text {"type":"waiting"}', 'audio']);
  assert.equal(sockets.length, 0);
});

test('webtransport_not_open_after_the_head_start_gives_way_to_the_websocket', async () => {
  const { link, sockets, sessions, timers, handlers, choice } = setUp();
  assert.equal(link.sendAudio(new ArrayBuffer(4)), false); // nothing is open yet
  timers.fireAll(); // UDP dropped: no answer at all
  assert.deepEqual(sessions[0].closedWith, { code: 1000, reason: 'falling back to the WebSocket' });
  assert.equal(sockets.length, 1);
  assert.equal(link.kind, 'websocket');
  await Promise.resolve(); // the attempt's close arrives: the page hears nothing of it
  sockets[0].handlers.onOpen();
  assert.deepEqual(handlers.events, ['open']);
  // A session that opens after all is closed at once: the page is in the lobby once.
  sessions[0].handlers.onOpen();
  assert.deepEqual(handlers.events, ['open']);
  assert.match(choice.failed, /not open after/);
});

test('webtransport_refused_before_opening_falls_back_at_once', () => {
  const { link, sockets, sessions, timers, handlers } = setUp();
  sessions[0].handlers.onClose({ code: 1006, reason: 'WebTransport connection rejected' });
  assert.equal(sockets.length, 1);
  assert.equal(timers.pending, 0);
  assert.equal(link.kind, 'websocket');
  assert.deepEqual(handlers.events, []); // no close: the call goes on over the WebSocket
});

test('after_a_failure_the_page_goes_straight_to_the_websocket', () => {
  const choice = new TransportChoice();
  setUp({ choice }).sessions[0].handlers.onClose({ code: 1006, reason: 'blocked' });
  const again = setUp({ choice });
  assert.equal(again.sessions.length, 0);
  assert.equal(again.link.kind, 'websocket');
});

test('a_drop_after_opening_is_the_pages_to_handle_and_webtransport_stays_chosen', () => {
  const { sessions, handlers, choice, sockets } = setUp();
  sessions[0].handlers.onOpen();
  sessions[0].handlers.onClose({ code: 1006, reason: 'connection lost' });
  assert.deepEqual(handlers.events, ['open', 'close 1006']);
  assert.equal(sockets.length, 0); // resuming is the page's business, as after a WebSocket's drop
  assert.equal(choice.choose({ hasWebTransport: true, offer: OFFER }), 'webtransport');
});

test('closing_before_anything_opened_falls_back_to_nothing_and_says_closed_once', async () => {
  const { link, sockets, sessions, timers, handlers } = setUp();
  link.close(1000, 'leaving');
  assert.deepEqual(sessions[0].closedWith, { code: 1000, reason: 'leaving' });
  assert.equal(timers.pending, 0);
  await Promise.resolve();
  assert.equal(sockets.length, 0);
  assert.deepEqual(handlers.events, ['close 1000']);
});

test('line_splitter_joins_lines_cut_anywhere', () => {
  const splitter = new LineSplitter();
  const bytes = new TextEncoder().encode('{"a":"é"}\n{"b":');
  assert.deepEqual(splitter.push(bytes.subarray(0, 8)), { lines: [], error: null }); // cut inside 'é'
  assert.deepEqual(splitter.push(bytes.subarray(8)), { lines: ['{"a":"é"}'], error: null });
  assert.deepEqual(splitter.push(new TextEncoder().encode('2}\n\n')), { lines: ['{"b":2}', ''], error: null });
});

test('line_splitter_refuses_long_lines_and_bad_utf8', () => {
  const long = new LineSplitter();
  const { error } = long.push(new Uint8Array(MAX_LINE + 1).fill(120));
  assert.match(error, /over 4096 bytes/);
  assert.match(long.push(new Uint8Array([10])).error, /over/); // nothing more is taken
  const bad = new LineSplitter();
  assert.deepEqual(bad.push(new Uint8Array([0x7b, 0xff, 0x7d, 10])), { lines: [], error: 'control line is not UTF-8' });
});

test('hexBytes_reads_a_certificate_hash', () => {
  assert.deepEqual([...hexBytes('00ff10')], [0, 255, 16]);
  assert.equal(hexBytes(HASH).byteLength, 32);
});

test('offerFor_serves_the_page_own_ws_whatever_the_query_and_no_other_process', () => {
  const own = 'ws://localhost:8080/ws';
  assert.equal(offerFor('ws://localhost:8080/ws?room=abc&resume=x', own, OFFER), OFFER);
  assert.equal(offerFor('wss://example.org/p/b/ws?call=abc', 'wss://example.org/ws', OFFER), null);
  assert.equal(offerFor('ws://localhost:8081/ws?call=abc', own, OFFER), null);
});
