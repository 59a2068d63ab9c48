// Where to connect: room names, page and WebSocket URLs, and the reconnect delay.
// Pure functions (no DOM), so node's test runner can check them.

const ROOM_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const ROOM_NAME_HINT = 'a room name is 1 to 64 letters, digits, "-" or "_"';

// 16 random bytes = 128 bits: nobody guesses a private room.
const ROOM_NAME_BYTES = 16;

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Whether name may be used as a room name (the server answers HTTP 400 otherwise). */
export function isValidRoomName(name) {
  return typeof name === 'string' && ROOM_NAME_RE.test(name);
}

/**
 * The room a page URL asks for: `/r/NAME` or `/?room=NAME`.
 *
 * Returns the name, null for the lobby, or {error} for a malformed name.
 * The path wins over the query when both are given.
 */
export function roomFromLocation(pathname, search = '') {
  const match = /^\/r\/([^/]*)\/?$/.exec(pathname);
  let raw = null;
  if (match) {
    raw = match[1];
  } else {
    const params = new URLSearchParams(search);
    if (!params.has('room')) return null;
    raw = params.get('room');
  }
  let name;
  try {
    name = decodeURIComponent(raw);
  } catch {
    name = raw;
  }
  if (!isValidRoomName(name)) {
    return { error: `Bad room link: ${ROOM_NAME_HINT}. Create a new private room or go back to the lobby.` };
  }
  return name;
}

/** Encode bytes as base64url without padding (16 bytes -> 22 characters). */
export function base64url(bytes) {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += BASE64URL[(value >> bits) & 63];
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE64URL[(value << (6 - bits)) & 63];
  return out;
}

/**
 * A fresh unguessable room name.
 *
 * randomBytes(n) must return n cryptographically random bytes; the default uses crypto.getRandomValues.
 */
export function newRoomName(randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n))) {
  const bytes = randomBytes(ROOM_NAME_BYTES);
  if (!bytes || bytes.length !== ROOM_NAME_BYTES) {
    throw new Error(`randomBytes must return ${ROOM_NAME_BYTES} bytes`);
  }
  return base64url(bytes);
}

/**
 * The page URL to share for a room, e.g. https://host:8080/r/NAME#KEY: the room's key (e2ee.js) rides in
 * the fragment, which browsers never send to a server.
 */
export function roomUrl(origin, name, key = null) {
  if (!isValidRoomName(name)) throw new Error(`Bad room name: ${ROOM_NAME_HINT}`);
  return `${origin.replace(/\/+$/, '')}/r/${name}${key === null ? '' : `#${key}`}`;
}

/**
 * The WebSocket URL on the page's own host: ws: for http:, wss: for https:.
 *
 * locationLike needs protocol and host (window.location will do). room null means the lobby.
 */
export function wsUrl(locationLike, room = null) {
  const scheme = locationLike.protocol === 'https:' ? 'wss:' : 'ws:';
  const base = `${scheme}//${locationLike.host}/ws`;
  if (room === null || room === undefined) return base;
  if (!isValidRoomName(room)) throw new Error(`Bad room name: ${ROOM_NAME_HINT}`);
  return `${base}?room=${room}`;
}

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;

/**
 * Delay before reconnect attempt number `attempt` (0, 1, 2, ...): 0.5 s doubling up to 10 s,
 * with "equal jitter" (between half and all of it) so that many pages dropped by one server
 * restart don't all come back in the same millisecond.
 */
export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
