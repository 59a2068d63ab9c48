// Tests for static/e2ee.js (duoduel's keys and the frame pipeline) and static/key-exchange.js (a lobby
// call's ECDH and safety code), on node's WebCrypto. RFC 9605's own vectors are sframe.test.js's.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CODEC_OPUS } from '../../static/constants.js';
import {
  FrameOpener, FrameSealer, fromBase64url, InOrder, KeyContext, MESSAGES, newRoomKey, roomKeyFromFragment,
  WRONG_KEY_FAILURES,
} from '../../static/e2ee.js';
import { decodeFrame, encodeFrame } from '../../static/frame.js';
import { EXCHANGE_FAILED, KeyExchange, safetyCode } from '../../static/key-exchange.js';
import { decodeHeader, nonce, TAG_BYTES } from '../../static/sframe.js';
import { turn, turnsUntil } from './turns.js';

const hex = (text) => Uint8Array.from(text.match(/../g), (pair) => parseInt(pair, 16));
const toHex = (bytes) => Buffer.from(bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes).toString('hex');
const ROOM = 'Zm9vYmFyYmF6cXV4cXV1eA';


function opusFrame(seq) {
  return encodeFrame({ codec: CODEC_OPUS, seq, sampleRate: 48000, captureTime: 1.7e12 + 20 * seq,
    payload: new Uint8Array(70).fill(seq & 0xff) });
}


/** Seal the frames one at a time (a page seals one every 20 ms), each handed on before the next. */
async function sealInTurn(sealer, sent, frames) {
  for (const frame of frames) {
    const before = sent.length;
    assert.equal(sealer.seal(frame), true);
    await turnsUntil(() => sent.length > before);
  }
}

/** Open each message, one at a time. */
async function openInTurn(opener, source, messages) {
  for (const message of messages) {
    const before = opener.opened + opener.failed + opener.replayed;
    opener.open(source, message);
    await turnsUntil(() => opener.opened + opener.failed + opener.replayed > before);
  }
}

/** A receiver that records what it is handed. */
function recordingOpener(context) {
  const got = [];
  const verdicts = [];
  const opener = new FrameOpener(context, {
    onFrame: (source, frame) => got.push({ source, frame }),
    onVerdict: (verdict) => verdicts.push(verdict),
  });
  return { opener, got, verdicts };
}

/** A sender that records what it would send. */
function recordingSealer(context) {
  const sent = [];
  return { sealer: new FrameSealer(context, { onFrame: (sealed) => sent.push(sealed) }), sent };
}

async function roomContext(key = hex('00112233445566778899aabbccddeeff'), name = ROOM) {
  return KeyContext.forRoom(key, name);
}

test('a_frame_round_trips_through_the_sealer_and_the_opener_unchanged', async () => {
  const context = await roomContext();
  const { sealer, sent } = recordingSealer(context);
  const frame = opusFrame(7);
  await sealInTurn(sealer, sent, [frame]);
  const { opener, got } = recordingOpener(await roomContext());
  await openInTurn(opener, 3, sent);
  assert.equal(got.length, 1);
  assert.equal(got[0].source, 3);
  assert.deepEqual(new Uint8Array(got[0].frame), new Uint8Array(frame));
  assert.equal(decodeFrame(got[0].frame).seq, 7);
  assert.deepEqual(opener.stats(), { opened: 1, failed: 0, replayed: 0, dropped: 0, verdict: 'ok' });
});

