import { expect } from 'chai';
import { HELPERS } from '../../src/console/views';
import { ReceivedVia, RequestKind, RequestState } from '../../src/gen/consent/v1/subject_rights';

/** Every value the API can send has words on the console's pages, none shows as "unknown". */
describe('console labels', () => {
  const values = (e: object) => Object.values(e).filter((v): v is number => typeof v === 'number' && v > 0);
  it('every way a request can be received, kind and state', () => {
    for (const v of values(ReceivedVia)) expect(HELPERS.viaLabel(v), ReceivedVia[v]).to.not.equal('unknown');
    for (const v of values(RequestKind)) expect(HELPERS.kindLabel(v), RequestKind[v]).to.not.equal('unknown');
    for (const v of values(RequestState)) expect(HELPERS.stateLabel(v), RequestState[v]).to.not.equal('unknown');
  });
});
