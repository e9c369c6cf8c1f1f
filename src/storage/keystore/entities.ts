import { SigningKeyEntity } from './signing-key.entity';
import { SubjectErasureEntity } from './subject-erasure.entity';
import { SubjectKeyEntity } from './subject-key.entity';
import { TenantKeyEntity } from './tenant-key.entity';

export { SigningKeyEntity, SubjectErasureEntity, SubjectKeyEntity, TenantKeyEntity };

/** The key store's entities; never registered with the data database. */
export const KEYSTORE_ENTITIES = [TenantKeyEntity, SubjectKeyEntity, SigningKeyEntity, SubjectErasureEntity];
