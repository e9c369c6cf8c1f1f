/**
 * The one exit-code table of consentctl, used by every command, printed by `--help` and
 * documented in the README. Scripts branch on it: 3 is worth retrying later, 1 and 2 are not.
 */
export const EXIT = {
  OK: 0,
  /** The service refused the call or it failed, or something the service returned did not verify. */
  FAILED: 1,
  /** A missing or malformed argument, found before anything was sent. */
  USAGE: 2,
  /** The service could not be reached, answered UNAVAILABLE, or not within the deadline. */
  UNAVAILABLE: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODE_TABLE = [
  'Exit codes (the same for every command):',
  '  0  done; for checks: everything verified',
  '  1  the service refused the call or it failed, or a signature, hash or proof did not verify (the reason is printed)',
  '  2  usage error: a missing or malformed argument, found before anything was sent',
  '  3  the service is unavailable: not reachable, UNAVAILABLE or DEADLINE_EXCEEDED (worth retrying later)',
].join('\n');

/** An error consentctl reports as one line (plus detail lines) on stderr, ending with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    /** Decoded error details, one readable line each (printed indented under the message). */
    readonly details: string[] = [],
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A usage error: reported with the command's usage, exit 2, before anything is sent. */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT.USAGE);
}

/** Something the service returned did not verify: exit 1, like any other failed call. */
export function verificationFailed(message: string): CliError {
  return new CliError(`VERIFICATION FAILED: ${message}`, EXIT.FAILED);
}
