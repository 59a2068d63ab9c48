// Tests for static/refusal.js: the server's answer to why it turned the page away.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseRefusal } from '../../static/refusal.js';

test('refusal_gives_its_line_and_when_to_retry', () => {
  assert.deepEqual(parseRefusal({ line: 'Try again in 5 seconds.', retryAfter: 5 }), { line: 'Try again in 5 seconds.', retryAfterS: 5 });
  assert.deepEqual(parseRefusal({ line: 'You are banned from this service.', retryAfter: null }),
    { line: 'You are banned from this service.', retryAfterS: null });
  assert.equal(parseRefusal({ line: 'x'.repeat(1000) }).line.length, 300);
  for (const bad of [null, 'x', {}, { line: '' }, { line: 5 }]) assert.equal(parseRefusal(bad), null, JSON.stringify(bad));
  for (const retry of [0, -1, 1.5, '5']) assert.equal(parseRefusal({ line: 'l', retryAfter: retry }).retryAfterS, null);
});
