import { DomainError, FieldViolation, invalidArgument } from '../../shared/errors';
import { EXPORT_FORMAT, ExportPart, SubjectExporter } from '../../domain/subject-exporter';
import { LegalHoldRecord, RequestKind, RequestNotice, RequestState, RestrictionRecord } from '../../domain/ports';
import { LegalHoldGround, RestrictionGround, SubjectRequestView, SubjectRightsService } from '../../domain/subject-rights-service';
import {
  DataSubjectRequest,
  ExportSubjectDataResponse,
  LegalHold,
  LegalHoldGround as PbGround,
  ReceivedVia as PbVia,
  RequestKind as PbKind,
  RequestNoticeTopic,
  RequestState as PbState,
  Restriction,
  RestrictionGround as PbRestrictionGround,
  SubjectRightsServiceServer,
} from '../../gen/consent/v1/subject_rights';
import { CallPipeline } from '../call-pipeline';
import { writeWithBackpressure } from '../stream-flow';
import { childName, enumMapper, msToDate, requestTimeMs, toRawIdentifier } from '../mappers';
import { parentTenant } from './purpose-handlers';

const kinds = enumMapper<typeof PbKind, RequestKind>(PbKind, 'REQUEST_KIND_');
const states = enumMapper<typeof PbState, RequestState>(PbState, 'REQUEST_STATE_');
const via = enumMapper<typeof PbVia, string>(PbVia, 'RECEIVED_VIA_');
const grounds = enumMapper<typeof PbGround, LegalHoldGround>(PbGround, 'LEGAL_HOLD_GROUND_');
const restrictionGrounds = enumMapper<typeof PbRestrictionGround, RestrictionGround>(PbRestrictionGround, 'RESTRICTION_GROUND_');

