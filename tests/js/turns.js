// Waiting in node tests for work that WebCrypto finishes on node's thread pool.

export const turn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Resolves once predicate() holds, checking after each turn of the event loop; throws past the deadline.
 * A busy machine may not run the thread pool for a while, so the bound is time, not a count of turns.
 */
export async function turnsUntil(predicate, what = 'the condition', seconds = 10) {
  const deadline = Date.now() + seconds * 1000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what} after ${seconds} s`);
    await turn();
  }
}
