// Tests for static/connection.js: the page's connection as a state machine, transition by transition.
// Each test drives the machine as the page does (events with a clock) and checks what the page would
// show and do (status line, buttons, the effects: links opened and closed, messages sent, timers).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  AUTO_NEXT_MS,
  BLOCKED_NOTE,
  Connection,
  KEY_WAIT_MS,
  NO_KEY_ANSWER,
  NOTE_MS,
  PING_INTERVAL_MS,
  REPORTED_NOTE,
  ROOM_FULL,
  SILENT_LINK_MS,
  STATES,
} from '../../static/connection.js';
import { MESSAGES as KEY_MESSAGES } from '../../static/e2ee.js';

const PUBLIC = 'wss://h/ws';
const WINDOW_S = 10;

/** The page around a machine: a clock, and the events the page would dispatch. */
class Page {
  constructor({ random = () => 0.5 } = {}) {
    this.m = new Connection({ publicUrl: (room) => (room === null ? PUBLIC : `${PUBLIC}?room=${room}`), random });
    this.now = 0;
    this.effects = [];
    this.timers = new Map(); // timer -> when it is due, as the page's setTimeout would keep it
  }

  do(type, fields = {}) {
    this.effects = this.m.dispatch({ type, now: this.now, ...fields });
    for (const effect of this.effects) {
      if (effect.type === 'schedule') this.timers.set(effect.timer, this.now + effect.ms);
      if (effect.type === 'cancel') this.timers.delete(effect.timer);
    }
    return this.effects;
  }

  later(ms) {
    this.now += ms;
    return this;
  }

  /** A control message from the server on the current link. */
  hears(message) {
    return this.do('text', { link: this.m.link, text: JSON.stringify(message) });
  }

  opens() {
    return this.do('linkOpen', { link: this.m.link });
  }

  closes(code = 1006, reason = '') {
    return this.do('linkClosed', { link: this.m.link, code, reason });
  }

  /** The pending timer of this name fires, when it is due. */
  fires(timer) {
    assert.ok(this.timers.has(timer), `${timer} is not pending`);
    this.now = Math.max(this.now, this.timers.get(timer));
    this.timers.delete(timer);
    return this.do(timer);
  }

  get status() {
    return this.m.status.text;
  }

  /** The URL of the link the last effects opened. */
  get opened() {
    const open = this.effects.find((e) => e.type === 'open');
    return open ? open.url : null;
  }

  sent(type) {
    return this.effects.filter((e) => e.type === 'send' && e.message.type === type).map((e) => e.message);
  }

  closed() {
    return this.effects.filter((e) => e.type === 'close').map((e) => [e.link, e.reason]);
  }

  scheduled(timer) {
    const found = this.effects.find((e) => e.type === 'schedule' && e.timer === timer);
    return found ? found.ms : null;
  }

  has(type) {
    return this.effects.some((e) => e.type === type);
  }

  /** The callKey effects of the last event, as [op, call]. */
  keyOps() {
    return this.effects.filter((e) => e.type === 'callKey').map((e) => [e.op, e.call]);
  }

  /** The lobby call's key exchange (key-exchange.js) finishes with this safety code. */
  agrees(code = '123 456') {
    return this.do('keyAgreed', { call: this.m.call, code });
  }
}

/** A page that pressed Start, whose microphone started: its first link is opening. */
function connecting({ room = null, random } = {}) {
  const page = new Page({ random });
  page.do('place', { room });
  page.do('start');
  page.do('audioStarted');
  return page;
}

/** A page that pressed Start and whose link is open, with a resume token (window WINDOW_S). */
function started({ room = null } = {}) {
  const page = connecting({ room });
  page.opens();
  page.hears({ type: 'session', token: 'tok', window: WINDOW_S });
  return page;
}

/** In a call; in the lobby its key agreed too. */
function inCall(options) {
  const page = started(options);
  page.hears({ type: 'waiting' });
  page.hears({ type: 'connected' });
  if (page.m.room === null) page.agrees();
  return page;
}

// Before Start.

test('idle_asks_to_press_start_and_start_is_enabled', () => {
  const page = new Page();
  page.do('place', { room: null });
  assert.equal(page.m.state, 'idle');
  assert.equal(page.status, 'Press Start to talk');
  assert.deepEqual(page.m.startButton, { label: 'Start', disabled: false, hidden: false });
  page.do('place', { room: 'abc' });
  assert.equal(page.status, 'Press Start to join this private room');
});

test('a_bad_room_link_shows_its_error_and_start_does_nothing', () => {
  const page = new Page();
  page.do('place', { room: null, roomError: 'Bad room link: …' });
  assert.deepEqual(page.m.error, { text: 'Bad room link: …', about: 'room' });
  assert.equal(page.m.startButton.disabled, true);
  assert.deepEqual(page.do('start'), []);
  assert.equal(page.m.state, 'idle');
  page.do('place', { room: 'good' });
  assert.equal(page.m.error, null);
  assert.equal(page.m.startButton.disabled, false);
});

