import { test } from 'node:test';
import assert from 'node:assert/strict';

import { cleanLabel, emptyRoom, memberFrame, reduceRoom, splitSlot } from '../../static/members.js';

function joinedRoom() {
  return reduceRoom(emptyRoom(), {
    type: 'room', slot: 2, label: 'Guest 3', size: 8,
    members: [{ slot: 1, label: 'Guest 2' }, { slot: 0, label: 'Ann' }],
  });
}

test('the room message makes a group room with the other members in slot order', () => {
  const room = joinedRoom();
  assert.equal(room.group, true);
  assert.equal(room.slot, 2);
  assert.equal(room.label, 'Guest 3');
  assert.equal(room.size, 8);
  assert.deepEqual(room.members, [{ slot: 0, label: 'Ann' }, { slot: 1, label: 'Guest 2' }]);
});

test('two-person messages change nothing', () => {
  const room = emptyRoom();
  for (const type of ['waiting', 'connected', 'disconnected', 'pong']) assert.equal(reduceRoom(room, { type }), room);
  assert.equal(reduceRoom(room, { type: 'joined', slot: 1, label: 'x' }), room, 'joined outside a group room');
});

test('joined adds a row and left removes it', () => {
  let room = reduceRoom(joinedRoom(), { type: 'joined', slot: 3, label: 'Guest 4' });
  assert.deepEqual(room.members.map((m) => m.slot), [0, 1, 3]);
  room = reduceRoom(room, { type: 'left', slot: 1 });
  assert.deepEqual(room.members, [{ slot: 0, label: 'Ann' }, { slot: 3, label: 'Guest 4' }]);
});

test('a slot given again after a leave is the new member', () => {
  let room = reduceRoom(joinedRoom(), { type: 'left', slot: 0 });
  room = reduceRoom(room, { type: 'joined', slot: 0, label: 'Guest 1' });
  assert.deepEqual(room.members[0], { slot: 0, label: 'Guest 1' });
  assert.equal(room.members.length, 2);
});

test('label renames a member, or this page itself', () => {
  let room = reduceRoom(joinedRoom(), { type: 'label', slot: 1, label: '<b>Bob</b>' });
  assert.deepEqual(room.members[1], { slot: 1, label: '<b>Bob</b>' }, 'kept as text, shown with textContent');
  room = reduceRoom(room, { type: 'label', slot: 2, label: 'Cyd' });
  assert.equal(room.label, 'Cyd');
  assert.equal(room.members.length, 2, 'this page is never its own row');
});

test('malformed notices are ignored', () => {
  const room = joinedRoom();
  for (const message of [
    null, 'text', { type: 'joined', slot: -1, label: 'x' }, { type: 'joined', slot: 1.5, label: 'x' },
    { type: 'joined', slot: 4, label: '' }, { type: 'joined', slot: 4 }, { type: 'left', slot: 7 },
    { type: 'label', slot: 6, label: 'nobody' }, { type: 'joined', slot: 2, label: 'me again' },
    { type: 'room', slot: 'x', members: [] },
  ]) {
    assert.equal(reduceRoom(room, message), room, JSON.stringify(message));
  }
});

test('the slot byte is split from the frame without copying', () => {
  const buffer = new Uint8Array([5, 1, 1, 0, 0]).buffer;
  const { slot, frame } = splitSlot(buffer);
  assert.equal(slot, 5);
  assert.equal(frame.buffer, buffer);
  assert.equal(frame.byteOffset, 1);
  assert.deepEqual(Array.from(frame), [1, 1, 0, 0]);
  assert.equal(splitSlot(new ArrayBuffer(0)), null);
  assert.equal(splitSlot('text'), null);
  assert.equal(splitSlot(new Uint8Array([7]).buffer).frame.byteLength, 0);
});

test('a typed name is trimmed and cut to 32 code points', () => {
  assert.equal(cleanLabel('  Ann  '), 'Ann');
  assert.equal(cleanLabel('   '), null);
  assert.equal(cleanLabel(''), null);
  assert.equal(cleanLabel('x'.repeat(40)).length, 32);
  const emoji = '😀'.repeat(40);
  assert.equal(Array.from(cleanLabel(emoji)).length, 32);
});

test('memberFrame_takes_frames_of_known_members_only', () => {
  const room = reduceRoom(emptyRoom(), { type: 'room', slot: 0, label: 'Ann', size: 3, members: [{ slot: 1, label: 'Bob' }] });
  const frame = (slot) => new Uint8Array([slot, 7, 8]).buffer;
  assert.deepEqual(Array.from(memberFrame(room, frame(1)).frame), [7, 8]);
  assert.equal(memberFrame(room, frame(2)), null, 'a slot never announced');
  const after = reduceRoom(room, { type: 'left', slot: 1 });
  assert.equal(memberFrame(after, frame(1)), null, 'a datagram that came after its sender left');
  assert.equal(memberFrame(room, new ArrayBuffer(0)), null);
});
