// A small, independent QR decoder for the tests: it reads a clean module matrix back to bytes.
//
// Written from ISO/IEC 18004 (not from the vendored encoder), for versions 1..10 at level M in
// byte mode. It checks everything a scanner relies on: both format-information copies, the
// version information (v7+), function patterns, and that every Reed-Solomon block has zero
// syndromes. It corrects no errors: a clean matrix must decode exactly.

// [count, total codewords, data codewords] groups of RS blocks per version at level M.
const BLOCKS_M = {
  1: [[1, 26, 16]],
  2: [[1, 44, 28]],
  3: [[1, 70, 44]],
  4: [[2, 50, 32]],
  5: [[2, 67, 43]],
  6: [[4, 43, 27]],
  7: [[4, 49, 31]],
  8: [[2, 60, 38], [2, 61, 39]],
  9: [[3, 58, 36], [2, 59, 37]],
  10: [[4, 69, 43], [1, 70, 44]],
};

const ALIGNMENT = {
  1: [], 2: [6, 18], 3: [6, 22], 4: [6, 26], 5: [6, 30],
  6: [6, 34], 7: [6, 22, 38], 8: [6, 24, 42], 9: [6, 26, 46], 10: [6, 28, 50],
};

const ECL_BITS = { 1: 'L', 0: 'M', 3: 'Q', 2: 'H' };

const MASKS = [
  (r, c) => (r + c) % 2 === 0,
  (r) => r % 2 === 0,
  (r, c) => c % 3 === 0,
  (r, c) => (r + c) % 3 === 0,
  (r, c) => (Math.floor(r / 2) + Math.floor(c / 3)) % 2 === 0,
  (r, c) => ((r * c) % 2) + ((r * c) % 3) === 0,
  (r, c) => (((r * c) % 2) + ((r * c) % 3)) % 2 === 0,
  (r, c) => (((r + c) % 2) + ((r * c) % 3)) % 2 === 0,
];

/** BCH remainder of value * x^(degree of generator) modulo generator. */
function bchRemainder(value, generator) {
  const degree = Math.floor(Math.log2(generator));
  let rem = value << degree;
  for (let bit = Math.floor(Math.log2(rem || 1)); bit >= degree; bit--) {
    if (rem & (1 << bit)) rem ^= generator << (bit - degree);
  }
  return rem;
}

export function formatBits(eclBits, mask) {
  const data = (eclBits << 3) | mask;
  return ((data << 10) | bchRemainder(data, 0x537)) ^ 0x5412;
}

export function versionBits(version) {
  return (version << 12) | bchRemainder(version, 0x1f25);
}

// GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
for (let i = 0, x = 1; i < 255; i++) {
  EXP[i] = x;
  LOG[x] = i;
  x <<= 1;
  if (x & 0x100) x ^= 0x11d;
}
for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];

function gfMul(a, b) {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
}

/** Syndromes S_i = c(alpha^i), i = 0..ecCount-1; all zero for an intact codeword. */
export function syndromes(codeword, ecCount) {
  const out = [];
  for (let i = 0; i < ecCount; i++) {
    let s = 0;
    for (const c of codeword) s = gfMul(s, EXP[i]) ^ c;
    out.push(s);
  }
  return out;
}

function functionMask(version, size) {
  const fn = Array.from({ length: size }, () => new Array(size).fill(false));
  const fill = (r0, c0, h, w) => {
    for (let r = r0; r < r0 + h; r++) for (let c = c0; c < c0 + w; c++) fn[r][c] = true;
  };
  fill(0, 0, 9, 9); // top-left finder, separator, format info
  fill(0, size - 8, 9, 8); // top-right finder, separator, format info
  fill(size - 8, 0, 8, 9); // bottom-left finder, separator, format info, dark module
  fill(6, 0, 1, size); // timing patterns
  fill(0, 6, size, 1);
  const pos = ALIGNMENT[version];
  for (const r of pos) {
    for (const c of pos) {
      if ((r < 9 && c < 9) || (r < 9 && c > size - 9) || (r > size - 9 && c < 9)) continue; // a finder's place
      fill(r - 2, c - 2, 5, 5);
    }
  }
  if (version >= 7) {
    fill(0, size - 11, 6, 3);
    fill(size - 11, 0, 3, 6);
  }
  return fn;
}

function readFormat(m, size) {
  let a = 0;
  let b = 0;
  // Bit i of the 15-bit format word, first copy around the top-left finder...
  const first = [];
  for (let i = 0; i <= 5; i++) first.push([i, 8]);
  first.push([7, 8], [8, 8], [8, 7]);
  for (let i = 9; i < 15; i++) first.push([8, 14 - i]);
  // ...second copy split between the bottom-left and top-right finders.
  const second = [];
  for (let i = 0; i < 8; i++) second.push([8, size - 1 - i]);
  for (let i = 8; i < 15; i++) second.push([size - 15 + i, 8]);
  first.forEach(([r, c], i) => { if (m[r][c]) a |= 1 << i; });
  second.forEach(([r, c], i) => { if (m[r][c]) b |= 1 << i; });
  if (a !== b) throw new Error(`format copies differ: ${a.toString(2)} vs ${b.toString(2)}`);
  for (let ecl = 0; ecl < 4; ecl++) {
    for (let mask = 0; mask < 8; mask++) {
      if (formatBits(ecl, mask) === a) return { ecl: ECL_BITS[ecl], mask };
    }
  }
  throw new Error(`not a valid format word: ${a.toString(2)}`);
}

