// Tests for static/loss-watch.js: when a receiver tells the senders of its audio that frames went missing.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ArrivalGaps, LossWatch, MAX_LOSS_GAP, SETTLING_FRAMES } from '../../static/loss-watch.js';

test('test_loss_watch_reports_nothing_while_nothing_goes_missing', () => {
  const watch = new LossWatch(2000);
  for (let now = 0; now < 20000; now += 250) {
    watch.saw(0, 0);
    assert.equal(watch.reportDue(now), false);
  }
});

test('test_loss_watch_reports_the_first_missing_frame_at_once', () => {
  const watch = new LossWatch(2000);
  watch.saw(0, 0);
  watch.saw(0, 1);
  assert.equal(watch.reportDue(100), true);
  assert.equal(watch.reportDue(150), false, 'once');
});

test('test_loss_watch_reports_at_most_once_an_interval_while_frames_go_missing', () => {
  const watch = new LossWatch(2000);
  const due = [];
  for (let now = 0, missing = 0; now < 10000; now += 250) {
    missing++; // a frame missing every quarter second
    watch.saw(0, missing);
    if (watch.reportDue(now)) due.push(now);
  }
  assert.deepEqual(due, [0, 2000, 4000, 6000, 8000]);
  assert.equal(watch.reports, 5);
});

test('test_loss_watch_frames_gone_missing_during_the_interval_are_reported_when_it_ends', () => {
  const watch = new LossWatch(2000);
  watch.saw(0, 1);
  assert.ok(watch.reportDue(0));
  watch.saw(0, 2);
  assert.equal(watch.reportDue(500), false);
  watch.saw(0, 2); // nothing more
  assert.equal(watch.reportDue(2000), true, 'the loss at 500 ms is reported when the interval is over');
  assert.equal(watch.reportDue(4000), false);
});

test('test_loss_watch_any_sender_of_a_group_counts', () => {
  const watch = new LossWatch(2000);
  watch.saw(1, 0);
  watch.saw(2, 0);
  assert.equal(watch.reportDue(0), false);
  watch.saw(1, 0);
  watch.saw(2, 3);
  assert.equal(watch.reportDue(250), true);
});

test('test_loss_watch_a_playout_counting_from_zero_again_is_no_loss', () => {
  const watch = new LossWatch(2000);
  watch.saw(0, 5);
  assert.ok(watch.reportDue(0));
  watch.saw(0, 0); // a new stream: its playout starts again
  assert.equal(watch.reportDue(5000), false);
  watch.saw(0, 1);
  assert.equal(watch.reportDue(5250), true);
  watch.reset();
  watch.saw(0, 0);
  assert.equal(watch.reportDue(9000), false, 'a new call: nothing missing yet');
});

/** What a receiver counts missing from a sender's frames arriving as [seq, recovered], once its stream settled. */
function missing(arrivals) {
  const gaps = new ArrivalGaps();
  const [first] = arrivals[0];
  for (let i = SETTLING_FRAMES; i > 0; i--) gaps.arrive((first - i + 65536) % 65536, false);
  for (const [seq, recovered] of arrivals) gaps.arrive(seq, recovered);
  return gaps.missing;
}

test('test_arrival_gaps_a_streams_first_frames_are_not_counted', () => {
  const gaps = new ArrivalGaps();
  gaps.arrive(0, false);
  gaps.arrive(3, false);
  gaps.arrive(5, true);
  assert.equal(gaps.missing, 0, 'the receiving page was starting');
  for (let seq = 6; seq <= SETTLING_FRAMES; seq++) gaps.arrive(seq, false); // SETTLING_FRAMES - 2 arrived
  gaps.arrive(SETTLING_FRAMES + 2, false);
  gaps.arrive(SETTLING_FRAMES + 1, false); // late, the last frame of the settling: the newest stays the newest
  gaps.arrive(SETTLING_FRAMES + 3, false);
  assert.equal(gaps.missing, 0);
  gaps.arrive(SETTLING_FRAMES + 5, false);
  assert.equal(gaps.missing, 1);
});

test('test_arrival_gaps_frames_in_order_are_none_missing', () => {
  assert.equal(missing([[10, false], [11, false], [12, false]]), 0);
  assert.equal(missing([[65534, false], [65535, false], [0, false], [1, false]]), 0, 'across the wrap');
});

test('test_arrival_gaps_skipped_frames_and_recovered_ones_are_missing', () => {
  assert.equal(missing([[1, false], [2, false], [4, false], [7, false]]), 3, '3, 5 and 6 never came');
  assert.equal(missing([[1, false], [2, true], [3, false]]), 1, '2 came only as a copy with 3');
  assert.equal(missing([[1, false], [3, true], [4, false]]), 2, '2 lost, 3 recovered');
  assert.equal(missing([[65535, false], [1, false]]), 1, 'across the wrap');
});

test('test_arrival_gaps_a_late_frame_counts_once', () => {
  assert.equal(missing([[1, false], [3, false], [2, false], [4, false]]), 1);
});

test('test_arrival_gaps_a_long_silence_of_the_sender_is_no_loss', () => {
  // Muted, in DTX or stalled, a sender sends nothing while its sequence numbers go on.
  assert.equal(missing([[1, false], [2 + MAX_LOSS_GAP, false]]), MAX_LOSS_GAP);
  assert.equal(missing([[1, false], [3 + MAX_LOSS_GAP, false], [40, false], [41, false]]), 0);
});

test('test_arrival_gaps_a_sender_that_starts_again_is_a_new_stream', () => {
  assert.equal(missing([[5000, false], [5001, false], [3, false], [4, false], [6, false]]), 1, 'only 5, in the new stream');
});

test('test_arrival_gaps_a_short_gap_after_a_silent_frame_is_dtx_not_loss', () => {
  // The silence gate sends a refresh frame in a pause; speech may start again two frames later.
  const settled = (gaps) => {
    for (let seq = 0; seq < SETTLING_FRAMES; seq++) gaps.arrive(seq, false);
    return gaps;
  };
  const dtx = settled(new ArrivalGaps());
  dtx.decoded(SETTLING_FRAMES - 1, true);
  dtx.arrive(SETTLING_FRAMES + 2, false);
  assert.equal(dtx.missing, 0);
  const lossy = settled(new ArrivalGaps());
  lossy.decoded(SETTLING_FRAMES - 1, false);
  lossy.arrive(SETTLING_FRAMES + 2, false);
  assert.equal(lossy.missing, 2, 'after a frame of speech, two frames lost');
});
