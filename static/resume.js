// Resuming a call after the link drops (issue 13): the URLs and the pace. connection.js decides when.
//
// The page opens /ws?resumable=1 and the server answers with {"type":"session","token":...} on that
// link. If the link then drops without a closing handshake (close code 1006: the network went, a
// laptop slept), the page reconnects at once with /ws?resume=TOKEN and, within the server's window
// (--resume-window, 10 s by default), gets the same call back. A clean close (1000 from the page itself,
// 1001 from a server restarting) ends the session: the token is forgotten and the page starts anew.

/** The close code of a socket that dropped without a closing handshake. */
export const DROPPED = 1006;

/** The start of the error the server sends for a token it no longer knows (a new session follows). */
export const RESUME_REFUSED = 'resume token unknown or expired';

/**
 * The URL to open: base (from wsUrl()) asking for a token, or resuming with one.
 * @param {string} base e.g. wss://host/ws or wss://host/ws?room=NAME
 * @param {string|null} token the token to resume with, or null for a new session
 */
export function sessionUrl(base, token = null) {
  const separator = base.includes('?') ? '&' : '?';
  return token ? `${base}${separator}resume=${encodeURIComponent(token)}` : `${base}${separator}resumable=1`;
}

/** The /ws URL without its ?call= (a shared lobby's move, good once). */
export function withoutCall(url) {
  const parsed = new URL(url);
  parsed.searchParams.delete('call');
  return parsed.href;
}

/**
 * Delay before reconnect attempt `attempt` (0, 1, ...) while resuming: the first at once, then
 * backoff(0), then backoff(1) again and again (with room.js's backoff: 0.25-0.5 s, then 0.5-1 s), so that a
 * page whose network comes back within the server's window finds it within a second, and a page whose
 * network is still gone tries about once a second, never all pages in the same millisecond.
 */
export function resumeDelay(attempt, backoff) {
  return attempt === 0 ? 0 : backoff(Math.min(attempt - 1, 1));
}
