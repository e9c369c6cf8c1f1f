/**
 * The domain's vocabulary. Values are the enum names of consent.v1 without their prefix,
 * and the same strings are stored in the database, so a row reads the way the API speaks.
 */
/** The earliest time anything the service records may carry (event, receive and reassign times). */
export const EARLIEST_RECORD_TIME = Date.UTC(2000, 0, 1);

export const CHANNELS = ['WHATSAPP', 'SMS', 'EMAIL', 'PUSH', 'VOICE', 'ANY'] as const;
export type Channel = (typeof CHANNELS)[number];
/** A channel a message is actually sent on. */
export type SendChannel = Exclude<Channel, 'ANY'>;

export const PURPOSE_CATEGORIES = ['MARKETING', 'UTILITY', 'AUTHENTICATION', 'SERVICE'] as const;
export type PurposeCategory = (typeof PURPOSE_CATEGORIES)[number];

export const CONSENT_KINDS = ['OPT_IN', 'OPT_OUT', 'OPT_IN_PENDING', 'OPT_IN_CONFIRMED'] as const;
export type ConsentKind = (typeof CONSENT_KINDS)[number];
export type EventKind = ConsentKind | 'INBOUND_MESSAGE';
/** Kinds that express (or start) consent, as opposed to withdrawing it. */
export type OptInKind = Exclude<ConsentKind, 'OPT_OUT'>;

export const COLLECTION_METHODS = [
  'WEB_FORM',
  'CHAT_MESSAGE',
  'KEYWORD',
  'CHECKBOX_IN_APP',
  'PAPER',
  'VERBAL',
  'API',
  'IMPORT',
] as const;
export type CollectionMethod = (typeof COLLECTION_METHODS)[number];

export const LAWFUL_BASES = [
  'CONSENT',
  'CONTRACT',
  'LEGAL_OBLIGATION',
  'VITAL_INTERESTS',
  'PUBLIC_TASK',
  'LEGITIMATE_INTERESTS',
] as const;
export type LawfulBasis = (typeof LAWFUL_BASES)[number];

export type IdentifierKind = 'PHONE' | 'EMAIL' | 'CUSTOMER_ID';

/** The purpose id that stands for "all purposes" (AIP-159 wildcard). */
export const ALL_PURPOSES = '-';

export interface TenantSettings {
  serviceWindowMs: number;
  optOutKeywords: string[];
  optInKeywords: string[];
  /** 0: opt-ins do not expire unless the event says so (or a validity in months is set). */
  defaultConsentValidityMs: number;
  purposeConsentValidityMs: Record<string, number>;
  /** The default validity in calendar months; 0: not given in months. Excludes defaultConsentValidityMs. */
  defaultConsentValidityMonths: number;
  /** Validity in calendar months per purpose; a purpose is here or in purposeConsentValidityMs. */
  purposeConsentValidityMonths: Record<string, number>;
  /** The privacy center's look and what it lets a person do (issue 20, docs/privacy-center.md). */
  selfService: SelfServiceSettings;
}

/** Request kinds a preference link may verify the person for (SelfServiceSettings.link_verifies). */
export type LinkVerifiableKind = 'ACCESS' | 'PORTABILITY' | 'ERASURE';

export interface SelfServiceSettings {
  /** '' means the tenant's display name. */
  brandName: string;
  /** "#rrggbb". */
  brandColor: string;
  /** The logo's bytes, base64 ('' for none); at most 32 KiB decoded. */
  logoBase64: string;
  /** 'image/png' | 'image/svg+xml' | '' (no logo). */
  logoContentType: string;
  /** 'de' | 'en', the first is the default. */
  languages: string[];
  /** E.164 or '' (WhatsApp not offered). */
  whatsappNumber: string;
  /** E.164 or '' (SMS not offered). */
  smsNumber: string;
  confirmationTtlMs: number;
  linkVerifies: LinkVerifiableKind[];
  maxPreferenceLinkTtlMs: number;
  /** https origins allowed to frame the sign-up page. */
  embedOrigins: string[];
}

export const DEFAULT_SELF_SERVICE_SETTINGS: Readonly<SelfServiceSettings> = Object.freeze({
  brandName: '',
  brandColor: '#1f4e79',
  logoBase64: '',
  logoContentType: '',
  languages: ['en', 'de'],
  whatsappNumber: '',
  smsNumber: '',
  confirmationTtlMs: 24 * 60 * 60 * 1000,
  linkVerifies: [],
  maxPreferenceLinkTtlMs: 30 * 24 * 60 * 60 * 1000,
  embedOrigins: [],
});

export const DEFAULT_TENANT_SETTINGS: Readonly<TenantSettings> = Object.freeze({
  serviceWindowMs: 24 * 60 * 60 * 1000,
  optOutKeywords: ['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'REVOKE', 'OPTOUT', 'STOPP', 'ABMELDEN'],
  // Not YES: a person who sent STOP and later answers "yes" to an unrelated question (a delivery,
  // an appointment) would lift the withdrawal, and with it every earlier opt-in of the channel.
  optInKeywords: ['START', 'UNSTOP'],
  defaultConsentValidityMs: 0,
  purposeConsentValidityMs: {},
  defaultConsentValidityMonths: 0,
  purposeConsentValidityMonths: {},
  selfService: DEFAULT_SELF_SERVICE_SETTINGS,
});

export interface Tenant {
  id: string;
  displayName: string;
  createdAt: number;
  updatedAt: number;
  settings: TenantSettings;
  /** Set once the tenant's keys were destroyed (ShredTenant). */
  erasedAt: number | null;
}

export interface Purpose {
  tenantId: string;
  id: string;
  displayName: string;
  category: PurposeCategory;
  description: string;
  createdAt: number;
  /** Art. 18(2): checks keep following the consent rules while the person's processing is restricted. */
  allowedWhileRestricted: boolean;
}

export interface Notice {
  tenantId: string;
  purposeId: string;
  version: number;
  language: string;
  text: string;
  textSha256: string;
  createdAt: number;
}

/** Provenance that is personal data: stored only encrypted under the subject's key. */
export interface Evidence {
  sourceIp?: string;
  userAgent?: string;
  pageUrl?: string;
  inboundMessageId?: string;
  freeText?: string;
  collectedBy?: string;
}

/** One immutable consent-history entry, decrypted. */
export interface ConsentEvent {
  id: string;
  tenantId: string;
  subjectId: string;
  kind: EventKind;
  /** A purpose id, or ALL_PURPOSES. */
  purposeId: string;
  channel: Channel;
  eventTime: number;
  recordTime: number;
  method: CollectionMethod;
  notice?: { purposeId: string; version: number; textSha256: string; language: string };
  principal: string;
  evidence: Evidence;
  /** Art. 6(1) basis of an opt-in; null for withdrawals and inbound messages, which need none. */
  lawfulBasis: LawfulBasis | null;
  jurisdiction: string;
  expireTime?: number;
  requestId: string;
}

/** A normalised identifier and the blind index it is looked up by. */
export interface IdentifierRef {
  kind: IdentifierKind;
  /** Normalised plaintext: E.164 phone, lower-cased e-mail, trimmed customer id. Personal data. */
  value: string;
}
