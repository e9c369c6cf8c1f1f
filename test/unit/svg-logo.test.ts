import { expect } from 'chai';
import { svgActiveContent } from '../../src/domain/svg-logo';

describe('svgActiveContent (SVG logos hold drawing only)', () => {
  const svg = (inner: string, attrs = '') => `<svg xmlns="http://www.w3.org/2000/svg"${attrs} viewBox="0 0 10 10">${inner}</svg>`;

  it('accepts plain drawings: shapes, paths, text, gradients, local references, comments, the XML declaration', () => {
    for (const logo of [
      svg('<rect width="10" height="10" rx="2" fill="#1f4e79"/><circle cx="5" cy="5" r="3" fill="#ffffff"/>'),
      `<?xml version="1.0" encoding="UTF-8"?>\n${svg('<path d="M0 0L10 10" stroke="#000" stroke-width="1"/>')}`,
      svg('<defs><linearGradient id="g"><stop offset="0" stop-color="#fff"/><stop offset="1" stop-color="#000"/></linearGradient></defs><rect width="10" height="10" fill="url(#g)"/>'),
      svg('<!-- our mark --><g transform="translate(1 1)"><text x="0" y="8" font-family="sans-serif" font-size="8">Co</text></g>'),
      svg('<defs><path id="p" d="M0 0h5"/></defs><use xlink:href="#p" href="#p"/>', ' xmlns:xlink="http://www.w3.org/1999/xlink"'),
      svg('<rect width="10" height="10" style="fill: url(#g); stroke: none"/>'),
    ]) {
      expect(svgActiveContent(logo), logo).to.equal(null);
    }
  });

  it('refuses what the probe got through the old deny-list, and the other ways to run or load something', () => {
    const refused: Array<[string, string]> = [
      [svg('<s:script xmlns:s="http://www.w3.org/2000/svg">alert(1)</s:script>'), 'the element s:script'],
      [svg('<rect width="10" height="10"><set attributeName="onmouseover" to="alert(1)"/></rect>'), 'the element set'],
      [svg('<style>@import url(https://evil.example/a.css);</style>'), 'the element style'],
      [svg('<rect width="10" height="10" style="fill:url(https://evil.example/#a)"/>'), 'a style that loads something'],
      [svg('<h:iframe xmlns:h="http://www.w3.org/1999/xhtml" src="https://evil.example"/>'), 'the element h:iframe'],
      [svg('<script>alert(1)</script>'), 'the element script'],
      [svg('', ' onload="alert(1)"'), 'the attribute onload'],
      [svg('<image href="https://tracker.example/p.png"/>'), 'the element image'],
      [svg('<use href="https://evil.example/sprite.svg#a"/>'), 'a reference outside the logo'],
      [svg('<foreignObject><div/></foreignObject>'), 'the element foreignObject'],
      [svg('<animate attributeName="href" values="javascript:alert(1)"/>'), 'the element animate'],
      [svg('<a href="https://evil.example"><rect width="1" height="1"/></a>'), 'the element a'],
      [svg('<rect width="10" height="10" fill="&#117;rl(https://evil.example/x)"/>'), 'a style that loads something'],
      [`<?xml-stylesheet href="https://evil.example/a.css"?>${svg('')}`, 'a processing instruction, CDATA section or doctype'],
      [`<!DOCTYPE svg [<!ENTITY x "y">]>${svg('')}`, 'a processing instruction, CDATA section or doctype'],
      [svg('<text><![CDATA[<script>alert(1)</script>]]></text>'), 'a processing instruction, CDATA section or doctype'],
      ['<svg xmlns="http://www.w3.org/1999/xhtml"></svg>', 'a namespace other than SVG'],
      [svg('<rect width="1" height="1" xlink:href="#a"/>', ' xmlns:xlink="http://evil.example/"'), 'a namespace other than XLink'],
    ];
    for (const [logo, what] of refused) expect(svgActiveContent(logo), logo).to.equal(what);
  });
});
