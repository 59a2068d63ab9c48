// SFrame (RFC 9605) with its cipher suite AES_128_GCM_SHA256_128 (0x0004), on WebCrypto alone.
//
//   const keys = await deriveKeySalt(baseKey, kid);        // sframe_key (a CryptoKey) and sframe_salt
//   const sealed = await encrypt(keys, kid, ctr, plaintext); // header (KID, CTR) + ciphertext + 16-byte tag
//   const header = decodeHeader(sealed);                   // {kid, ctr, length}: what picks the key
//   const plaintext = await decrypt(keys, header, sealed);  // rejects if any byte was changed
//
// KID and CTR are BigInts (both are 64-bit). Who gets which KID, and that a (key, CTR) pair is never used
// twice, is the application's part: e2ee.js.

export const CIPHER_SUITE = 0x0004;
export const KEY_BYTES = 16; // AEAD.Nk
export const NONCE_BYTES = 12; // AEAD.Nn
export const TAG_BYTES = 16; // AEAD.Nt
const HASH = 'SHA-256';
const MAX_U64 = (1n << 64n) - 1n;
const KEY_LABEL = 'SFrame 1.0 Secret key ';
const SALT_LABEL = 'SFrame 1.0 Secret salt ';
const utf8 = new TextEncoder();

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('expected an ArrayBuffer or a typed array');
}

/** The bytes of a BigInt, big-endian, in exactly `length` bytes. */
export function bigEndian(value, length) {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--, value >>= 8n) out[i] = Number(value & 0xffn);
  return out;
}

function minimalLength(value) {
  let length = 1;
  while (value >> BigInt(8 * length) && length < 8) length++;
  return length;
}

function checkU64(name, value) {
  if (typeof value !== 'bigint' || value < 0n || value > MAX_U64) {
    throw new RangeError(`${name} must be a BigInt from 0 to 2^64 - 1`);
  }
}

/**
 * The SFrame header for KID and CTR (RFC 9605 section 4.3): a config byte |X|KKK|Y|CCC|, then the KID and
 * the CTR in as few big-endian bytes as they need; a value below 8 sits in the config byte itself.
 */
export function encodeHeader(kid, ctr) {
  checkU64('KID', kid);
  checkU64('CTR', ctr);
  const kidLength = kid < 8n ? 0 : minimalLength(kid);
  const ctrLength = ctr < 8n ? 0 : minimalLength(ctr);
  const header = new Uint8Array(1 + kidLength + ctrLength);
  const k = kidLength ? 0x80 | ((kidLength - 1) << 4) : Number(kid) << 4;
  const c = ctrLength ? 0x08 | (ctrLength - 1) : Number(ctr);
  header[0] = k | c;
  if (kidLength) header.set(bigEndian(kid, kidLength), 1);
  if (ctrLength) header.set(bigEndian(ctr, ctrLength), 1 + kidLength);
  return header;
}

function readBigEndian(bytes, start, length) {
  let value = 0n;
  for (let i = start; i < start + length; i++) value = (value << 8n) | BigInt(bytes[i]);
  return value;
}

/** {kid, ctr, length} read from the start of an SFrame ciphertext, or null if it is shorter than its header. */
export function decodeHeader(data) {
  const bytes = toBytes(data);
  if (bytes.byteLength < 1) return null;
  const config = bytes[0];
  const kidLength = config & 0x80 ? ((config >> 4) & 0x07) + 1 : 0;
  const ctrLength = config & 0x08 ? (config & 0x07) + 1 : 0;
  const length = 1 + kidLength + ctrLength;
  if (bytes.byteLength < length) return null;
  const kid = kidLength ? readBigEndian(bytes, 1, kidLength) : BigInt((config >> 4) & 0x07);
  const ctr = ctrLength ? readBigEndian(bytes, 1 + kidLength, ctrLength) : BigInt(config & 0x07);
  return { kid, ctr, length };
}

async function hkdf(ikm, salt, info, bytes) {
  const key = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: HASH, salt, info }, key, 8 * bytes);
  return new Uint8Array(bits);
}

function label(text, kid) {
  const head = utf8.encode(text);
  const out = new Uint8Array(head.length + 10);
  out.set(head);
  out.set(bigEndian(kid, 8), head.length);
  out.set(bigEndian(BigInt(CIPHER_SUITE), 2), head.length + 8);
  return out;
}

/**
 * sframe_key and sframe_salt as bytes (RFC 9605 section 4.4.2): HKDF-Extract with an empty salt, then
 * HKDF-Expand with "SFrame 1.0 Secret key " / "... salt " + KID (8 bytes) + cipher suite (2 bytes).
 */
export async function deriveKeySaltBytes(baseKey, kid) {
  checkU64('KID', kid);
  const ikm = toBytes(baseKey);
  const none = new Uint8Array(0);
  const [key, salt] = await Promise.all([
    hkdf(ikm, none, label(KEY_LABEL, kid), KEY_BYTES),
    hkdf(ikm, none, label(SALT_LABEL, kid), NONCE_BYTES),
  ]);
  return { key, salt };
}

/** {key: CryptoKey for AES-GCM, not extractable, salt: Uint8Array} for one KID's base key. */
export async function deriveKeySalt(baseKey, kid) {
  const { key, salt } = await deriveKeySaltBytes(baseKey, kid);
  return { key: await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']), salt };
}

/** The nonce: sframe_salt XOR the CTR as a 12-byte big-endian integer. */
export function nonce(salt, ctr) {
  const out = Uint8Array.from(salt);
  const counter = bigEndian(ctr, 8);
  for (let i = 0; i < 8; i++) out[NONCE_BYTES - 8 + i] ^= counter[i];
  return out;
}

function aesGcm(salt, ctr, aad) {
  return { name: 'AES-GCM', iv: nonce(salt, ctr), additionalData: aad, tagLength: 8 * TAG_BYTES };
}

/** The byte arrays one after the other, in one new Uint8Array. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/**
 * The SFrame ciphertext of plaintext: header + AES-GCM(sframe_key, nonce, aad = header + metadata).
 * The caller owns the CTR: it must never give one (key, CTR) twice.
 */
export async function encrypt({ key, salt }, kid, ctr, plaintext, metadata = new Uint8Array(0)) {
  const header = encodeHeader(kid, ctr);
  const aad = metadata.byteLength ? concat(header, toBytes(metadata)) : header;
  const sealed = await crypto.subtle.encrypt(aesGcm(salt, ctr, aad), key, toBytes(plaintext));
  return concat(header, new Uint8Array(sealed));
}

/**
 * The plaintext of an SFrame ciphertext whose header (decodeHeader) named these keys, as an ArrayBuffer;
 * rejects (an OperationError) when the header, the ciphertext, the tag or the metadata was changed.
 */
export async function decrypt({ key, salt }, header, data, metadata = new Uint8Array(0)) {
  const bytes = toBytes(data);
  const head = bytes.subarray(0, header.length);
  const aad = metadata.byteLength ? concat(head, toBytes(metadata)) : head;
  return crypto.subtle.decrypt(aesGcm(salt, header.ctr, aad), key, bytes.subarray(header.length));
}
