/** Small promise helpers shared by the Worker and the actors (runtime-free). */

export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/**
 * The promise's outcome, or a TimeoutError ("<what> timed out after <ms> ms") if it takes longer than `ms`.
 * The promise is left to finish on its own; its rejection is always handled.
 */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  p.catch(() => {});
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}

/**
 * Resolves to the promise's value, or to `fallback` if it rejects or takes longer than `ms`.
 * The promise is left to finish on its own; its rejection is always handled.
 */
export function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<T>((r) => {
    timer = setTimeout(() => r(fallback), ms);
  });
  return Promise.race([p.catch(() => fallback), timeout]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}
