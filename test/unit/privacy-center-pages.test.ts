import { expect } from 'chai';
import { chooseLanguage } from '../../src/privacy-center/i18n';
import { parseIdentifier } from '../../src/privacy-center/pages/signup';
import { cspWithFrameAncestors } from '../../src/privacy-center/server';

describe('privacy center: language, identifiers, framing', () => {
  it('chooses ?lang= when the tenant offers it, else the best Accept-Language it offers, else its first language', () => {
    expect(chooseLanguage(['en', 'de'], 'de', 'en')).to.equal('de');
    expect(chooseLanguage(['en'], 'de', 'de')).to.equal('en');
    expect(chooseLanguage(['en', 'de'], undefined, 'fr-FR, de-AT;q=0.8, en;q=0.5')).to.equal('de');
    expect(chooseLanguage(['en', 'de'], undefined, 'en;q=0.1, de;q=0.9')).to.equal('de');
    expect(chooseLanguage(['de', 'en'], undefined, 'fr')).to.equal('de');
    expect(chooseLanguage(['de', 'en'], ['en'], undefined), 'a repeated ?lang is ignored').to.equal('de');
  });

  it('reads an e-mail address or an international phone number (spaces, dashes, 00 prefix allowed), nothing else', () => {
    expect(parseIdentifier(' a.b@example.org ')).to.deep.equal({ kind: { $case: 'email', value: 'a.b@example.org' }, defaultRegion: '' });
    expect(parseIdentifier('+49 151 1234-5678')).to.deep.equal({ kind: { $case: 'phoneNumber', value: '+4915112345678' }, defaultRegion: '' });
    expect(parseIdentifier('0049 (151) 12345678')!.kind).to.deep.equal({ $case: 'phoneNumber', value: '+4915112345678' });
    for (const bad of ['', '0151 12345678', 'abc', 'a@b', '+0123456', '@example.org', '+49 151 12345678901234']) expect(parseIdentifier(bad), bad).to.equal(undefined);
  });

  it('frame-ancestors names the embedding origins, or none', () => {
    expect(cspWithFrameAncestors([])).to.include("frame-ancestors 'none'");
    expect(cspWithFrameAncestors(['https://a.example', 'https://b.example'])).to.include('frame-ancestors https://a.example https://b.example').and.include("default-src 'none'");
  });
});
