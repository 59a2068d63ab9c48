import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CODEC_OPUS, CODEC_PCM16, FRAME_HEADER_BYTES, FRAME_MS } from '../../static/constants.js';
import { encodeFrame } from '../../static/frame.js';
import {
  COPIES, COPIES_HOLD_MS, CopySwitch, MAX_COPIES, REDUNDANT_VERSION, RedundantSender, SeenWindow, packFrames, unpackFrames,
} from '../../static/redundancy.js';

function frame(seq, overrides = {}) {
  return encodeFrame({
    codec: CODEC_OPUS, seq, sampleRate: 48000, captureTime: 1000 + seq * FRAME_MS,
    payload: new Uint8Array([seq & 0xff, 7, 7]), ...overrides,
  });
}

/** The frames a receiver plays from a stream of messages: new ones only, as (seq, recovered, first payload byte). */
function receive(messages) {
  const window = new SeenWindow();
  const played = [];
  for (const message of messages) {
    for (const f of unpackFrames(message)) if (window.accept(f.seq)) played.push([f.seq, f.recovered, f.payload[0]]);
  }
  return played;
}

test('test_redundancy_one_copy_each_frame_carries_the_previous_payload', () => {
  const sender = new RedundantSender(1);
  const first = sender.pack(frame(10));
  const second = sender.pack(frame(11));
  assert.equal(new Uint8Array(first)[0], 1, 'the first frame has nothing before it: sent as it is');
  const frames = unpackFrames(second);
  assert.deepEqual(frames.map((f) => [f.seq, f.recovered, [...f.payload]]), [[10, true, [10, 7, 7]], [11, false, [11, 7, 7]]]);
  assert.equal(frames[1].captureTime, 1000 + 11 * FRAME_MS);
  assert.equal(frames[0].version, 1, 'each frame unpacked reads as a version 1 frame');
});

test('test_redundancy_a_copy_is_dated_one_of_its_own_frame_lengths_earlier', () => {
  // Opus TOC bytes (RFC 6716, 3.1): CELT fullband, one frame of 10 ms (config 30) or 20 ms (config 31).
  for (const [toc, frameMs] of [[30 << 3, 10], [31 << 3, 20]]) {
    const sender = new RedundantSender(1);
    const opus = (seq) => frame(seq, { captureTime: 1000 + seq * frameMs, payload: new Uint8Array([toc, seq]) });
    sender.pack(opus(10));
    const [copy, newest] = unpackFrames(sender.pack(opus(11)));
    assert.equal(newest.captureTime, 1000 + 11 * frameMs);
    assert.equal(copy.captureTime, 1000 + 10 * frameMs, `${frameMs} ms frames`);
  }
});

test('test_redundancy_packet_layout_is_the_newest_header_then_copies_then_payloads', () => {
  const packed = new Uint8Array(packFrames(frame(300), [{ distance: 2, payload: new Uint8Array([1, 2]) },
    { distance: 1, payload: new Uint8Array([3]) }]));
  const view = new DataView(packed.buffer);
  assert.equal(packed[0], REDUNDANT_VERSION);
  assert.equal(view.getUint16(2, true), 300, 'the newest frame\'s sequence number');
  assert.equal(view.getFloat64(8, true), 1000 + 300 * FRAME_MS, 'the newest frame\'s capture time');
  assert.equal(packed[16], 2, 'two copies');
  assert.deepEqual([...packed.subarray(17, 23)], [2, 2, 0, 1, 1, 0], '(distance, u16 length) per copy');
  assert.deepEqual([...packed.subarray(23)], [1, 2, 3, 300 & 0xff, 7, 7], 'the copies oldest first, then the newest');
  assert.equal(packed.byteLength, FRAME_HEADER_BYTES + 3 + 1 + 3 * 2 + 3);
});

test('test_redundancy_lost_message_recovered_from_the_next_one', () => {
  const sender = new RedundantSender(1);
  const messages = [10, 11, 12, 13].map((seq) => sender.pack(frame(seq)));
  messages.splice(2, 1); // 12 lost on the way
  assert.deepEqual(receive(messages), [[10, false, 10], [11, false, 11], [12, true, 12], [13, false, 13]]);
});

test('test_redundancy_two_copies_recover_a_burst_of_two_and_no_more', () => {
  const sender = new RedundantSender(2);
  const messages = [1, 2, 3, 4, 5, 6, 7, 8].map((seq) => sender.pack(frame(seq)));
  const kept = messages.filter((_, i) => ![2, 3].includes(i) && ![5, 6, 7].includes(i) || i === 7);
  // 3 and 4 lost (recovered from 5); 6, 7 lost and 8 arrives (recovered: 6, 7).
  assert.deepEqual(receive(kept).map(([seq, recovered]) => [seq, recovered]),
    [[1, false], [2, false], [3, true], [4, true], [5, false], [6, true], [7, true], [8, false]]);
  const burstOfThree = messages.filter((_, i) => ![1, 2, 3].includes(i));
  assert.deepEqual(receive(burstOfThree).map(([seq]) => seq), [1, 3, 4, 5, 6, 7, 8], 'frame 2 was three back: gone');
});

