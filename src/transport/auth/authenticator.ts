import { Metadata } from '@grpc/grpc-js';
import { PeerCertificate } from 'node:tls';
import { unauthenticated } from '../../shared/errors';
import { DEVELOPMENT_PRINCIPAL, Principal } from '../../domain/principal';
import { ClientCertificateVerifier } from './client-certificates';
import { TokenVerifier } from './token-verifier';

/** What a call brings to prove who it is. */
export interface CallCredentials {
  metadata: Metadata;
  /** The client certificate of a TLS connection, when the client sent one (looked up when called). */
  peerCertificate(): PeerCertificate | undefined;
}

/**
 * Decides the principal of a call, or refuses it with UNAUTHENTICATED (thrown, or the promise
 * rejected). At once when nothing needs a turn of the event loop (no credentials, a client
 * certificate): the call pipeline then goes on without one.
 */
export interface Authenticator {
  readonly mode: 'development' | 'authenticated';
  authenticate(credentials: CallCredentials, now: number): Principal | Promise<Principal>;
}

/** No credentials configured: every call is the fixed development principal (loopback only; see config). */
export class DevelopmentAuthenticator implements Authenticator {
  readonly mode = 'development';
  authenticate(): Principal {
    return DEVELOPMENT_PRINCIPAL;
  }
}

/**
 * Bearer token or client certificate. grpc-js hands over a client certificate only when the TLS
 * layer verified it against the client CA (a missing, untrusted or expired one looks absent), and
 * the certificate verifier checks it again (issuer, signature, dates, usage) before mapping its
 * identity. A call with a token is decided by the token (the narrower, per-call grant); a
 * certificate that is seen must still be valid.
 */
export class CredentialAuthenticator implements Authenticator {
  readonly mode = 'authenticated';

  constructor(
    private readonly tokens: TokenVerifier | null,
    private readonly certificates: ClientCertificateVerifier | null,
  ) {}

  authenticate(credentials: CallCredentials, now: number): Principal | Promise<Principal> {
    const peer = credentials.peerCertificate();
    const presented = hasCertificate(peer) ? peer : undefined;
    let fromCertificate: Principal | undefined;
    if (presented) {
      if (!this.certificates) throw unauthenticated('CLIENT_CERTIFICATE_NOT_ACCEPTED', 'this server does not accept client certificates');
      fromCertificate = this.certificates.verify(presented, now);
    }
    const authorization = credentials.metadata.get('authorization');
    if (authorization.length > 1) throw unauthenticated('CREDENTIALS_AMBIGUOUS', 'send one authorization header');
    if (authorization.length === 1) {
      const match = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(String(authorization[0]));
      if (!match) throw unauthenticated('TOKEN_MALFORMED', 'the authorization header must be "Bearer <token>"');
      if (!this.tokens) throw unauthenticated('TOKEN_NOT_ACCEPTED', 'this server does not accept bearer tokens');
      return this.tokens.verify(match[1], now);
    }
    if (fromCertificate) return fromCertificate;
    throw unauthenticated('CREDENTIALS_REQUIRED', 'this server needs a bearer token or a client certificate');
  }
}

/** grpc-js reports an empty object when the client sent no certificate. */
function hasCertificate(peer: PeerCertificate | undefined): peer is PeerCertificate {
  return peer !== undefined && Buffer.isBuffer(peer.raw) && peer.raw.length > 0;
}
