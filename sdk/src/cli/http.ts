/** JSON requests to the API, with its errors turned into CliErrors that keep the server's code and message. */
import { CliError, EXIT } from "./errors.ts";

export interface Target {
  url: string;
  bearer: string;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Return the body as text (e.g. `?format=csv`). */
  text?: boolean;
}

export async function api<T>(t: Target, path: string, opts: RequestOptions = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${t.url}${path}`, {
      method: opts.method ?? (opts.body === undefined ? "GET" : "POST"),
      headers: {
        authorization: `Bearer ${t.bearer}`,
        ...(opts.body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new CliError(EXIT.network, "network_error", `could not reach ${t.url}: ${cause}`);
  }
  const text = await res.text();
  if (!res.ok) throw errorFromBody(res.status, text);
  if (opts.text) return text as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliError(
      EXIT.failure,
      "malformed_response",
      `the server answered ${res.status} with a body that is not JSON`,
    );
  }
}

/** The API's `{error: {code, message, details}}`, or what can be said without it. */
export function errorFromBody(status: number, text: string): CliError {
  let body: { error?: { code?: string; message?: string; details?: unknown } } = {};
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: a proxy's page, say
  }
  const code = body.error?.code ?? `http_${status}`;
  const message = body.error?.message ?? (text.slice(0, 200) || `HTTP ${status}`);
  const exit = status === 429 || status >= 500 ? EXIT.network : EXIT.api;
  return new CliError(exit, code, message, status, body.error?.details);
}
