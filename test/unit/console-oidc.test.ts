import { expect } from 'chai';
import { sameOriginPath } from '../../src/console/oidc';

/** Where the console sends the browser after sign-in: a path of its own, never another origin. */
describe('console OIDC: the address to return to after sign-in', () => {
  it('keeps a path of the console with its query', () => {
    expect(sameOriginPath('/tenants/acme/requests?state=all')).to.equal('/tenants/acme/requests?state=all');
    expect(sameOriginPath('/')).to.equal('/');
  });

  it('turns anything that could leave the console, or loop into the sign-in, into the start page', () => {
    for (const hostile of ['//evil.example/x', '/\\evil.example', 'https://evil.example/', 'evil', '', '/oidc/callback?code=x', '/oidc/sign-out', 'javascript:alert(1)']) {
      expect(sameOriginPath(hostile), hostile).to.equal('/');
    }
    // Dot segments resolve to "//host" (another origin to a browser): checked after resolving.
    for (const hostile of ['/a/../..//evil.example', '/./\\evil.example', '/x/../oidc/callback']) expect(sameOriginPath(hostile), hostile).to.equal('/');
  });
});
