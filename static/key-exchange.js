// A lobby call's key: the two pages agree one by ECDH (P-256, WebCrypto) over the control channel, and each
// shows a safety code that the two people can read to each other. Pure (no DOM): node tests it.
//
//   const exchange = new KeyExchange({ send: (message) => link.sendText(JSON.stringify(message)) });
//   exchange.start();            // when the call begins ("connected" in the lobby)
//   exchange.receive(message);   // each {"type":"key",...} from the partner, which the server passes on as it is
//   exchange.resend();           // after a resume: what we sent may have gone to a socket that dropped
//   exchange.state;              // 'committed', 'revealed', 'ready' (context, safetyCode) or 'failed' (error)
//
// Two messages each way, commit then reveal:
//   {"type":"key","commit":"<SHA-256 of our public key, base64url>"}   at once
//   {"type":"key","public":"<our P-256 public key, raw (65 bytes), base64url>"}  once we hold the partner's commit
// A page reveals its public key only after it holds the other's commitment, so whoever sits in the middle has
// chosen both keys it offers before it learns either page's: it gets one try at making the two codes equal
// (one in a million with 6 digits). Without the commitment, a relay could try keys until the codes matched.
//
// Both pages order the two public keys (bytes, lexicographic): a = the smaller, b = the other.
//   call keys   = KeyContext.forCall(ECDH shared secret, a, b, KID 0 for a's page, 1 for b's)
//   safety code = the first 4 bytes of SHA-256("duoduel safety code " + a + b), mod 10^6, as "123 456"
import { fromBase64url, KeyContext } from './e2ee.js';
import { base64url } from './room.js';
import { concat } from './sframe.js';

const CURVE = { name: 'ECDH', namedCurve: 'P-256' };
const PUBLIC_BYTES = 65; // an uncompressed P-256 point
const COMMIT_BYTES = 32;
const SAFETY_DIGITS = 6;

export const EXCHANGE_FAILED = 'The key exchange with your partner failed, so this call cannot be encrypted: ' +
  'press Next to find someone else.';

const utf8 = new TextEncoder();

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** The commitment a page sends first: SHA-256 of its raw public key. */
export function commitment(publicKey) {
  return sha256(utf8.encode('duoduel key commit '), publicKey);
}

/** The code both pages show, from both raw public keys in either order: six digits, "123 456". */
export async function safetyCode(onePublic, otherPublic) {
  const [a, b] = compareBytes(onePublic, otherPublic) < 0 ? [onePublic, otherPublic] : [otherPublic, onePublic];
  const digest = await sha256(utf8.encode('duoduel safety code '), a, b);
  const number = new DataView(digest.buffer).getUint32(0) % 10 ** SAFETY_DIGITS;
  const digits = String(number).padStart(SAFETY_DIGITS, '0');
  return `${digits.slice(0, 3)} ${digits.slice(3)}`;
}

/**
 * One call's key agreement. States, and what moves them (all in _step):
 *   idle       --start()-->                      committed  (our commit sent)
 *   committed  --their commit-->                 revealed   (our public key sent)
 *   revealed   --their public key, matching-->   ready      (context, safetyCode)
 *   any        --a message that breaks the rules-->  failed (error)
 * Their commit may come before start(): it is kept and answered once ours is sent.
 */
export class KeyExchange {
  /** @param {{send: (message: object) => void, onChange?: (exchange: KeyExchange) => void}} options */
  constructor({ send, onChange = () => {} }) {
    this._send = send;
    this._onChange = onChange;
    this.state = 'idle';
    this.context = null; // KeyContext, when ready
    this.safetyCode = null; // when ready
    this.error = null; // when failed: one line for the page
    this.reason = null; // when failed: what went wrong, for the console
    this._pair = null;
    this._public = null; // our raw public key
    this._commit = null; // our commitment
    this._theirCommit = null;
    this._theirPublic = null;
    this._sent = []; // what we sent, for resend()
    this._chain = Promise.resolve(); // one step at a time, in the order things happened
  }

  /** Make our key pair and send our commitment. Resolves once done. */
  start() {
    return this._queue(() => this._start());
  }

  /** A {"type":"key"} message from the partner. Resolves once handled. */
  receive(message) {
    return this._queue(() => this._receive(message));
  }

  /** Send again what we sent so far (after a resume, the partner may have missed it). */
  resend() {
    for (const message of this._sent) this._send(message);
  }

  _queue(step) {
    this._chain = this._chain.then(step).catch((error) => this._fail(error));
    return this._chain;
  }

  _emit(message) {
    this._sent.push(message);
    this._send(message);
  }

  _to(state) {
    this.state = state;
    this._onChange(this);
  }

  _fail(error) {
    if (this.state === 'failed') return;
    this.error = EXCHANGE_FAILED;
    this.reason = error instanceof Error ? error.message : String(error);
    this._to('failed');
  }

  async _start() {
    if (this.state !== 'idle') return;
    this._pair = await crypto.subtle.generateKey(CURVE, false, ['deriveBits']);
    this._public = new Uint8Array(await crypto.subtle.exportKey('raw', this._pair.publicKey));
    this._commit = await commitment(this._public);
    this._emit({ type: 'key', commit: base64url(this._commit) });
    this._to('committed');
    if (this._theirCommit) this._reveal();
  }

  async _receive(message) {
    if (this.state === 'failed') return;
    if (message && typeof message.commit === 'string' && !('public' in message)) {
      this._onCommit(fromBase64url(message.commit, COMMIT_BYTES));
    } else if (message && typeof message.public === 'string' && !('commit' in message)) {
      await this._onPublic(fromBase64url(message.public, PUBLIC_BYTES));
    } else {
      throw new Error('a key message has either a commit or a public key');
    }
  }

  _onCommit(commit) {
    if (!commit) throw new Error('malformed commit');
    if (this._theirCommit) {
      // The same one again is a resend after a resume; another one is someone changing their mind.
      if (compareBytes(commit, this._theirCommit) !== 0) throw new Error('a second, different commit');
      return;
    }
    this._theirCommit = commit;
    if (this.state === 'committed') this._reveal();
  }

  _reveal() {
    this._emit({ type: 'key', public: base64url(this._public) });
    this._to('revealed');
  }

  async _onPublic(theirs) {
    if (!theirs) throw new Error('malformed public key');
    if (this._theirPublic) {
      if (compareBytes(theirs, this._theirPublic) !== 0) throw new Error('a second, different public key');
      return;
    }
    if (this.state !== 'revealed') throw new Error('a public key before its commit');
    if (compareBytes(await commitment(theirs), this._theirCommit) !== 0) {
      throw new Error('the public key does not match its commit');
    }
    if (compareBytes(theirs, this._public) === 0) throw new Error('our own public key came back');
    this._theirPublic = theirs;
    // importKey checks that the point is on the curve.
    const peer = await crypto.subtle.importKey('raw', theirs, CURVE, false, []);
    const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: peer }, this._pair.privateKey, 256);
    const ours = compareBytes(this._public, theirs) < 0;
    const [a, b] = ours ? [this._public, theirs] : [theirs, this._public];
    this.context = await KeyContext.forCall(shared, a, b, ours ? 0n : 1n);
    this.safetyCode = await safetyCode(a, b);
    this._to('ready');
  }
}