/** consent.v1.SubjectRightsService: translate, call SubjectRightsService, map back. */
export function subjectRightsHandlers(pipeline: CallPipeline, rights: SubjectRightsService, exporter: SubjectExporter): SubjectRightsServiceServer {
  return {
    createRequest: pipeline.unary('CreateRequest', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const receiveTime = onlyValidTime(req.receiveTime, 'receive_time');
      const { request, consistencyToken } = await rights.createRequest(ctx.principal, tenantId, {
        kind: kinds.toDomain(req.kind),
        identifier: req.subjectIdentifier ? toRawIdentifier(req.subjectIdentifier) : undefined,
        identifiers: req.subjectIdentifiers.map((i) => toRawIdentifier(i) ?? {}),
        receiveTime,
        receivedVia: via.toDomain(req.receivedVia),
        requestId: req.requestId,
        rectifiedIdentifier: req.rectifiedIdentifier ? toRawIdentifier(req.rectifiedIdentifier) : undefined,
      });
      return { request: requestToProto(request), consistencyToken };
    }),
    getRequest: pipeline.unary('GetRequest', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      return { request: requestToProto(await rights.get(ctx.principal, tenantId, id)) };
    }),
    listRequests: pipeline.unary('ListRequests', async (req, ctx) => {
      const tenantId = parentTenant(req.parent);
      const dueBefore = onlyValidTime(req.dueBefore, 'due_before');
      const page = await rights.list(ctx.principal, tenantId, {
        state: states.toDomain(req.state) ?? undefined,
        kind: kinds.toDomain(req.kind) ?? undefined,
        overdue: req.overdue,
        dueBefore,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { requests: page.items.map(requestToProto), nextPageToken: page.nextPageToken };
    }),
    verifyIdentity: pipeline.unary('VerifyIdentity', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      return { request: requestToProto(await rights.verifyIdentity(ctx.principal, tenantId, id, req.method, req.verifiedBy, req.identifierPositions)) };
    }),
    extendDeadline: pipeline.unary('ExtendDeadline', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      return { request: requestToProto(await rights.extendDeadline(ctx.principal, tenantId, id, req.months, req.reason)) };
    }),
    recordRequestNotice: pipeline.unary('RecordRequestNotice', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      const topic = req.topic === RequestNoticeTopic.REQUEST_NOTICE_TOPIC_EXTENSION ? 'EXTENSION' : req.topic === RequestNoticeTopic.REQUEST_NOTICE_TOPIC_REJECTION ? 'REJECTION' : null;
      return { request: requestToProto(await rights.recordNotice(ctx.principal, tenantId, id, topic, req.method, req.notifiedBy)) };
    }),
    rejectRequest: pipeline.unary('RejectRequest', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      return { request: requestToProto(await rights.reject(ctx.principal, tenantId, id, req.reason)) };
    }),
    rectifyIdentifier: pipeline.unary('RectifyIdentifier', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      const { request, consistencyToken } = await rights.rectify(ctx.principal, tenantId, id);
      return { request: requestToProto(request), consistencyToken };
    }),
    eraseSubject: pipeline.unary('EraseSubject', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      const { request, receipt, consistencyToken } = await rights.erase(ctx.principal, tenantId, id);
      return { request: requestToProto(request), erasureReceipt: receipt, consistencyToken };
    }),
    exportSubjectData: pipeline.serverStream('ExportSubjectData', async (call, ctx) => {
      const { tenantId, id } = childName(call.request.name, 'requests');
      await exporter.export(ctx.principal, tenantId, id, {
        async write(part: ExportPart) {
          if (ctx.signal.aborted) throw new DomainError('ABORTED', 'CANCELLED', 'the export was cancelled by the client or passed its deadline');
          await writeWithBackpressure(call, { part: exportPartToProto(part) }, ctx.signal);
        },
      });
    }),
    placeLegalHold: pipeline.unary('PlaceLegalHold', async (req, ctx) => ({
      hold: holdToProto(
        await rights.placeHold(ctx.principal, parentTenant(req.parent), {
          identifier: toRawIdentifier(req.subjectIdentifier),
          ground: grounds.toDomain(req.ground),
          note: req.note,
          requestId: req.requestId,
        }),
      ),
    })),
    releaseLegalHold: pipeline.unary('ReleaseLegalHold', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'legalHolds');
      return { hold: holdToProto(await rights.releaseHold(ctx.principal, tenantId, id, req.note)) };
    }),
    listLegalHolds: pipeline.unary('ListLegalHolds', async (req, ctx) => {
      const page = await rights.listHolds(ctx.principal, parentTenant(req.parent), {
        identifier: req.subjectIdentifier ? toRawIdentifier(req.subjectIdentifier) : undefined,
        includeReleased: req.includeReleased,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { holds: page.items.map(holdToProto), nextPageToken: page.nextPageToken };
    }),
    restrictProcessing: pipeline.unary('RestrictProcessing', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'requests');
      const done = await rights.restrict(ctx.principal, tenantId, id, restrictionGrounds.toDomain(req.ground), req.note);
      const restrictions = done.restrictions.map(restrictionToProto);
      return { request: requestToProto(done.request), restriction: restrictions[0], restrictions, consistencyToken: done.consistencyToken };
    }),
    recordRestrictionNotice: pipeline.unary('RecordRestrictionNotice', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'restrictions');
      return { restriction: restrictionToProto(await rights.recordRestrictionNotice(ctx.principal, tenantId, id, req.method, req.notifiedBy)) };
    }),
    liftRestriction: pipeline.unary('LiftRestriction', async (req, ctx) => {
      const { tenantId, id } = childName(req.name, 'restrictions');
      const done = await rights.liftRestriction(ctx.principal, tenantId, id, req.reason);
      return { restriction: restrictionToProto(done.restriction), consistencyToken: done.consistencyToken };
    }),
    listRestrictions: pipeline.unary('ListRestrictions', async (req, ctx) => {
      const page = await rights.listRestrictions(ctx.principal, parentTenant(req.parent), {
        identifier: req.subjectIdentifier ? toRawIdentifier(req.subjectIdentifier) : undefined,
        includeLifted: req.includeLifted,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { restrictions: page.items.map(restrictionToProto), nextPageToken: page.nextPageToken };
    }),
  };
}

function restrictionToProto(r: RestrictionRecord): Restriction {
  return {
    name: `tenants/${r.tenantId}/restrictions/${r.id}`,
    subject: `tenants/${r.tenantId}/subjects/${r.subjectId}`,
    ground: restrictionGrounds.toProto(r.ground as RestrictionGround),
    request: `tenants/${r.tenantId}/requests/${r.requestId}`,
    note: r.note,
    placedBy: r.placedBy,
    placeTime: msToDate(r.placedAt),
    notifiedBy: r.notifiedBy ?? '',
    noticeMethod: r.noticeMethod ?? '',
    notifyTime: msToDate(r.notifiedAt ?? undefined),
    liftedBy: r.liftedBy ?? '',
    liftTime: msToDate(r.liftedAt ?? undefined),
    liftReason: r.liftReason ?? '',
  };
}

