import { shardName } from "../../core/shards";

/** Where the control plane lives: the global key directory, and each tenant's own registry. */
export const directory = (env: Env) => env.KEY_DIRECTORY.getByName("global");
export const registry = (env: Env, tenantId: string) => env.TENANT_REGISTRY.getByName(tenantId);
export const hub = (env: Env, tenantId: string) => env.TENANT_HUB.getByName(tenantId);
export const actor = (env: Env, tenantId: string, stream: string) =>
  env.METRIC_ACTOR.getByName(shardName(tenantId, stream, 0));
/** Shard k ≥ 1 of a hot stream (durable-objects/stream-shard.ts). */
export const shard = (env: Env, tenantId: string, stream: string, k: number) =>
  env.STREAM_SHARD.getByName(shardName(tenantId, stream, k));
/** A pull source's actor (durable-objects/source-actor.ts): named by its tenant, so no other tenant can reach it. */
export const source = (env: Env, tenantId: string, id: string) => env.SOURCE_ACTOR.getByName(`${tenantId}/${id}`);
/** A sink's actor (durable-objects/sink-actor.ts): named by its tenant, so no other tenant can reach it. */
export const sink = (env: Env, tenantId: string, id: string) => env.SINK_ACTOR.getByName(`${tenantId}/${id}`);
