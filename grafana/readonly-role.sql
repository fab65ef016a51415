-- A read-only role for Grafana's PostgreSQL data source: SELECT on the history tables and nothing else.
-- Run once per database as its owner, then give the role a password:
--   psql "$DATABASE_URL" -f grafana/readonly-role.sql
--   psql "$DATABASE_URL" -c '\password edgepulse_grafana'
-- Partitions need no grants of their own: PostgreSQL checks the table a query names (the parent), so the
-- partitions the cron creates later are readable too. Idempotent.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'edgepulse_grafana') THEN
    CREATE ROLE edgepulse_grafana LOGIN;
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO edgepulse_grafana', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO edgepulse_grafana;
GRANT SELECT ON metrics_minute, metrics_hour, metrics_day,
  metrics_dim_minute, metrics_dim_hour, metrics_dim_day TO edgepulse_grafana;

-- Even a query that tries cannot write, and a runaway one is stopped.
ALTER ROLE edgepulse_grafana SET default_transaction_read_only = on;
ALTER ROLE edgepulse_grafana SET statement_timeout = '30s';
