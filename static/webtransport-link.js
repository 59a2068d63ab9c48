// The page's WebTransport link: the same shape as the WebSocket link (link.js), over QUIC.
//
//   const link = openWebTransportLink('https://localhost:8080/wt?room=abc', handlers, { certificateHashes });
//   handlers: onOpen(), onText(text), onAudio(arrayBuffer), onClose({code, reason})
//   link.kind === 'webtransport'; link.sendText(text); link.sendAudio(arrayBuffer) -> boolean; link.close(code, reason)
//
// The server's side is webtransport.py. Control messages go on one bidirectional stream that the page
// opens (Firefox before 153 let a server open only two streams), one JSON message per line; audio frames
// are datagrams, each exactly one binary frame of the protocol. onOpen fires once the control stream is
// open: the server enters the page in the lobby on its first bytes (the page's first ping), so a session
// given up before then (the page fell back to its WebSocket) never pairs anyone with a ghost.
//
// A session that ends without a close from either side (a failed handshake, a lost network) closes with
// code 1006, as a WebSocket does: resume.js tells a drop from a goodbye by it.

/** The longest control line either side sends (the server's MAX_LINE). */
export const MAX_LINE = 4096;
/** The close code of a link that dropped without a close (as a WebSocket's). */
export const ABNORMAL_CLOSURE = 1006;
/**
 * Audio that has waited this long in the browser's queue (its congestion control holding it) is not worth
 * sending: the browser drops it instead, where it supports the setting. Two 10 ms frames, as the server's
 * MAX_DATAGRAM_AGE: a frame later than that is one the receiver's jitter buffer would conceal anyway.
 */
const OUTGOING_MAX_AGE_MS = 20;
/**
 * Datagrams handed to the browser and not yet taken by its network side, beyond which a frame is dropped
 * (about 100 ms of audio). Counted here rather than read from the writer's desiredSize: Firefox takes a
 * datagram tens of milliseconds after the write on a loaded machine, with a queue of one.
 */
const MAX_QUEUED_DATAGRAMS = 5;

/**
 * Cuts a byte stream into lines of UTF-8 text, each ended by '\n'. A line feed never occurs inside a
 * multi-byte UTF-8 sequence, so the bytes are cut before they are decoded.
 */
export class LineSplitter {
  constructor(maxBytes = MAX_LINE) {
    this.maxBytes = maxBytes;
    this._parts = []; // the start of a line still open, as chunks
    this._partBytes = 0;
    this._decoder = new TextDecoder('utf-8', { fatal: true });
  }

  /**
   * Take a chunk; return the complete lines in it, and an error (a string) if the stream broke the rules:
   * a line longer than maxBytes, or one that is not UTF-8. After an error the splitter takes nothing more.
   * @param {Uint8Array} chunk
   * @returns {{lines: string[], error: string | null}}
   */
  push(chunk) {
    const lines = [];
    if (this.error) return { lines, error: this.error };
    let start = 0;
    for (let end = chunk.indexOf(10); end >= 0; end = chunk.indexOf(10, start)) {
      const line = this._join(chunk.subarray(start, end));
      start = end + 1;
      if (line.byteLength > this.maxBytes) return this._fail(lines, `control line over ${this.maxBytes} bytes`);
      try {
        lines.push(this._decoder.decode(line));
      } catch {
        return this._fail(lines, 'control line is not UTF-8');
      }
    }
    if (start < chunk.byteLength) {
      this._parts.push(chunk.slice(start));
      this._partBytes += chunk.byteLength - start;
      if (this._partBytes > this.maxBytes) return this._fail(lines, `control line over ${this.maxBytes} bytes`);
    }
    return { lines, error: null };
  }

  _join(tail) {
    if (this._parts.length === 0) return tail;
    const whole = new Uint8Array(this._partBytes + tail.byteLength);
    let at = 0;
    for (const part of this._parts) {
      whole.set(part, at);
      at += part.byteLength;
    }
    whole.set(tail, at);
    this._parts = [];
    this._partBytes = 0;
    return whole;
  }

  _fail(lines, error) {
    this.error = error;
    this._parts = [];
    return { lines, error };
  }
}

