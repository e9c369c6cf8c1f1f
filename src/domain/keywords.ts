import { TenantSettings } from './model';

export type KeywordMatch = 'OPT_OUT' | 'OPT_IN' | null;

/**
 * Matches an inbound text against the tenant's keyword lists: the whole text, trimmed and
 * case-insensitive ("stop " is STOP; "please stop" is not). Opt-out is checked first, so a word
 * on both lists withdraws consent rather than granting it.
 */
export function matchKeyword(text: string, settings: Pick<TenantSettings, 'optOutKeywords' | 'optInKeywords'>): KeywordMatch {
  const normalised = normaliseKeyword(text);
  if (!normalised) return null;
  if (settings.optOutKeywords.some((k) => normaliseKeyword(k) === normalised)) return 'OPT_OUT';
  if (settings.optInKeywords.some((k) => normaliseKeyword(k) === normalised)) return 'OPT_IN';
  return null;
}

/** Trimmed, upper-cased with locale-independent rules (so "stopp" and "STOPP" match anywhere). */
export function normaliseKeyword(text: string): string {
  return text.normalize('NFKC').trim().toUpperCase();
}
