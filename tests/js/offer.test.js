// Tests for static/offer.js: the WebTransport offer renewed before its id token expires.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { OfferKeeper, RETRY_MS } from '../../static/offer.js';

const HOUR = 3600;

/** An offer as parseOffer gives it, its token numbered n. */
function offer(n, tokenSeconds = HOUR) {
  return { port: 8443, path: '/wt', certificateHashes: [], token: `token-${n}`, tokenSeconds };
}

/** A keeper on a clock and timers the test moves by hand; fetches answer what `answers` holds, in turn. */
function setUp(answers) {
  const clock = { ms: 0 };
  const timers = [];
  let fetches = 0;
  const keeper = new OfferKeeper(async () => answers[fetches++] ?? null, {
    now: () => clock.ms,
    setTimer: (fn, ms) => {
      const timer = { fn, at: clock.ms + ms };
      timers.push(timer);
      return timer;
    },
    clearTimer: (timer) => {
      const i = timers.indexOf(timer);
      if (i >= 0) timers.splice(i, 1);
    },
  });
  /** Move the clock on, firing the timers due. */
  const pass = async (ms) => {
    clock.ms += ms;
    for (const timer of timers.filter((t) => t.at <= clock.ms)) {
      timers.splice(timers.indexOf(timer), 1);
      timer.fn();
    }
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { keeper, pass, clock, timers, fetches: () => fetches };
}

test('offer_is_renewed_at_half_its_tokens_life', async () => {
  const { keeper, pass, fetches } = setUp([offer(1), offer(2), offer(3)]);
  assert.equal(keeper.offer, null);
  await keeper.renew();
  assert.equal(keeper.offer.token, 'token-1');
  await pass((HOUR / 2) * 1000 - 1);
  assert.equal(fetches(), 1);
  assert.equal(keeper.stale(), false);
  await pass(1);
  assert.equal(keeper.offer.token, 'token-2');
  await pass((HOUR / 2) * 1000);
  assert.equal(keeper.offer.token, 'token-3');
});

test('offer_whose_renewal_did_not_run_is_stale_and_renewed_on_demand', async () => {
  const { keeper, clock, timers, fetches } = setUp([offer(1), offer(2)]);
  await keeper.renew();
  timers.length = 0; // a machine asleep: the renewal's timer never ran
  clock.ms += HOUR * 1000;
  assert.equal(keeper.stale(), true);
  const [a, b] = await Promise.all([keeper.renew(), keeper.renew()]);
  assert.equal(fetches(), 2, 'two callers share one fetch');
  assert.equal(a.token, 'token-2');
  assert.equal(b, a);
  assert.equal(keeper.stale(), false);
});

test('failed_renewal_keeps_the_offer_and_tries_again_later', async () => {
  const { keeper, pass, fetches } = setUp([offer(1), null, offer(3)]);
  await keeper.renew();
  await pass((HOUR / 2) * 1000);
  assert.equal(fetches(), 2);
  assert.equal(keeper.offer.token, 'token-1', 'a network down keeps what the page had');
  assert.equal(keeper.stale(), true);
  await pass(RETRY_MS);
  assert.equal(keeper.offer.token, 'token-3');
  assert.equal(keeper.stale(), false);
});

test('no_offer_or_a_token_without_a_lifetime_is_never_renewed', async () => {
  for (const first of [null, offer(1, null), { ...offer(1), token: null }]) {
    const { keeper, timers, fetches } = setUp([first]);
    await keeper.renew();
    assert.equal(keeper.stale(), false);
    assert.equal(timers.length, 0);
    assert.equal(fetches(), 1);
  }
});