/** The bytes of a hex string ('a1b2...'), for serverCertificateHashes. */
export function hexBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** An ArrayBuffer holding exactly a Uint8Array's bytes (the view itself when it spans its whole buffer). */
function ownBuffer(view) {
  if (view.byteOffset === 0 && view.byteLength === view.buffer.byteLength) return view.buffer;
  return view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
}

/**
 * Open a WebTransport session and its control stream.
 * @param {string} url https://host:port/wt?query
 * @param {{onOpen?: Function, onText?: Function, onAudio?: Function, onClose?: Function}} handlers
 * @param {{certificateHashes?: string[]}} options hex SHA-256 hashes of a certificate the browser is to
 *   accept without a CA (ECDSA P-256, valid at most 14 days); none for a certificate browsers trust
 */
export function openWebTransportLink(url, handlers, { certificateHashes = [] } = {}) {
  const call = (name, ...args) => {
    if (typeof handlers[name] !== 'function') return;
    try {
      handlers[name](...args);
    } catch (error) {
      console.warn(`duoduel: the link's ${name} handler failed:`, error);
    }
  };
  const encoder = new TextEncoder();
  let state = 'connecting'; // connecting, open, closed
  let transport = null;
  let control = null; // the control stream's writer
  let datagrams = null; // the datagrams' writer
  let queued = 0; // datagrams written and not yet taken
  const taken = () => {
    queued--;
  };

  let closeReported = false;
  const finish = (code, reason) => {
    state = 'closed';
    if (closeReported) return;
    closeReported = true;
    call('onClose', { code, reason });
  };

  const link = {
    kind: 'webtransport',
    sendText(text) {
      if (state !== 'open') return;
      control.write(encoder.encode(`${text}\n`)).catch(() => {});
    },
    sendAudio(buffer) {
      if (state !== 'open') return false;
      // A queue the browser cannot drain (congestion) holds no more: late audio is worse than lost audio.
      if (queued >= MAX_QUEUED_DATAGRAMS) return false;
      if (buffer.byteLength > transport.datagrams.maxDatagramSize) return false;
      queued++;
      datagrams.write(new Uint8Array(buffer)).then(taken, taken);
      return true;
    },
    close(code = 1000, reason = '') {
      if (state === 'closed') return;
      state = 'closed';
      try {
        transport.close({ closeCode: code, reason });
      } catch {
        finish(code, reason); // never opened: nothing to close but the page's own state
      }
    },
  };

  const options = { requireUnreliable: true, congestionControl: 'low-latency' };
  if (certificateHashes.length > 0) {
    options.serverCertificateHashes = certificateHashes.map((hex) => ({ algorithm: 'sha-256', value: hexBytes(hex) }));
  }
  try {
    transport = new WebTransport(url, options);
  } catch (error) {
    queueMicrotask(() => finish(ABNORMAL_CLOSURE, String(error && error.message)));
    return link;
  }
  transport.closed.then(
    (info) => finish(info && Number.isInteger(info.closeCode) ? info.closeCode : 1000, (info && info.reason) || ''),
    (error) => finish(ABNORMAL_CLOSURE, String((error && error.message) || 'connection lost')),
  );
  transport.ready
    .then(async () => {
      const stream = await transport.createBidirectionalStream();
      if (state !== 'connecting') return; // closed meanwhile
      control = stream.writable.getWriter();
      datagrams = transport.datagrams.writable.getWriter();
      try {
        transport.datagrams.outgoingMaxAge = OUTGOING_MAX_AGE_MS;
      } catch {
        // not supported here: the browser's own queue bound still holds
      }
      state = 'open';
      readLines(stream.readable);
      readDatagrams(transport.datagrams.readable);
      call('onOpen');
    })
    .catch(() => {}); // transport.closed says how it ended

  async function readLines(readable) {
    const reader = readable.getReader();
    const splitter = new LineSplitter();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const { lines, error } = splitter.push(value);
        for (const line of lines) if (state === 'open') call('onText', line);
        if (error) {
          link.close(1002, error);
          return;
        }
      }
    } catch {
      // the session ended: transport.closed says how
    }
  }

  async function readDatagrams(readable) {
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        if (state === 'open') call('onAudio', ownBuffer(value));
      }
    } catch {
      // the session ended: transport.closed says how
    }
  }

  return link;
}
