// Tests for static/loss-watch.js: when a receiver tells the senders of its audio that frames went missing.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { LossWatch, missingFrames } from '../../static/loss-watch.js';

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

test('test_loss_watch_missing_frames_are_the_lost_and_the_recovered_not_the_late', () => {
  assert.equal(missingFrames({ lost: 2, recovered: 5, late: 7 }), 7);
  assert.equal(missingFrames({}), 0);
});