/** A request timestamp in ms (undefined when unset), or INVALID_ARGUMENT when it is no valid time. */
function onlyValidTime(d: Date | undefined, field: string): number | undefined {
  const violations: FieldViolation[] = [];
  const ms = requestTimeMs(d, field, violations);
  if (violations.length > 0) throw invalidArgument(violations);
  return ms;
}

/** Parses "tenants/{tenant}/{collection}/{32 hex}". */
function exportPartToProto(part: ExportPart): ExportSubjectDataResponse['part'] {
  switch (part.kind) {
    case 'progress':
      return { $case: 'progress', value: { eventsDone: part.done, eventsTotal: part.total } };
    case 'package':
      return { $case: 'packageChunk', value: part.bytes };
    case 'html':
      return { $case: 'htmlChunk', value: part.bytes };
    case 'manifest':
      return {
        $case: 'manifest',
        value: { format: EXPORT_FORMAT, packageSha256: part.packageSha256, htmlSha256: part.htmlSha256, events: part.events, signedManifest: part.signed },
      };
  }
}

export function requestToProto(r: SubjectRequestView): DataSubjectRequest {
  return {
    name: `tenants/${r.tenantId}/requests/${r.id}`,
    kind: kinds.toProto(r.kind),
    state: states.toProto(r.state),
    subject: r.subjectId ? `tenants/${r.tenantId}/subjects/${r.subjectId}` : '',
    receiveTime: msToDate(r.receiveTime),
    receivedVia: via.toProto(r.receivedVia),
    dueTime: msToDate(r.dueTime),
    extensionReason: r.extensionReason ?? '',
    verificationMethod: r.verificationMethod ?? '',
    verifiedBy: r.verifiedBy ?? '',
    rejectionReason: r.rejectionReason ?? '',
    overdue: r.overdue,
    transitions: r.transitions.map((t) => ({
      fromState: t.fromState ? states.toProto(t.fromState) : PbState.REQUEST_STATE_UNSPECIFIED,
      toState: states.toProto(t.toState),
      principal: t.principal,
      time: msToDate(t.at),
      note: t.note,
    })),
    createTime: msToDate(r.createdAt),
    erasureReceipt: r.kind === 'ERASURE' ? (r.result ?? '') : '',
    identifiers: r.identifiers.map((i) => ({
      position: i.position,
      kind: i.identifierKind,
      subject: i.subjectId ? `tenants/${r.tenantId}/subjects/${i.subjectId}` : '',
      verificationMethod: i.verificationMethod ?? '',
      verifiedBy: i.verifiedBy ?? '',
      verifyTime: msToDate(i.verifiedAt ?? undefined),
      viaLink: i.viaLink ?? '',
      outcome: i.outcome ?? '',
    })),
    dueDate: dueDateOf(r.dueTime),
    extensionNotice: noticeToProto(r.extensionNotice),
    rejectionNotice: noticeToProto(r.rejectionNotice),
  };
}

function noticeToProto(n: RequestNotice | null | undefined): { method: string; notifiedBy: string; notifyTime: Date | undefined } | undefined {
  return n ? { method: n.method, notifiedBy: n.notifiedBy, notifyTime: msToDate(n.at) } : undefined;
}

/** The due day (UTC) of a deadline that is the exclusive midnight after it. */
function dueDateOf(dueTime: number): { year: number; month: number; day: number } {
  const lastDay = new Date(dueTime - 1);
  return { year: lastDay.getUTCFullYear(), month: lastDay.getUTCMonth() + 1, day: lastDay.getUTCDate() };
}

function holdToProto(h: LegalHoldRecord): LegalHold {
  return {
    name: `tenants/${h.tenantId}/legalHolds/${h.id}`,
    subject: `tenants/${h.tenantId}/subjects/${h.subjectId}`,
    ground: grounds.toProto(h.ground as LegalHoldGround),
    note: h.note,
    placedBy: h.placedBy,
    placeTime: msToDate(h.placedAt),
    releasedBy: h.releasedBy ?? '',
    releaseTime: msToDate(h.releasedAt ?? undefined),
    releaseNote: h.releaseNote ?? '',
  };
}
