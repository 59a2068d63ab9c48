// Resuming a call after the socket drops (issue 13): the page's side, pure (no DOM), so node can test it.
//
// The page opens /ws?resumable=1 and the server answers with {"type":"session","token":...} on that
// socket. If the socket then drops without a closing handshake (close code 1006: the network went, a
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

/**
 * Holds the current resume token, and decides when it is worth using.
 *
 *   const resume = new Resume();
 *   resume.onSession(message);            // each {"type":"session"} from the server
 *   resume.onClose(code, inCall, now);    // the socket closed: true if the page should resume
 *   resume.delay(attempt, backoff, now);  // how long to wait before the next try
 *   resume.url(base);                     // what to open next
 *   resume.forget();                      // the page leaves on purpose (another room, Next is not this)
 */
export class Resume {
  constructor() {
    this.token = null;
    this.windowMs = 0;
    this.resuming = false; // the socket dropped in a call and the page is trying to get it back
    this.droppedAt = 0; // when (performance.now() ms) the socket dropped
    this.home = null; // the /ws URL of the process that holds the session
  }

  /** Take the token of a session message; return true if it says the call was resumed. */
  onSession(message) {
    this.token = typeof message.token === 'string' ? message.token : null;
    this.windowMs = typeof message.window === 'number' ? message.window * 1000 : 0;
    const resumed = message.resumed === true && this.resuming;
    this.resuming = false;
    return resumed;
  }

  /**
   * The socket closed with this code: keep the token only for a drop in a call, where the server holds
   * the place; return whether the next socket should try to resume.
   */
  onClose(code, inCall, now = 0) {
    if (this.resuming) return this.token !== null; // a retry that failed too: keep trying with the token
    this.resuming = code === DROPPED && inCall && this.token !== null;
    this.droppedAt = now;
    if (!this.resuming) this.token = null;
    return this.resuming;
  }

  /** The server refused the token (the window ended): the new session it starts is the page's now. */
  onRefused() {
    this.token = null;
    this.resuming = false;
  }

  forget() {
    this.token = null;
    this.resuming = false;
  }

  /**
   * Delay before reconnect attempt `attempt` at time `now`: resumeDelay() while the server still holds the
   * place, then the ordinary backoff(attempt) (the token is still tried: the server says if it is too late).
   */
  delay(attempt, backoff, now) {
    return now - this.droppedAt < this.windowMs ? resumeDelay(attempt, backoff) : backoff(attempt);
  }

  url(base) {
    if (this.resuming) return sessionUrl(this.home ?? base, this.token);
    // A new session: its token will open its place on the process that answers here (after a move, the
    // one the page was moved to), so a resume goes back there, without the move's single-use call token.
    this.home = withoutCall(base);
    return sessionUrl(base, null);
  }
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
