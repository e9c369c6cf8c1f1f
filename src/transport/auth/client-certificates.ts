import { X509Certificate } from 'node:crypto';
import { PeerCertificate } from 'node:tls';
import { unauthenticated } from '../../shared/errors';
import { Principal } from '../../domain/principal';
import { parseRoles, parseTenants } from './token-verifier';

/** clientAuth extended key usage. */
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** What the principals file grants one certificate identity. */
export interface CertificatePrincipal {
  roles: string[];
  tenants: string[] | '*';
}

/**
 * Mutual TLS: the server asks every client for a certificate but lets the handshake finish
 * without one (bearer tokens are the other way in), so the chain is checked here: issued and
 * signed by one of the configured client CAs (directly; no intermediates), within its validity,
 * allowed for client authentication. The identity is the certificate's first URI SAN (e.g. a
 * SPIFFE id), else its first DNS SAN, else its subject CN; the principals file maps it to roles
 * and tenants. Node's X509Certificate does the signature and issuer checks.
 */
export class ClientCertificateVerifier {
  private readonly cas: X509Certificate[];

  constructor(
    caPem: string,
    private readonly principals: Readonly<Record<string, CertificatePrincipal>>,
  ) {
    this.cas = splitPem(caPem).map((pem) => new X509Certificate(pem));
    if (this.cas.length === 0) throw new Error('the client CA file holds no certificate');
    if (this.cas.some((ca) => !ca.ca)) throw new Error('every certificate in the client CA file must be a CA certificate');
    // Fail at start, not at the first call, when the file is wrong.
    for (const [identity, grant] of Object.entries(principals)) {
      try {
        parseRoles(grant.roles);
        parseTenants(grant.tenants);
      } catch (err) {
        throw new Error(`principals file: ${identity}: ${(err as Error).message}`);
      }
    }
  }

  /** The principal of a presented certificate; throws UNAUTHENTICATED for one that is not trusted. */
  verify(peer: PeerCertificate, now: number): Principal {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(peer.raw);
    } catch {
      throw unauthenticated('CLIENT_CERTIFICATE_INVALID', 'the client certificate cannot be read');
    }
    const issuer = this.cas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
    if (!issuer) throw unauthenticated('CLIENT_CERTIFICATE_UNTRUSTED', 'the client certificate is not issued by a trusted client CA');
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) throw unauthenticated('CLIENT_CERTIFICATE_EXPIRED', 'the client certificate is not valid at this time');
    if (cert.keyUsage && !cert.keyUsage.includes(CLIENT_AUTH)) throw unauthenticated('CLIENT_CERTIFICATE_INVALID', 'the client certificate is not for client authentication');
    const identity = identityOf(cert);
    const grant = identity ? this.principals[identity] : undefined;
    if (!identity || !grant) throw unauthenticated('CLIENT_CERTIFICATE_UNKNOWN', 'the client certificate names no principal known to this service');
    return { id: identity, roles: parseRoles(grant.roles), tenants: parseTenants(grant.tenants) };
  }
}

/** First URI SAN, else first DNS SAN, else the subject CN. */
export function identityOf(cert: X509Certificate): string | null {
  const names = (cert.subjectAltName ?? '').split(/,\s*/).filter(Boolean);
  const uri = names.find((n) => n.startsWith('URI:'));
  if (uri) return uri.slice(4);
  const dns = names.find((n) => n.startsWith('DNS:'));
  if (dns) return dns.slice(4);
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject);
  return cn ? cn[1] : null;
}

function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
