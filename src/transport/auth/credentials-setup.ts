import { readFileSync } from 'node:fs';
import { experimental, ServerCredentials } from '@grpc/grpc-js';
import { Config } from '../../config/config';
import { Authenticator, CredentialAuthenticator, DevelopmentAuthenticator } from './authenticator';
import { CertificatePrincipal, ClientCertificateVerifier } from './client-certificates';
import { TokenVerifier } from './token-verifier';

/** How often certificate files are read again, so renewed certificates apply without a restart. */
const CERTIFICATE_REFRESH_MS = 60_000;

/** The authenticator the configuration asks for; files are read and checked here, at start. */
export async function createAuthenticator(config: Pick<Config, 'authMode' | 'tls' | 'tokens'>): Promise<Authenticator> {
  if (config.authMode === 'development') return new DevelopmentAuthenticator();
  const tokens = config.tokens
    ? await TokenVerifier.create({
        jwks: readFileSync(config.tokens.jwksFile, 'utf8'),
        issuer: config.tokens.issuer,
        audience: config.tokens.audience,
        algorithms: config.tokens.algorithms,
        clockSkewMs: config.tokens.clockSkewMs,
      })
    : null;
  const certificates =
    config.tls?.clientCaFile && config.tls.principalsFile
      ? new ClientCertificateVerifier(readFileSync(config.tls.clientCaFile, 'utf8'), readPrincipals(config.tls.principalsFile))
      : null;
  return new CredentialAuthenticator(tokens, certificates);
}

/**
 * The server's transport security. With a client CA the server asks each client for a
 * certificate but lets the handshake finish without one or with one it does not trust: the
 * call pipeline then answers UNAUTHENTICATED with a reason, instead of a bare connection failure,
 * and token clients need no certificate.
 */
export function createServerCredentials(config: Pick<Config, 'tls'>): ServerCredentials {
  const tls = config.tls;
  if (!tls) return ServerCredentials.createInsecure();
  if (!tls.clientCaFile) {
    return ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }], false);
  }
  const provider = new experimental.FileWatcherCertificateProvider({
    certificateFile: tls.certFile,
    privateKeyFile: tls.keyFile,
    caCertificateFile: tls.clientCaFile,
    refreshIntervalMs: CERTIFICATE_REFRESH_MS,
  });
  return experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

function readPrincipals(file: string): Record<string, CertificatePrincipal> {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { principals?: unknown };
  if (!parsed || typeof parsed.principals !== 'object' || parsed.principals === null || Array.isArray(parsed.principals)) {
    throw new Error(`MTLS_PRINCIPALS_FILE ${file} must be {"principals": {"<certificate identity>": {"roles": [...], "tenants": [...] | "*"}}}`);
  }
  return parsed.principals as Record<string, CertificatePrincipal>;
}
