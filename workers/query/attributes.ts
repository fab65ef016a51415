/**
 * Grouping by a catalog attribute (`"attributes": {"product": "products.category"}` in POST /v1/query,
 * core/query.ts): after the reads, each attributed key's values are looked up in the tenant's catalog
 * (db/catalog.ts entityLabels, one query per key, bounded by QUERY_LIMITS.maxAttributeGroups) and the groups
 * are regrouped by what it says, merging cells exactly (workers/query/cells.ts). The answer depends on the
 * catalog, so a catalog that cannot be read fails the query (503 history_disabled without a database,
 * catalog_unavailable when PostgreSQL cannot be reached) rather than grouping every value under "__unknown__".
 */
import { CodedError } from "../../core/errors";
import { attributeValue, checkAttributeGroups, entityValues, type Query } from "../../core/query";
import { entityLabels } from "../../db/catalog";
import { type Db, historyEnabled } from "../../db/client";
import type { Cells } from "./cells";

/** What the lookups need of a query's run (workers/query/execute.ts Run). */
export interface CatalogRun {
  readonly env: Env;
  readonly tenantId: string;
  readonly db: Db;
  readonly stats: { postgres_queries: number; postgres_rows: number };
}

/** What meta.attributes says of one attributed key. */
export interface AttributeMeta {
  kind: string;
  attribute: string;
  column: string;
  /** Distinct values of the key among the groups read (the ones looked up). */
  values: number;
  /** How many of them the catalog holds (the others are under "__unknown__"). */
  found: number;
}

/** Refuses a query grouping by an attribute when no database is configured, before anything is read. */
export function assertCatalogConfigured(env: Env, q: Query): void {
  if (q.attributes.length > 0 && !historyEnabled(env)) {
    throw new CodedError(
      "history_disabled",
      `attributes: the catalog is unavailable: it is in PostgreSQL and no database is configured (set DATABASE_URL); grouping by ${q.attributes.map((a) => `${a.kind}.${a.attribute}`).join(", ")} needs it.`,
    );
  }
}

/** The attributed keys' values as the catalog answered them; each value is looked up once per query. */
export class AttributeMap {
  readonly meta: Record<string, AttributeMeta> = {};
  readonly #at: number[];
  readonly #found: Array<Map<string, string | null>>;
  readonly #asked: Array<Set<string>>;

  constructor(readonly q: Query) {
    this.#at = q.attributes.map((a) => q.groupBy.indexOf(a.key));
    this.#found = q.attributes.map(() => new Map());
    this.#asked = q.attributes.map(() => new Set());
    for (const a of q.attributes) {
      this.meta[a.key] = { kind: a.kind, attribute: a.attribute, column: a.column, values: 0, found: 0 };
    }
  }

  /**
   * Looks up the values of `cells`' groups not looked up yet, then regroups the cells by attribute. Refuses
   * more groups than QUERY_LIMITS.maxAttributeGroups (invalid_query), and answers 503 catalog_unavailable when the
   * catalog cannot be read (history_disabled without a database).
   */
  async regroup(run: CatalogRun, cells: Cells): Promise<Cells> {
    checkAttributeGroups(cells.groups.size);
    await Promise.all(
      this.q.attributes.map(async (a, i) => {
        const asked = this.#asked[i];
        const ids = entityValues([...cells.groups.values()].map((g) => g[this.#at[i]])).filter((v) => !asked.has(v));
        if (ids.length === 0) return;
        for (const id of ids) asked.add(id);
        let found: Map<string, string | null>;
        try {
          run.stats.postgres_queries++;
          found = await entityLabels(run.db, run.tenantId, a.kind, ids, a.attribute);
        } catch (err) {
          throw new CodedError(
            "catalog_unavailable",
            `attributes.${a.key}: the catalog is unavailable: PostgreSQL could not be read (${(err as Error).name}), so ${a.key} values cannot be grouped by ${a.kind}.${a.attribute}; retry the query.`,
          );
        }
        run.stats.postgres_rows += found.size;
        for (const [id, v] of found) this.#found[i].set(id, v);
        this.meta[a.key].values = asked.size;
        this.meta[a.key].found = this.#found[i].size;
      }),
    );
    return cells.regroup((group) => {
      const out = [...group];
      this.#at.forEach((at, i) => {
        out[at] = attributeValue(group[at], this.#found[i]);
      });
      return out;
    });
  }
}
