// The page's WebTransport offer (transport.js's fetchOffer), kept fresh. Its token names this browser to /wt for
// the offer's tokenSeconds (an hour): a page open longer, a long call that resumes or reconnects, would present an
// expired one and be known by its address alone (blocks and bans by id lost). So the keeper fetches a new offer at
// half the token's life, and a link about to open asks for one first when that did not happen (a machine that
// slept, a throttled tab: timers that did not run).
//
//   const offers = new OfferKeeper(fetchOffer);
//   offers.renew();                          // at the page's load; renews itself from then on
//   offers.offer                             // the offer now, or null (none, or not yet)
//   if (offers.stale()) await offers.renew();
//
// No DOM here: node --test runs it with a stand-in fetch, clock and timers.

/** How soon a renewal that failed (a network down) is tried again. */
export const RETRY_MS = 60_000;

export class OfferKeeper {
  /**
   * @param {() => Promise<object | null>} fetchOffer a parsed offer ({..., token, tokenSeconds}), or null
   */
  constructor(fetchOffer, {
    now = () => performance.now(),
    setTimer = (fn, ms) => setTimeout(fn, ms), // called as this object's methods: never the window's own
    clearTimer = (timer) => clearTimeout(timer),
  } = {}) {
    this._fetch = fetchOffer;
    this._now = now;
    this._setTimer = setTimer;
    this._clearTimer = clearTimer;
    this._offer = null;
    this._fetchedAt = 0;
    this._renewing = null; // the fetch under way, which every caller shares
    this._timer = null;
  }

  /** The offer now: null while there is none. */
  get offer() {
    return this._offer;
  }

  /** Whether the offer's token is past half its life: renew before using it. */
  stale() {
    const offer = this._offer;
    return offer !== null && offer.token !== null && offer.tokenSeconds !== null &&
      this._now() - this._fetchedAt >= halfLifeMs(offer);
  }

  /**
   * Fetch a new offer (one fetch at a time, shared by every caller). One that fails keeps the offer held, to be
   * tried again after RETRY_MS; none at all (404: WebTransport off) is final until the page is loaded again.
   * @returns {Promise<object | null>} the offer then
   */
  renew() {
    if (this._renewing === null) {
      this._renewing = this._fetch().then((got) => {
        this._renewing = null;
        if (got !== null) {
          this._offer = got;
          this._fetchedAt = this._now();
        }
        this._schedule(got !== null ? 'halfLife' : 'retry');
        return this._offer;
      });
    }
    return this._renewing;
  }

  /** The next renewal: at the token's half life, or a retry; none for an offer whose token does not expire. */
  _schedule(when) {
    this._clearTimer(this._timer);
    this._timer = null;
    const offer = this._offer;
    if (offer === null || offer.token === null || offer.tokenSeconds === null) return;
    this._timer = this._setTimer(() => {
      this._timer = null;
      this.renew();
    }, when === 'retry' ? RETRY_MS : halfLifeMs(offer));
  }
}

function halfLifeMs(offer) {
  return (offer.tokenSeconds * 1000) / 2;
}
