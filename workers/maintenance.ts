/** The Worker's cron: partitions ahead, rollups (minutes → hours → days), retention. */
import { loadConfig } from "../core/config";
import { historyEnabled, withDb } from "../db/client";
import { applyRetention, ensurePartitions, rollup } from "../db/maintenance";

export interface MaintenanceReport {
  hours: number;
  days: number;
  droppedPartitions: number;
}

export async function runMaintenance(env: Env, now = new Date()): Promise<MaintenanceReport | null> {
  if (!historyEnabled(env)) return null;
  const config = loadConfig(env as unknown as Record<string, unknown>);
  return withDb(env, async (db) => {
    await ensurePartitions(db, now);
    const { hours, days } = await rollup(db);
    const droppedPartitions = await applyRetention(db, now, {
      minuteDays: config.RETENTION_MINUTE_DAYS,
      hourDays: config.RETENTION_HOUR_DAYS,
      dayDays: config.RETENTION_DAY_DAYS,
    });
    return { hours, days, droppedPartitions };
  });
}
