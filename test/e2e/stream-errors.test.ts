import { ClientReadableStream, credentials, ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ConsentServiceClient } from '../../src/gen/consent/v1/consent';
import { CreateRequestRequest, ReceivedVia, RequestKind, SubjectRightsServiceClient } from '../../src/gen/consent/v1/subject_rights';
import { PurposeServiceClient } from '../../src/gen/consent/v1/purpose';
import { TenantServiceClient } from '../../src/gen/consent/v1/tenant';
import { forEachDatabase } from '../support/databases';
import { phone, seedTenant } from '../support/fixtures';
import { startServerProcess, ServerProcess } from '../support/server-process';
import { call, errorDetails, TestServer } from '../support/test-server';

/**
 * Streaming RPCs that fail after the call has started end that call with a status, and only that
 * call: the server runs as its own process here, so a failure that ends the process (an
 * unhandled promise rejection) is seen as one instead of being caught by mocha.
 */
forEachDatabase('streaming calls that fail end only themselves', (db) => {
  let server: ServerProcess;
  let consent: ConsentServiceClient;
  let rights: SubjectRightsServiceClient;
  const T = 'streamerr';

  before(async function () {
    this.timeout(90_000);
    server = await startServerProcess(db());
    const creds = credentials.createInsecure();
    consent = new ConsentServiceClient(server.address, creds);
    rights = new SubjectRightsServiceClient(server.address, creds);
    const tenants = new TenantServiceClient(server.address, creds);
    const purposes = new PurposeServiceClient(server.address, creds);
    await seedTenant({ tenants, purposes } as unknown as TestServer, T);
    tenants.close();
    purposes.close();
  });
  after(async function () {
    consent?.close();
    rights?.close();
    await server?.stop();
  });
  afterEach(async function () {
    expect(server.hasExited(), `the server process ended:\n${server.output().slice(-3000)}`).to.equal(false);
    expect(await server.health()).to.equal('SERVING');
    expect(server.output()).not.to.match(/unhandled|UnhandledPromiseRejection/i);
  });

  /** Reads a server stream to its end; resolves with the error it ended with (null when OK). */
  function outcome<T>(stream: ClientReadableStream<T>, cancelAfterMs?: number): Promise<ServiceError | null> {
    return new Promise((resolve) => {
      const timer = cancelAfterMs === undefined ? undefined : setTimeout(() => stream.cancel(), cancelAfterMs);
      stream.on('data', () => undefined);
      stream.on('error', (err: ServiceError) => {
        clearTimeout(timer);
        resolve(err);
      });
      stream.on('end', () => {
        clearTimeout(timer);
        resolve(null);
      });
    });
  }

  it('StreamChanges with a cursor that does not parse: INVALID_ARGUMENT naming cursor', async function () {
    const err = await outcome(consent.streamChanges({ parent: `tenants/${T}`, cursor: 'garbage!!' }));
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(err!).fields).to.deep.equal(['cursor']);
  });

  it('StreamChanges of a tenant that does not exist: NOT_FOUND', async function () {
    const err = await outcome(consent.streamChanges({ parent: 'tenants/nobody-here', cursor: '' }));
    expect(err?.code).to.equal(status.NOT_FOUND);
  });

  it('StreamChanges with a malformed parent: INVALID_ARGUMENT naming parent', async function () {
    const err = await outcome(consent.streamChanges({ parent: 'tenant/x/y', cursor: '' }));
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(errorDetails(err!).fields).to.deep.equal(['parent']);
  });

  it('StreamChanges cancelled by the client, and past its deadline, mid-stream', async function () {
    const cancelled = await outcome(consent.streamChanges({ parent: `tenants/${T}`, cursor: '' }), 300);
    expect(cancelled?.code).to.equal(status.CANCELLED);
    const late = await outcome(consent.streamChanges({ parent: `tenants/${T}`, cursor: '' }, { deadline: Date.now() + 400 }));
    expect(late?.code).to.equal(status.DEADLINE_EXCEEDED);
  });

  it('ExportSubjectData of a request whose identity is not verified: FAILED_PRECONDITION', async function () {
    const { request } = await call(
      rights,
      rights.createRequest,
      CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ACCESS, subjectIdentifier: phone('+4915112340001'), receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'se-1' }),
    );
    const err = await outcome(rights.exportSubjectData({ name: request!.name }));
    expect(err?.code).to.equal(status.FAILED_PRECONDITION);
  });

  it('ExportSubjectData of an erasure request: FAILED_PRECONDITION', async function () {
    const { request } = await call(
      rights,
      rights.createRequest,
      CreateRequestRequest.fromPartial({ parent: `tenants/${T}`, kind: RequestKind.REQUEST_KIND_ERASURE, subjectIdentifier: phone('+4915112340002'), receivedVia: ReceivedVia.RECEIVED_VIA_LETTER, requestId: 'se-2' }),
    );
    await call(rights, rights.verifyIdentity, { name: request!.name, method: 'ID_DOCUMENT', verifiedBy: 'dpo-1' });
    const err = await outcome(rights.exportSubjectData({ name: request!.name }));
    expect(err?.code).to.equal(status.FAILED_PRECONDITION);
  });

  it('ExportSubjectData of a request that does not exist, and of a malformed name: NOT_FOUND, INVALID_ARGUMENT', async function () {
    const missing = await outcome(rights.exportSubjectData({ name: `tenants/${T}/requests/00000000000000000000000000000000` }));
    expect(missing?.code).to.equal(status.NOT_FOUND);
    const malformed = await outcome(rights.exportSubjectData({ name: 'requests/1' }));
    expect(malformed?.code).to.equal(status.INVALID_ARGUMENT);
  });
});
