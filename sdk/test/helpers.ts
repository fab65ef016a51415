import type { WireEvent } from "../src/types.ts";

export interface Sent {
  url: string;
  headers: Record<string, string>;
  events: WireEvent[];
  at: number;
}

type Reply = Response | Error | ((sent: Sent) => Response | Error | Promise<Response | Error>);

/** A fetch that records every request and answers from a script (the last reply repeats). */
export function fakeFetch(...replies: Reply[]) {
  const sent: Sent[] = [];
  const fn = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    let text: string;
    const headers = { ...(init?.headers as Record<string, string>) };
    if (headers["content-encoding"] === "gzip") {
      const stream = new Blob([init?.body as Uint8Array<ArrayBuffer>])
        .stream()
        .pipeThrough(new DecompressionStream("gzip"));
      text = await new Response(stream).text();
    } else text = String(init?.body);
    const s: Sent = { url: String(input), headers, events: JSON.parse(text), at: Date.now() };
    sent.push(s);
    let r = replies[Math.min(sent.length - 1, replies.length - 1)] ?? ok(s.events.length);
    if (typeof r === "function") r = await r(s);
    if (r instanceof Error) throw r;
    return r.clone();
  };
  return { fetch: fn as typeof fetch, sent };
}

export const ok = (accepted: number, duplicates = 0, rejected: unknown[] = []) =>
  Response.json({ accepted, duplicates, rejected });

export const error = (status: number, code: string, headers: Record<string, string> = {}, details?: unknown) =>
  Response.json({ error: { code, message: `${code} message`, details } }, { status, headers });

/** An in-memory Storage. */
export function memoryStorage() {
  const m = new Map<string, string>();
  return {
    map: m,
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}
