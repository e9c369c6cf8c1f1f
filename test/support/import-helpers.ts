import { SubjectIdentifier } from '../../src/gen/consent/v1/common';
import { ConsentEvent } from '../../src/gen/consent/v1/consent';
import { call, TestServer } from './test-server';

/** What the import suites ask the server of one tenant: a person's events, and how many events the tenant has. */
export function importProbes(server: () => TestServer, tenantId: string) {
  return {
    events: async (identifier: SubjectIdentifier): Promise<ConsentEvent[]> => {
      const s = server();
      const request = { parent: `tenants/${tenantId}`, subjectIdentifier: identifier, purpose: '', channel: 0, startTime: undefined, endTime: undefined, pageSize: 100, pageToken: '' };
      return (await call(s.consent, s.consent.listConsentEvents, request)).consentEvents;
    },
    storedCount: async (): Promise<number> => {
      const [row] = await server().app.dataSource.query('SELECT COUNT(*) AS n FROM consent_events WHERE tenant_id = ?', [tenantId]);
      return Number(row.n);
    },
  };
}

/** The rows of a rejects file consentctl import wrote (its header line skipped). */
export function rejectsOf(text: string): Array<{ line: number; reason: string; field: string }> {
  return text
    .trim()
    .split(/\r?\n/)
    .slice(1)
    .map((l) => {
      const [line, reason, field] = l.split(',');
      return { line: Number(line), reason, field };
    });
}
