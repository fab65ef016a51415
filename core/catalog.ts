/**
 * The catalog: the entities dimension values name. An event carries `dims: {product: "sku-42"}`; the
 * tenant's catalog says what sku-42 is (its name, category, price). Three kinds, each with its own
 * attributes and its own rule for when two entities are the same one:
 *
 * - products (name, category, price): unique by name, case-insensitively;
 * - users (first_name, last_name, plan, country): unique by first and last name together;
 * - courses (title, level, instructor): unique by title.
 *
 * An entity's id is chosen by the client (the value its events carry in their dims), so it is validated
 * like a dim value, and it never changes. Runtime-free: the Worker validates with these schemas, db/catalog.ts
 * stores what they give, and the API description is generated from them.
 */
import { z } from "zod";
import { CodedError } from "./errors.ts";
import { MAX_DIM_VALUE_LENGTH } from "./event.ts";

export const CATALOG_KINDS = ["products", "users", "courses"] as const;
export type CatalogKind = (typeof CATALOG_KINDS)[number];

export const isCatalogKind = (s: string): s is CatalogKind => (CATALOG_KINDS as readonly string[]).includes(s);

/** At most this many entities of one kind in one tenant's catalog (409 catalog_limit past it). */
export const MAX_ENTITIES_PER_KIND = 100_000;

/** Entities per page of a listing (ordered by id; the cursor is the last id of the previous page). */
export const CATALOG_PAGE = { default: 50, max: 200 } as const;

/** A name, first or last name, or title: 1–256 characters once trimmed. */
export const MAX_NAME_LENGTH = 256;
/** A category, plan, country, level or instructor: 1–128 characters once trimmed. */
export const MAX_LABEL_LENGTH = 128;
/** A price: a finite number from 0 to this (the largest value an event carries). */
export const MAX_PRICE = 1e15;

/** An entity's id: the dim value its events carry (1–256 characters, like a dim value). */
export const EntityId = z
  .string()
  .min(1, "an id is 1–256 characters")
  .max(MAX_DIM_VALUE_LENGTH, "an id is 1–256 characters")
  .describe("The value events carry in their dims for this entity (1–256 characters). It never changes.");

const name = (what: string) =>
  z
    .string()
    .trim()
    .min(1, `${what} must not be empty`)
    .max(MAX_NAME_LENGTH, `${what} is at most ${MAX_NAME_LENGTH} characters`);
const label = (what: string) =>
  z
    .string()
    .trim()
    .min(1, `${what} must not be empty (omit it instead)`)
    .max(MAX_LABEL_LENGTH, `${what} is at most ${MAX_LABEL_LENGTH} characters`);
const price = z
  .number()
  .min(0, "price must not be negative")
  .max(MAX_PRICE, `price is at most ${MAX_PRICE}`)
  .describe("Non-negative.");

const productFields = {
  name: name("name").describe("Unique in the catalog, case-insensitively."),
  category: label("category").optional(),
  price,
};
const userFields = {
  first_name: name("first_name"),
  last_name: name("last_name").describe("First and last name together are unique in the catalog, case-insensitively."),
  plan: label("plan").optional(),
  country: label("country").optional(),
};
const courseFields = {
  title: name("title").describe("Unique in the catalog, case-insensitively."),
  level: label("level").optional(),
  instructor: label("instructor").optional(),
};

export const ProductCreate = z.strictObject({ id: EntityId, ...productFields }).meta({ id: "ProductCreate" });
export const UserCreate = z.strictObject({ id: EntityId, ...userFields }).meta({ id: "CatalogUserCreate" });
export const CourseCreate = z.strictObject({ id: EntityId, ...courseFields }).meta({ id: "CourseCreate" });

