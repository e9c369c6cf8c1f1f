import { expect } from 'chai';
import { DomainError, Violations } from '../../src/domain/errors';
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
    const SCOPE = { tenantId: 'acme', list: 'purposes' };

    it('a number cursor round-trips', () => {
      const v = new Violations();
      const token = encodePageToken(1234, SCOPE);
      expect(decodePageToken<number>(token, SCOPE, 'number', v)).to.equal(1234);
      expect(v.empty).to.equal(true);
    });

    it('a string cursor round-trips, including 0 and the empty string', () => {
      const v = new Violations();
      expect(decodePageToken<string>(encodePageToken('newsletter', SCOPE), SCOPE, 'string', v)).to.equal('newsletter');
      expect(decodePageToken<number>(encodePageToken(0, SCOPE), SCOPE, 'number', v)).to.equal(0);
      expect(decodePageToken<string>(encodePageToken('', SCOPE), SCOPE, 'string', v)).to.equal('');
      expect(v.empty).to.equal(true);
    });

    it('an equal scope built separately decodes the token', () => {
      const v = new Violations();
      const token = encodePageToken(5, { tenantId: 'acme', list: 'purposes' });
      expect(decodePageToken<number>(token, { tenantId: 'acme', list: 'purposes' }, 'number', v)).to.equal(5);
    });

    it('the token is opaque URL-safe text that does not spell out the scope', () => {
      const token = encodePageToken('after-this', { tenantId: 'secret-tenant', filter: 'x' });
      expect(token).to.match(/^[A-Za-z0-9_-]+$/);
      expect(Buffer.from(token, 'base64url').toString('utf8')).not.to.contain('secret-tenant');
    });

    it('the empty token means the first page: null, no violation', () => {
      const v = new Violations();
      expect(decodePageToken('', SCOPE, 'number', v)).to.equal(null);
      expect(v.empty).to.equal(true);
    });

    it('a token from another scope is refused', () => {
      const token = encodePageToken(10, SCOPE);
      for (const other of [{ tenantId: 'other', list: 'purposes' }, { tenantId: 'acme', list: 'notices' }, { ...SCOPE, filter: 'x' }, null]) {
        const v = new Violations();
        expect(decodePageToken(token, other, 'number', v), JSON.stringify(other)).to.equal(null);
        expect(recorded(v)).to.deep.equal([{ field: 'page_token', reason: 'INVALID_PAGE_TOKEN' }]);
      }
    });

    it('a token whose cursor has the wrong type is refused', () => {
      const v = new Violations();
      expect(decodePageToken(encodePageToken('10', SCOPE), SCOPE, 'number', v)).to.equal(null);
      expect(decodePageToken(encodePageToken(10, SCOPE), SCOPE, 'string', v)).to.equal(null);
      expect(recorded(v)).to.have.length(2);
    });

    it('a token whose scope digest was edited is refused', () => {
      const decoded = JSON.parse(Buffer.from(encodePageToken(10, SCOPE), 'base64url').toString('utf8')) as { c: number; s: string };
      const forged = Buffer.from(JSON.stringify({ c: 999, s: decoded.s.replace(/^./, (ch) => (ch === 'A' ? 'B' : 'A')) })).toString('base64url');
      const v = new Violations();
      expect(decodePageToken(forged, SCOPE, 'number', v)).to.equal(null);
      expect(v.empty).to.equal(false);
    });

    it('a different cursor with the same scope digest is accepted (tokens grant nothing)', () => {
      const decoded = JSON.parse(Buffer.from(encodePageToken(10, SCOPE), 'base64url').toString('utf8')) as { c: number; s: string };
      const moved = Buffer.from(JSON.stringify({ c: 20, s: decoded.s })).toString('base64url');
      expect(decodePageToken(moved, SCOPE, 'number', new Violations())).to.equal(20);
    });

    for (const garbage of ['x', '!!!!', 'bm90IGpzb24', Buffer.from('null').toString('base64url'), Buffer.from('[]').toString('base64url'), Buffer.from('{}').toString('base64url'), Buffer.from('"abc"').toString('base64url'), ' ']) {
      it(`garbage token ${JSON.stringify(garbage)} is refused without throwing`, () => {
        const v = new Violations();
        expect(decodePageToken(garbage, SCOPE, 'number', v)).to.equal(null);
        expect(recorded(v)).to.deep.equal([{ field: 'page_token', reason: 'INVALID_PAGE_TOKEN' }]);
      });
    }
  });
});
