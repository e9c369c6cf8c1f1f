import { SigningKeyEntity } from './signing-key.entity';
import { SubjectKeyEntity } from './subject-key.entity';
import { TenantKeyEntity } from './tenant-key.entity';

export { SigningKeyEntity, SubjectKeyEntity, TenantKeyEntity };

/** The key store's entities; never registered with the data database. */
export const KEYSTORE_ENTITIES = [TenantKeyEntity, SubjectKeyEntity, SigningKeyEntity];
