import { ImportConsentsResponse, ImportRejection } from '../gen/consent/v1/consent';
import { DomainError } from '../shared/errors';
import { toStatus } from './error-mapper';

type Rejection = ImportConsentsResponse['rejections'][number];

/** The longest message of a rejection listed without details: "{REASON} {field}", or "{REASON}" when longer (a field is never cut). */
const SHORT_MESSAGE_CHARS = 64;
/** Room left in the answer for its counts and framing. */
const ANSWER_MARGIN_BYTES = 16 * 1024;

/**
 * The rejected rows of one ImportConsents call, bounded by what its answer may hold. A call may
 * carry MAX_IMPORT_ROWS rows, and each rejection as a full status (ErrorInfo, BadRequest with every
 * violation) takes 0.3-1.6 KB: 50,000 of them made answers of 29-83 MB, more than a client
 * accepts (4 MiB by default: the rows were committed, the client saw RESOURCE_EXHAUSTED) and, a
 * few calls at once, more than the server's heap (found by a probe). So the first rejections, up
 * to an eighth of the message limit, keep their full status; the others carry their status code
 * and a short message "{REASON} {field}" (docs/api.md, ImportConsents), and, past what the answer
 * can hold even so, only their code. A call whose rejections do not fit even that way is stopped
 * (`overflow`): what was committed stays, as when a call stops for any other reason.
 */
export class ImportRejections {
  private readonly list: Rejection[] = [];
  private bytes = 0;
  private readonly fullBudget: number;
  private readonly answerBudget: number;

  constructor(maxMessageBytes: number) {
    this.answerBudget = Math.max(0, maxMessageBytes - ANSWER_MARGIN_BYTES);
    this.fullBudget = Math.floor(maxMessageBytes / 8);
  }

  get length(): number {
    return this.list.length;
  }

  /** Lists the row's rejection; false when the answer has no room left for it (the call must stop). */
  add(line: number, err: DomainError): boolean {
    if (this.bytes < this.fullBudget) {
      const full = { line, status: toStatus(err) };
      const size = encodedSize(full);
      if (this.bytes + size <= this.fullBudget) return this.keep(full, size);
    }
    const field = err.violations[0]?.field ?? err.metadata.field ?? '';
    const both = `${err.reason} ${field}`.trim();
    const message = both.length <= SHORT_MESSAGE_CHARS ? both : err.reason.slice(0, SHORT_MESSAGE_CHARS);
    const short = { line, status: { code: toStatus(err).code, message, details: [] } };
    const size = encodedSize(short);
    if (this.bytes + size <= this.answerBudget) return this.keep(short, size);
    const bare = { line, status: { code: short.status.code, message: '', details: [] } };
    const bareSize = encodedSize(bare);
    if (this.bytes + bareSize <= this.answerBudget) return this.keep(bare, bareSize);
    return false;
  }

  /** The rejections in line order. */
  sorted(): Rejection[] {
    return this.list.sort((a, b) => a.line - b.line);
  }

  private keep(rejection: Rejection, size: number): true {
    this.list.push(rejection);
    this.bytes += size;
    return true;
  }
}

/** The rejection's size in the answer (its field's tag and length prefix included). */
function encodedSize(rejection: Rejection): number {
  const n = ImportRejection.encode(rejection).finish().length;
  return n + 1 + (n < 128 ? 1 : n < 16_384 ? 2 : 3);
}