test('a_sealed_frame_adds_the_header_and_the_tag_and_shows_nothing_of_the_frame', async () => {
  const context = await roomContext();
  const { sealer, sent } = recordingSealer(context);
  const frames = Array.from({ length: 300 }, (_, i) => opusFrame(i));
  await sealInTurn(sealer, sent, frames);
  // Config byte, 8-byte KID, CTR in 0 (below 8), 1 (below 256) or 2 bytes, then the 16-byte tag.
  assert.deepEqual([0, 8, 255, 256, 299].map((i) => sent[i].byteLength - frames[i].byteLength),
    [1 + 8 + 0 + TAG_BYTES, 1 + 8 + 1 + TAG_BYTES, 1 + 8 + 1 + TAG_BYTES, 1 + 8 + 2 + TAG_BYTES, 1 + 8 + 2 + TAG_BYTES]);
  for (const [i, sealed] of sent.entries()) {
    const header = decodeHeader(sealed);
    assert.equal(header.kid, context.ownKid);
    assert.equal(header.ctr, BigInt(i));
    // The frame's own header (version 1, codec, seq, rate, capture time) is nowhere in clear.
    const clear = new Uint8Array(frames[i], 0, 16);
    assert.equal(Buffer.from(sealed).indexOf(Buffer.from(clear)), -1, `frame ${i}`);
  }
});

test('tampering_with_any_byte_of_a_sealed_frame_drops_it_and_counts_it', async () => {
  const context = await roomContext();
  const { sealer, sent } = recordingSealer(context);
  await sealInTurn(sealer, sent, [opusFrame(1)]);
  const sealed = new Uint8Array(sent[0]);
  const { opener, got } = recordingOpener(await roomContext());
  const tampered = Array.from(sealed, (_, i) => {
    const bad = Uint8Array.from(sealed);
    bad[i] ^= 0x80;
    return bad.buffer;
  });
  await openInTurn(opener, 0, [...tampered, sealed.subarray(0, sealed.length - 1), new ArrayBuffer(0)]);
  assert.equal(got.length, 0);
  assert.equal(opener.failed, sealed.length + 2);
  await openInTurn(opener, 0, [sealed.buffer]); // the untouched one still opens
  assert.equal(got.length, 1);
});

test('a_wrong_key_or_another_rooms_key_decrypts_nothing_and_the_page_can_tell', async () => {
  const right = await roomContext();
  const { sealer, sent } = recordingSealer(right);
  await sealInTurn(sealer, sent, Array.from({ length: WRONG_KEY_FAILURES }, (_, i) => opusFrame(i)));
  for (const wrong of [await roomContext(hex('00112233445566778899aabbccddeefe')),
    await roomContext(undefined, 'another-room')]) {
    const { opener, got, verdicts } = recordingOpener(wrong);
    for (const [i, sealed] of sent.entries()) {
      await openInTurn(opener, 0, [sealed]);
      assert.equal(opener.verdict, i + 1 < WRONG_KEY_FAILURES ? 'waiting' : 'wrong');
    }
    assert.equal(got.length, 0);
    assert.deepEqual(verdicts, ['wrong']);
  }
});

test('one_frame_that_decrypts_clears_the_wrong_key_verdict_and_later_failures_do_not_bring_it_back', async () => {
  const right = await roomContext();
  const { sealer, sent } = recordingSealer(right);
  await sealInTurn(sealer, sent, [opusFrame(0)]);
  const { opener, verdicts } = recordingOpener(await roomContext());
  const garbage = new Uint8Array(100).fill(0x42);
  await openInTurn(opener, 1, Array(WRONG_KEY_FAILURES).fill(garbage));
  assert.equal(opener.verdict, 'wrong');
  await openInTurn(opener, 2, [sent[0]]); // someone with the right key: ours works
  await openInTurn(opener, 1, Array(2 * WRONG_KEY_FAILURES).fill(garbage)); // a member with a wrong link
  assert.deepEqual(verdicts, ['wrong', 'ok']);
  assert.equal(opener.verdict, 'ok');
});

test('nonces_never_repeat_across_the_senders_of_one_room', async () => {
  const key = hex('0f0e0d0c0b0a09080706050403020100');
  const senders = await Promise.all(Array.from({ length: 8 }, () => roomContext(key)));
  const receiver = await roomContext(key);
  const nonces = new Set();
  const pairs = new Set();
  for (const context of senders) {
    const { sealer, sent } = recordingSealer(context);
    await sealInTurn(sealer, sent, Array.from({ length: 100 }, (_, i) => opusFrame(i)));
    const { salt } = await receiver.senderKeys(context.ownKid);
    for (const sealed of sent) {
      const { kid, ctr } = decodeHeader(sealed);
      pairs.add(`${kid}/${ctr}`);
      nonces.add(toHex(nonce(salt, ctr)));
    }
  }
  assert.equal(new Set(senders.map((c) => c.ownKid)).size, 8, 'each page draws its own KID');
  assert.equal(pairs.size, 800);
  assert.equal(nonces.size, 800, 'and its own salt: no nonce is shared, even before the keys differ');
});