function checkFunctionPatterns(m, size, version) {
  const finder = (r0, c0) => {
    for (let r = -1; r <= 7; r++) {
      for (let c = -1; c <= 7; c++) {
        const rr = r0 + r;
        const cc = c0 + c;
        if (rr < 0 || cc < 0 || rr >= size || cc >= size) continue;
        const d = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        const want = d !== 2 && d !== 4; // dark core, light ring, dark ring, light separator
        if (m[rr][cc] !== want) throw new Error(`finder at ${r0},${c0} broken at ${rr},${cc}`);
      }
    }
  };
  finder(0, 0);
  finder(0, size - 7);
  finder(size - 7, 0);
  for (let i = 8; i < size - 8; i++) {
    if (m[6][i] !== (i % 2 === 0) || m[i][6] !== (i % 2 === 0)) throw new Error(`timing broken at ${i}`);
  }
  if (!m[size - 8][8]) throw new Error('dark module missing');
  const pos = ALIGNMENT[version];
  for (const r of pos) {
    for (const c of pos) {
      if ((r < 9 && c < 9) || (r < 9 && c > size - 9) || (r > size - 9 && c < 9)) continue;
      for (let dr = -2; dr <= 2; dr++) {
        for (let dc = -2; dc <= 2; dc++) {
          const want = Math.max(Math.abs(dr), Math.abs(dc)) !== 1;
          if (m[r + dr][c + dc] !== want) throw new Error(`alignment at ${r},${c} broken`);
        }
      }
    }
  }
}

function readVersion(m, size) {
  let a = 0;
  let b = 0;
  for (let i = 0; i < 18; i++) {
    const x = size - 11 + (i % 3);
    const y = Math.floor(i / 3);
    if (m[y][x]) a |= 1 << i; // top-right block
    if (m[x][y]) b |= 1 << i; // bottom-left block
  }
  return [a, b];
}

/**
 * Decode a module matrix (modules[row][col], true = dark) to {version, ecl, mask, bytes}.
 * Throws with a reason when anything is off.
 */
export function decodeQr(modules) {
  const size = modules.length;
  const version = (size - 17) / 4;
  if (!Number.isInteger(version) || version < 1 || version > 10) throw new Error(`unsupported size ${size}`);
  if (modules.some((line) => line.length !== size)) throw new Error('matrix is not square');
  checkFunctionPatterns(modules, size, version);
  const { ecl, mask } = readFormat(modules, size);
  if (ecl !== 'M') throw new Error(`decoder supports level M only, got ${ecl}`);
  if (version >= 7) {
    const [a, b] = readVersion(modules, size);
    if (a !== versionBits(version) || b !== versionBits(version)) throw new Error('bad version information');
  }

  // Read the data region in the zigzag order: two-column strips from the right, skipping column 6.
  const fn = functionMask(version, size);
  const bits = [];
  for (let right = size - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5;
    const upward = ((right + 1) & 2) === 0;
    for (let v = 0; v < size; v++) {
      const row = upward ? size - 1 - v : v;
      for (const col of [right, right - 1]) {
        if (fn[row][col]) continue;
        bits.push(modules[row][col] !== MASKS[mask](row, col) ? 1 : 0);
      }
    }
  }

  // Undo the interleaving: data codewords round-robin across blocks, then EC codewords.
  const blocks = [];
  for (const [count, total, data] of BLOCKS_M[version]) {
    for (let i = 0; i < count; i++) blocks.push({ total, data, cw: [] });
  }
  const totalCodewords = blocks.reduce((n, b) => n + b.total, 0);
  if (bits.length < totalCodewords * 8) throw new Error('too few data modules');
  const codewords = [];
  for (let i = 0; i < totalCodewords; i++) {
    let byte = 0;
    for (let j = 0; j < 8; j++) byte = (byte << 1) | bits[i * 8 + j];
    codewords.push(byte);
  }
  let k = 0;
  const maxData = Math.max(...blocks.map((b) => b.data));
  for (let i = 0; i < maxData; i++) for (const b of blocks) if (i < b.data) b.cw.push(codewords[k++]);
  const ecCount = blocks[0].total - blocks[0].data;
  for (let i = 0; i < ecCount; i++) for (const b of blocks) b.cw.push(codewords[k++]);
  for (const [n, b] of blocks.entries()) {
    if (syndromes(b.cw, ecCount).some((s) => s !== 0)) throw new Error(`Reed-Solomon block ${n} is corrupt`);
  }

  // Parse the data bit stream: byte mode (0100), a character count, the bytes, then padding.
  const data = blocks.flatMap((b) => b.cw.slice(0, b.data));
  let pos = 0;
  const take = (n) => {
    let v = 0;
    for (let i = 0; i < n; i++, pos++) v = (v << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1);
    return v;
  };
  const mode = take(4);
  if (mode !== 0b0100) throw new Error(`expected byte mode, got mode ${mode.toString(2)}`);
  const length = take(version <= 9 ? 8 : 16);
  const bytes = [];
  for (let i = 0; i < length; i++) bytes.push(take(8));
  if (pos + 4 <= data.length * 8 && take(4) !== 0) throw new Error('missing terminator');
  const padStart = Math.ceil(pos / 8);
  for (let i = padStart; i < data.length; i++) {
    if (data[i] !== ((i - padStart) % 2 === 0 ? 0xec : 0x11)) throw new Error(`bad pad byte at ${i}`);
  }
  return { version, ecl, mask, bytes: Uint8Array.from(bytes) };
}