test('a_browser_without_websockets_says_so_and_start_stays_disabled', () => {
  const page = new Page();
  page.do('unsupported', { text: 'This browser cannot open WebSockets: …' });
  assert.equal(page.m.state, 'unsupported');
  assert.equal(page.m.error.text, 'This browser cannot open WebSockets: …');
  assert.equal(page.m.startButton.disabled, true);
  assert.deepEqual(page.do('start'), []);
});

test('an_insecure_page_says_so_but_start_still_tries_and_clears_it', () => {
  const page = new Page();
  page.do('notice', { text: 'This page needs HTTPS on other machines: …' });
  assert.equal(page.m.startButton.disabled, false);
  page.do('start');
  assert.equal(page.m.error, null);
  assert.equal(page.m.state, 'starting');
});

test('start_starts_the_microphone_then_opens_a_link_to_the_page_address_asking_for_a_token', () => {
  const page = new Page();
  page.do('place', { room: null });
  page.do('start');
  assert.ok(page.has('startAudio'));
  assert.equal(page.m.state, 'starting');
  assert.equal(page.status, 'Starting the microphone…');
  assert.deepEqual(page.m.startButton, { label: 'Start', disabled: true, hidden: false });
  page.do('audioStarted');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  assert.equal(page.m.state, 'connecting');
  assert.equal(page.status, 'Connecting…');
  assert.equal(page.m.startButton.hidden, true);
  assert.equal(page.m.linkOpen, false);
});

test('start_in_a_room_opens_the_room', () => {
  const page = connecting({ room: 'r1' });
  assert.equal(page.opened, `${PUBLIC}?room=r1&resumable=1`);
});

test('a_refused_microphone_goes_back_to_idle_with_its_message', () => {
  const page = new Page();
  page.do('place', { room: null });
  page.do('start');
  page.do('audioFailed', { text: 'Microphone blocked: …' });
  assert.equal(page.m.state, 'idle');
  assert.equal(page.status, 'Press Start to talk');
  assert.deepEqual(page.m.error, { text: 'Microphone blocked: …', about: 'audio' });
  assert.equal(page.m.startButton.disabled, false);
});

test('choosing_another_room_while_the_microphone_starts_connects_to_that_room', () => {
  const page = new Page();
  page.do('place', { room: null });
  page.do('start');
  page.do('place', { room: 'later' });
  page.do('audioStarted');
  assert.equal(page.opened, `${PUBLIC}?room=later&resumable=1`);
});

// The link and the server's news.

test('an_open_link_pings_at_once_and_every_two_seconds_with_its_path', () => {
  const page = connecting();
  page.opens();
  assert.equal(page.m.linkOpen, true);
  assert.deepEqual(page.sent('ping'), [{ type: 'ping', t: 0 }]);
  assert.equal(page.scheduled('pingDue'), PING_INTERVAL_MS);
  page.hears({ type: 'pong', t: 0, partner_path: 7 }); // at 0 ms: a round trip of 0 ms
  page.later(30).hears({ type: 'pong', t: 10 }); // 20 ms
  assert.equal(page.m.roundTrips.latest, 20);
  assert.equal(page.m.partnerPathMs, null);
  page.fires('pingDue');
  assert.deepEqual(page.sent('ping'), [{ type: 'ping', t: PING_INTERVAL_MS, path: 0 }]);
  assert.equal(page.scheduled('pingDue'), PING_INTERVAL_MS);
});

test('the_server_says_waiting_then_connected', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  assert.equal(page.m.state, 'waiting');
  assert.equal(page.status, 'Waiting for a partner…');
  assert.equal(page.m.inCall, false);
  page.hears({ type: 'connected' });
  assert.equal(page.m.state, 'connected');
  assert.equal(page.m.inCall, true);
  assert.ok(page.has('resetPartner'), 'a new partner plays from a fresh buffer');
  page.agrees();
  assert.equal(page.status, 'Connected');
});

test('partner_reconnecting_then_resumed_is_the_same_call_played_afresh', () => {
  const page = inCall();
  page.hears({ type: 'reconnecting' });
  assert.equal(page.m.state, 'partnerReconnecting');
  assert.equal(page.status, 'Partner reconnecting…');
  assert.equal(page.m.inCall, true);
  page.hears({ type: 'resumed' });
  assert.equal(page.m.state, 'connected');
  assert.ok(page.has('resetPartner'));
});

test('partner_left_in_the_lobby_shows_partner_left_then_asks_for_someone_new', () => {
  const page = inCall();
  page.hears({ type: 'disconnected' });
  assert.equal(page.m.state, 'partnerLeft');
  assert.equal(page.status, 'Partner left');
  assert.equal(page.m.inCall, false);
  assert.ok(page.has('resetPartner'));
  assert.equal(page.scheduled('autoNextDue'), AUTO_NEXT_MS);
  page.fires('autoNextDue');
  assert.deepEqual(page.sent('next'), [{ type: 'next' }]);
  assert.equal(page.status, 'Waiting for a partner…');
});