test('across_a_resume_the_counter_goes_on_and_a_reload_draws_a_new_kid', async () => {
  const key = hex('0f0e0d0c0b0a09080706050403020100');
  const page = await roomContext(key);
  const { sealer, sent } = recordingSealer(page);
  await sealInTurn(sealer, sent, Array.from({ length: 20 }, (_, i) => opusFrame(i)));
  // A resume (or a move to another process) keeps the page, its context and its sealer: nothing restarts.
  await sealInTurn(sealer, sent, Array.from({ length: 20 }, (_, i) => opusFrame(20 + i)));
  assert.deepEqual(sent.map((s) => decodeHeader(s).ctr), Array.from({ length: 40 }, (_, i) => BigInt(i)));
  assert.throws(() => new FrameSealer(page, { onFrame: () => {} }), /one sender per key context/);
  // A reload, or coming back to the room later, takes the key up again: a new KID, so CTR 0 is a new nonce.
  const reloaded = await roomContext(key);
  assert.notEqual(reloaded.ownKid, page.ownKid);
});

test('a_frame_that_comes_twice_is_played_once', async () => {
  const context = await roomContext();
  const { sealer, sent } = recordingSealer(context);
  await sealInTurn(sealer, sent, [0, 1, 2].map(opusFrame));
  const { opener, got } = recordingOpener(await roomContext());
  for (const i of [0, 2, 1, 2, 0, 1]) opener.open(0, sent[i]); // all at once: in flight together
  await turnsUntil(() => opener.opened + opener.replayed === 6);
  assert.deepEqual(got.map(({ frame }) => decodeFrame(frame).seq), [0, 2, 1]);
  assert.equal(opener.replayed, 3);
});

test('our_own_frames_sent_back_are_refused', async () => {
  const context = await roomContext();
  const { sealer, sent } = recordingSealer(context);
  await sealInTurn(sealer, sent, [opusFrame(0)]);
  const { opener, got } = recordingOpener(context);
  await openInTurn(opener, 0, sent);
  assert.equal(got.length, 0);
  assert.equal(opener.failed, 1);
});

test('work_is_handed_on_in_the_order_it_started_and_never_more_than_the_limit_at_once', async () => {
  const work = new InOrder(3);
  const resolvers = [];
  const done = [];
  for (let i = 0; i < 3; i++) {
    assert.equal(work.push(new Promise((resolve) => resolvers.push(resolve)), (ok, value) => done.push(value)), true);
  }
  assert.equal(work.push(Promise.resolve('late'), () => done.push('late')), false, 'a fourth is refused');
  resolvers[2]('c');
  resolvers[1]('b');
  await turn();
  assert.deepEqual(done, [], 'nothing passes the first, still under way');
  resolvers[0]('a');
  await turn();
  assert.deepEqual(done, ['a', 'b', 'c']);
  assert.equal(work.push(Promise.resolve('d'), (ok, value) => done.push(value)), true, 'room again');
});

test('a_receiver_that_throws_on_one_frame_still_gets_the_next_ones_at_once', async () => {
  const work = new InOrder(3);
  const done = [];
  const reported = [];
  const consoleError = console.error;
  console.error = (text, error) => reported.push(error.message);
  try {
    work.push(Promise.resolve('a'), () => { throw new Error('the socket closed'); });
    work.push(Promise.resolve('b'), (ok, value) => done.push(value));
    await turn();
  } finally {
    console.error = consoleError;
  }
  assert.deepEqual(done, ['b']);
  assert.deepEqual(reported, ['the socket closed']);
});

