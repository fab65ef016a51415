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
