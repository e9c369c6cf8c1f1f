import { expect } from 'chai';
import { DomainError, Violations } from '../../src/shared/errors';
import { randomBytes } from 'node:crypto';
import { KeyManager, TenantKeyring } from '../../src/crypto/key-manager';
import { KeyStore } from '../../src/crypto/key-store';
import { RootKeyProvider } from '../../src/crypto/root-key-provider';
import { decodePageToken, encodePageToken, PageLimits, resolvePageSize } from '../../src/domain/pagination';

const LIMITS: PageLimits = { defaultPageSize: 50, maxPageSize: 500 };

/** The violations recorded so far, read through throwIfAny (the public way out). */
function recorded(v: Violations): Array<{ field: string; reason: string }> {
  try {
    v.throwIfAny();
    return [];
  } catch (err) {
    expect(err).to.be.instanceOf(DomainError);
    expect((err as DomainError).kind).to.equal('INVALID_ARGUMENT');
    return (err as DomainError).violations.map(({ field, reason }) => ({ field, reason }));
  }
}

describe('pagination', () => {
  describe(resolvePageSize.name, () => {
    it('0 gives the default', () => {
      const v = new Violations();
      expect(resolvePageSize(0, LIMITS, v)).to.equal(50);
      expect(v.empty).to.equal(true);
    });

    it('a size within limits is kept', () => {
      const v = new Violations();
      expect(resolvePageSize(1, LIMITS, v)).to.equal(1);
      expect(resolvePageSize(499, LIMITS, v)).to.equal(499);
      expect(resolvePageSize(500, LIMITS, v)).to.equal(500);
      expect(v.empty).to.equal(true);
    });

    it('above the maximum gives the maximum, without a violation', () => {
      const v = new Violations();
      expect(resolvePageSize(501, LIMITS, v)).to.equal(500);
      expect(resolvePageSize(2 ** 31 - 1, LIMITS, v)).to.equal(500);
      expect(v.empty).to.equal(true);
    });

    it('a negative size is a page_size violation', () => {
      for (const size of [-1, -50, -(2 ** 31)]) {
        const v = new Violations();
        resolvePageSize(size, LIMITS, v);
        expect(recorded(v), String(size)).to.deep.equal([{ field: 'page_size', reason: 'NEGATIVE_PAGE_SIZE' }]);
      }
    });

    it('uses the limits it is given', () => {
      const v = new Violations();
      expect(resolvePageSize(0, { defaultPageSize: 7, maxPageSize: 9 }, v)).to.equal(7);
      expect(resolvePageSize(10, { defaultPageSize: 7, maxPageSize: 9 }, v)).to.equal(9);
    });
  });

  describe('page tokens', () => {
    const SCOPE = { purposeId: 'news', channel: 'SMS' };
    const keys = new KeyManager({} as RootKeyProvider, {} as KeyStore, { subjectKeyCacheSize: 0, subjectKeyCacheTtlMs: 0, maxEncryptionsPerKey: 2 ** 32 });
    const keyring = (tenantId: string, key = randomBytes(32)) => ({ tenantId, epoch: 1, pageTokenKey: key }) as unknown as TenantKeyring;
    const acme = keyring('acme');
    const sealer = keys.pageTokenSealer(acme, 'consent_events');

    it('a number or string cursor round-trips', () => {
      const v = new Violations();
      expect(decodePageToken<number>(encodePageToken(1234, SCOPE, sealer), SCOPE, 'number', sealer, v)).to.equal(1234);
      expect(decodePageToken<number>(encodePageToken(0, SCOPE, sealer), SCOPE, 'number', sealer, v)).to.equal(0);
      expect(decodePageToken<string>(encodePageToken('newsletter', SCOPE, sealer), SCOPE, 'string', sealer, v)).to.equal('newsletter');
      expect(v.empty).to.equal(true);
    });

    it('the empty token means the first page: null, no violation', () => {
      const v = new Violations();
      expect(decodePageToken('', SCOPE, 'number', sealer, v)).to.equal(null);
      expect(v.empty).to.equal(true);
    });

    it('the token reveals neither the filters nor the cursor', () => {
      const planted = { phone: '+4915112345678' };
      const token = encodePageToken(987654, planted, sealer);
      const visible = token.split('.').map((part) => Buffer.from(part, 'base64url').toString('latin1')).join(' ');
      expect(visible).to.not.include('987654');
      expect(visible).to.not.include('4915112345678');
      expect(token).to.not.equal(encodePageToken(987654, planted, sealer), 'a fresh nonce per token');
    });

    it('a token from another scope, listing or tenant is refused', () => {
      const token = encodePageToken(10, SCOPE, sealer);
      const cases: Array<[unknown, typeof sealer]> = [
        [{ ...SCOPE, channel: 'EMAIL' }, sealer],
        [SCOPE, keys.pageTokenSealer(acme, 'purposes')],
        [SCOPE, keys.pageTokenSealer(keyring('other'), 'consent_events')],
        [SCOPE, keys.pageTokenSealer(keyring('acme'), 'consent_events')],
      ];
      for (const [scope, other] of cases) {
        const v = new Violations();
        expect(decodePageToken(token, scope, 'number', other, v)).to.equal(null);
        expect(recorded(v)).to.deep.equal([{ field: 'page_token', reason: 'INVALID_PAGE_TOKEN' }]);
      }
    });

    it('a token whose cursor has the wrong type is refused', () => {
      const v = new Violations();
      expect(decodePageToken(encodePageToken('10', SCOPE, sealer), SCOPE, 'number', sealer, v)).to.equal(null);
      expect(decodePageToken(encodePageToken(10, SCOPE, sealer), SCOPE, 'string', sealer, v)).to.equal(null);
      expect(recorded(v)).to.have.length(2);
    });

    it('edited, garbage and oversized tokens are refused', () => {
      const token = encodePageToken(10, SCOPE, sealer);
      const parts = token.split('.');
      const flipped = Buffer.from(parts[3], 'base64url');
      flipped[0] ^= 1;
      const edited = [parts[0], parts[1], parts[2], flipped.toString('base64url'), parts[4]].join('.');
      for (const bad of [edited, 'garbage', Buffer.from(JSON.stringify({ c: 10 })).toString('base64url'), token + 'x'.repeat(3000)]) {
        const v = new Violations();
        expect(decodePageToken(bad, SCOPE, 'number', sealer, v)).to.equal(null);
        expect(v.empty).to.equal(false);
      }
    });
  });
});
