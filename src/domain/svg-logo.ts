/**
 * Whether an SVG logo holds only drawing: an allow-list of SVG elements and attributes, no
 * namespaces but SVG's and XLink's, no references outside the document, no CSS that loads
 * anything. A deny-list of "<script", "on...=" and external href let through `<s:script>` under
 * a prefix bound to the SVG namespace, `<set attributeName="onmouseover" to="...">`, an XHTML
 * `<h:iframe>`, CSS `@import url(...)` and `fill:url(https://...)` (found by an adversarial probe;
 * a browser ran the script when the logo was opened as a document). In XML every `<` outside a
 * comment or CDATA starts markup, so every element and attribute name is seen here; comments are
 * scanned too (a false refusal is harmless), CDATA sections, doctypes and processing instructions
 * other than the XML declaration are refused. The privacy center also serves the logo under a
 * sandboxing CSP: this check is for everyone else who opens it (GetTenant hands the bytes out).
 *
 * Returns null for a safe logo, else what was found (no part of the logo itself).
 */
export function svgActiveContent(text: string): string | null {
  const withoutDeclaration = text.replace(/^\s*<\?xml\s[^?>]*\?>/, '');
  if (/<\?|<!\[CDATA\[|<!DOCTYPE|<!ENTITY/i.test(withoutDeclaration)) return 'a processing instruction, CDATA section or doctype';
  for (const match of withoutDeclaration.matchAll(/<\s*\/?\s*([^\s/>!]+)/g)) {
    const name = match[1];
    if (!ELEMENTS.has(name)) return `the element ${name.slice(0, 40)}`;
  }
  for (const match of withoutDeclaration.matchAll(/\s([^\s=<>"']+)\s*=\s*("[^"]*"|'[^']*')/g)) {
    const name = match[1];
    const value = match[2].slice(1, -1);
    if (name === 'xmlns') {
      if (value !== SVG_NS) return 'a namespace other than SVG';
      continue;
    }
    if (name === 'xmlns:xlink') {
      if (value !== XLINK_NS) return 'a namespace other than XLink';
      continue;
    }
    if (!ATTRIBUTES.has(name)) return `the attribute ${name.slice(0, 40)}`;
    if ((name === 'href' || name === 'xlink:href') && !value.startsWith('#')) return 'a reference outside the logo';
    if (/url\s*\(\s*(?!['"]?#)|@import|expression\s*\(|javascript:/i.test(decodeEntities(value))) return 'a style that loads something';
  }
  // Text of <style> is not allowed (no style element); text elsewhere cannot load anything.
  return null;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const XLINK_NS = 'http://www.w3.org/1999/xlink';

/** Drawing elements only: no script, style, foreignObject, animation (set/animate can write attributes), a, image, use of anything external. */
const ELEMENTS = new Set([
  'svg', 'g', 'defs', 'title', 'desc', 'metadata', 'symbol', 'use',
  'path', 'rect', 'circle', 'ellipse', 'line', 'polyline', 'polygon',
  'text', 'tspan', 'textPath',
  'linearGradient', 'radialGradient', 'stop', 'pattern', 'clipPath', 'mask',
  'filter', 'feBlend', 'feColorMatrix', 'feComponentTransfer', 'feComposite', 'feFlood', 'feGaussianBlur', 'feMerge', 'feMergeNode', 'feOffset', 'feFuncA', 'feFuncB', 'feFuncG', 'feFuncR', 'feDropShadow',
]);

/** Presentation and geometry attributes; no event handlers, no attributeName/to/values (animation). */
const ATTRIBUTES = new Set([
  'id', 'class', 'style', 'version', 'baseProfile', 'width', 'height', 'viewBox', 'preserveAspectRatio', 'x', 'y', 'x1', 'y1', 'x2', 'y2', 'cx', 'cy', 'r', 'rx', 'ry', 'fx', 'fy', 'd', 'points', 'pathLength',
  'transform', 'gradientUnits', 'gradientTransform', 'spreadMethod', 'offset', 'patternUnits', 'patternContentUnits', 'patternTransform', 'clipPathUnits', 'maskUnits', 'maskContentUnits', 'filterUnits', 'primitiveUnits',
  'fill', 'fill-opacity', 'fill-rule', 'stroke', 'stroke-width', 'stroke-opacity', 'stroke-linecap', 'stroke-linejoin', 'stroke-miterlimit', 'stroke-dasharray', 'stroke-dashoffset', 'opacity', 'color',
  'stop-color', 'stop-opacity', 'clip-path', 'clip-rule', 'mask', 'filter', 'display', 'visibility', 'overflow',
  'font-family', 'font-size', 'font-weight', 'font-style', 'text-anchor', 'dominant-baseline', 'letter-spacing', 'word-spacing', 'dx', 'dy', 'rotate', 'lengthAdjust', 'textLength', 'startOffset',
  'in', 'in2', 'result', 'stdDeviation', 'mode', 'type', 'values', 'operator', 'k1', 'k2', 'k3', 'k4', 'flood-color', 'flood-opacity', 'slope', 'intercept', 'amplitude', 'exponent', 'tableValues',
  'href', 'xlink:href', 'xml:space', 'xml:lang', 'lang', 'role', 'aria-label', 'aria-hidden', 'focusable',
]);

/** Character references in an attribute value, so `&#117;rl(` is seen as `url(`. */
function decodeEntities(value: string): string {
  return value.replace(/&#x([0-9a-f]+);?|&#(\d+);?/gi, (_, hex: string | undefined, dec: string | undefined) => {
    const code = hex !== undefined ? parseInt(hex, 16) : Number(dec);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
  });
}
