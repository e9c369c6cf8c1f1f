import { SubjectKeyEntity } from './subject-key.entity';
import { TenantKeyEntity } from './tenant-key.entity';

export { SubjectKeyEntity, TenantKeyEntity };

/** The key store's entities; never registered with the data database. */
export const KEYSTORE_ENTITIES = [TenantKeyEntity, SubjectKeyEntity];