/** A PATCH: any of the kind's attributes (not the id); null removes an optional one. */
const patchOf = <S extends z.ZodRawShape>(fields: S, optional: string[], id: string) => {
  const shape: Record<string, z.ZodType> = {};
  for (const [k, v] of Object.entries(fields)) {
    const inner = v instanceof z.ZodOptional ? (v.unwrap() as z.ZodType) : (v as z.ZodType);
    shape[k] = optional.includes(k) ? inner.nullable().optional() : inner.optional();
  }
  return z
    .strictObject(shape)
    .refine((o) => Object.keys(o).length > 0, "give at least one attribute to change")
    .meta({ id });
};
export const ProductPatch = patchOf(productFields, ["category"], "ProductPatch");
export const UserPatch = patchOf(userFields, ["plan", "country"], "CatalogUserPatch");
export const CoursePatch = patchOf(courseFields, ["level", "instructor"], "CoursePatch");

export const CREATE_SCHEMAS = { products: ProductCreate, users: UserCreate, courses: CourseCreate } as const;
export const PATCH_SCHEMAS = { products: ProductPatch, users: UserPatch, courses: CoursePatch } as const;

/** A kind's attributes as stored (the entity's `data`): absent optional ones are left out. */
export type EntityData = Record<string, string | number>;

/** The attributes of each kind, in order, and which may be absent (shown as null). */
export const KIND_FIELDS: Record<CatalogKind, { required: readonly string[]; optional: readonly string[] }> = {
  products: { required: ["name", "price"], optional: ["category"] },
  users: { required: ["first_name", "last_name"], optional: ["plan", "country"] },
  courses: { required: ["title"], optional: ["level", "instructor"] },
};

/**
 * The entity's label, as queries show it beside its id (`"labels"` in POST /v1/query): a product's name, a
 * user's first and last name, a course's title.
 */
export function labelOf(kind: CatalogKind, data: EntityData): string {
  if (kind === "products") return String(data.name);
  if (kind === "courses") return String(data.title);
  return `${data.first_name} ${data.last_name}`;
}

/** What makes two entities of a kind the same one, in words (entity_conflict messages). */
export const UNIQUE_BY: Record<CatalogKind, string> = {
  products: "name",
  users: "first_name and last_name",
  courses: "title",
};

/** Trimmed, inner runs of white space as one space, Unicode-normalised (NFC), lower-cased. */
export const normalise = (s: string): string => s.normalize("NFC").trim().replace(/\s+/g, " ").toLowerCase();

/**
 * The entity's unique key within its kind. A user's is the JSON array of both normalised names, so "Ann Marie"
 * "Smith" and "Ann" "Marie Smith" stay two people.
 */
export function uniqueKeyOf(kind: CatalogKind, data: EntityData): string {
  if (kind === "products") return normalise(String(data.name));
  if (kind === "courses") return normalise(String(data.title));
  return JSON.stringify([normalise(String(data.first_name)), normalise(String(data.last_name))]);
}

/** A create body's attributes, without the id and with absent optional ones left out. */
export function dataOf(body: Record<string, unknown>): EntityData {
  const out: EntityData = {};
  for (const [k, v] of Object.entries(body)) {
    if (k !== "id" && v !== undefined && v !== null) out[k] = v as string | number;
  }
  return out;
}

/** A PATCH applied to stored attributes: given ones replace, null ones are removed. */
export function patched(data: EntityData, patch: Record<string, unknown>): EntityData {
  const out: EntityData = { ...data };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) continue;
    if (v === null) delete out[k];
    else out[k] = v as string | number;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Views: what the API answers (core/responses.ts declares them; workers/openapi/shapes.ts checks they agree).
// ---------------------------------------------------------------------------

interface Stamps {
  id: string;
  created_at: string;
  updated_at: string;
}
export interface ProductView extends Stamps {
  kind: "products";
  name: string;
  category: string | null;
  price: number;
}
export interface UserView extends Stamps {
  kind: "users";
  first_name: string;
  last_name: string;
  plan: string | null;
  country: string | null;
}
export interface CourseView extends Stamps {
  kind: "courses";
  title: string;
  level: string | null;
  instructor: string | null;
}
export type EntityView = ProductView | UserView | CourseView;

export interface StoredEntity {
  kind: CatalogKind;
  id: string;
  data: EntityData;
  createdAt: Date;
  updatedAt: Date;
}

