import { KeyStoreSchema1764000000001 } from './1764000000001-KeyStoreSchema';
import { SigningKeys1764000000003 } from './1764000000003-SigningKeys';
import { ErasureLedger1764000000004 } from './1764000000004-ErasureLedger';

/** Key-store migrations, in order (a separate history from the data database's). */
export const KEYSTORE_MIGRATIONS = [KeyStoreSchema1764000000001, SigningKeys1764000000003, ErasureLedger1764000000004];
