import path from 'node:path';
import { Eta } from 'eta';
import { DataSubjectRequest, ReceivedVia } from '../gen/consent/v1/subject_rights';
import { KIND_LABELS, STATE_LABELS } from './queue';
import type { Credential } from './principal';

/**
 * The server-side templates (src/console/views/*.eta, copied beside the compiled code by
 * `npm run build`). Eta escapes every `<%= %>` interpolation; `<%~ %>` (raw) is used only for
 * the rendered body of the layout and included partials.
 */
export class Views {
  private readonly eta = new Eta({ views: path.join(__dirname, 'views'), autoEscape: true, cache: true });

  /** A page inside the layout; `data` goes to the template as `it` with the formatting helpers. */
  page(template: string, credential: Credential, data: Record<string, unknown>): string {
    return this.eta.render(`./${template}`, { ...HELPERS, who: credential.who, roles: credential.roles, signOut: credential.signOut === true, tenant: undefined, ...data });
  }
}

const VIA_LABELS: Record<number, string> = {
  [ReceivedVia.RECEIVED_VIA_EMAIL]: 'e-mail',
  [ReceivedVia.RECEIVED_VIA_WEB_FORM]: 'web form',
  [ReceivedVia.RECEIVED_VIA_LETTER]: 'letter',
  [ReceivedVia.RECEIVED_VIA_PHONE]: 'phone',
  [ReceivedVia.RECEIVED_VIA_IN_PERSON]: 'in person',
  [ReceivedVia.RECEIVED_VIA_CHAT]: 'chat',
  [ReceivedVia.RECEIVED_VIA_OTHER]: 'other',
  [ReceivedVia.RECEIVED_VIA_SELF_SERVICE]: "the privacy center (the person's preference link)",
};

/** Formatting the templates share: dates in UTC (the deadlines are UTC days). */
export const HELPERS = {
  kindLabel: (k: number) => KIND_LABELS[k] ?? 'unknown',
  stateLabel: (s: number) => STATE_LABELS[s] ?? 'unknown',
  viaLabel: (v: number) => VIA_LABELS[v] ?? 'unknown',
  day: (d: Date | undefined) => (d ? d.toISOString().slice(0, 10) : ''),
  time: (d: Date | undefined) => (d ? `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC` : ''),
  dueDate: (r: DataSubjectRequest) =>
    r.dueDate ? `${String(r.dueDate.year).padStart(4, '0')}-${String(r.dueDate.month).padStart(2, '0')}-${String(r.dueDate.day).padStart(2, '0')}` : '',
};

export const VIA_OPTIONS: Array<[string, string]> = [
  ['email', 'e-mail'],
  ['web-form', 'web form'],
  ['letter', 'letter'],
  ['phone', 'phone'],
  ['in-person', 'in person'],
  ['chat', 'chat'],
  ['other', 'other'],
];

export const VIA_VALUES: Record<string, ReceivedVia> = {
  email: ReceivedVia.RECEIVED_VIA_EMAIL,
  'web-form': ReceivedVia.RECEIVED_VIA_WEB_FORM,
  letter: ReceivedVia.RECEIVED_VIA_LETTER,
  phone: ReceivedVia.RECEIVED_VIA_PHONE,
  'in-person': ReceivedVia.RECEIVED_VIA_IN_PERSON,
  chat: ReceivedVia.RECEIVED_VIA_CHAT,
  other: ReceivedVia.RECEIVED_VIA_OTHER,
};
