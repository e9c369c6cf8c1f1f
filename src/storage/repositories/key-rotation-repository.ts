import { In } from 'typeorm';
import { KeyRotationRecord, KeyRotationRepository } from '../../domain/ports';
import { TxContext } from '../../shared/unit-of-work';
import { KeyRotationEntity } from '../entities';
import { managerOf } from '../transaction-runner';

export class TypeormKeyRotationRepository implements KeyRotationRepository {
  async insert(tx: TxContext, rotation: KeyRotationRecord): Promise<void> {
    await managerOf(tx).insert(KeyRotationEntity, { ...rotation });
  }

  async find(tx: TxContext, tenantId: string, id: string): Promise<KeyRotationRecord | null> {
    return toRecord(await managerOf(tx).findOneBy(KeyRotationEntity, { tenantId, id }));
  }

  async findByRequest(tx: TxContext, tenantId: string, requestId: string): Promise<KeyRotationRecord | null> {
    return toRecord(await managerOf(tx).findOneBy(KeyRotationEntity, { tenantId, requestId }));
  }

  async running(tx: TxContext, tenantId?: string): Promise<KeyRotationRecord[]> {
    const rows = await managerOf(tx).findBy(KeyRotationEntity, tenantId ? { tenantId, state: 'RUNNING' } : { state: 'RUNNING' });
    return rows.map((r) => toRecord(r)!);
  }

  async updateRunning(tx: TxContext, id: string, change: Partial<Pick<KeyRotationRecord, 'state' | 'total' | 'done' | 'error' | 'endedAt'>>, from: Array<KeyRotationRecord['state']> = ['RUNNING']): Promise<boolean> {
    const result = await managerOf(tx).update(KeyRotationEntity, { id, state: In(from) }, change);
    return (result.affected ?? 0) > 0;
  }
}

function toRecord(row: KeyRotationEntity | null): KeyRotationRecord | null {
  return row ? { ...row, state: row.state as KeyRotationRecord['state'] } : null;
}
