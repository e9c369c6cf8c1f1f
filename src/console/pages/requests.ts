import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SubjectIdentifier } from '../../gen/consent/v1/common';
import { CreateRequestRequest, DataSubjectRequest, ListRequestsRequest, RequestKind, RequestNoticeTopic, RequestState } from '../../gen/consent/v1/subject_rights';
import { ApiError } from '../api-client';
import type { ConsolePageContext } from '../server';
import { daysLeft, deadlineText, isOpen, KIND_VALUES, parseFilter, queueRows, STATE_VALUES } from '../queue';
import { VIA_OPTIONS, VIA_VALUES } from '../views';
import { httpStatusOf } from '../http-errors';
import { canErase, canExport, groundLabel, jwsPayload, openHolds } from './dpo-actions';
import type { LegalHold } from '../../gen/consent/v1/subject_rights';

/** The most requests the queue reads (pages of 500) before it says "narrow the filters". */
const QUEUE_LIMIT = 2000;
const IDENTIFIER_ROWS = 3;
const VERIFY_METHODS = ['ID_DOCUMENT', 'EMAIL_CONFIRMATION', 'PHONE_CALLBACK', 'KNOWN_ACCOUNT', 'IN_PERSON', 'OTHER'];
/** Far enough ahead that every open request is due before it: ListRequests' way to ask for "open only". */
const OPEN_HORIZON_MS = 100 * 365 * 86_400_000;

const STATE_OPTIONS: Array<[string, string]> = [
  ['open', 'open (not completed or rejected)'],
  ['all', 'all'],
  ['received', 'received'],
  ['verified', 'verified'],
  ['in-progress', 'in progress'],
  ['completed', 'completed'],
  ['rejected', 'rejected'],
];
const KIND_OPTIONS: Array<[string, string]> = [
  ['all', 'all'],
  ['access', 'access (Art. 15)'],
  ['portability', 'portability (Art. 20)'],
  ['erasure', 'erasure (Art. 17)'],
  ['objection', 'objection (Art. 21)'],
  ['restriction', 'restriction (Art. 18)'],
  ['rectification', 'rectification (Art. 16)'],
];
/** Kinds the create form offers: a rectification also needs the corrected identifier, which the form does not ask for yet. */
const CREATE_KINDS = KIND_OPTIONS.filter(([v]) => v !== 'all' && v !== 'rectification');

type TenantParams = { tenant: string };

/** `table[key]` for the table's own keys only ("constructor" or "__proto__" from a form find nothing). */
function own<T>(table: Readonly<Record<string, T>>, key: unknown): T | undefined {
  const k = String(key ?? '');
  return Object.hasOwn(table, k) ? table[k] : undefined;
}
type RequestParams = { tenant: string; id: string };

/**
 * The DPO's data-subject request pages: the queue of a tenant (overdue first, due dates, days
 * left, filters), one request with its identifiers and history, registering a request, and the
 * verify-identity, extend-deadline and reject actions (POST forms with CSRF tokens, answered by a
 * redirect).
 */
