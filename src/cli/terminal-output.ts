/**
 * How consentctl writes to its standard streams when they are not a terminal: a reader that
 * stops early (`consentctl --help | head`) ends the program quietly, and progress is one line
 * per update instead of a line redrawn with carriage returns, which logs and CI would keep as
 * one unreadable line.
 */

/** Ends the process quietly (exit 0) when the reader of stdout or stderr has gone away (EPIPE). */
export function endQuietlyWhenReaderLeaves(streams: NodeJS.WriteStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // The reader asked for no more output (head, a closed pager): not a failure of the command.
      if (err.code === 'EPIPE') process.exit(0);
      throw err;
    });
  }
}

export interface Progress {
  update(text: string): void;
  /** Ends the progress display (a terminal gets its final newline). */
  end(): void;
}

/**
 * Progress on `stream`: redrawn in place on a terminal, one line per change otherwise (identical
 * consecutive updates are written once).
 */
export function progressOn(stream: NodeJS.WritableStream & { isTTY?: boolean }): Progress {
  let last: string | null = null;
  if (stream.isTTY) {
    return {
      update(text) {
        if (text === last) return;
        last = text;
        stream.write(`\r\x1b[K${text}`);
      },
      end() {
        if (last !== null) stream.write('\n');
      },
    };
  }
  return {
    update(text) {
      if (text === last) return;
      last = text;
      stream.write(`${text}\n`);
    },
    end() {},
  };
}
