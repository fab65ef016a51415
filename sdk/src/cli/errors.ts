/**
 * Exit codes and the one error type the CLI reports. A server error keeps the API's own code and message
 * (`{ error: { code, message, details? } }`), so scripts branch on the code, people read the message.
 */
export const EXIT = {
  /** Done; for `import`, every event accepted or already counted (duplicates). */
  ok: 0,
  /** Unexpected failure (a bug, a file that cannot be written…). */
  failure: 1,
  /** Bad arguments or input: unknown option, missing key or URL, unreadable file, malformed query JSON, a state file of another file. */
  usage: 2,
  /** The server refused the request (invalid or revoked key, insufficient scope, invalid query, not found…). */
  api: 3,
  /** The server could not be reached, or kept failing after the retries (network error, 5xx, 429, stream unavailable). */
  network: 4,
  /** `import` finished, but some events were rejected (see the summary and the rejected file). */
  rejected: 5,
  /** Interrupted (SIGINT/SIGTERM); `import` saved its state, `--resume` goes on. */
  interrupted: 130,
} as const;

export class CliError extends Error {
  constructor(
    readonly exit: number,
    readonly code: string,
    message: string,
    readonly status?: number,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export const usage = (message: string, code = "usage"): CliError => new CliError(EXIT.usage, code, message);
