// Tests for static/encryption.js: the page's encryption put together, two pages' worth wired as the server
// would (frames to the other page, key messages passed on as they are), on node's WebCrypto.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CODEC_OPUS } from '../../static/constants.js';
import { roomKeyFromFragment } from '../../static/e2ee.js';
import { Encryption } from '../../static/encryption.js';
import { decodeFrame, encodeFrame } from '../../static/frame.js';
import { decodeHeader } from '../../static/sframe.js';
import { turn, turnsUntil } from './turns.js';

const ROOM_KEY = roomKeyFromFragment('#ABEiM0RVZneImaq7zN3u_w');
const OTHER_KEY = roomKeyFromFragment('#ABEiM0RVZneImaq7zN3u_A');

function opusFrame(seq) {
  return encodeFrame({ codec: CODEC_OPUS, seq, sampleRate: 48000, captureTime: 1.7e12 + 20 * seq,
    payload: new Uint8Array(70).fill(seq & 0xff) });
}


/** A page's encryption, recording what it sends, plays and reports; `peer` gets what it sends. */
class Page {
  constructor(name) {
    this.name = name;
    this.wire = []; // sealed frames sent, in order
    this.played = []; // {source, frame} handed to the audio session
    this.reports = [];
    this.peer = null;
    this.relayKeys = (message) => message; // what the "server" does to our key messages on their way
    this.encryption = new Encryption({
      send: (sealed) => {
        this.wire.push(new Uint8Array(sealed));
        this.peer?.encryption.open(this.name, sealed);
      },
      deliver: (source, frame) => this.played.push({ source, frame: decodeFrame(frame) }),
      report: (event) => {
        this.reports.push(event);
        // The machine sends keyOut on the call's link; the server passes it to the partner as it is.
        if (event.type === 'keyOut' && this.peer) {
          const passed = this.relayKeys(event.message);
          queueMicrotask(() => this.peer.encryption.callKey({ call: this.peer.call, op: 'receive', message: passed }));
        }
      },
    });
  }

  reported(type) {
    return this.reports.filter((event) => event.type === type);
  }

  /** Seal frames one after the other, as the encoder hands them over every 20 ms. */
  async speak(first, count) {
    for (let seq = first; seq < first + count; seq++) {
      const before = this.wire.length;
      assert.equal(this.encryption.seal(opusFrame(seq)), true, `${this.name} seals frame ${seq}`);
      await turnsUntil(() => this.wire.length > before, `${this.name}'s frame ${seq}`);
    }
  }
}

function pair() {
  const ann = new Page('ann');
  const bob = new Page('bob');
  ann.peer = bob;
  bob.peer = ann;
  return { ann, bob };
}

/** Both pages start call number `call` (the machine's callKey start) and wait for its key. */
async function agree(ann, bob, call) {
  ann.call = bob.call = call;
  ann.encryption.callKey({ call, op: 'start' });
  bob.encryption.callKey({ call, op: 'start' });
  await turnsUntil(() => ann.encryption.keyed && bob.encryption.keyed, 'the key');
}

test('two_pages_in_a_room_play_each_other_and_the_wire_shows_no_frame', async () => {
  const { ann, bob } = pair();
  assert.equal(ann.encryption.seal(opusFrame(0)), false, 'nothing leaves before the key is imported');
  await Promise.all([ann.encryption.useRoom('r1', ROOM_KEY), bob.encryption.useRoom('r1', ROOM_KEY)]);
  await ann.speak(1, 5);
  await turnsUntil(() => bob.played.length === 5, "bob's five frames");
  assert.deepEqual(bob.played.map(({ source, frame }) => [source, frame.seq]), [1, 2, 3, 4, 5].map((seq) => ['ann', seq]));
  for (const sealed of ann.wire) assert.equal(decodeFrame(sealed), null, 'on the wire, no duoduel frame');
  assert.deepEqual(ann.encryption.stats(), { keyed: true, sealed: 5, opened: 0, failed: 0, replayed: 0, dropped: 0, unkeyed: 1 });
  assert.equal(bob.encryption.stats().opened, 5);
  assert.deepEqual(bob.reported('keyVerdict'), [{ type: 'keyVerdict', call: 0, verdict: 'ok' }]);
});

test('a_page_with_another_key_plays_nothing_and_reports_the_wrong_verdict', async () => {
  const { ann, bob } = pair();
  await Promise.all([ann.encryption.useRoom('r1', ROOM_KEY), bob.encryption.useRoom('r1', OTHER_KEY)]);
  await ann.speak(0, 60);
  await turnsUntil(() => bob.encryption.stats().failed === 60, 'every frame tried');
  assert.deepEqual(bob.played, []);
  assert.deepEqual(bob.reported('keyVerdict'), [{ type: 'keyVerdict', call: 0, verdict: 'wrong' }]);
});

