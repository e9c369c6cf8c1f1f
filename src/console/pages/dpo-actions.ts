import { randomUUID } from 'node:crypto';
import { ServiceError } from '@grpc/grpc-js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DataSubjectRequest, LegalHold, LegalHoldGround, RequestKind, RequestState } from '../../gen/consent/v1/subject_rights';
import { ApiError, toApiError } from '../api-client';
import type { ConsolePageContext } from '../server';
import { httpStatusOf } from '../http-errors';

/**
 * The largest export package the console downloads: it must hold the package until the manifest
 * (whose hash and signature go in the headers) has arrived. Larger ones: `consentctl export`.
 */
export const MAX_EXPORT_BYTES = 64 * 1024 * 1024;
import type { Credential } from '../principal';

type RequestParams = { tenant: string; id: string };
type TenantParams = { tenant: string };
type HoldParams = { tenant: string; hold: string };

const TENANT = { type: 'string', pattern: '^[a-z][a-z0-9-]{1,62}$' } as const;
const ID = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } as const;

export const GROUND_OPTIONS: Array<[string, string, LegalHoldGround]> = [
  ['a', '(a) freedom of expression and information', LegalHoldGround.LEGAL_HOLD_GROUND_A_FREEDOM_OF_EXPRESSION],
  ['b', '(b) a legal obligation or a task in the public interest', LegalHoldGround.LEGAL_HOLD_GROUND_B_LEGAL_OBLIGATION],
  ['c', '(c) public health', LegalHoldGround.LEGAL_HOLD_GROUND_C_PUBLIC_HEALTH],
  ['d', '(d) archiving, research or statistics', LegalHoldGround.LEGAL_HOLD_GROUND_D_ARCHIVING_RESEARCH],
  ['e', '(e) legal claims', LegalHoldGround.LEGAL_HOLD_GROUND_E_LEGAL_CLAIMS],
];
export const groundLabel = (g: LegalHoldGround): string => GROUND_OPTIONS.find(([, , v]) => v === g)?.[1] ?? 'unknown';

/** What the request page offers besides verify/extend/reject: erase, export, and which open holds touch its people. */
export function canErase(r: DataSubjectRequest): boolean {
  return r.kind === RequestKind.REQUEST_KIND_ERASURE && r.state === RequestState.REQUEST_STATE_VERIFIED;
}
export function canExport(r: DataSubjectRequest): boolean {
  return (
    (r.kind === RequestKind.REQUEST_KIND_ACCESS || r.kind === RequestKind.REQUEST_KIND_PORTABILITY) &&
    (r.state === RequestState.REQUEST_STATE_VERIFIED || r.state === RequestState.REQUEST_STATE_COMPLETED)
  );
}

