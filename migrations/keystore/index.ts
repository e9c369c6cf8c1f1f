import { KeyStoreSchema1764000000001 } from './1764000000001-KeyStoreSchema';
import { SigningKeys1764000000003 } from './1764000000003-SigningKeys';

/** Key-store migrations, in order (a separate history from the data database's). */
export const KEYSTORE_MIGRATIONS = [KeyStoreSchema1764000000001, SigningKeys1764000000003];
