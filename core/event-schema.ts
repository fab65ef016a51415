/**
 * The event as a schema, for the API description only: POST /v1/events is
 * validated by the hand-tuned validator in core/event.ts (the hot path), and
 * this schema is built from the same table (EVENT_SCHEMA) and limits, so the
 * two cannot disagree on a number. core/event-schema.test.ts checks that
 * they accept and refuse the same events.
 */
import { z } from "zod";
import {
  EVENT_SCHEMA,
  ISO_PATTERN,
  MAX_ABS_VALUE,
  MAX_DIM_KEY_LENGTH,
  MAX_DIM_VALUE_LENGTH,
  MAX_DIMS,
  MAX_EPOCH_MS,
  MAX_ID_LENGTH,
  MAX_USER_LENGTH,
  MIN_EPOCH_MS,
  NAME_PATTERN,
  parseTimestamp,
} from "./event.ts";

const field = <S extends z.ZodType>(name: keyof typeof EVENT_SCHEMA, schema: S) => {
  const described = schema.describe(EVENT_SCHEMA[name].description);
  return EVENT_SCHEMA[name].required ? described : described.optional();
};

export const EventSchema = z
  .strictObject({
    name: field(
      "name",
      z
        .string()
        .regex(NAME_PATTERN)
        .refine((n) => !/^\.+$/.test(n), "not only dots")
        .meta({ not: { pattern: "^\\.+$" } }),
    ),
    id: field("id", z.string().min(1).max(MAX_ID_LENGTH)),
    ts: field(
      "ts",
      z.union([
        z.number().min(MIN_EPOCH_MS).lt(MAX_EPOCH_MS).describe("Epoch milliseconds."),
        z
          .string()
          .regex(ISO_PATTERN)
          .refine((t) => parseTimestamp(t) !== undefined, "not a real date and time")
          .describe("ISO-8601 with a zone (Z or ±hh:mm)."),
      ]),
    ),
    value: field("value", z.number().min(-MAX_ABS_VALUE).max(MAX_ABS_VALUE)),
    user: field("user", z.string().min(1).max(MAX_USER_LENGTH)),
    dims: field(
      "dims",
      z
        .record(z.string().min(1).max(MAX_DIM_KEY_LENGTH), z.string().max(MAX_DIM_VALUE_LENGTH))
        .refine((d) => Object.keys(d).length <= MAX_DIMS, `at most ${MAX_DIMS} dims`)
        .meta({ maxProperties: MAX_DIMS }),
    ),
  })
  .meta({ id: "Event", description: "One event. Unknown fields are refused (unknown_field)." });
