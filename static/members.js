// Who is in a group room, as the page knows it: a pure reducer over the server's notices
// (docs/protocol.md, Group rooms), and the slot byte in front of every frame. DOM-free, so node tests it.

export const MAX_LABEL_LENGTH = 32;
/** Slot numbers fit the server's one byte; anything else in a notice is not a member. */
const MAX_SLOT = 255;

/** The state before the first notice: not in a group room (yet). */
export function emptyRoom() {
  return { group: false, slot: null, label: '', size: 0, members: [] };
}

function isSlot(value) {
  return Number.isInteger(value) && value >= 0 && value <= MAX_SLOT;
}

function isLabel(value) {
  return typeof value === 'string' && value.length > 0;
}

function withMember(members, slot, label) {
  const others = members.filter((m) => m.slot !== slot);
  others.push({ slot, label });
  return others.sort((a, b) => a.slot - b.slot);
}

/**
 * The room after one control message. Returns the same object when the message changes nothing (a
 * two-person call's messages, malformed notices), so the page redraws only on a change.
 * @param {{group:boolean, slot:number|null, label:string, size:number, members:{slot:number,label:string}[]}} room
 * @param {object} message a parsed control message
 */
export function reduceRoom(room, message) {
  if (!message || typeof message !== 'object') return room;
  switch (message.type) {
    case 'room': {
      if (!isSlot(message.slot) || !Array.isArray(message.members)) return room;
      let members = [];
      for (const m of message.members) {
        if (m && isSlot(m.slot) && isLabel(m.label) && m.slot !== message.slot) members = withMember(members, m.slot, m.label);
      }
      const size = Number.isInteger(message.size) ? message.size : 0;
      return { group: true, slot: message.slot, label: isLabel(message.label) ? message.label : '', size, members };
    }
    case 'joined':
      if (!room.group || !isSlot(message.slot) || !isLabel(message.label) || message.slot === room.slot) return room;
      return { ...room, members: withMember(room.members, message.slot, message.label) };
    case 'left':
      if (!room.group || !room.members.some((m) => m.slot === message.slot)) return room;
      return { ...room, members: room.members.filter((m) => m.slot !== message.slot) };
    case 'label':
      if (!room.group || !isSlot(message.slot) || !isLabel(message.label)) return room;
      if (message.slot === room.slot) return { ...room, label: message.label };
      if (!room.members.some((m) => m.slot === message.slot)) return room;
      return { ...room, members: withMember(room.members, message.slot, message.label) };
    default:
      return room;
  }
}

/**
 * Split a group room's binary message into the sender's slot (the server's byte) and the sender's frame,
 * a view over the same memory (no copy).
 * @param {ArrayBuffer} buffer
 * @returns {{slot:number, frame:Uint8Array} | null} null for a message too short to hold a slot
 */
export function splitSlot(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 1) return null;
  return { slot: new Uint8Array(buffer, 0, 1)[0], frame: new Uint8Array(buffer, 1) };
}

/**
 * A group room's binary message as splitSlot() splits it, if its slot is a member's the room knows; else null.
 * Over WebTransport a frame (a datagram) and the notices (on a stream) do not keep one order: a datagram can come
 * after its sender's `left`, or from a slot that was never announced, and must not make a member of it.
 */
export function memberFrame(room, buffer) {
  const marked = splitSlot(buffer);
  return marked && room.members.some((m) => m.slot === marked.slot) ? marked : null;
}

/**
 * A name typed by the user as the label to send: trimmed and cut to 32 code points (the server counts
 * code points), or null when nothing is left.
 */
export function cleanLabel(text) {
  const trimmed = String(text ?? '').trim();
  if (!trimmed) return null;
  return Array.from(trimmed).slice(0, MAX_LABEL_LENGTH).join('');
}