test('a_new_partner_before_auto_next_cancels_it', () => {
  const page = inCall();
  page.hears({ type: 'disconnected' });
  page.hears({ type: 'connected' });
  assert.deepEqual(page.effects.filter((e) => e.type === 'cancel' && e.timer === 'autoNextDue').length, 1);
  assert.deepEqual(page.do('autoNextDue'), [], 'a timer that fires anyway changes nothing in a call');
  assert.equal(page.m.state, 'connected');
});

test('partner_left_in_a_room_waits_there_saying_so', () => {
  const page = inCall({ room: 'r1' });
  page.hears({ type: 'disconnected' });
  assert.equal(page.status, 'Partner left');
  assert.equal(page.scheduled('autoNextDue'), null, 'the server puts us back in the room by itself');
  page.hears({ type: 'waiting' });
  assert.equal(page.status, 'Partner left. Waiting for a partner…');
  page.hears({ type: 'connected' });
  page.hears({ type: 'disconnected' });
  page.hears({ type: 'waiting' });
  assert.equal(page.status, 'Partner left. Waiting for a partner…');
});

test('next_leaves_the_partner_and_waits', () => {
  const page = inCall();
  page.do('next');
  assert.deepEqual(page.sent('next'), [{ type: 'next' }]);
  assert.equal(page.m.state, 'waiting');
  assert.equal(page.status, 'Waiting for a partner…');
  assert.ok(page.has('resetPartner'));
});

test('next_does_nothing_in_a_room_or_before_the_link_opens', () => {
  assert.deepEqual(inCall({ room: 'r1' }).do('next'), []);
  const page = connecting();
  assert.deepEqual(page.do('next'), []);
  assert.equal(page.m.state, 'connecting');
});

test('block_asks_once_more_then_blocks_ends_the_call_and_says_so', () => {
  const page = inCall();
  assert.deepEqual(page.m.blockButton, { hidden: false, confirming: false });
  page.do('blockAsk');
  assert.deepEqual(page.m.blockButton, { hidden: false, confirming: true });
  assert.deepEqual(page.sent('block'), [], 'nothing is sent before the confirm');
  page.do('block');
  assert.deepEqual(page.sent('block'), [{ type: 'block' }]);
  assert.equal(page.m.state, 'waiting');
  assert.ok(page.has('resetPartner'), 'the blocked person is not heard any more');
  page.hears({ type: 'blocked', reported: false });
  assert.equal(page.m.note, BLOCKED_NOTE);
  assert.equal(page.scheduled('noteDue'), NOTE_MS);
  page.hears({ type: 'waiting' });
  assert.deepEqual(page.m.blockButton, { hidden: true, confirming: false });
  page.fires('noteDue');
  assert.equal(page.m.note, null);
});

test('report_is_a_block_with_a_reason_cut_to_200_characters', () => {
  const page = inCall();
  page.do('blockAsk');
  page.do('block', { reason: ` ${'x'.repeat(300)} ` });
  assert.deepEqual(page.sent('report'), [{ type: 'report', reason: 'x'.repeat(200) }]);
  page.hears({ type: 'blocked', reported: true });
  assert.equal(page.m.note, REPORTED_NOTE);
});

test('cancel_closes_the_confirm_and_sends_nothing', () => {
  const page = inCall();
  page.do('blockAsk');
  page.do('blockCancel');
  assert.deepEqual(page.m.blockButton, { hidden: false, confirming: false });
  assert.deepEqual(page.do('block'), [], 'a block without its confirm does nothing');
  assert.equal(page.m.state, 'connected');
});

test('a_partner_who_left_can_be_blocked_and_the_automatic_next_waits_for_the_decision', () => {
  const page = inCall();
  page.hears({ type: 'disconnected' });
  assert.deepEqual(page.m.blockButton, { hidden: false, confirming: false });
  page.do('blockAsk');
  assert.equal(page.timers.has('autoNextDue'), false, 'no Next while the person decides');
  page.do('block');
  assert.deepEqual(page.sent('block'), [{ type: 'block' }]);
  assert.equal(page.m.state, 'partnerLeft');
  page.hears({ type: 'blocked', reported: false });
  assert.deepEqual(page.sent('next'), [{ type: 'next' }], 'then it looks for someone else');
  assert.equal(page.m.state, 'waiting');
});

test('a_confirm_left_open_when_the_partner_leaves_still_blocks_them_and_cancel_restarts_the_automatic_next', () => {
  const page = inCall();
  page.do('blockAsk');
  page.hears({ type: 'disconnected' });
  assert.equal(page.timers.has('autoNextDue'), false);
  assert.equal(page.m.blockButton.confirming, true);
  page.do('blockCancel');
  assert.equal(page.scheduled('autoNextDue'), AUTO_NEXT_MS);
});

test('block_is_not_offered_in_rooms_while_waiting_or_before_the_link_opens', () => {
  assert.equal(inCall({ room: 'r1' }).m.blockButton.hidden, true);
  assert.deepEqual(inCall({ room: 'r1' }).do('blockAsk'), []);
  const waiting = started();
  waiting.hears({ type: 'waiting' });
  assert.equal(waiting.m.blockButton.hidden, true);
  waiting.do('blockAsk');
  assert.equal(waiting.m.blockButton.confirming, false);
  assert.equal(connecting().m.blockButton.hidden, true);
});

