// Tests for static/resume.js: which URL the page opens, and when it tries to get its call back.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { DROPPED, Resume, resumeDelay, sessionUrl, withoutCall } from '../../static/resume.js';

test('sessionUrl_asks_for_a_token_or_resumes_with_one', () => {
  assert.equal(sessionUrl('ws://h:8080/ws'), 'ws://h:8080/ws?resumable=1');
  assert.equal(sessionUrl('wss://h/ws?room=abc'), 'wss://h/ws?room=abc&resumable=1');
  assert.equal(sessionUrl('ws://h/ws', 'T-_0'), 'ws://h/ws?resume=T-_0');
  assert.equal(sessionUrl('ws://h/ws?room=abc', 'a+b/c'), 'ws://h/ws?room=abc&resume=a%2Bb%2Fc');
});

test('a_drop_in_a_call_resumes_with_the_token', () => {
  const resume = new Resume();
  assert.equal(resume.onSession({ type: 'session', token: 'tok1', window: 10 }), false);
  assert.equal(resume.windowMs, 10000);
  assert.equal(resume.onClose(DROPPED, true), true);
  assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resume=tok1');
  // The first retry fails too (the network is still gone): keep trying with the same token.
  assert.equal(resume.onClose(DROPPED, false), true);
  assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resume=tok1');
  // Back: the server hands out a new token, and the next socket asks afresh unless it drops again.
  assert.equal(resume.onSession({ type: 'session', token: 'tok2', window: 10, resumed: true }), true);
  assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resumable=1');
  assert.equal(resume.onClose(DROPPED, true), true);
  assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resume=tok2');
});

test('a_clean_close_or_a_drop_outside_a_call_forgets_the_token', () => {
  for (const [code, inCall] of [[1000, true], [1001, true], [1011, true], [DROPPED, false]]) {
    const resume = new Resume();
    resume.onSession({ type: 'session', token: 'tok', window: 10 });
    assert.equal(resume.onClose(code, inCall), false, `${code} ${inCall}`);
    assert.equal(resume.token, null);
    assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resumable=1');
  }
});

test('no_token_no_resume', () => {
  const resume = new Resume();
  assert.equal(resume.onClose(DROPPED, true), false);
  assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resumable=1');
});

test('a_refused_token_or_leaving_on_purpose_starts_anew', () => {
  const resume = new Resume();
  resume.onSession({ type: 'session', token: 'tok', window: 10 });
  resume.onClose(DROPPED, true);
  resume.onRefused();
  assert.equal(resume.url('ws://h/ws'), 'ws://h/ws?resumable=1');
  resume.onSession({ type: 'session', token: 'tok3', window: 10 });
  resume.forget();
  assert.equal(resume.token, null);
  assert.equal(resume.onClose(DROPPED, true), false);
});

test('after_a_move_the_page_resumes_on_the_process_it_was_moved_to_without_the_call_token', () => {
  const resume = new Resume();
  assert.equal(resume.url('wss://h/ws'), 'wss://h/ws?resumable=1');
  resume.onSession({ type: 'session', token: 'on-a', window: 10 });
  resume.forget(); // {"type":"moved"}: a's token opens nothing on b
  assert.equal(resume.url('wss://h/p/b/ws?call=C4ll'), 'wss://h/p/b/ws?call=C4ll&resumable=1');
  resume.onSession({ type: 'session', token: 'on-b', window: 10 });
  assert.equal(resume.onClose(DROPPED, true), true);
  // The page's default URL would reach whichever process the proxy picks; the call lives on b.
  assert.equal(resume.url('wss://h/ws'), 'wss://h/p/b/ws?resume=on-b');
});

test('withoutCall_drops_only_the_call_token', () => {
  assert.equal(withoutCall('ws://h/ws?call=abc'), 'ws://h/ws');
  assert.equal(withoutCall('wss://h/p/b/ws?room=r1&call=abc'), 'wss://h/p/b/ws?room=r1');
  assert.equal(withoutCall('ws://h:8080/ws?room=r1'), 'ws://h:8080/ws?room=r1');
});

test('resumeDelay_tries_at_once_then_about_once_a_second', () => {
  const backoff = (attempt) => 500 * 2 ** attempt;
  assert.deepEqual([0, 1, 2, 3, 10].map((attempt) => resumeDelay(attempt, backoff)), [0, 500, 1000, 1000, 1000]);
});

test('delay_is_quick_within_the_window_then_the_ordinary_backoff', () => {
  const backoff = (attempt) => 500 * 2 ** attempt;
  const resume = new Resume();
  resume.onSession({ type: 'session', token: 'tok', window: 10 });
  assert.equal(resume.onClose(DROPPED, true, 1000), true);
  assert.equal(resume.delay(0, backoff, 1000), 0);
  assert.equal(resume.delay(4, backoff, 9000), 1000);
  assert.equal(resume.delay(4, backoff, 11000), 8000);
});
