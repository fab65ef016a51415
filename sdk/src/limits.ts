/**
 * The collector's limits the SDK sizes its batches by (core/config.ts, core/event.ts). Copied rather than
 * imported so no server code reaches the bundles; sdk/test/limits.test.ts fails if they drift from core.
 */
/** CONFIG.MAX_EVENTS_PER_BATCH.default and .max. */
export const SERVER_MAX_EVENTS_DEFAULT = 1000;
export const SERVER_MAX_EVENTS_MAX = 10_000;
/** CONFIG.MAX_BODY_BYTES.default: the limit applies to the decoded (un-gzipped) body. */
export const SERVER_MAX_BODY_BYTES_DEFAULT = 1_048_576;
/** MAX_ID_LENGTH in core/event.ts. */
export const MAX_ID_LENGTH = 128;
/** Browsers refuse a beacon or keepalive request whose body passes 64 KiB (all in flight together). */
export const BEACON_MAX_BYTES = 60_000;