test('a_new_call_closes_a_confirm_meant_for_the_person_before', () => {
  const page = inCall();
  page.hears({ type: 'disconnected' });
  page.do('blockAsk');
  page.hears({ type: 'connected' });
  assert.equal(page.m.blockButton.confirming, false);
  assert.deepEqual(page.do('block'), []);
});

test('skipping_at_speed_shows_the_cool_down_and_next_waits_until_the_server_pairs_again', () => {
  const page = inCall();
  page.do('next');
  page.hears({ type: 'cooldown', seconds: 4 });
  assert.equal(page.m.state, 'coolingDown');
  assert.equal(page.status, 'You skipped many people in a row: your next partner comes in 4 s');
  assert.equal(page.m.nextButton.disabled, true);
  assert.deepEqual(page.do('next'), []);
  page.hears({ type: 'connected' });
  assert.equal(page.m.state, 'connected');
  assert.equal(page.m.nextButton.disabled, false);
});

test('garbled_or_unknown_messages_are_warned_about_and_change_nothing', () => {
  const page = inCall();
  for (const text of ['not json', '{"no":"type"}', '{"type":"toString"}', '{"type":"error","reason":"bad"}']) {
    const effects = page.do('text', { link: page.m.link, text });
    assert.equal(effects.length, 1, text);
    assert.equal(effects[0].type, 'warn', text);
    assert.equal(page.m.state, 'connected', text);
  }
});

test('events_from_a_replaced_link_change_nothing', () => {
  const page = inCall();
  const old = page.m.link;
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C' });
  assert.deepEqual(page.do('text', { link: old, text: '{"type":"disconnected"}' }), []);
  assert.deepEqual(page.do('linkClosed', { link: old, code: 1000, reason: 'moved to another process' }), []);
  assert.equal(page.m.state, 'connecting');
});

// Moves between processes (a shared lobby).

test('moved_goes_to_the_named_process_at_once_without_partner_left', () => {
  const page = started();
  const old = page.m.link;
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C4ll' });
  assert.deepEqual(page.closed(), [[old, 'moved']]);
  assert.equal(page.opened, 'wss://h/p/b/ws?call=C4ll&resumable=1');
  assert.equal(page.status, 'Connecting…');
  page.opens();
  page.hears({ type: 'connected' });
  page.agrees();
  assert.equal(page.status, 'Connected');
});

test('a_move_to_a_process_that_is_gone_starts_over_at_the_page_address', () => {
  const page = started();
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C4ll' });
  page.closes(1006);
  assert.equal(page.m.state, 'retrying');
  page.fires('retryDue');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
});

// Resuming after a drop.

test('a_drop_in_a_call_resumes_at_once_with_the_token', () => {
  const page = inCall();
  page.later(1000).closes(1006);
  assert.equal(page.m.state, 'resuming');
  assert.equal(page.status, 'Reconnecting…');
  assert.equal(page.opened, `${PUBLIC}?resume=tok`);
  assert.equal(page.m.inCall, false);
  assert.ok(page.has('resetPartner'));
  page.opens();
  page.hears({ type: 'connected' });
  page.hears({ type: 'session', token: 'tok2', window: WINDOW_S, resumed: true });
  assert.equal(page.m.state, 'connected');
  assert.equal(page.m.token, 'tok2');
  page.later(1000).closes(1006);
  assert.equal(page.opened, `${PUBLIC}?resume=tok2`, 'the next drop resumes with the new token');
});

test('a_failed_resume_tries_again_about_once_a_second_within_the_window', () => {
  const page = inCall();
  page.closes(1006);
  const delays = [];
  for (let i = 0; i < 4; i++) {
    page.closes(1006);
    delays.push(page.scheduled('retryDue'));
    page.fires('retryDue');
    assert.equal(page.opened, `${PUBLIC}?resume=tok`);
  }
  assert.deepEqual(delays, [375, 750, 750, 750]); // room.js's backoff(0), then backoff(1), at random 0.5
  assert.equal(page.status, 'Reconnecting…');
});

test('a_drop_while_waiting_starts_a_new_session_after_a_backoff', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.closes(1006);
  assert.equal(page.m.state, 'retrying');
  assert.equal(page.status, 'Reconnecting… (connection lost, trying again in 1 s)');
  assert.equal(page.m.token, null);
  page.fires('retryDue');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  assert.equal(page.status, 'Reconnecting…');
});

test('a_server_going_away_with_1001_ends_the_session_and_reconnects_with_backoff', () => {
  const page = inCall();
  page.closes(1001, 'server shutting down');
  assert.equal(page.m.state, 'retrying', 'a goodbye is not a drop: nothing is held for us');
  assert.equal(page.m.token, null);
  assert.ok(page.has('resetPartner'));
  const delays = [page.scheduled('retryDue')];
  for (let i = 0; i < 5; i++) {
    page.fires('retryDue');
    assert.equal(page.opened, `${PUBLIC}?resumable=1`);
    page.closes(1006); // nobody listens yet
    delays.push(page.scheduled('retryDue'));
  }
  assert.deepEqual(delays, [375, 750, 1500, 3000, 6000, 7500]);
  page.fires('retryDue');
  page.opens();
  page.hears({ type: 'waiting' });
  assert.equal(page.status, 'Waiting for a partner…');
  page.closes(1006);
  assert.equal(page.scheduled('retryDue'), 375, 'the backoff starts again once the server has answered');
});