/** The decoded payload of a compact JWS (shown, not verified: `consent-ledger verify-receipt` verifies it). */
export function jwsPayload(jws: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The tenant's open legal holds (every page of them, up to 2,000), or the API's refusal. */
export async function openHolds(ctx: ConsolePageContext, tenant: string, credential: Credential, includeReleased = false): Promise<LegalHold[]> {
  const holds: LegalHold[] = [];
  let pageToken = '';
  do {
    const page = await ctx.api.call(
      ctx.api.rights,
      ctx.api.rights.listLegalHolds,
      { parent: `tenants/${tenant}`, subjectIdentifier: undefined, includeReleased, pageSize: 500, pageToken },
      credential,
    );
    holds.push(...page.holds);
    pageToken = page.nextPageToken;
  } while (pageToken && holds.length < 2000);
  return holds;
}

/**
 * Issue 19 point 3: the DPO actions that act on people's data. Erasure behind a confirmation
 * page, the export download (a POST: see docs/console.md), and the tenant's legal holds page
 * (list, place with an identifier typed into the POST body, release with a note).
 */
export function dpoActionPages(app: FastifyInstance, ctx: ConsolePageContext): void {
  const { api, views } = ctx;
  const requestParam = { type: 'object', properties: { tenant: TENANT, id: ID }, required: ['tenant', 'id'] } as const;
  const tenantParam = { type: 'object', properties: { tenant: TENANT }, required: ['tenant'] } as const;
  const holdParam = { type: 'object', properties: { tenant: TENANT, hold: ID }, required: ['tenant', 'hold'] } as const;

  const confirmPage = async (request: FastifyRequest<{ Params: RequestParams }>, reply: FastifyReply, error?: ApiError, notConfirmed = false) => {
    const { tenant, id } = request.params;
    const credential = ctx.credential(request);
    let found: DataSubjectRequest;
    try {
      found = (await api.call(api.rights, api.rights.getRequest, { name: `tenants/${tenant}/requests/${id}` }, credential)).request!;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      reply.code(httpStatusOf(err));
      return reply.type('text/html').send(views.page('error', credential, { title: 'Request not shown', heading: `Request ${id}`, tenant, error: err }));
    }
    if (error) reply.code(httpStatusOf(error));
    else if (notConfirmed) reply.code(400);
    return reply.type('text/html').send(
      views.page('erase-confirm', credential, {
        title: `Erase: request ${id}`,
        tenant,
        id,
        request: found,
        offered: credential.roles.includes('dpo') && canErase(found),
        csrf: credential.roles.includes('dpo') ? reply.generateCsrf({ userInfo: credential.who }) : '',
        error,
        notConfirmed,
      }),
    );
  };

  app.get('/tenants/:tenant/requests/:id/erase', { schema: { params: requestParam } }, (request: FastifyRequest<{ Params: RequestParams }>, reply) => confirmPage(request, reply));

  app.post(
    '/tenants/:tenant/requests/:id/erase',
    { schema: { params: requestParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: RequestParams; Body: Record<string, string> }>, reply) => {
      const { tenant, id } = request.params;
      // Nothing is erased unless the confirmation box was ticked on the confirmation page.
      if (request.body?.confirm !== 'erase') return confirmPage(request, reply, undefined, true);
      try {
        await api.call(api.rights, api.rights.eraseSubject, { name: `tenants/${tenant}/requests/${id}` }, ctx.credential(request), 60_000);
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/requests/${id}`, 'erased');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return confirmPage(request, reply, err);
      }
    },
  );

  // A POST (with its CSRF token), not a GET: each export is recorded on the request and the first
  // completes it, so fetching one changes state; and nothing personal is in the address either way.
  app.post(
    '/tenants/:tenant/requests/:id/export',
    { schema: { params: requestParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: RequestParams }>, reply) => {
      const { tenant, id } = request.params;
      const credential = ctx.credential(request);
      const metadata = api.metadataFor(credential);
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      let manifest: { packageSha256: string; signedManifest: string; format: string; events: number } | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          const stream = api.rights.exportSubjectData({ name: `tenants/${tenant}/requests/${id}` }, metadata, { deadline: Date.now() + 300_000 });
          stream.on('data', (m: { part?: { $case: string; value: unknown } }) => {
            if (m.part?.$case === 'packageChunk') {
              const chunk = Buffer.from(m.part.value as Uint8Array);
              size += chunk.length;
              chunks.push(chunk);
              if (size > ctx.maxExportBytes && !tooLarge) {
                // The console holds the package until its manifest (headers go first): bounded here.
                tooLarge = true;
                chunks.length = 0;
                stream.cancel();
              }
            } else if (m.part?.$case === 'manifest') manifest = m.part.value as typeof manifest;
          });
          stream.on('error', (e: ServiceError) => (tooLarge ? resolve() : reject(toApiError(e))));
          stream.on('end', () => resolve());
        });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        reply.code(httpStatusOf(err));
        return reply.type('text/html').send(views.page('error', credential, { title: 'Export refused', heading: `Export of request ${id}`, tenant, error: err }));
      }
      if (tooLarge) {
        reply.code(413);
        const error = new ApiError(8, 'RESOURCE_EXHAUSTED', 'EXPORT_TOO_LARGE', `the export is larger than the console downloads (${Math.floor(ctx.maxExportBytes / 1024)} KiB); use consentctl export, which streams it to files`);
        return reply.type('text/html').send(views.page('error', credential, { title: 'Export too large', heading: `Export of request ${id}`, tenant, error }));
      }
      if (!manifest) throw new Error('the export ended without its manifest');
      // The package is the person's own data, in the body only; the signed manifest (no personal
      // data: sums, counts, names) travels in headers.
      return reply
        .type('application/json; charset=utf-8')
        .header('content-disposition', `attachment; filename="export-${tenant}-${id}.json"`)
        .header('x-export-package-sha256', manifest.packageSha256)
        .header('x-export-signed-manifest', manifest.signedManifest)
        .send(Buffer.concat(chunks));
    },
  );

  const holdsPage = async (request: FastifyRequest<{ Params: TenantParams; Querystring?: { released?: string; done?: string } }>, reply: FastifyReply, error?: ApiError) => {
    const { tenant } = request.params;
    const credential = ctx.credential(request);
    const query = (request.query ?? {}) as { released?: string; done?: string };
    const includeReleased = query.released === '1';
    let holds: LegalHold[] = [];
    let listError: ApiError | undefined;
    try {
      holds = await openHolds(ctx, tenant, credential, includeReleased);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      listError = err;
    }
    const shown = error ?? listError;
    if (shown) reply.code(httpStatusOf(shown));
    const isDpo = credential.roles.includes('dpo');
    return reply.type('text/html').send(
      views.page('legal-holds', credential, {
        title: `Legal holds of ${tenant}`,
        tenant,
        holds: holds.map((h) => ({ ...h, id: h.name.slice(h.name.lastIndexOf('/') + 1), groundText: groundLabel(h.ground) })),
        includeReleased,
        isDpo: isDpo && !listError,
        csrf: isDpo ? reply.generateCsrf({ userInfo: credential.who }) : '',
        groundOptions: GROUND_OPTIONS,
        requestId: `console-${randomUUID()}`,
        done: shown ? undefined : ctx.confirmations.take(request, reply, { placed: 'The legal hold was placed.', released: 'The legal hold was released.' }),
        error: shown,
      }),
    );
  };

  app.get('/tenants/:tenant/legal-holds', { schema: { params: tenantParam } }, (request: FastifyRequest<{ Params: TenantParams; Querystring: { released?: string; done?: string } }>, reply) =>
    holdsPage(request, reply),
  );

  app.post(
    '/tenants/:tenant/legal-holds',
    { schema: { params: tenantParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: TenantParams; Body: Record<string, string> }>, reply) => {
      const { tenant } = request.params;
      const body = request.body ?? {};
      const value = String(body.id_value ?? '').trim();
      const kind = body.id_kind;
      try {
        await api.call(
          api.rights,
          api.rights.placeLegalHold,
          {
            parent: `tenants/${tenant}`,
            // Typed by the DPO, carried in this POST body and this call only.
            subjectIdentifier: {
              kind: kind === 'email' ? { $case: 'email', value } : kind === 'customer' ? { $case: 'customerId', value } : { $case: 'phoneNumber', value },
              defaultRegion: '',
            },
            ground: GROUND_OPTIONS.find(([k]) => k === body.ground)?.[2] ?? LegalHoldGround.LEGAL_HOLD_GROUND_UNSPECIFIED,
            note: String(body.note ?? '').trim(),
            requestId: /^[A-Za-z0-9._:-]{1,128}$/.test(String(body.request_id ?? '')) ? String(body.request_id) : '',
          },
          ctx.credential(request),
        );
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/legal-holds`, 'placed');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return holdsPage(request, reply, err);
      }
    },
  );

  app.post(
    '/tenants/:tenant/legal-holds/:hold/release',
    { schema: { params: holdParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: HoldParams; Body: Record<string, string> }>, reply) => {
      const { tenant, hold } = request.params;
      try {
        await api.call(api.rights, api.rights.releaseLegalHold, { name: `tenants/${tenant}/legalHolds/${hold}`, note: String(request.body?.note ?? '').trim() }, ctx.credential(request));
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/legal-holds`, 'released');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return holdsPage(request, reply, err);
      }
    },
  );
}