test('test_redundancy_duplicates_and_reordered_messages_play_each_frame_once', () => {
  const sender = new RedundantSender(2);
  const messages = [20, 21, 22, 23].map((seq) => sender.pack(frame(seq)));
  const played = receive([messages[0], messages[2], messages[1], messages[2], messages[3]]);
  assert.deepEqual(played.map(([seq, recovered]) => [seq, recovered]), [[20, false], [21, true], [22, false], [23, false]],
    '21 from 22\'s copy; its own message, and 22 again, are duplicates');
  assert.deepEqual(receive([messages[3], messages[0]]).map(([seq]) => seq), [21, 22, 23, 20]);
});

test('test_redundancy_gap_in_sequence_or_codec_change_sends_no_wrong_copy', () => {
  const sender = new RedundantSender(1);
  sender.pack(frame(5));
  const afterGap = unpackFrames(sender.pack(frame(9)));
  assert.deepEqual(afterGap.map((f) => f.seq), [9], 'the encoder skipped 6 to 8: 5 is not 8');
  const pcm = unpackFrames(sender.pack(frame(10, { codec: CODEC_PCM16, payload: new Uint8Array([1, 2]) })));
  assert.deepEqual(pcm.map((f) => f.seq), [10], 'an Opus payload never rides as PCM16');
  sender.reset();
  assert.deepEqual(unpackFrames(sender.pack(frame(11, { codec: CODEC_PCM16, payload: new Uint8Array([1, 2]) }))).map((f) => f.seq), [11]);
});

test('test_redundancy_sequence_numbers_wrap', () => {
  const sender = new RedundantSender(2);
  sender.pack(frame(65535));
  const frames = unpackFrames(sender.pack(frame(0)));
  assert.deepEqual(frames.map((f) => f.seq), [65535, 0]);
  const window = new SeenWindow();
  assert.ok(window.accept(65534) && window.accept(65535) && window.accept(0) && window.accept(1));
  assert.equal(window.accept(65535), false);
});

test('test_redundancy_restarted_sender_counts_as_new_frames', () => {
  const window = new SeenWindow();
  for (let seq = 1000; seq < 1010; seq++) window.accept(seq);
  assert.equal(window.accept(1005), false);
  assert.equal(window.accept(3), true, 'a counter far behind: a new stream');
  assert.equal(window.accept(4), true);
  assert.equal(window.accept(3), false);
});

test('test_redundancy_malformed_messages_are_refused', () => {
  const good = new Uint8Array(packFrames(frame(50), [{ distance: 1, payload: new Uint8Array([1, 2, 3]) }]));
  const variants = {
    'cut in the entries': good.slice(0, 18),
    'no copies': Object.assign(good.slice(), { 16: 0 }),
    'too many copies': Object.assign(good.slice(), { 16: MAX_COPIES + 1 }),
    'distance 0': Object.assign(good.slice(), { 17: 0 }),
    'length past the end': Object.assign(good.slice(), { 18: 200 }),
    'unknown codec': Object.assign(good.slice(), { 1: 9 }),
    'shorter than a header': good.slice(0, 10),
  };
  for (const [what, bytes] of Object.entries(variants)) assert.equal(unpackFrames(bytes), null, what);
  const unordered = new Uint8Array(packFrames(frame(50), [{ distance: 1, payload: new Uint8Array([1]) },
    { distance: 2, payload: new Uint8Array([2]) }]));
  assert.equal(unpackFrames(unordered), null, 'copies must come oldest first');
  assert.equal(unpackFrames(new ArrayBuffer(0)), null);
  assert.throws(() => new RedundantSender(MAX_COPIES + 1), RangeError);
});

test('test_redundancy_none_sends_frames_unchanged', () => {
  const sender = new RedundantSender(0);
  const f = frame(1);
  assert.equal(sender.pack(f), f);
  assert.equal(sender.pack(frame(2)).byteLength, f.byteLength);
});

test('test_copy_switch_is_off_until_a_loss_report', () => {
  const copies = new CopySwitch(30000);
  assert.equal(copies.on(0), false, 'a call starts without copies');
  assert.equal(copies.on(60000), false);
});

test('test_copy_switch_stays_on_for_the_hold_after_the_last_report', () => {
  const copies = new CopySwitch(30000);
  copies.lossReported(1000);
  assert.ok(copies.on(1000) && copies.on(30999));
  copies.lossReported(20000); // losses go on: so do the copies
  assert.ok(copies.on(49999));
  assert.equal(copies.on(50000), false, 'no report for the hold: off');
  assert.equal(copies.reports, 2);
});

test('test_copy_switch_reset_turns_copies_off_for_a_new_call', () => {
  const copies = new CopySwitch(COPIES_HOLD_MS);
  copies.lossReported(0);
  copies.reset();
  assert.equal(copies.on(1), false);
});

test('test_redundancy_counts_the_frames_sent_with_copies', () => {
  const sender = new RedundantSender(COPIES);
  sender.pack(frame(1));
  sender.pack(frame(2));
  sender.pack(frame(3));
  assert.equal(sender.packed, 2, 'the first had nothing before it');
});