test('the_browser_back_online_retries_at_once', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.closes(1006);
  page.do('online');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  assert.ok(page.effects.some((e) => e.type === 'cancel' && e.timer === 'retryDue'));
  assert.deepEqual(page.do('online'), [], 'a link is already opening');
});

test('after_a_move_the_page_resumes_on_the_process_it_was_moved_to_without_the_call_token', () => {
  const page = started();
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C4ll' });
  page.opens();
  page.hears({ type: 'session', token: 'on-b', window: WINDOW_S });
  page.hears({ type: 'connected' });
  page.closes(1006);
  // The page's own address would reach whichever process the proxy picks; the call lives on b.
  assert.equal(page.opened, 'wss://h/p/b/ws?resume=on-b');
});

test('a_move_that_names_a_webtransport_offer_opens_with_it_and_resumes_with_it', () => {
  const offer = { port: 8082, path: '/wt', certificateHashes: [] };
  const page = started();
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C4ll', webtransport: offer });
  const open = page.effects.find((e) => e.type === 'open');
  assert.deepEqual([open.url, open.webtransport], ['wss://h/p/b/ws?call=C4ll&resumable=1', offer]);
  page.opens();
  page.hears({ type: 'session', token: 'on-b', window: WINDOW_S });
  page.hears({ type: 'connected' });
  page.closes(1006);
  const resume = page.effects.find((e) => e.type === 'open');
  assert.deepEqual([resume.url, resume.webtransport], ['wss://h/p/b/ws?resume=on-b', offer]);
});

test('a_move_without_an_offer_opens_with_none', () => {
  const page = started();
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C4ll' });
  assert.equal(page.effects.find((e) => e.type === 'open').webtransport, undefined);
});

test('a_resume_refused_by_a_live_process_is_a_new_session_there_after_partner_left', () => {
  const page = inCall();
  page.closes(1006);
  page.opens();
  page.hears({ type: 'error', reason: 'resume token unknown or expired: starting a new session' });
  assert.equal(page.m.state, 'connecting');
  assert.equal(page.m.token, null);
  page.hears({ type: 'session', token: 'new', window: WINDOW_S });
  page.hears({ type: 'waiting' });
  assert.equal(page.status, 'Partner left. Waiting for a partner…');
  page.hears({ type: 'connected' });
  page.hears({ type: 'disconnected' });
  assert.equal(page.status, 'Partner left');
});

test('past_the_window_a_page_whose_home_process_is_gone_pairs_again_at_the_page_address', () => {
  // Moved to b, in a call there; b is killed: its address (/p/b/ws behind the proxy) answers nothing.
  const page = started();
  page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C4ll' });
  page.opens();
  page.hears({ type: 'session', token: 'on-b', window: WINDOW_S });
  page.hears({ type: 'connected' });
  page.later(5000).closes(1006);
  const droppedAt = page.now;
  for (let tries = 0; page.m.state === 'resuming' && tries < 100; tries++) {
    assert.equal(page.opened, 'wss://h/p/b/ws?resume=on-b');
    page.closes(1006); // the proxy: 502, the process is gone
    if (page.m.state === 'resuming') page.fires('retryDue');
  }
  assert.ok(page.now - droppedAt >= WINDOW_S * 1000);
  assert.equal(page.m.state, 'retrying');
  assert.equal(page.m.token, null);
  page.fires('retryDue');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  page.opens();
  page.hears({ type: 'session', token: 'on-a', window: WINDOW_S });
  page.hears({ type: 'waiting' });
  assert.equal(page.status, 'Partner left. Waiting for a partner…');
  page.hears({ type: 'connected' });
  page.agrees();
  assert.equal(page.status, 'Connected');
  page.closes(1006);
  assert.equal(page.opened, `${PUBLIC}?resume=on-a`, 'the page address is home now');
});

test('the_page_address_is_tried_within_the_window_plus_one_resume_delay_and_one_backoff', () => {
  // Each attempt fails as it is made (a dead process behind a proxy answers at once), at any jitter.
  for (const random of [() => 0, () => 0.999]) {
    const page = connecting({ random });
    page.hears({ type: 'moved', url: 'wss://h/p/b/ws?call=C' });
    page.opens();
    page.hears({ type: 'session', token: 'on-b', window: WINDOW_S });
    page.hears({ type: 'connected' });
    page.closes(1006);
    for (let tries = 0; page.opened !== `${PUBLIC}?resumable=1` && tries < 100; tries++) {
      page.closes(1006);
      page.fires('retryDue');
    }
    assert.equal(page.opened, `${PUBLIC}?resumable=1`);
    assert.ok(page.now <= WINDOW_S * 1000 + 1000 + 500, `${page.now} ms`);
  }
});

