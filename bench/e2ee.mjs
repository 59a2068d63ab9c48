// What end-to-end encryption costs per frame, in node's WebCrypto (the browsers' figures come from the pages):
// the time from handing a frame over to getting it back sealed (FrameSealer) and opened (FrameOpener), one
// frame at a time as a page does every 20 ms; the same with several in flight; a new sender's key
// derivation; a lobby call's key exchange; and the bytes each frame gains.
//
//   taskset -c 1 node bench/e2ee.mjs [--frames 5000]
import { CODEC_OPUS, OPUS_BITRATE } from '../static/constants.js';
import { FrameOpener, FrameSealer, KeyContext } from '../static/e2ee.js';
import { encodeFrame } from '../static/frame.js';
import { KeyExchange } from '../static/key-exchange.js';
import { decodeHeader, encrypt } from '../static/sframe.js';

const argv = process.argv.slice(2);
const FRAMES = Number(argv[argv.indexOf('--frames') + 1]) || 5000;
const WARMUP = 200;
const OPUS_BYTES = OPUS_BITRATE / 8 / 50; // 70: one 20 ms frame at the page's constant bitrate

const turn = () => new Promise((resolve) => setImmediate(resolve));

function frame(seq) {
  return encodeFrame({ codec: CODEC_OPUS, seq, sampleRate: 48000, captureTime: Date.now(),
    payload: new Uint8Array(OPUS_BYTES).fill(seq & 0xff) });
}

function quantiles(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] };
}

const us = (ms) => `${(ms * 1000).toFixed(0).padStart(5)} µs`;

function row(label, samples) {
  const { p50, p90, p99, max } = quantiles(samples);
  console.log(`${label.padEnd(44)} p50 ${us(p50)}  p90 ${us(p90)}  p99 ${us(p99)}  max ${us(max)}`);
}

/** Seal then open FRAMES frames one at a time; return the times (ms) of each step and of both. */
async function oneAtATime(sending, receiving) {
  let handed = null;
  const sealer = new FrameSealer(sending, { onFrame: (sealed) => { handed = sealed; } });
  let opened = null;
  const opener = new FrameOpener(receiving, { onFrame: (source, plain) => { opened = plain; } });
  const seal = [];
  const open = [];
  for (let i = 0; i < WARMUP + FRAMES; i++) {
    handed = null;
    opened = null;
    const t0 = performance.now();
    sealer.seal(frame(i));
    while (handed === null) await turn();
    const t1 = performance.now();
    opener.open(0, handed);
    while (opened === null) await turn();
    const t2 = performance.now();
    if (i >= WARMUP) {
      seal.push(t1 - t0);
      open.push(t2 - t1);
    }
  }
  return { seal, open, both: seal.map((s, i) => s + open[i]) };
}

/** Frames per second sealed and opened with up to `inFlight` at once (the limits the page uses). */
async function throughput(sending, receiving, inFlight) {
  let sealedCount = 0;
  let openedCount = 0;
  const opener = new FrameOpener(receiving, { onFrame: () => openedCount++, maxInFlight: inFlight });
  const sealer = new FrameSealer(sending, { onFrame: (sealed) => { sealedCount++; opener.open(0, sealed); },
    maxInFlight: inFlight });
  const t0 = performance.now();
  let next = 0;
  while (openedCount < FRAMES) {
    while (next < FRAMES && next - openedCount < inFlight && sealer.seal(frame(next))) next++;
    await turn();
  }
  return (FRAMES / (performance.now() - t0)) * 1000;
}

async function keyDerivation(context) {
  const times = [];
  for (let kid = 1n; kid <= 300n; kid++) {
    const t0 = performance.now();
    await context.senderKeys(kid * 0x0123456789abn);
    times.push(performance.now() - t0);
  }
  return times;
}

async function keyExchanges() {
  const times = [];
  for (let i = 0; i < 50; i++) {
    const pages = {};
    const relay = (to) => (message) => queueMicrotask(() => pages[to].receive(JSON.parse(JSON.stringify(message))));
    pages.ann = new KeyExchange({ send: relay('bob') });
    pages.bob = new KeyExchange({ send: relay('ann') });
    const t0 = performance.now();
    await Promise.all([pages.ann.start(), pages.bob.start()]);
    while (pages.ann.state !== 'ready' || pages.bob.state !== 'ready') await turn();
    times.push(performance.now() - t0);
  }
  return times;
}

/** The size of real sealed frames: a private room's (a random 64-bit KID) and a lobby call's (KID 0 or 1). */
async function bytesPerFrame(roomContext) {
  const today = frame(0).byteLength;
  const kbps = (bytes) => ((bytes * 8 * 50) / 1000).toFixed(1);
  const keys = await roomContext.senderKeys(roomContext.ownKid);
  console.log(`\nbytes per 20 ms frame (Opus ${OPUS_BYTES} B at ${OPUS_BITRATE / 1000} kbit/s, duoduel's 16-byte header)`);
  console.log(`${'today, in clear'.padEnd(44)} ${String(today).padStart(3)} B  ${kbps(today)} kbit/s`);
  const cases = [
    ['private room, CTR 0 to 7 (the first 0.16 s)', roomContext.ownKid, 7n],
    ['private room, CTR below 2^8 (to 5 s)', roomContext.ownKid, 255n],
    ['private room, CTR below 2^16 (to 22 min)', roomContext.ownKid, 65535n],
    ['private room, CTR below 2^24 (to 93 h)', roomContext.ownKid, (1n << 24n) - 1n],
    ['lobby call (KID 0 or 1), CTR below 2^16', 1n, 65535n],
    ['lobby call (KID 0 or 1), CTR below 2^24', 1n, (1n << 24n) - 1n],
  ];
  for (const [label, kid, ctr] of cases) {
    const sealed = await encrypt(keys, kid, ctr, frame(0));
    const header = decodeHeader(sealed).length;
    console.log(`${label.padEnd(44)} ${String(sealed.byteLength).padStart(3)} B  ${kbps(sealed.byteLength)} kbit/s` +
      `  (+${sealed.byteLength - today} B: SFrame header ${header}, tag ${sealed.byteLength - today - header})`);
  }
}

const key = crypto.getRandomValues(new Uint8Array(16));
const [sending, receiving] = await Promise.all([KeyContext.forRoom(key, 'bench'), KeyContext.forRoom(key, 'bench')]);
console.log(`node ${process.version}, ${FRAMES} frames of ${16 + OPUS_BYTES} B after ${WARMUP} to warm up`);
const timed = await oneAtATime(sending, receiving);
row('seal (FrameSealer.seal to onFrame)', timed.seal);
row('open (FrameOpener.open to onFrame)', timed.open);
row('seal + open, one frame', timed.both);
const [sending4, receiving16] = await Promise.all([KeyContext.forRoom(key, 'b2'), KeyContext.forRoom(key, 'b2')]);
console.log(`${'throughput, sealed and opened, 4 in flight'.padEnd(44)} ` +
  `${(await throughput(sending4, receiving16, 4)).toFixed(0)} frames/s (a call needs 50 each way)`);
row('a new sender\'s keys (HKDF x3, import)', await keyDerivation(receiving));
row('lobby key exchange, both pages in-process', await keyExchanges());
await bytesPerFrame(sending);