test('the_same_room_and_key_keep_their_counter_and_anything_else_draws_a_new_kid', async () => {
  // A resume or a move between processes changes nothing here; the page URL's room and key do.
  const { ann } = pair();
  const headers = [];
  const collect = async (count) => {
    const from = ann.wire.length;
    await ann.speak(0, count);
    headers.push(...ann.wire.slice(from).map((sealed) => decodeHeader(sealed)));
  };
  await ann.encryption.useRoom('r1', ROOM_KEY);
  await collect(3);
  await ann.encryption.useRoom('r1', ROOM_KEY); // the same place again (a popstate to the same URL)
  await collect(3);
  await ann.encryption.useRoom('r1', OTHER_KEY);
  await collect(3);
  await ann.encryption.useRoom(null, null);
  assert.equal(ann.encryption.seal(opusFrame(0)), false, 'the lobby has no key until a call agrees one');
  await ann.encryption.useRoom('r1', ROOM_KEY);
  await collect(3);
  const kids = [...new Set(headers.map((h) => h.kid))];
  assert.equal(kids.length, 3, 'a KID for the room, one for the other key, one for coming back');
  assert.deepEqual(headers.filter((h) => h.kid === kids[0]).map((h) => h.ctr), [0n, 1n, 2n, 3n, 4n, 5n]);
  assert.equal(new Set(headers.map((h) => `${h.kid}/${h.ctr}`)).size, headers.length, 'no (KID, CTR) twice');
});

test('a_lobby_call_agrees_one_key_and_one_code_and_its_frames_go_both_ways', async () => {
  const { ann, bob } = pair();
  assert.equal(ann.encryption.seal(opusFrame(0)), false);
  await agree(ann, bob, 1);
  const [annCode] = ann.reported('keyAgreed');
  const [bobCode] = bob.reported('keyAgreed');
  assert.match(annCode.code, /^\d{3} \d{3}$/);
  assert.deepEqual(annCode, { ...bobCode, call: 1 });
  assert.deepEqual(ann.reported('keyOut').map((e) => Object.keys(e.message)), [['type', 'commit'], ['type', 'public']]);
  await ann.speak(0, 3);
  await bob.speak(0, 3);
  await turnsUntil(() => ann.played.length === 3 && bob.played.length === 3, 'both ways');
  const kids = [...ann.wire, ...bob.wire].map((sealed) => decodeHeader(sealed).kid);
  assert.deepEqual(new Set(kids).size, 2, 'one KID each, 0 and 1');
});

test('each_lobby_call_has_a_key_of_its_own_and_an_ended_call_seals_and_plays_nothing', async () => {
  const { ann, bob } = pair();
  await agree(ann, bob, 1);
  await ann.speak(0, 2);
  const firstCall = ann.wire.slice();
  ann.encryption.callKey({ call: 1, op: 'end' });
  bob.encryption.callKey({ call: 1, op: 'end' });
  assert.equal(ann.encryption.seal(opusFrame(2)), false);
  await agree(ann, bob, 2);
  assert.notEqual(ann.reported('keyAgreed')[1].code, ann.reported('keyAgreed')[0].code);
  const played = bob.played.length;
  for (const sealed of firstCall) bob.encryption.open('ann', sealed); // the last call's frames, replayed
  await turnsUntil(() => bob.encryption.stats().failed === 2, 'both tried');
  assert.equal(bob.played.length, played, 'a frame of the last call does not open under this one');
});

test('a_frame_still_being_opened_when_its_call_ends_is_not_played', async () => {
  const { ann, bob } = pair();
  await agree(ann, bob, 1);
  ann.peer = null; // hold ann's frames back, then hand one over just before bob's call ends
  await ann.speak(0, 1);
  bob.encryption.open('ann', ann.wire[0].buffer);
  bob.encryption.callKey({ call: 1, op: 'end' });
  await turnsUntil(() => bob.encryption.stats().keyed === false, 'the end');
  for (let i = 0; i < 100; i++) await turn();
  assert.deepEqual(bob.played, []);
});

test('a_relay_that_forges_a_commit_fails_the_exchange_and_nothing_is_sent', async () => {
  // Bob's commit is replaced on its way by one for a key the relay made: Bob's reveal then does not match.
  const { ann, bob } = pair();
  const forged = { type: 'key', commit: 'A'.repeat(43) };
  bob.relayKeys = (message) => ('commit' in message ? forged : message);
  ann.call = bob.call = 1;
  ann.encryption.callKey({ call: 1, op: 'start' });
  bob.encryption.callKey({ call: 1, op: 'start' });
  await turnsUntil(() => ann.reported('keyFailed').length === 1, "ann's failure");
  assert.match(ann.reported('keyFailed')[0].text, /key exchange .* failed/);
  assert.equal(ann.encryption.keyed, false);
  assert.equal(ann.encryption.seal(opusFrame(0)), false, 'a failed exchange sends nothing');
});

test('a_resend_after_a_resume_changes_neither_key_nor_code', async () => {
  const { ann, bob } = pair();
  await agree(ann, bob, 1);
  ann.encryption.callKey({ call: 1, op: 'resend' });
  bob.encryption.callKey({ call: 1, op: 'resend' });
  for (let i = 0; i < 100; i++) await turn();
  assert.equal(ann.reported('keyAgreed').length, 1);
  assert.equal(ann.reported('keyFailed').length + bob.reported('keyFailed').length, 0);
  await ann.speak(0, 2);
  await turnsUntil(() => bob.played.length === 2, "bob's frames");
});
