import { describe, expect, it } from "vitest";
import { CONFIG } from "../../core/config.ts";
import { MAX_ID_LENGTH as CORE_MAX_ID_LENGTH } from "../../core/event.ts";
import * as sdk from "../src/limits.ts";

describe("limits copied from core", () => {
  it("match core/config.ts and core/event.ts", () => {
    expect(sdk.SERVER_MAX_EVENTS_DEFAULT).toBe(CONFIG.MAX_EVENTS_PER_BATCH.default);
    expect(sdk.SERVER_MAX_EVENTS_MAX).toBe(CONFIG.MAX_EVENTS_PER_BATCH.max);
    expect(sdk.SERVER_MAX_BODY_BYTES_DEFAULT).toBe(CONFIG.MAX_BODY_BYTES.default);
    expect(sdk.MAX_ID_LENGTH).toBe(CORE_MAX_ID_LENGTH);
  });
});
