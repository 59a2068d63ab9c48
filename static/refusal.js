// Why the server turned this page's connection away. A browser hides the body of a refused WebSocket handshake
// (403 banned, 429 too many connections, 503 full) from the page, which sees only a close; so the page asks
// /refusal.json, with its id cookie, whenever a link closed before it opened.
//
//   const why = await fetchRefusal();   // {line, retryAfterS} or null (not refused, or no answer)
//
// No DOM here: node --test runs parseRefusal.

export const REFUSAL_PATH = '/refusal.json';
/** How long the page waits for the answer. */
const TIMEOUT_MS = 2000;

/**
 * The server's answer, if it is one: its line (what to do), and in how many seconds to try again (null: not by
 * waiting, as for a ban).
 * @returns {{line: string, retryAfterS: number | null} | null}
 */
export function parseRefusal(json) {
  if (!json || typeof json !== 'object' || typeof json.line !== 'string' || json.line === '') return null;
  const retry = json.retryAfter;
  return { line: json.line.slice(0, 300), retryAfterS: Number.isInteger(retry) && retry > 0 ? retry : null };
}

/** Ask the server why it turned us away: null if it did not (404), or gave no answer in time. */
export async function fetchRefusal(base = '') {
  try {
    const response = await fetch(`${base}${REFUSAL_PATH}`, { cache: 'no-store', signal: AbortSignal.timeout(TIMEOUT_MS) });
    return response.ok ? parseRefusal(await response.json()) : null;
  } catch {
    return null;
  }
}