test('a_silent_link_in_a_call_is_left_open_and_the_call_resumes_on_a_new_one', () => {
  const page = inCall();
  const silent = page.m.link;
  page.later(SILENT_LINK_MS + 1).do('pingDue');
  assert.deepEqual(page.closed(), [], 'a close frame on the old link would end the call');
  assert.equal(page.opened, `${PUBLIC}?resume=tok`);
  assert.equal(page.m.state, 'resuming');
  page.opens();
  page.hears({ type: 'connected' });
  page.hears({ type: 'session', token: 'tok2', window: WINDOW_S, resumed: true });
  assert.deepEqual(page.closed(), [[silent, 'resumed']]);
  assert.equal(page.m.state, 'connected');
});

test('a_silent_link_left_behind_is_closed_if_the_call_is_not_back', () => {
  const page = inCall();
  const silent = page.m.link;
  page.later(SILENT_LINK_MS + 1).do('pingDue');
  page.opens();
  page.hears({ type: 'error', reason: 'resume token unknown or expired: starting a new session' });
  assert.deepEqual(page.closed(), [[silent, 'leaving']]);
});

test('audio_or_any_message_keeps_a_link_alive', () => {
  const page = inCall();
  page.later(SILENT_LINK_MS);
  page.m.heard(page.m.link, page.now);
  page.later(SILENT_LINK_MS).do('pingDue');
  assert.equal(page.m.state, 'connected');
  page.hears({ type: 'pong', t: page.now });
  page.later(SILENT_LINK_MS).do('pingDue');
  assert.equal(page.m.state, 'connected');
  assert.equal(page.sent('ping').length, 1);
});

test('a_silent_link_outside_a_call_is_not_abandoned', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.later(60000).do('pingDue');
  assert.equal(page.m.state, 'waiting');
  assert.equal(page.sent('ping').length, 1);
});

// Rooms.

test('room_full_shows_its_error_and_start_comes_back_as_try_again', () => {
  const page = started({ room: 'r1' });
  const link = page.m.link;
  page.hears({ type: 'error', reason: 'room full' });
  assert.equal(page.m.state, 'roomFull');
  assert.equal(page.status, 'Room full');
  assert.deepEqual(page.m.error, { text: ROOM_FULL, about: 'room' });
  assert.deepEqual(page.m.startButton, { label: 'Try again', disabled: false, hidden: false });
  assert.deepEqual(page.closed(), [[link, 'room full']]);
  assert.deepEqual(page.do('linkClosed', { link, code: 1008, reason: 'room full' }), [], 'never reconnects by itself');
  page.do('start');
  assert.equal(page.opened, `${PUBLIC}?room=r1&resumable=1`);
  assert.equal(page.m.error, null);
  assert.equal(page.status, 'Connecting…');
});

test('a_room_full_close_without_its_message_is_room_full_too', () => {
  const page = started({ room: 'r1' });
  page.closes(1008, 'room full');
  assert.equal(page.m.state, 'roomFull');
  assert.equal(page.scheduled('retryDue'), null);
});

test('going_to_another_room_in_a_call_leaves_and_opens_that_room', () => {
  const page = inCall();
  const link = page.m.link;
  page.do('place', { room: 'r2' });
  assert.deepEqual(page.closed(), [[link, 'leaving']]);
  assert.equal(page.opened, `${PUBLIC}?room=r2&resumable=1`);
  assert.equal(page.m.room, 'r2');
  assert.equal(page.status, 'Connecting…');
  assert.equal(page.m.token, null);
});

test('leaving_a_full_room_for_the_lobby_connects_there', () => {
  const page = started({ room: 'r1' });
  page.hears({ type: 'error', reason: 'room full' });
  page.do('place', { room: null });
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  assert.equal(page.m.error, null);
});

test('a_group_room_lists_its_members_names_this_page_and_follows_joins_drops_and_leaves', () => {
  const page = new Page();
  page.do('place', { room: 'g' });
  page.do('name', { name: 'Ann' });
  page.do('start');
  page.do('audioStarted');
  page.opens();
  page.hears({ type: 'room', slot: 1, label: 'Guest 1', size: 8, members: [] });
  assert.deepEqual(page.sent('label'), [{ type: 'label', label: 'Ann' }]);
  assert.ok(page.has('resetPartner'), 'a fresh room: nobody from before plays on');
  page.hears({ type: 'waiting' });
  assert.equal(page.status, 'Waiting for others to join…');
  page.hears({ type: 'joined', slot: 2, label: 'Bob' });
  assert.deepEqual(page.effects, [{ type: 'addMember', slot: 2 }]);
  page.hears({ type: 'connected' });
  assert.equal(page.m.inCall, true);
  assert.equal(page.has('resetPartner'), false, 'members come and go one by one');
  page.hears({ type: 'reconnecting', slot: 2 });
  assert.deepEqual([...page.m.reconnectingSlots], [2]);
  assert.equal(page.m.state, 'connected');
  page.hears({ type: 'resumed', slot: 2 });
  assert.deepEqual(page.effects, [{ type: 'restartMember', slot: 2 }]);
  assert.deepEqual([...page.m.reconnectingSlots], []);
  page.hears({ type: 'reconnecting', slot: 2 });
  page.hears({ type: 'left', slot: 2 });
  assert.deepEqual(page.effects, [{ type: 'removeMember', slot: 2 }]);
  assert.deepEqual([...page.m.reconnectingSlots], [], 'who left is not reconnecting');
  page.hears({ type: 'disconnected' });
  assert.equal(page.m.state, 'waiting');
  page.do('name', { name: 'Ann B' });
  assert.deepEqual(page.sent('label'), [{ type: 'label', label: 'Ann B' }]);
  page.closes(1006);
  assert.equal(page.m.group.group, false, 'the room ends with its link');
  assert.ok(page.has('resetPartner'));
});

