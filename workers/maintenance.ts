/** The Worker's cron: partitions ahead, rollups (minutes → hours → days), retention of history and archive. */
import { loadConfig } from "../core/config";
import { historyEnabled, withDb } from "../db/client";
import { applyRetention, ensurePartitions, rollup } from "../db/maintenance";
import { pruneArchive } from "./archive-retention";

export interface MaintenanceReport {
  hours: number;
  days: number;
  droppedPartitions: number;
  /** Archive segments deleted past ARCHIVE_RETENTION_DAYS (null: no archive bound). */
  segmentsDeleted: number | null;
}

/**
 * A tenant's archive retention: its own setting, never beyond the deployment's. A registry that cannot
 * answer leaves the deployment's (which deletes no more than the operator's rule allows).
 */
async function archiveDaysOf(env: Env, tenant: string, deployment: number): Promise<number> {
  try {
    const own = await env.TENANT_REGISTRY.getByName(tenant).archiveRetentionDays();
    return own === null ? deployment : Math.min(own, deployment);
  } catch {
    return deployment;
  }
}

export async function runMaintenance(env: Env, now = new Date()): Promise<MaintenanceReport | null> {
  const config = loadConfig(env as unknown as Record<string, unknown>);
  const segmentsDeleted = env.ARCHIVE
    ? await pruneArchive(env.ARCHIVE, now.getTime(), (tenant) =>
        archiveDaysOf(env, tenant, config.ARCHIVE_RETENTION_DAYS),
      )
    : null;
  if (!historyEnabled(env))
    return segmentsDeleted === null ? null : { hours: 0, days: 0, droppedPartitions: 0, segmentsDeleted };
  return withDb(env, async (db) => {
    await ensurePartitions(db, now);
    const { hours, days } = await rollup(db);
    const droppedPartitions = await applyRetention(db, now, {
      minuteDays: config.RETENTION_MINUTE_DAYS,
      hourDays: config.RETENTION_HOUR_DAYS,
      dayDays: config.RETENTION_DAY_DAYS,
    });
    return { hours, days, droppedPartitions, segmentsDeleted };
  });
}
