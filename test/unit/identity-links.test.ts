import { expect } from 'chai';
import { IdentityLinkRecord, IdentityLinkRepository, IdentityLinks, MAX_LINKED_SUBJECTS } from '../../src/domain/identity-links';
import { DomainError } from '../../src/shared/errors';
import { TxContext } from '../../src/shared/unit-of-work';

/** Open links between subject ids, as the repository answers them (in id order). */
function repositoryOf(pairs: Array<[string, string, string]>): IdentityLinkRepository {
  const links = pairs.map(([id, a, b]) => ({ id, tenantId: 't1', subjectA: a, subjectB: b, unlinkedAt: null }) as IdentityLinkRecord);
  return {
    async openLinksOf(_tx, tenantId, ids) {
      return links.filter((l) => l.tenantId === tenantId && (ids.includes(l.subjectA) || ids.includes(l.subjectB))).sort((x, y) => (x.id < y.id ? -1 : 1));
    },
  } as IdentityLinkRepository;
}

function linksOver(pairs: Array<[string, string, string]>): IdentityLinks {
  const unused = null as never;
  return new IdentityLinks(unused, repositoryOf(pairs), unused, unused, unused, unused, unused, unused, unused, unused, unused);
}

const tx = {} as TxContext;
const name = (id: string) => `tenants/t1/identityLinks/${id}`;

describe('IdentityLinks.linkedSubjects', function () {
  it('answers the transitive closure over open links, breadth first, each with its link and the subject it was reached from', async function () {
    // a - b - c, b - d, e alone; the link ids decide the order within a level.
    const links = linksOver([
      ['l3', 'b', 'd'],
      ['l1', 'a', 'b'],
      ['l2', 'c', 'b'],
      ['l9', 'e', 'f'],
    ]);
    expect(await links.linkedSubjects(tx, 't1', ['a'])).to.deep.equal([
      { subjectId: 'b', viaLink: name('l1'), from: 'a' },
      { subjectId: 'c', viaLink: name('l2'), from: 'b' },
      { subjectId: 'd', viaLink: name('l3'), from: 'b' },
    ]);
    expect(await links.linkedSubjects(tx, 't1', ['d', 'a'])).to.deep.equal([
      { subjectId: 'b', viaLink: name('l1'), from: 'a' },
      { subjectId: 'c', viaLink: name('l2'), from: 'b' },
    ]);
    expect(await links.linkedSubjects(tx, 't1', ['x'])).to.deep.equal([]);
    expect(await links.linkedSubjects(tx, 't1', [])).to.deep.equal([]);
    expect(await links.linkedSubjects(tx, 't2', ['a']), 'another tenant').to.deep.equal([]);
  });

  it('follows a cycle once', async function () {
    const links = linksOver([
      ['l1', 'a', 'b'],
      ['l2', 'b', 'c'],
      ['l3', 'c', 'a'],
    ]);
    expect((await links.linkedSubjects(tx, 't1', ['a'])).map((x) => x.subjectId)).to.deep.equal(['b', 'c']);
  });

  it(`is FAILED_PRECONDITION TOO_MANY_LINKS beyond ${MAX_LINKED_SUBJECTS} subjects`, async function () {
    const chain = (n: number) => Array.from({ length: n }, (_, i) => [`l${String(i).padStart(4, '0')}`, `s${i}`, `s${i + 1}`] as [string, string, string]);
    expect(await linksOver(chain(MAX_LINKED_SUBJECTS)).linkedSubjects(tx, 't1', ['s0'])).to.have.length(MAX_LINKED_SUBJECTS);
    try {
      await linksOver(chain(MAX_LINKED_SUBJECTS + 1)).linkedSubjects(tx, 't1', ['s0']);
      expect.fail('expected TOO_MANY_LINKS');
    } catch (err) {
      expect(err).to.be.instanceOf(DomainError);
      expect([(err as DomainError).kind, (err as DomainError).reason]).to.deep.equal(['FAILED_PRECONDITION', 'TOO_MANY_LINKS']);
    }
  });
});
