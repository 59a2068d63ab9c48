// Which transport carries the call: WebTransport where the browser has it and the server offers it, the
// WebSocket otherwise, and the WebSocket at once when WebTransport fails or is blocked.
//
//   const offer = await fetchOffer();                     // the server's /webtransport.json, or null
//   const link = openLink({ webSocketUrl, offer, openWebSocketLink }, handlers);
//   link.kind   // 'webtransport' or 'websocket': whichever opened
//
// A firewall that drops UDP gives no answer at all, so WebTransport gets a head start and no more: if its
// session is not open after HEAD_START_MS, it is closed and the WebSocket opened instead. The two are
// never open together: a page is in the lobby once. A WebTransport that failed before opening is not
// tried again on this page (each retry would cost the head start); the page fetches a fresh offer on its
// next load, or after the server renews its certificate.
//
// No DOM here: node --test runs it with stand-in links.

import { openWebTransportLink } from './webtransport-link.js';

/** How long WebTransport may take to open before the page falls back to its WebSocket. */
export const HEAD_START_MS = 1000;
/** Where the server says how to reach its WebTransport endpoint (404 when it has none). */
export const OFFER_PATH = '/webtransport.json';

/**
 * The WebTransport URL for a WebSocket URL: the same host and query, the offer's port and path, and the
 * page's id token (from its own offer) as id=: a session carries no cookie, and without it the server
 * knows the session by its address alone.
 * @param {string} webSocketUrl ws:// or wss:// URL of /ws, with its query (room, resume, call)
 * @param {{port: number, path: string}} offer
 * @param {string | null} token the page's own offer's token (a moved offer has none; the secret is shared)
 */
export function webTransportUrl(webSocketUrl, offer, token = null) {
  const url = new URL(webSocketUrl);
  const id = token ? `${url.search ? '&' : '?'}id=${encodeURIComponent(token)}` : '';
  return `https://${url.hostname}:${offer.port}${offer.path}${url.search}${id}`;
}

/**
 * The offer for a link to webSocketUrl: the page's own offer if the URL is the page's own /ws (any query),
 * else null. A `moved` URL names another process, whose UDP port and certificate this offer does not give.
 * @param {string} webSocketUrl the URL the link opens
 * @param {string} ownWebSocketUrl the page's own /ws URL (room.js's wsUrl(location))
 */
export function offerFor(webSocketUrl, ownWebSocketUrl, offer) {
  const url = new URL(webSocketUrl);
  const own = new URL(ownWebSocketUrl);
  return url.origin === own.origin && url.pathname === own.pathname ? offer : null;
}

/**
 * Whether the offer (JSON from OFFER_PATH) is one this page can use. Its token (the page's browser id, signed)
 * is null when it has none or a malformed one: a moved offer has none. tokenSeconds: how long the token names
 * the browser (offer.js renews it), null if not said.
 * @returns {{port: number, path: string, certificateHashes: string[], token: string | null,
 *   tokenSeconds: number | null} | null}
 */
export function parseOffer(json) {
  if (!json || typeof json !== 'object') return null;
  const { port, path, certificateHashes } = json;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  if (typeof path !== 'string' || !path.startsWith('/')) return null;
  if (!Array.isArray(certificateHashes) || !certificateHashes.every((h) => /^[0-9a-f]{64}$/.test(h))) return null;
  const token = typeof json.token === 'string' && /^[\w.-]{1,200}$/.test(json.token) ? json.token : null;
  const tokenSeconds = Number.isFinite(json.tokenSeconds) && json.tokenSeconds > 0 ? json.tokenSeconds : null;
  return { port, path, certificateHashes, token, tokenSeconds };
}

/**
 * The page's memory of how WebTransport fared: whether to try it, and why not.
 * One per page; reset only by loading the page again.
 */
export class TransportChoice {
  constructor() {
    this.failed = null; // why WebTransport is not tried any more on this page, or null
  }

  /**
   * 'webtransport' or 'websocket' for the next connection. PCM16 frames (a browser without an Opus
   * encoder) are larger than a datagram can be: they go over the WebSocket.
   */
  choose({ hasWebTransport, offer, codec = 'opus' }) {
    const fits = codec !== 'pcm16';
    return hasWebTransport && offer !== null && fits && this.failed === null ? 'webtransport' : 'websocket';
  }

  /** WebTransport did not open (refused, blocked, too slow): use the WebSocket from now on. */
  fail(reason) {
    if (this.failed === null) this.failed = reason;
  }
}

/** The choice every link of this page shares. */
export const pageChoice = new TransportChoice();

/**
 * Open the page's link: WebTransport with a head start, else (or then) the WebSocket.
 * The link returned has the shape of both (kind, sendText, sendAudio, close); its kind is the transport
 * that opened, 'webtransport' while it is being tried. handlers.onOpen fires once, for the one that opened;
 * onClose once, as link.js's does, also for a link the page closed before either opened.
 */
export function openLink({
  webSocketUrl,
  offer,
  token = null,
  codec,
  openWebSocketLink,
  openWebTransport = openWebTransportLink,
  hasWebTransport = typeof WebTransport === 'function',
  choice = pageChoice,
  headStartMs = HEAD_START_MS,
  setTimer = setTimeout,
  clearTimer = clearTimeout,
}, handlers) {
  if (choice.choose({ hasWebTransport, offer, codec }) === 'websocket') return openWebSocketLink(webSocketUrl, handlers);

  let active = null; // the link that carries the call, once one opened or the fallback began
  let closed = false; // the page closed this link itself
  const fallBack = (reason) => {
    if (active !== null) return;
    choice.fail(reason);
    clearTimer(timer);
    attempt.close(1000, 'falling back to the WebSocket');
    active = openWebSocketLink(webSocketUrl, handlers);
  };
  const attempt = openWebTransport(webTransportUrl(webSocketUrl, offer, token), {
    onOpen() {
      if (active !== null) {
        attempt.close(1000, 'too late: on the WebSocket already');
        return;
      }
      clearTimer(timer);
      active = attempt;
      call(handlers, 'onOpen');
    },
    onText(text) {
      if (active === attempt) call(handlers, 'onText', text);
    },
    onAudio(buffer) {
      if (active === attempt) call(handlers, 'onAudio', buffer);
    },
    onClose(event) {
      if (active === attempt || (active === null && closed)) call(handlers, 'onClose', event);
      else if (active === null) fallBack(`closed before it opened (${event.code} ${event.reason})`);
    },
  }, { certificateHashes: offer.certificateHashes });
  const timer = setTimer(() => fallBack(`not open after ${headStartMs} ms`), headStartMs);

  return {
    get kind() {
      return active === null ? attempt.kind : active.kind;
    },
    sendText(text) {
      if (active !== null) active.sendText(text);
    },
    sendAudio(buffer) {
      return active !== null ? active.sendAudio(buffer) : false;
    },
    close(code, reason) {
      closed = true;
      clearTimer(timer);
      (active || attempt).close(code, reason);
    },
  };
}

function call(handlers, name, ...args) {
  if (typeof handlers[name] === 'function') handlers[name](...args);
}

/**
 * The server's WebTransport offer, or null when it has none (404), the answer is not one, or it takes
 * longer than timeoutMs.
 */
export async function fetchOffer(base = '', timeoutMs = HEAD_START_MS) {
  try {
    const response = await fetch(`${base}${OFFER_PATH}`, { cache: 'no-store', signal: AbortSignal.timeout(timeoutMs) });
    return response.ok ? parseOffer(await response.json()) : null;
  } catch {
    return null;
  }
}