test('a_sealer_that_falls_behind_drops_the_newest_frames_without_using_their_counters', async () => {
  const context = await roomContext();
  const { sealer, sent } = recordingSealer(context);
  const accepted = Array.from({ length: 10 }, (_, i) => sealer.seal(opusFrame(i)));
  assert.deepEqual(accepted, [true, true, true, true, false, false, false, false, false, false]);
  assert.equal(sealer.dropped, 6);
  await turnsUntil(() => sent.length === 4);
  await sealInTurn(sealer, sent, [opusFrame(10)]);
  assert.deepEqual(sent.map((s) => decodeHeader(s).ctr), [0n, 1n, 2n, 3n, 4n]);
});

test('the_room_key_comes_from_the_fragment_and_a_missing_or_damaged_one_gives_one_line', () => {
  const made = newRoomKey(() => Uint8Array.from({ length: 16 }, (_, i) => i * 17));
  assert.equal(made, 'ABEiM0RVZneImaq7zN3u_w');
  assert.deepEqual([...roomKeyFromFragment(`#${made}`)], Array.from({ length: 16 }, (_, i) => i * 17));
  assert.equal(newRoomKey().length, 22);
  for (const hash of ['', '#', `#${made.slice(0, 21)}`, `#${made}A`, `#${made.slice(0, 21)}x`, '#ABEiM0RVZneImaq7zN3u/w',
    `#${made} `, null, undefined]) {
    const result = roomKeyFromFragment(hash);
    assert.deepEqual(result, { error: MESSAGES.noKey }, String(hash));
  }
  for (const message of Object.values(MESSAGES)) assert.match(message, /^[^\n]+\.$/, 'one line that ends a sentence');
  assert.match(MESSAGES.noKey, /incomplete/);
  assert.match(MESSAGES.wrongKey, /incomplete or wrong/);
  assert.equal(fromBase64url('AA', 1)[0], 0);
  assert.equal(fromBase64url('AB', 1), null, 'left-over bits must be zero');
});

/** Two pages' exchanges wired through `relay(from, message) -> [to, message]...` (the server passes them on). */
function wire(relay = (to, message) => [[to, message]]) {
  const pages = {};
  const deliver = (to, message) => {
    for (const [target, passed] of relay(to, JSON.parse(JSON.stringify(message)))) {
      queueMicrotask(() => pages[target].receive(passed));
    }
  };
  pages.ann = new KeyExchange({ send: (message) => deliver('bob', message) });
  pages.bob = new KeyExchange({ send: (message) => deliver('ann', message) });
  return pages;
}

test('two_honest_pages_agree_a_key_and_show_the_same_safety_code', async () => {
  const { ann, bob } = wire();
  await Promise.all([ann.start(), bob.start()]);
  await turnsUntil(() => ann.state === 'ready' && bob.state === 'ready');
  assert.match(ann.safetyCode, /^\d{3} \d{3}$/);
  assert.equal(ann.safetyCode, bob.safetyCode);
  assert.deepEqual([ann.context.ownKid, bob.context.ownKid].sort(), [0n, 1n]);
  // What Ann seals, Bob opens, and the other way round; neither opens its own.
  for (const [from, to] of [[ann, bob], [bob, ann]]) {
    const { sealer, sent } = recordingSealer(from.context);
    await sealInTurn(sealer, sent, [opusFrame(5)]);
    const { opener, got } = recordingOpener(to.context);
    await openInTurn(opener, -1, sent);
    const own = recordingOpener(from.context);
    await openInTurn(own.opener, -1, sent);
    assert.equal(decodeFrame(got[0].frame).seq, 5);
    assert.equal(own.got.length, 0);
  }
});

test('the_pages_agree_whoever_starts_first_and_a_resend_after_a_resume_changes_nothing', async () => {
  const { ann, bob } = wire();
  await ann.start(); // Bob's page learns of the call later: Ann's commit reaches it before its own start()
  assert.equal(bob.state, 'idle');
  await bob.start();
  await turnsUntil(() => ann.state === 'ready' && bob.state === 'ready');
  const code = ann.safetyCode;
  ann.resend();
  bob.resend();
  for (let i = 0; i < 10; i++) await turn();
  assert.deepEqual([ann.state, bob.state, ann.safetyCode, bob.safetyCode], ['ready', 'ready', code, code]);
});