// Encryption: a lobby call's key, a private room's wrong key.

test('a_lobby_call_agrees_a_key_before_it_says_connected_and_then_shows_the_safety_code', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.hears({ type: 'connected' });
  assert.deepEqual(page.keyOps(), [['start', 1]]);
  assert.deepEqual(page.m.status, { text: 'Partner found: setting up encryption…', kind: 'connecting' });
  assert.equal(page.m.safetyCode, null);
  assert.equal(page.scheduled('keyDue'), KEY_WAIT_MS);
  page.do('keyOut', { call: 1, message: { type: 'key', commit: 'c' } });
  assert.deepEqual(page.sent('key'), [{ type: 'key', commit: 'c' }], 'on the call\'s link');
  page.hears({ type: 'key', commit: 'theirs' });
  assert.deepEqual(page.effects, [{ type: 'callKey', call: 1, op: 'receive', message: { type: 'key', commit: 'theirs' } }]);
  page.agrees('042 917');
  assert.equal(page.status, 'Connected');
  assert.equal(page.m.safetyCode, '042 917');
  assert.equal(page.timers.has('keyDue'), false);
});

test('each_lobby_call_has_its_own_key_and_a_late_message_of_the_last_one_goes_nowhere', () => {
  const page = inCall();
  page.hears({ type: 'disconnected' });
  assert.deepEqual(page.keyOps(), [['end', 1]]);
  assert.equal(page.m.safetyCode, null);
  assert.deepEqual(page.do('keyOut', { call: 1, message: { type: 'key', public: 'p' } }), []);
  page.hears({ type: 'key', public: 'late' });
  assert.deepEqual(page.keyOps(), [], 'outside a call: warned about, handed to nobody');
  assert.ok(page.has('warn'));
  page.fires('autoNextDue');
  page.hears({ type: 'connected' });
  assert.deepEqual(page.keyOps(), [['start', 2]]);
  page.do('keyAgreed', { call: 1, code: '111 111' });
  assert.equal(page.m.key.state, 'agreeing', 'the last call\'s exchange cannot make this one ready');
  page.do('next');
  assert.deepEqual(page.keyOps(), [['end', 2]]);
});

test('no_key_within_the_wait_says_so_and_sends_no_audio_until_next_finds_someone_else', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.hears({ type: 'connected' });
  page.fires('keyDue');
  assert.deepEqual(page.m.status, { text: 'Cannot encrypt this call', kind: 'left' });
  assert.deepEqual(page.m.error, { text: NO_KEY_ANSWER, about: 'key' });
  assert.equal(page.m.safetyCode, null);
  page.do('next');
  assert.equal(page.m.error, null, 'the next call starts clean');
  page.hears({ type: 'connected' });
  page.agrees();
  assert.equal(page.status, 'Connected');
});

test('a_failed_exchange_shows_its_line_until_the_call_ends', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.hears({ type: 'connected' });
  page.do('keyFailed', { call: 1, text: 'The key exchange with your partner failed: …' });
  assert.equal(page.status, 'Cannot encrypt this call');
  assert.equal(page.m.error.text, 'The key exchange with your partner failed: …');
  assert.equal(page.timers.has('keyDue'), false);
  page.hears({ type: 'disconnected' });
  assert.equal(page.m.error, null);
});

test('a_resume_keeps_the_call_key_and_sends_the_key_messages_again', () => {
  const page = inCall();
  page.closes(1006);
  assert.equal(page.m.state, 'resuming');
  assert.deepEqual(page.keyOps(), [], 'the call and its key live on while we resume');
  page.opens();
  page.hears({ type: 'connected' });
  assert.deepEqual(page.keyOps(), [['resend', 1]]);
  assert.equal(page.m.safetyCode, '123 456');
  assert.equal(page.status, 'Connected');
  page.hears({ type: 'reconnecting' });
  page.hears({ type: 'resumed' });
  assert.deepEqual(page.keyOps(), [['resend', 1]], 'the partner may have missed them too');
});

test('the_key_wait_goes_on_while_a_page_reconnects_and_starts_again_when_it_is_back', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.hears({ type: 'connected' });
  page.hears({ type: 'reconnecting' });
  page.fires('keyDue');
  assert.equal(page.m.key.state, 'agreeing');
  assert.equal(page.scheduled('keyDue'), KEY_WAIT_MS);
  page.hears({ type: 'resumed' });
  assert.deepEqual(page.keyOps(), [['resend', 1]]);
  assert.equal(page.scheduled('keyDue'), KEY_WAIT_MS);
});

