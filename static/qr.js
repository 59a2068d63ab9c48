// QR codes for room links: a boolean module matrix and its SVG drawing.
//
// The encoder is qrcode-generator 2.0.4 by Kazuhiko Arase (MIT), vendored unchanged from
// the npm registry as vendor/qrcode-generator.js (its ES-module build, dist/qrcode.mjs).
// It neither evaluates strings nor touches the DOM, so it runs under `script-src 'self'`.

import qrcode from './vendor/qrcode-generator.js';

export const QUIET_ZONE = 4; // modules of white border that scanners need (ISO/IEC 18004)

/** The bytes of text in UTF-8, as a string of char codes 0..255 (what the encoder's byte mode takes). */
function utf8Binary(text) {
  let out = '';
  for (const byte of new TextEncoder().encode(text)) out += String.fromCharCode(byte);
  return out;
}

/**
 * Encode text (UTF-8, byte mode) at error correction level M in the smallest version that fits.
 *
 * Returns {version, size, modules} where modules[row][col] is true for a dark module.
 * Throws when text is too long for any version (about 2300 bytes at level M).
 */
export function qrMatrix(text, { ecl = 'M' } = {}) {
  const qr = qrcode(0, ecl);
  qr.addData(utf8Binary(text), 'Byte');
  qr.make();
  const size = qr.getModuleCount();
  const modules = [];
  for (let row = 0; row < size; row++) {
    const line = [];
    for (let col = 0; col < size; col++) line.push(qr.isDark(row, col));
    modules.push(line);
  }
  return { version: (size - 17) / 4, size, modules };
}

/** An SVG path `d` drawing each dark module as a unit square, shifted by margin. */
export function svgPath(modules, margin = QUIET_ZONE) {
  const parts = [];
  modules.forEach((line, row) => {
    line.forEach((dark, col) => {
      if (dark) parts.push(`M${col + margin} ${row + margin}h1v1h-1z`);
    });
  });
  return parts.join('');
}

/** A standalone SVG document (dark on white, with a quiet zone); its viewBox is in modules. */
export function svgString(modules, { margin = QUIET_ZONE, title = 'QR code' } = {}) {
  const extent = modules.length + 2 * margin;
  const escaped = title.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${extent} ${extent}" shape-rendering="crispEdges">` +
    `<title>${escaped}</title>` +
    `<rect width="${extent}" height="${extent}" fill="#fff"/>` +
    `<path fill="#000" d="${svgPath(modules, margin)}"/></svg>`
  );
}

/** Build the same SVG through DOM APIs (no innerHTML, nothing for the CSP to object to). */
export function svgElement(doc, modules, { margin = QUIET_ZONE, title = 'QR code' } = {}) {
  const NS = 'http://www.w3.org/2000/svg';
  const extent = modules.length + 2 * margin;
  const svg = doc.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${extent} ${extent}`);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const rect = doc.createElementNS(NS, 'rect');
  rect.setAttribute('width', String(extent));
  rect.setAttribute('height', String(extent));
  rect.setAttribute('fill', '#fff');
  const path = doc.createElementNS(NS, 'path');
  path.setAttribute('fill', '#000');
  path.setAttribute('d', svgPath(modules, margin));
  svg.append(rect, path);
  return svg;
}