test('a_relay_that_swaps_the_keys_gives_different_safety_codes', async () => {
  // The relay runs an exchange of its own with each page and passes nothing on as it came.
  const pages = {};
  const mallory = {};
  const send = (to) => (message) => queueMicrotask(() => pages[to].receive(JSON.parse(JSON.stringify(message))));
  pages.ann = new KeyExchange({ send: (message) => queueMicrotask(() => mallory.ann.receive(message)) });
  pages.bob = new KeyExchange({ send: (message) => queueMicrotask(() => mallory.bob.receive(message)) });
  mallory.ann = new KeyExchange({ send: send('ann') });
  mallory.bob = new KeyExchange({ send: send('bob') });
  await Promise.all([pages.ann.start(), pages.bob.start(), mallory.ann.start(), mallory.bob.start()]);
  await turnsUntil(() => [pages.ann, pages.bob, mallory.ann, mallory.bob].every((side) => side.state === 'ready'));
  // Each page has a key, with the relay: only the codes tell (equal by chance once in a million).
  assert.notEqual(pages.ann.safetyCode, pages.bob.safetyCode);
  assert.equal(pages.ann.safetyCode, mallory.ann.safetyCode);
});

test('a_relay_that_changes_a_public_key_after_its_commit_or_sends_ours_back_fails_the_exchange', async () => {
  const other = new KeyExchange({ send: () => {} });
  await other.start();
  await other.receive({ type: 'key', commit: 'A'.repeat(43) }); // now it reveals its (valid) public key
  const [foreign, foreignPublic] = other._sent;
  const swaps = {
    'a valid public key that does not match its commit': (to, message) => [[to, message.public ? foreignPublic : message]],
    'our own messages sent back': (to, message) => [[to === 'bob' ? 'ann' : 'bob', message]],
    'a second commit': (to, message) => (message.commit ? [[to, message], [to, foreign]] : [[to, message]]),
  };
  for (const [what, relay] of Object.entries(swaps)) {
    const { ann, bob } = wire(relay);
    await Promise.all([ann.start(), bob.start()]);
    await turnsUntil(() => ann.state === 'failed' || bob.state === 'failed');
    const failed = [ann, bob].find((page) => page.state === 'failed');
    assert.equal(failed.error, EXCHANGE_FAILED, what);
    assert.equal(failed.context, null, what);
  }
});

test('malformed_key_messages_fail_the_exchange_with_one_line', async () => {
  for (const message of [{ type: 'key' }, { type: 'key', commit: 'x' }, { type: 'key', public: 'AAAA' },
    { type: 'key', commit: 'A'.repeat(43), public: 'A'.repeat(87) }, { type: 'key', commit: 5 }]) {
    const page = new KeyExchange({ send: () => {} });
    await page.start();
    await page.receive(message);
    assert.equal(page.state, 'failed', JSON.stringify(message));
    assert.match(page.error, /^[^\n]+\.$/);
  }
  // A point that is not on the curve, behind a commit that matches it.
  const page = new KeyExchange({ send: () => {} });
  await page.start();
  const bogus = new Uint8Array(65).fill(7);
  bogus[0] = 4;
  const { commitment } = await import('../../static/key-exchange.js');
  await page.receive({ type: 'key', commit: Buffer.from(await commitment(bogus)).toString('base64url') });
  await page.receive({ type: 'key', public: Buffer.from(bogus).toString('base64url') });
  assert.equal(page.state, 'failed');
});

test('the_safety_code_is_the_same_in_either_order_and_changes_with_either_key', async () => {
  const a = new Uint8Array(65).fill(1);
  const b = new Uint8Array(65).fill(2);
  const c = new Uint8Array(65).fill(3);
  assert.equal(await safetyCode(a, b), await safetyCode(b, a));
  assert.notEqual(await safetyCode(a, b), await safetyCode(a, c));
  assert.notEqual(await safetyCode(a, b), await safetyCode(c, b));
});
