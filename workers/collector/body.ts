import { ApiError } from "../lib/errors";

/**
 * Reads a request body as UTF-8 text, refusing it as soon as it passes
 * `maxBytes` (before and after gzip decoding, so a gzip bomb stops at the
 * limit) and refusing invalid UTF-8.
 */
export async function readBody(request: Request, maxBytes: number): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new ApiError("body_too_large", `The body is ${declared} bytes; the limit is ${maxBytes}.`);
  }
  const encoding = (request.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
  if (encoding !== "identity" && encoding !== "gzip") {
    throw new ApiError(
      "unsupported_content_encoding",
      `Content-Encoding '${encoding.slice(0, 32)}' is not supported; use gzip or none.`,
    );
  }
  if (request.body === null) return "";
  let stream: ReadableStream<Uint8Array> = request.body;
  if (encoding === "gzip") stream = stream.pipeThrough(new DecompressionStream("gzip"));
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        throw new ApiError(
          "body_too_large",
          `The body${encoding === "gzip" ? " (decompressed)" : ""} exceeds the limit of ${maxBytes} bytes.`,
        );
      }
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    if (err instanceof ApiError) throw err;
    throw new ApiError("malformed_body", "The gzip body could not be decoded.");
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ApiError("malformed_body", "The body is not valid UTF-8.");
  }
}
