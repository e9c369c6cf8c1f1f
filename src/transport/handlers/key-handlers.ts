import { KeyAdministration } from '../../domain/key-administration';
import { KeyRotationRecord } from '../../domain/ports';
import { names } from '../../domain/resource-names';
import {
  GetKeyRotationRequest,
  GetPublicKeysRequest,
  GetPublicKeysResponse,
  GetKeyRotationResponse,
  GetTenantKeyInfoRequest,
  GetTenantKeyInfoResponse,
  JobState,
  KeyEpochState,
  KeyRotation,
  KeyServiceServer,
  RotateTenantKeyRequest,
  RotateTenantKeyResponse,
  ShredTenantRequest,
  ShredTenantResponse,
} from '../../gen/consent/v1/key';
import { CallContext, CallPipeline } from '../call-pipeline';
import { parentTenant } from './purpose-handlers';
import { childName, msToDate } from '../mappers';

/** consent.v1.KeyService: translate, call KeyAdministration, map back. */
export function keyHandlers(pipeline: CallPipeline, admin: KeyAdministration): KeyServiceServer {
  return {
    rotateTenantKey: pipeline.unary('RotateTenantKey', async (req: RotateTenantKeyRequest, ctx: CallContext): Promise<RotateTenantKeyResponse> => {
      const tenantId = parentTenant(req.name, 'name');
      return { rotation: rotationToProto(await admin.rotate(ctx.principal, tenantId, req.requestId)) };
    }),

    getKeyRotation: pipeline.unary('GetKeyRotation', async (req: GetKeyRotationRequest, ctx: CallContext): Promise<GetKeyRotationResponse> => {
      const { tenantId, id } = childName(req.name, 'keyRotations');
      return { rotation: rotationToProto(await admin.getRotation(ctx.principal, tenantId, id)) };
    }),

    getTenantKeyInfo: pipeline.unary('GetTenantKeyInfo', async (req: GetTenantKeyInfoRequest, ctx: CallContext): Promise<GetTenantKeyInfoResponse> => {
      const tenantId = parentTenant(req.name, 'name');
      const epochs = await admin.keyInfo(ctx.principal, tenantId);
      return {
        tenant: names.tenant(tenantId),
        epochs: epochs.map((e) => ({
          epoch: e.epoch,
          state: KeyEpochState[`KEY_EPOCH_STATE_${e.state}`],
          rootKeyId: e.rootKeyId,
          createTime: msToDate(e.createdAt),
          destroyTime: msToDate(e.destroyedAt ?? undefined),
          subjectKeys: e.subjectKeys,
          encryptions: e.encryptions,
        })),
      };
    }),

    getPublicKeys: pipeline.unary('GetPublicKeys', async (req: GetPublicKeysRequest, ctx: CallContext): Promise<GetPublicKeysResponse> => {
      return { jwks: JSON.stringify(await admin.publicKeys(ctx.principal, parentTenant(req.name, 'name'))) };
    }),

    shredTenant: pipeline.unary('ShredTenant', async (req: ShredTenantRequest, ctx: CallContext): Promise<ShredTenantResponse> => {
      const tenantId = parentTenant(req.name, 'name');
      const shred = await admin.shredTenant(ctx.principal, tenantId, req.confirmTenantId, req.requestId);
      return { tenant: names.tenant(tenantId), shredTime: msToDate(shred.shredTime), destroyedEpochs: shred.destroyedEpochs };
    }),
  };
}

function rotationToProto(r: KeyRotationRecord): KeyRotation {
  return {
    name: `tenants/${r.tenantId}/keyRotations/${r.id}`,
    state: JobState[`JOB_STATE_${r.state}`],
    fromEpoch: r.fromEpoch,
    toEpoch: r.toEpoch,
    subjectKeysTotal: r.total,
    subjectKeysDone: r.done,
    createTime: msToDate(r.createdAt),
    endTime: msToDate(r.endedAt ?? undefined),
    error: r.error ?? '',
  };
}
