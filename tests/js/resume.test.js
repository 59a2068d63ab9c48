// Tests for static/resume.js: the URLs a session and a resume open, and the resume's pace.
// When the page resumes is connection.js's, tested in connection.test.js.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { resumeDelay, sessionUrl, withoutCall } from '../../static/resume.js';

test('sessionUrl_asks_for_a_token_or_resumes_with_one', () => {
  assert.equal(sessionUrl('ws://h:8080/ws'), 'ws://h:8080/ws?resumable=1');
  assert.equal(sessionUrl('wss://h/ws?room=abc'), 'wss://h/ws?room=abc&resumable=1');
  assert.equal(sessionUrl('ws://h/ws', 'T-_0'), 'ws://h/ws?resume=T-_0');
  assert.equal(sessionUrl('ws://h/ws?room=abc', 'a+b/c'), 'ws://h/ws?room=abc&resume=a%2Bb%2Fc');
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