export function requestPages(app: FastifyInstance, ctx: ConsolePageContext): void {
  const { api, views } = ctx;
  const tenantParam = { type: 'object', properties: { tenant: { type: 'string', pattern: '^[a-z][a-z0-9-]{1,62}$' } }, required: ['tenant'] } as const;
  const requestParam = {
    type: 'object',
    properties: { tenant: tenantParam.properties.tenant, id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
    required: ['tenant', 'id'],
  } as const;

  // The tenant chooser's form: tenant ids are not personal data and may sit in the address.
  app.get('/requests', async (request: FastifyRequest<{ Querystring: { tenant?: string } }>, reply) => {
    const tenant = String(request.query.tenant ?? '').trim();
    if (!/^[a-z][a-z0-9-]{1,62}$/.test(tenant)) return reply.redirect('/', 303);
    return reply.redirect(`/tenants/${tenant}/requests`, 303);
  });

  app.get('/tenants/:tenant/requests', { schema: { params: tenantParam } }, async (request: FastifyRequest<{ Params: TenantParams; Querystring: Record<string, string> }>, reply) => {
    const { tenant } = request.params;
    const credential = ctx.credential(request);
    const filter = parseFilter(request.query);
    const list = ListRequestsRequest.fromPartial({ parent: `tenants/${tenant}`, pageSize: 500, overdue: filter.overdueOnly });
    if (filter.state === 'open') list.dueBefore = new Date(ctx.now() + OPEN_HORIZON_MS);
    else if (filter.state !== 'all') list.state = STATE_VALUES[filter.state];
    if (filter.kind !== 'all') list.kind = KIND_VALUES[filter.kind];
    const requests: DataSubjectRequest[] = [];
    let error: ApiError | undefined;
    let truncated = false;
    try {
      for (;;) {
        const page = await api.call(api.rights, api.rights.listRequests, list, credential);
        requests.push(...page.requests);
        if (!page.nextPageToken) break;
        if (requests.length >= QUEUE_LIMIT) {
          truncated = true;
          break;
        }
        list.pageToken = page.nextPageToken;
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      error = err;
    }
    if (error) reply.code(httpStatusOf(error));
    return reply.type('text/html').send(
      views.page('queue', credential, {
        title: `Requests of ${tenant}`,
        tenant,
        filter,
        stateOptions: STATE_OPTIONS,
        kindOptions: KIND_OPTIONS,
        rows: queueRows(requests, ctx.now()),
        truncated,
        error,
      }),
    );
  });

  const newRequestPage = async (request: FastifyRequest<{ Params: TenantParams }>, reply: FastifyReply, error?: ApiError, form: Record<string, string> = {}) => {
    const credential = ctx.credential(request);
    if (error) reply.code(httpStatusOf(error));
    return reply.type('text/html').send(
      views.page('new-request', credential, {
        title: 'Register a request',
        tenant: request.params.tenant,
        csrf: reply.generateCsrf({ userInfo: credential.who }),
        // A fresh idempotency key per form: submitting the same form twice registers one request.
        requestId: form.request_id && /^[A-Za-z0-9._:-]{1,128}$/.test(form.request_id) ? form.request_id : `console-${randomUUID()}`,
        kindOptions: CREATE_KINDS,
        viaOptions: VIA_OPTIONS,
        identifierRows: IDENTIFIER_ROWS,
        form,
        error,
      }),
    );
  };

  app.get('/tenants/:tenant/requests/new', { schema: { params: tenantParam } }, (request: FastifyRequest<{ Params: TenantParams }>, reply) => newRequestPage(request, reply));

  app.post(
    '/tenants/:tenant/requests',
    { schema: { params: tenantParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: TenantParams; Body: Record<string, string> }>, reply) => {
      const { tenant } = request.params;
      const credential = ctx.credential(request);
      const body = request.body ?? {};
      const identifiers: SubjectIdentifier[] = [];
      for (let n = 1; n <= IDENTIFIER_ROWS; n++) {
        const value = String(body[`id_value_${n}`] ?? '').trim();
        if (!value) continue;
        const kind = body[`id_kind_${n}`];
        identifiers.push({
          kind: kind === 'email' ? { $case: 'email', value } : kind === 'customer' ? { $case: 'customerId', value } : { $case: 'phoneNumber', value },
          defaultRegion: '',
        });
      }
      const create = CreateRequestRequest.fromPartial({
        parent: `tenants/${tenant}`,
        kind: own(KIND_VALUES, body.kind) ?? RequestKind.REQUEST_KIND_UNSPECIFIED,
        receivedVia: own(VIA_VALUES, body.received_via) ?? 0,
        requestId: String(body.request_id ?? ''),
      });
      // The identifiers travel in the body of this call only: never in an address or a log line.
      create.subjectIdentifiers = identifiers;
      try {
        const created = await api.call(api.rights, api.rights.createRequest, create, credential);
        const id = created.request!.name.slice(created.request!.name.lastIndexOf('/') + 1);
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/requests/${id}`, 'created');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return newRequestPage(request, reply, err, { kind: body.kind ?? '', received_via: body.received_via ?? '', request_id: body.request_id ?? '' });
      }
    },
  );

  const DONE: Record<string, string> = {
    created: 'The request was registered.',
    extended: 'The deadline was extended.',
    verified: 'The verification was recorded.',
    rejected: 'The request was rejected.',
    noticed: 'The notice to the person was recorded.',
    erased: 'The erasure was carried out: each person found was erased and the receipt below was signed.',
  };

  const requestPage = async (request: FastifyRequest<{ Params: RequestParams; Querystring?: { done?: string } }>, reply: FastifyReply, actionError?: ApiError) => {
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
    const isDpo = credential.roles.includes('dpo');
    const open = found.state === RequestState.REQUEST_STATE_RECEIVED || found.state === RequestState.REQUEST_STATE_VERIFIED;
    const unverified = found.identifiers.filter((i) => !i.verificationMethod);
    const days = daysLeft(found, ctx.now());
    // The tenant's open holds on a person this request found (ListLegalHolds filters by identifier
    // only, and the console has no identifier values: so all open holds, matched by person).
    const subjects = new Set(found.identifiers.map((i) => i.subject).filter(Boolean));
    let holds: Array<LegalHold & { groundText: string }> = [];
    let holdsError: ApiError | undefined;
    if (subjects.size > 0) {
      try {
        holds = (await openHolds(ctx, tenant, credential)).filter((h) => subjects.has(h.subject)).map((h) => ({ ...h, groundText: groundLabel(h.ground) }));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        holdsError = err;
      }
    }
    const receipt = found.erasureReceipt ? { jws: found.erasureReceipt, payload: jwsPayload(found.erasureReceipt) } : undefined;
    if (actionError) reply.code(httpStatusOf(actionError));
    const done = ctx.confirmations.take(request, reply, DONE);
    return reply.type('text/html').send(
      views.page('request', credential, {
        title: `Request ${id}`,
        tenant,
        id,
        request: found,
        deadline: deadlineText(days, found.overdue),
        // Offered only where the API would allow them; the API decides either way.
        actions: {
          verify: isDpo && open && unverified.length > 0,
          // Art. 12(3): once, before the first deadline passes, while the request is not closed.
          extend: isDpo && isOpen(found) && !found.extensionReason && !found.overdue,
          reject: isDpo && open,
          // Art. 12(3)-(4): that the person was told, once an extension or a rejection exists.
          notice: !isDpo ? undefined : found.extensionReason && !found.extensionNotice ? 'EXTENSION' : found.rejectionReason && !found.rejectionNotice ? 'REJECTION' : undefined,
          erase: isDpo && canErase(found),
          exportData: isDpo && canExport(found),
        },
        holds,
        holdsError,
        receipt,
        unverified,
        verifyMethods: VERIFY_METHODS,
        csrf: isDpo ? reply.generateCsrf({ userInfo: credential.who }) : '',
        done: actionError ? undefined : done,
        error: actionError,
      }),
    );
  };

  app.get('/tenants/:tenant/requests/:id', { schema: { params: requestParam } }, (request: FastifyRequest<{ Params: RequestParams; Querystring: { done?: string } }>, reply) => requestPage(request, reply));

  app.post(
    '/tenants/:tenant/requests/:id/verify',
    { schema: { params: requestParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: RequestParams; Body: Record<string, string | string[]> }>, reply) => {
      const { tenant, id } = request.params;
      const body = request.body ?? {};
      const positions = ([] as string[]).concat(body.positions ?? []).map(Number).filter((n) => Number.isInteger(n) && n > 0);
      try {
        await api.call(
          api.rights,
          api.rights.verifyIdentity,
          { name: `tenants/${tenant}/requests/${id}`, method: String(body.method ?? ''), verifiedBy: String(body.verified_by ?? '').trim(), identifierPositions: positions },
          ctx.credential(request),
        );
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/requests/${id}`, 'verified');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return requestPage(request, reply, err);
      }
    },
  );

  app.post(
    '/tenants/:tenant/requests/:id/extend',
    { schema: { params: requestParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: RequestParams; Body: Record<string, string> }>, reply) => {
      const { tenant, id } = request.params;
      try {
        await api.call(
          api.rights,
          api.rights.extendDeadline,
          { name: `tenants/${tenant}/requests/${id}`, months: Number(request.body?.months ?? 0) || 0, reason: String(request.body?.reason ?? '').trim() },
          ctx.credential(request),
        );
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/requests/${id}`, 'extended');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return requestPage(request, reply, err);
      }
    },
  );

  app.post(
    '/tenants/:tenant/requests/:id/notice',
    { schema: { params: requestParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: RequestParams; Body: Record<string, string> }>, reply) => {
      const { tenant, id } = request.params;
      const topic = request.body?.topic === 'EXTENSION' ? RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION : request.body?.topic === 'REJECTION' ? RequestNoticeTopic.REQUEST_NOTICE_TOPIC_REJECTION : RequestNoticeTopic.REQUEST_NOTICE_TOPIC_UNSPECIFIED;
      try {
        await api.call(
          api.rights,
          api.rights.recordRequestNotice,
          { name: `tenants/${tenant}/requests/${id}`, topic, method: String(request.body?.method ?? '').trim(), notifiedBy: String(request.body?.notified_by ?? '').trim() },
          ctx.credential(request),
        );
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/requests/${id}`, 'noticed');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return requestPage(request, reply, err);
      }
    },
  );

  app.post(
    '/tenants/:tenant/requests/:id/reject',
    { schema: { params: requestParam }, preHandler: ctx.csrf },
    async (request: FastifyRequest<{ Params: RequestParams; Body: Record<string, string> }>, reply) => {
      const { tenant, id } = request.params;
      try {
        await api.call(api.rights, api.rights.rejectRequest, { name: `tenants/${tenant}/requests/${id}`, reason: String(request.body?.reason ?? '').trim() }, ctx.credential(request));
        return ctx.confirmations.redirect(reply, `/tenants/${tenant}/requests/${id}`, 'rejected');
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return requestPage(request, reply, err);
      }
    },
  );
}
