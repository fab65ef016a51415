/**
 * HTTP calls of the sources (an HTTP endpoint, a Kafka REST Proxy): bounded in time (the source's
 * timeout_ms) and size, never following redirects (an auth header must not travel to another host), and
 * failing with a SourceError whose message is safe to show: never a body, a header or a URL.
 */
import { SourceError } from "../../core/sources";

export async function call(url: string, init: RequestInit, timeoutMs: number, what: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const name = (err as Error).name;
    if (name === "TimeoutError" || name === "AbortError") {
      throw new SourceError("timeout", `${what} did not answer within ${timeoutMs} ms.`);
    }
    throw new SourceError("unreachable", `${what} could not be reached (${name}).`);
  }
}

/** The error for a status that is not 2xx: 401/403 and other client errors stop the source; the rest back off. */
export function statusError(status: number, what: string): SourceError {
  if (status === 401 || status === 403) {
    return new SourceError("auth_failed", `${what} refused the credentials (HTTP ${status}).`, true);
  }
  if (status >= 300 && status < 400) {
    return new SourceError("http_status", `${what} redirected (HTTP ${status}); give the final URL.`, true);
  }
  const permanent = status >= 400 && status < 500 && status !== 408 && status !== 425 && status !== 429;
  return new SourceError("http_status", `${what} answered HTTP ${status}.`, permanent);
}

/** Reads a body as text, failing past `maxBytes` (counted while reading, so a huge body is never held). */
export async function readCapped(res: Response, maxBytes: number, what: string): Promise<string> {
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new SourceError("response_too_large", `${what}'s response is larger than ${maxBytes} bytes.`, true);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof SourceError) throw err;
    const name = (err as Error).name;
    if (name === "TimeoutError" || name === "AbortError")
      throw new SourceError("timeout", `${what} did not finish its answer in time.`);
    throw new SourceError("unreachable", `${what}'s answer broke off (${name}).`);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** Reads a JSON body (bounded), or fails with `malformed_page`. */
export async function readJson(res: Response, maxBytes: number, what: string): Promise<unknown> {
  const text = await readCapped(res, maxBytes, what);
  try {
    return JSON.parse(text);
  } catch {
    throw new SourceError("malformed_page", `${what}'s response is not JSON.`);
  }
}
