import { Channel } from '../gen/consent/v1/common';
import { RequestKind, RequestState } from '../gen/consent/v1/subject_rights';

/** The languages the pages exist in; a tenant offers a subset (self_service.languages). */
export const LANGUAGES = ['de', 'en'] as const;
export type Language = (typeof LANGUAGES)[number];

/**
 * The page language: `?lang=` when the tenant offers it, else the best of Accept-Language the
 * tenant offers (by q-value, primary subtag: "de-AT" counts as "de"), else the tenant's first.
 */
export function chooseLanguage(offered: readonly string[], query: unknown, acceptLanguage: string | undefined): Language {
  const ok = offered.filter((l): l is Language => (LANGUAGES as readonly string[]).includes(l));
  const fallback: Language = ok[0] ?? 'en';
  if (typeof query === 'string' && (ok as string[]).includes(query)) return query as Language;
  const ranked = (acceptLanguage ?? '')
    .split(',')
    .map((part, i) => {
      const [tag, ...params] = part.trim().split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return { lang: tag.trim().toLowerCase().split('-')[0], q: q ? Number(q.slice(2)) : 1, i };
    })
    .filter((x) => x.lang && Number.isFinite(x.q) && x.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  for (const { lang } of ranked) if ((ok as string[]).includes(lang)) return lang as Language;
  return fallback;
}

const EN = {
  languageName: 'English',
  languageSwitch: 'Language',
  skip: 'Skip to content',
  footer: 'Your choices are recorded with the time and the text you saw, as the GDPR requires. You can withdraw them at any time, as easily as you gave them.',
  signupTitle: 'Stay in touch',
  signupIntro: 'Choose what {brand} may send you and how. Nothing is ticked in advance; you confirm your choice in a second step.',
  identifierLabel: 'Your mobile number or e-mail address',
  identifierHint: 'Mobile numbers in international format, e.g. +49 151 12345678.',
  purposesHeading: 'What you would like to receive',
  noticeVersion: 'Notice version {version}, SHA-256 {sha}',
  channelsLegend: '{purpose}: on which channel',
  submit: 'Sign up',
  noPurposes: 'There is nothing to sign up for at the moment.',
  channelLabels: { [Channel.CHANNEL_WHATSAPP]: 'WhatsApp', [Channel.CHANNEL_SMS]: 'SMS', [Channel.CHANNEL_EMAIL]: 'E-mail', [Channel.CHANNEL_PUSH]: 'Push', [Channel.CHANNEL_VOICE]: 'Voice call', [Channel.CHANNEL_ANY]: 'all channels' } as Record<number, string>,
  errIdentifier: 'Enter a mobile number (starting with +) or an e-mail address.',
  errNothingTicked: 'Tick at least one box.',
  errPhoneChannels: 'WhatsApp and SMS need a mobile number, not an e-mail address.',
  errEmailChannel: 'E-mail needs an e-mail address, not a phone number.',
  errorsHeading: 'Please check the form',
  phoneResultTitle: 'One more step: confirm from your phone',
  phoneResultIntro: 'To make sure the number is yours, send us the confirmation message from it. It holds your code {code}.',
  whatsappButton: 'Confirm via WhatsApp',
  smsButton: 'Confirm via SMS',
  smsHint: 'Or text this message to {number}:',
  codeExpires: 'The code is valid until {time}.',
  emailResultTitle: 'Please check your mailbox',
  emailResultIntro: 'If the address can receive mail, a message with a confirmation link is on its way. Your sign-up takes effect when you open the link and confirm. The link is valid until {time}.',
  confirmTitle: 'Confirm your sign-up',
  confirmIntro: 'Press the button to confirm that you want to receive the messages you chose.',
  confirmButton: 'Confirm',
  confirmNoScript: 'This page needs JavaScript to read the link you opened. Please enable it, or open the link again in another browser.',
  confirmedTitle: 'Thank you, your sign-up is confirmed',
  confirmedIntro: 'You will receive:',
  confirmedAlready: 'This link was already used: your sign-up was confirmed on {time}.',
  confirmedNothingTitle: 'Nothing was confirmed',
  confirmedNothing: 'This link had nothing left to confirm: the sign-up was withdrawn before it was confirmed (it stays withdrawn), or it was settled already. Your preference page shows what you agreed to; to receive these messages after a withdrawal, sign up again.',
  prefsTitle: 'Your privacy preferences',
  prefsIntro: 'This is what you agreed to with {brand}. You can withdraw any of it with one click.',
  prefsOpen: 'Show my preferences',
  prefsNoScript: 'This page needs JavaScript to read the link you opened. Please enable it.',
  prefsNone: 'There is nothing recorded for you.',
  colPurpose: 'Purpose',
  colChannel: 'Channel',
  colStatus: 'Status',
  colAction: 'Action',
  statusGranted: 'agreed on {time}',
  statusPending: 'waiting for your confirmation since {time}',
  statusPendingLapsed: 'not confirmed in time (the confirmation could be given until {time}); sign up again if you wish',
  statusWithdrawn: 'withdrawn on {time}',
  statusExpired: 'expired on {time}',
  statusNotGranted: 'not agreed',
  noticeShown: 'The notice you saw',
  withdraw: 'Withdraw',
  withdrawLabel: 'Withdraw {purpose} by {channel}',
  withdrawAll: 'Withdraw everything',
  withdrawnBanner: 'Withdrawn. From now on {brand} may no longer send you these messages.',
  withdrawnAllBanner: 'Everything is withdrawn. From now on {brand} may no longer send you any of these messages.',
  requestsHeading: 'Your data',
  requestsIntro: 'You can ask for a copy of your data or for its erasure.',
  requestKind: { [RequestKind.REQUEST_KIND_ACCESS]: 'Request a copy of my data', [RequestKind.REQUEST_KIND_PORTABILITY]: 'Request my data in a machine-readable format', [RequestKind.REQUEST_KIND_ERASURE]: 'Request erasure of my data' } as Record<number, string>,
  requestKindName: { [RequestKind.REQUEST_KIND_ACCESS]: 'copy of your data', [RequestKind.REQUEST_KIND_PORTABILITY]: 'data in a machine-readable format', [RequestKind.REQUEST_KIND_ERASURE]: 'erasure', [RequestKind.REQUEST_KIND_OBJECTION]: 'objection' } as Record<number, string>,
  requestStates: { [RequestState.REQUEST_STATE_RECEIVED]: 'received, waiting for the data protection officer to verify your identity', [RequestState.REQUEST_STATE_VERIFIED]: 'verified by your link, being processed', [RequestState.REQUEST_STATE_IN_PROGRESS]: 'in progress', [RequestState.REQUEST_STATE_COMPLETED]: 'completed', [RequestState.REQUEST_STATE_REJECTED]: 'rejected' } as Record<number, string>,
  requestVerifiedByLink: 'no further proof of identity needed',
  requestNeedsDpo: 'the data protection officer verifies your identity first',
  requestCreated: 'Your request ({kind}) was registered: {state}. It is answered by {due}.',
  objectHeading: 'Your right to object to direct marketing',
  objectIntro:
    'You may object at any time to the use of your data for direct marketing (Art. 21 GDPR). {brand} then sends you no marketing messages on any channel until you agree to them again. Your objection takes effect at once; no proof of identity is needed.',
  objectButton: 'Object to direct marketing',
  objectedBanner: 'Your objection is recorded: from now on {brand} sends you no marketing messages on any channel.',
  openRequests: 'Your open requests',
  eraseTitle: 'Erase your data?',
  eraseIntro: 'Erasure removes what {brand} holds about you in this service, irreversibly: your consents and their history become unreadable. You will no longer receive anything, and this link stops working once it is done.',
  eraseConfirmLabel: 'Yes, I want my data erased.',
  eraseButton: 'Request erasure',
  eraseCancel: 'Back to my preferences',
  eraseNotTicked: 'Tick the box to confirm the erasure request.',
  linkValid: 'This link is valid until {time}. Do not share it: it opens this page.',
  failTitle: 'This did not work',
  failBack: 'Back',
  failInvalid: 'This link is not valid. Please use the latest link you received, exactly as it was sent.',
  failExpired: 'This link has expired. Please ask for a new one.',
  failUsed: 'This link was already used. Nothing was changed.',
  failErased: 'The data behind this link has been erased.',
  failNoIdentifier: 'The phone number or address this link was made for belongs to someone else now, so nothing can be changed through this link. Your data has not been erased: to ask for a copy of it or for its erasure, please contact the business directly.',
  failSuperseded: 'This link is no longer valid: the address it was sent to has changed since. Nothing was confirmed. Please sign up again.',
  failOutdated: 'The text of a notice has changed since the page was loaded. Please read it again and sign up once more.',
  failRateLimited: 'Too many attempts. Please wait a while and try again.',
  failCsrf: 'The form expired or did not come from this page. Please reload the page and try again.',
  failNotFound: 'There is no page at this address.',
  failUnavailable: 'The service is not available right now. Please try again later.',
  failGeneric: 'Something went wrong. Please try again later.',
  failBadRequest: 'The form could not be processed.',
  dateLocale: 'en-GB',
};

export type Strings = typeof EN;

const DE: Strings = {
  languageName: 'Deutsch',
  languageSwitch: 'Sprache',
  skip: 'Zum Inhalt springen',
  footer: 'Ihre Auswahl wird mit Zeitpunkt und dem Text, den Sie gesehen haben, gespeichert, wie es die DSGVO verlangt. Sie können sie jederzeit widerrufen, so einfach, wie Sie sie erteilt haben.',
  signupTitle: 'In Kontakt bleiben',
  signupIntro: 'Wählen Sie, was {brand} Ihnen senden darf und auf welchem Weg. Nichts ist vorausgewählt; Sie bestätigen Ihre Wahl in einem zweiten Schritt.',
  identifierLabel: 'Ihre Mobilnummer oder E-Mail-Adresse',
  identifierHint: 'Mobilnummern im internationalen Format, z. B. +49 151 12345678.',
  purposesHeading: 'Was Sie erhalten möchten',
  noticeVersion: 'Hinweis Version {version}, SHA-256 {sha}',
  channelsLegend: '{purpose}: auf welchem Weg',
  submit: 'Anmelden',
  noPurposes: 'Derzeit gibt es nichts, wofür Sie sich anmelden können.',
  channelLabels: { [Channel.CHANNEL_WHATSAPP]: 'WhatsApp', [Channel.CHANNEL_SMS]: 'SMS', [Channel.CHANNEL_EMAIL]: 'E-Mail', [Channel.CHANNEL_PUSH]: 'Push', [Channel.CHANNEL_VOICE]: 'Anruf', [Channel.CHANNEL_ANY]: 'alle Kanäle' },
  errIdentifier: 'Geben Sie eine Mobilnummer (mit +) oder eine E-Mail-Adresse ein.',
  errNothingTicked: 'Kreuzen Sie mindestens ein Kästchen an.',
  errPhoneChannels: 'WhatsApp und SMS brauchen eine Mobilnummer, keine E-Mail-Adresse.',
  errEmailChannel: 'E-Mail braucht eine E-Mail-Adresse, keine Telefonnummer.',
  errorsHeading: 'Bitte prüfen Sie das Formular',
  phoneResultTitle: 'Noch ein Schritt: Bestätigen Sie von Ihrem Telefon aus',
  phoneResultIntro: 'Damit wir wissen, dass die Nummer Ihnen gehört, senden Sie uns von ihr die Bestätigungsnachricht. Sie enthält Ihren Code {code}.',
  whatsappButton: 'Per WhatsApp bestätigen',
  smsButton: 'Per SMS bestätigen',
  smsHint: 'Oder senden Sie diese Nachricht per SMS an {number}:',
  codeExpires: 'Der Code gilt bis {time}.',
  emailResultTitle: 'Bitte sehen Sie in Ihr Postfach',
  emailResultIntro: 'Wenn die Adresse E-Mails empfangen kann, ist eine Nachricht mit einem Bestätigungslink unterwegs. Ihre Anmeldung gilt, sobald Sie den Link öffnen und bestätigen. Der Link gilt bis {time}.',
  confirmTitle: 'Anmeldung bestätigen',
  confirmIntro: 'Drücken Sie die Schaltfläche, um zu bestätigen, dass Sie die gewählten Nachrichten erhalten möchten.',
  confirmButton: 'Bestätigen',
  confirmNoScript: 'Diese Seite braucht JavaScript, um den geöffneten Link zu lesen. Bitte aktivieren Sie es oder öffnen Sie den Link in einem anderen Browser.',
  confirmedTitle: 'Danke, Ihre Anmeldung ist bestätigt',
  confirmedIntro: 'Sie erhalten:',
  confirmedAlready: 'Dieser Link wurde bereits verwendet: Ihre Anmeldung wurde am {time} bestätigt.',
  confirmedNothingTitle: 'Es wurde nichts bestätigt',
  confirmedNothing: 'Mit diesem Link war nichts mehr zu bestätigen: Die Anmeldung wurde vor der Bestätigung widerrufen (sie bleibt widerrufen) oder war bereits erledigt. Ihre Einstellungsseite zeigt, wozu Sie zugestimmt haben; um diese Nachrichten nach einem Widerruf doch zu erhalten, melden Sie sich bitte erneut an.',
  prefsTitle: 'Ihre Datenschutz-Einstellungen',
  prefsIntro: 'Dem haben Sie bei {brand} zugestimmt. Sie können alles mit einem Klick widerrufen.',
  prefsOpen: 'Meine Einstellungen anzeigen',
  prefsNoScript: 'Diese Seite braucht JavaScript, um den geöffneten Link zu lesen. Bitte aktivieren Sie es.',
  prefsNone: 'Für Sie ist nichts gespeichert.',
  colPurpose: 'Zweck',
  colChannel: 'Kanal',
  colStatus: 'Status',
  colAction: 'Aktion',
  statusGranted: 'zugestimmt am {time}',
  statusPending: 'wartet seit {time} auf Ihre Bestätigung',
  statusPendingLapsed: 'nicht rechtzeitig bestätigt (die Bestätigung war bis {time} möglich); melden Sie sich bei Bedarf erneut an',
  statusWithdrawn: 'widerrufen am {time}',
  statusExpired: 'abgelaufen am {time}',
  statusNotGranted: 'nicht zugestimmt',
  noticeShown: 'Der Hinweis, den Sie gesehen haben',
  withdraw: 'Widerrufen',
  withdrawLabel: '{purpose} per {channel} widerrufen',
  withdrawAll: 'Alles widerrufen',
  withdrawnBanner: 'Widerrufen. {brand} darf Ihnen diese Nachrichten ab sofort nicht mehr senden.',
  withdrawnAllBanner: 'Alles ist widerrufen. {brand} darf Ihnen ab sofort keine dieser Nachrichten mehr senden.',
  requestsHeading: 'Ihre Daten',
  requestsIntro: 'Sie können eine Kopie Ihrer Daten oder deren Löschung verlangen.',
  requestKind: { [RequestKind.REQUEST_KIND_ACCESS]: 'Kopie meiner Daten anfordern', [RequestKind.REQUEST_KIND_PORTABILITY]: 'Meine Daten in maschinenlesbarem Format anfordern', [RequestKind.REQUEST_KIND_ERASURE]: 'Löschung meiner Daten verlangen' },
  requestKindName: { [RequestKind.REQUEST_KIND_ACCESS]: 'Kopie Ihrer Daten', [RequestKind.REQUEST_KIND_PORTABILITY]: 'Daten in maschinenlesbarem Format', [RequestKind.REQUEST_KIND_ERASURE]: 'Löschung', [RequestKind.REQUEST_KIND_OBJECTION]: 'Widerspruch' },
  requestStates: { [RequestState.REQUEST_STATE_RECEIVED]: 'eingegangen, der Datenschutzbeauftragte prüft zuerst Ihre Identität', [RequestState.REQUEST_STATE_VERIFIED]: 'durch Ihren Link bestätigt, in Bearbeitung', [RequestState.REQUEST_STATE_IN_PROGRESS]: 'in Bearbeitung', [RequestState.REQUEST_STATE_COMPLETED]: 'erledigt', [RequestState.REQUEST_STATE_REJECTED]: 'abgelehnt' },
  requestVerifiedByLink: 'kein weiterer Identitätsnachweis nötig',
  requestNeedsDpo: 'der Datenschutzbeauftragte prüft zuerst Ihre Identität',
  requestCreated: 'Ihr Antrag ({kind}) ist eingegangen: {state}. Er wird bis {due} beantwortet.',
  objectHeading: 'Ihr Recht, der Direktwerbung zu widersprechen',
  objectIntro:
    'Sie können der Verwendung Ihrer Daten für Direktwerbung jederzeit widersprechen (Art. 21 DSGVO). {brand} sendet Ihnen dann auf keinem Kanal mehr Werbung, bis Sie wieder einwilligen. Ihr Widerspruch gilt sofort; ein Identitätsnachweis ist nicht nötig.',
  objectButton: 'Der Direktwerbung widersprechen',
  objectedBanner: 'Ihr Widerspruch ist eingetragen: {brand} sendet Ihnen ab sofort auf keinem Kanal mehr Werbung.',
  openRequests: 'Ihre offenen Anträge',
  eraseTitle: 'Ihre Daten löschen?',
  eraseIntro: 'Die Löschung entfernt unwiderruflich, was {brand} in diesem Dienst über Sie gespeichert hat: Ihre Einwilligungen und deren Verlauf werden unlesbar. Sie erhalten nichts mehr, und dieser Link funktioniert danach nicht mehr.',
  eraseConfirmLabel: 'Ja, ich möchte, dass meine Daten gelöscht werden.',
  eraseButton: 'Löschung verlangen',
  eraseCancel: 'Zurück zu meinen Einstellungen',
  eraseNotTicked: 'Kreuzen Sie das Kästchen an, um den Löschantrag zu bestätigen.',
  linkValid: 'Dieser Link gilt bis {time}. Geben Sie ihn nicht weiter: Er öffnet diese Seite.',
  failTitle: 'Das hat nicht geklappt',
  failBack: 'Zurück',
  failInvalid: 'Dieser Link ist ungültig. Bitte verwenden Sie den neuesten Link, den Sie erhalten haben, genau so, wie er gesendet wurde.',
  failExpired: 'Dieser Link ist abgelaufen. Bitte fordern Sie einen neuen an.',
  failUsed: 'Dieser Link wurde bereits verwendet. Es wurde nichts geändert.',
  failErased: 'Die Daten zu diesem Link wurden gelöscht.',
  failNoIdentifier: 'Die Telefonnummer oder Adresse, für die dieser Link erstellt wurde, gehört inzwischen jemand anderem. Über diesen Link lässt sich daher nichts mehr ändern. Ihre Daten wurden nicht gelöscht: Eine Kopie oder ihre Löschung können Sie direkt beim Unternehmen verlangen.',
  failSuperseded: 'Dieser Link ist nicht mehr gültig: Die Adresse, an die er gesendet wurde, hat sich inzwischen geändert. Es wurde nichts bestätigt. Bitte melden Sie sich erneut an.',
  failOutdated: 'Der Text eines Hinweises hat sich geändert, seit die Seite geladen wurde. Bitte lesen Sie ihn erneut und melden Sie sich noch einmal an.',
  failRateLimited: 'Zu viele Versuche. Bitte warten Sie eine Weile und versuchen Sie es erneut.',
  failCsrf: 'Das Formular ist abgelaufen oder stammt nicht von dieser Seite. Bitte laden Sie die Seite neu und versuchen Sie es erneut.',
  failNotFound: 'Unter dieser Adresse gibt es keine Seite.',
  failUnavailable: 'Der Dienst ist gerade nicht erreichbar. Bitte versuchen Sie es später erneut.',
  failGeneric: 'Etwas ist schiefgegangen. Bitte versuchen Sie es später erneut.',
  failBadRequest: 'Das Formular konnte nicht verarbeitet werden.',
  dateLocale: 'de-DE',
};

export const STRINGS: Record<Language, Strings> = { en: EN, de: DE };

/** "{name}" placeholders filled in; the result is escaped by the template like any other text. */
export function fill(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => (k in values ? String(values[k]) : m));
}

/** A time for people, in the page's language, in UTC (said so). */
export function formatTime(lang: Language, d: Date | undefined): string {
  if (!d) return '';
  return `${new Intl.DateTimeFormat(STRINGS[lang].dateLocale, { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' }).format(d)} UTC`;
}
