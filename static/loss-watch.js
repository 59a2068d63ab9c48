// The receiving side of the copies (redundancy.js): count each sender's frames whose own message did not come,
// and say when to tell the senders ({"type":"loss"}, docs/protocol.md), so that they send copies only while some
// receiver needs them. Pure: no DOM, node tests it.
//
//   const gaps = new ArrivalGaps();              // per sender (partner.js), as its messages are unpacked
//   gaps.arrive(frame.seq, frame.recovered);     // each frame not had before
//   watch.saw(slot, gaps.missing);               // now and then, every sender's count
//   if (watch.reportDue(now)) send({type: 'loss'});
//
// Counted on arrival, before decoding, not from the playout's `lost`: that one also counts the frames our own
// decoder drops while it starts and the fade after a sender mutes, which a clean path showed at every call's
// start (5 and 39 frames, with no datagram lost), and copies would bring back none of them. A stream's first
// SETTLING_FRAMES are not counted either: on a clean 50 ms path a page missed 1 to 6 of them in every call,
// whose datagrams the server had sent, while its decoder dropped 9 to 28 for falling behind: a page that busy
// drops what it has not read, copies or not, and after it settled none went missing in 10 s.

/**
 * The longest run of sequence numbers skipped that counts as lost messages; a longer one is the sender's own
 * silence (muted: no frame sent; DTX: one every 400 ms; a stall), where copies would bring nothing. A shorter run
 * after a silent frame is DTX too (silence-gate.js: speech that starts again soon after a refresh frame).
 */
export const MAX_LOSS_GAP = 4;
/** A stream's first frames (2 s of 10 ms ones), while the receiving page starts its decoder: not counted. */
export const SETTLING_FRAMES = 200;
const STREAM_WINDOW = 64; // a frame this far behind the newest is a new stream (a sender that started again)

/** One sender's frames whose own message did not come first: recovered from a copy, or skipped and lost. */
export class ArrivalGaps {
  constructor() {
    this.missing = 0;
    this._newest = -1;
    this._arrived = 0;
    this._silent = -1; // the last frame decoded, if it was silent: the sender may leave out what follows
  }

  /** A frame decoded (in order): whether it is silence (every sample under the playout's SILENT_PEAK). */
  decoded(seq, silent) {
    this._silent = silent ? seq : -1;
  }

  /** A frame not had before: its 16-bit sequence number, and whether it came as a copy in a later one's message. */
  arrive(seq, recovered) {
    const counting = ++this._arrived > SETTLING_FRAMES;
    if (recovered && counting) this.missing++;
    if (this._newest >= 0) {
      const ahead = (seq - this._newest) & 0xffff;
      if (ahead >= 0x8000 && 0x10000 - ahead < STREAM_WINDOW) return; // an older frame, late: counted when skipped
      const lost = ahead >= 2 && ahead <= MAX_LOSS_GAP + 1 && this._silent !== this._newest;
      if (counting && lost) this.missing += ahead - 1;
    }
    this._newest = seq;
  }
}

/** At most one report this often while frames keep going missing (the server passes on one a second at most). */
export const LOSS_REPORT_INTERVAL_MS = 2000;

export class LossWatch {
  constructor(intervalMs = LOSS_REPORT_INTERVAL_MS) {
    this.intervalMs = intervalMs;
    this.reports = 0; // reports due so far
    this._marks = new Map(); // source -> its missing count when last seen
    this._unreported = false; // frames went missing since the last report
    this._lastReport = -Infinity;
  }

  /** One source's count of missing frames now. More than last time: some went missing. Less: a new count. */
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

  /** A new call: its senders count from zero. */
  reset() {
    this._marks.clear();
    this._unreported = false;
  }
}
