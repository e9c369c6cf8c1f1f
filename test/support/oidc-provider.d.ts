// oidc-provider (panva) ships no type declarations; the test IdP (test/support/test-idp.ts) types what it uses.
declare module 'oidc-provider';
