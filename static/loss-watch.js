// The receiving side of the copies (redundancy.js): watch each sender's frames that did not come in time, and
// say when to tell the senders ({"type":"loss"}, docs/protocol.md), so that they send copies only while some
// receiver needs them. Pure: no DOM, node tests it.
//
//   const watch = new LossWatch();
//   watch.saw(slot, missingFrames(playback));   // each sender's playout counters, as the worklet posts them
//   if (watch.reportDue(now)) send({type: 'loss'});
//
// A frame whose own message never came in time is missing: lost (concealed, never heard of since) or recovered
// from the copy in a later message. Counting the recovered keeps the reports coming while copies hide the loss,
// and so keeps the copies on; a frame that only came late (the playout's `late`) is left out: over the
// WebSocket every frame comes, late behind a resent packet, and copies in the same stream would come no sooner.

/** At most one report this often while frames keep going missing (the server passes on one a second at most). */
export const LOSS_REPORT_INTERVAL_MS = 2000;

/** A sender's frames missing so far, from its playout's counters (Playout.stats()). */
export function missingFrames(playback) {
  return (playback.lost || 0) + (playback.recovered || 0);
}

export class LossWatch {
  constructor(intervalMs = LOSS_REPORT_INTERVAL_MS) {
    this.intervalMs = intervalMs;
    this.reports = 0; // reports due so far
    this._marks = new Map(); // source -> its missing count when last seen
    this._unreported = false; // frames went missing since the last report
    this._lastReport = -Infinity;
  }

  /**
   * One source's count of missing frames now. More than last time: some went missing. Less: its playout
   * started again (a new stream, or a lost frame that came late after all), counted from there.
   */
  saw(source, missing) {
    if (missing > (this._marks.get(source) ?? 0)) this._unreported = true;
    this._marks.set(source, missing);
  }

  /** Whether to report now: frames went missing since the last report, and that was intervalMs ago or more. */
  reportDue(nowMs) {
    if (!this._unreported || nowMs - this._lastReport < this.intervalMs) return false;
    this._unreported = false;
    this._lastReport = nowMs;
    this.reports++;
    return true;
  }

  /** A new call: its senders' playouts count from zero. */
  reset() {
    this._marks.clear();
    this._unreported = false;
  }
}