test('a_resume_refused_ends_the_call_and_its_key', () => {
  const page = inCall();
  page.closes(1006);
  page.opens();
  page.hears({ type: 'error', reason: 'resume token unknown or expired: starting a new session' });
  assert.deepEqual(page.keyOps(), [['end', 1]]);
  page.hears({ type: 'connected' });
  assert.deepEqual(page.keyOps(), [['start', 2]], 'whoever the server pairs us with now is a new call');
});

test('a_private_room_agrees_no_key_and_a_wrong_one_shows_its_line_until_something_decrypts', () => {
  const page = started({ room: 'r1' });
  page.hears({ type: 'waiting' });
  page.hears({ type: 'connected' });
  assert.deepEqual(page.keyOps(), []);
  assert.equal(page.status, 'Connected');
  page.do('keyVerdict', { call: 0, verdict: 'wrong' });
  assert.deepEqual(page.m.error, { text: KEY_MESSAGES.wrongKey, about: 'key' });
  assert.equal(page.status, 'Connected');
  page.do('keyVerdict', { call: 0, verdict: 'ok' });
  assert.equal(page.m.error, null);
  page.do('keyVerdict', { call: 0, verdict: 'wrong' });
  page.do('place', { room: 'r2' });
  assert.equal(page.m.error, null, 'another room, another key');
});

test('a_lobby_call_whose_frames_never_decrypt_says_the_exchange_was_tampered_with', () => {
  const page = inCall();
  page.do('keyVerdict', { call: 1, verdict: 'wrong' });
  assert.deepEqual(page.m.error, { text: KEY_MESSAGES.wrongCallKey, about: 'key' });
  page.do('next');
  assert.equal(page.m.error, null);
  page.do('keyVerdict', { call: 1, verdict: 'wrong' });
  assert.equal(page.m.error, null, 'a verdict on the last call says nothing about this one');
});

// Leaving and coming back.

test('the_back_forward_cache_leaves_the_call_and_comes_back_with_a_new_session', () => {
  const page = inCall();
  const link = page.m.link;
  page.do('pageHidden');
  assert.deepEqual(page.closed(), [[link, 'page hidden']]);
  assert.equal(page.m.state, 'away');
  assert.equal(page.m.token, null);
  page.do('pageShown');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  assert.equal(page.m.state, 'connecting');
});

test('a_link_the_browser_will_not_open_says_reload', () => {
  const page = connecting();
  page.do('linkFailed', { link: page.m.link, text: 'SyntaxError' });
  assert.equal(page.m.state, 'broken');
  assert.equal(page.m.error.text, 'Cannot connect to the server (SyntaxError): reload the page.');
});

test('every_state_has_a_status_line_and_a_start_button', () => {
  const page = new Page();
  for (const state of STATES) {
    page.m.state = state;
    const { text, kind } = page.m.status;
    assert.ok(text && kind, state);
    assert.equal(typeof page.m.startButton.disabled, 'boolean', state);
  }
});

// Loss reports (loss-watch.js, redundancy.js).

test('lost_frames_in_a_call_are_reported_to_the_server', () => {
  const page = inCall();
  page.do('lossSeen');
  assert.deepEqual(page.sent('loss'), [{ type: 'loss' }]);
});

test('lost_frames_outside_a_call_are_reported_to_nobody', () => {
  const page = started();
  page.hears({ type: 'waiting' });
  page.do('lossSeen');
  assert.deepEqual(page.sent('loss'), []);
});

test('a_loss_report_from_the_server_turns_copies_on_in_a_call_only', () => {
  const page = inCall();
  page.hears({ type: 'loss' });
  assert.ok(page.has('lossReported'));
  assert.equal(page.has('warn'), false, 'a known message');
  page.do('next');
  page.hears({ type: 'loss' }); // the last partner's, overtaken by our Next
  assert.equal(page.has('lossReported'), false);
});

// Turned away: the server's reason (refusal.js), since a browser hides a refused handshake's body.

test('a_page_turned_away_shows_why_and_tries_again_when_the_server_says', () => {
  const page = started();
  page.closes(1006); // never opened: the handshake was refused
  assert.equal(page.m.state, 'retrying');
  page.do('turnedAway', { text: 'Too many connections from your address in the last minute: try again in 30 seconds.', retryAfterS: 30 });
  assert.equal(page.m.error.text, 'Too many connections from your address in the last minute: try again in 30 seconds.');
  assert.equal(page.timers.get('retryDue'), page.now + 30_000);
  page.later(30_000).fires('retryDue');
  assert.equal(page.opened, `${PUBLIC}?resumable=1`);
  page.opens();
  assert.equal(page.m.error, null, 'let in: the line goes');
});

test('a_banned_page_shows_the_ban_and_stops_trying', () => {
  const page = started();
  page.closes(1006);
  page.do('turnedAway', { text: 'You are banned from this service.', retryAfterS: null });
  assert.equal(page.m.state, 'broken');
  assert.equal(page.m.error.text, 'You are banned from this service.');
  assert.equal(page.timers.has('retryDue'), false);
});