export function viewOf(e: StoredEntity): EntityView {
  const { required, optional } = KIND_FIELDS[e.kind];
  const view: Record<string, unknown> = { kind: e.kind, id: e.id };
  for (const f of required) view[f] = e.data[f];
  for (const f of optional) view[f] = e.data[f] ?? null;
  view.created_at = e.createdAt.toISOString();
  view.updated_at = e.updatedAt.toISOString();
  return view as unknown as EntityView;
}

// ---------------------------------------------------------------------------
// Listings.
// ---------------------------------------------------------------------------

/** Attributes a listing filters on, per kind: an exact match, case-insensitively. */
export const EQUALITY_FILTERS: Record<CatalogKind, readonly string[]> = {
  products: ["category"],
  users: ["plan", "country"],
  courses: ["level", "instructor"],
};
/** The attribute `q` is a case-insensitive prefix of. */
export const PREFIX_FIELD: Record<CatalogKind, string> = { products: "name", users: "last_name", courses: "title" };

/** Every query parameter a listing takes, whatever the kind (each kind refuses the others' filters). */
export const LIST_PARAMS = [
  "limit",
  "cursor",
  "q",
  "category",
  "min_price",
  "max_price",
  "plan",
  "country",
  "level",
  "instructor",
] as const;
const KIND_PARAMS: Record<CatalogKind, readonly string[]> = {
  products: ["category", "min_price", "max_price"],
  users: ["plan", "country"],
  courses: ["level", "instructor"],
};

export interface CatalogListing {
  limit: number;
  /** The last id of the previous page: this page starts after it. */
  after?: string;
  /** Lower-cased prefix of PREFIX_FIELD. */
  q?: string;
  /** Attribute → value, matched case-insensitively. */
  equals: Array<[string, string]>;
  minPrice?: number;
  maxPrice?: number;
}

const invalid = (message: string) => new CodedError("invalid_request", message);

/** A listing's query parameters (strings as they came), checked for the kind. */
export function parseListing(kind: CatalogKind, params: Record<string, string | undefined>): CatalogListing {
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || k === "limit" || k === "cursor" || k === "q") continue;
    if (!KIND_PARAMS[kind].includes(k)) {
      throw new CodedError(
        "unknown_parameter",
        `${kind} listings do not filter on '${k}'; they take ${["q", ...KIND_PARAMS[kind]].map((p) => `'${p}'`).join(", ")}.`,
      );
    }
  }
  let limit: number = CATALOG_PAGE.default;
  if (params.limit !== undefined) {
    limit = Number(params.limit);
    if (!/^\d+$/.test(params.limit) || limit < 1 || limit > CATALOG_PAGE.max)
      throw invalid(`limit must be an integer from 1 to ${CATALOG_PAGE.max}.`);
  }
  const out: CatalogListing = { limit, equals: [] };
  if (params.cursor !== undefined) {
    if (params.cursor.length < 1 || params.cursor.length > MAX_DIM_VALUE_LENGTH)
      throw invalid("cursor must be the next_cursor of the previous page.");
    out.after = params.cursor;
  }
  if (params.q !== undefined) {
    const q = normalise(params.q);
    if (q.length < 1 || q.length > MAX_NAME_LENGTH) throw invalid(`q must be 1–${MAX_NAME_LENGTH} characters.`);
    out.q = q;
  }
  for (const f of EQUALITY_FILTERS[kind]) {
    const v = params[f];
    if (v === undefined) continue;
    const t = v.trim();
    if (t.length < 1 || t.length > MAX_LABEL_LENGTH) throw invalid(`${f} must be 1–${MAX_LABEL_LENGTH} characters.`);
    out.equals.push([f, t]);
  }
  const priceParam = (p: "min_price" | "max_price"): number | undefined => {
    const raw = params[p];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n) || n < 0 || n > MAX_PRICE)
      throw invalid(`${p} must be a number from 0 to ${MAX_PRICE}.`);
    return n;
  };
  out.minPrice = priceParam("min_price");
  out.maxPrice = priceParam("max_price");
  if (out.minPrice !== undefined && out.maxPrice !== undefined && out.minPrice > out.maxPrice)
    throw invalid("min_price must not be more than max_price.");
  return out;
}
