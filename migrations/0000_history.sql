CREATE TABLE "metrics_day" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"value_count" bigint NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision,
	"max" double precision,
	"sketch" "bytea" NOT NULL,
	"hll" "bytea" NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "metrics_day_tenant_id_stream_bucket_pk" PRIMARY KEY("tenant_id","stream","bucket")
) PARTITION BY RANGE ("bucket");
--> statement-breakpoint
CREATE TABLE "metrics_hour" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"value_count" bigint NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision,
	"max" double precision,
	"sketch" "bytea" NOT NULL,
	"hll" "bytea" NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "metrics_hour_tenant_id_stream_bucket_pk" PRIMARY KEY("tenant_id","stream","bucket")
) PARTITION BY RANGE ("bucket");
--> statement-breakpoint
CREATE TABLE "metrics_minute" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"value_count" bigint NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision,
	"max" double precision,
	"sketch" "bytea" NOT NULL,
	"hll" "bytea" NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "metrics_minute_tenant_id_stream_bucket_pk" PRIMARY KEY("tenant_id","stream","bucket")
) PARTITION BY RANGE ("bucket");
--> statement-breakpoint
CREATE TABLE "rollup_state" (
	"name" text PRIMARY KEY NOT NULL,
	"watermark" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "metrics_day_updated_at_idx" ON "metrics_day" USING btree ("updated_at");--> statement-breakpoint
CREATE INDEX "metrics_hour_updated_at_idx" ON "metrics_hour" USING btree ("updated_at");--> statement-breakpoint
CREATE INDEX "metrics_minute_updated_at_idx" ON "metrics_minute" USING btree ("updated_at");
--> statement-breakpoint
-- Partition management (hand-written, appended to the generated DDL above).
-- minutes: one partition per day; hours: per month; days: per year. Names: <table>_pYYYYMMDD (UTC).
CREATE OR REPLACE FUNCTION edgepulse_partition_unit(parent text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE parent WHEN 'metrics_minute' THEN 'day' WHEN 'metrics_hour' THEN 'month' WHEN 'metrics_day' THEN 'year' END
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION edgepulse_ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  unit text := edgepulse_partition_unit(parent);
  lo timestamp;
  hi timestamp;
  part text;
  created integer := 0;
BEGIN
  IF unit IS NULL THEN
    RAISE EXCEPTION 'edgepulse_ensure_partitions: unknown table %', parent;
  END IF;
  lo := date_trunc(unit, from_ts AT TIME ZONE 'UTC');
  WHILE (lo AT TIME ZONE 'UTC') <= to_ts LOOP
    hi := lo + ('1 ' || unit)::interval;
    part := parent || '_p' || to_char(lo, 'YYYYMMDD');
    IF to_regclass(part) IS NULL THEN
      BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
          part, parent, lo AT TIME ZONE 'UTC', hi AT TIME ZONE 'UTC');
        created := created + 1;
      EXCEPTION WHEN duplicate_table THEN
        NULL;
      END;
    END IF;
    lo := hi;
  END LOOP;
  RETURN created;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION edgepulse_drop_partitions(parent text, older_than timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  unit text := edgepulse_partition_unit(parent);
  r record;
  lo timestamp;
  dropped integer := 0;
BEGIN
  IF unit IS NULL THEN
    RAISE EXCEPTION 'edgepulse_drop_partitions: unknown table %', parent;
  END IF;
  FOR r IN
    SELECT c.relname FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = parent
  LOOP
    IF r.relname ~ '_p[0-9]{8}$' THEN
      lo := to_date(right(r.relname, 8), 'YYYYMMDD')::timestamp;
      IF ((lo + ('1 ' || unit)::interval) AT TIME ZONE 'UTC') <= older_than THEN
        EXECUTE format('DROP TABLE %I', r.relname);
        dropped := dropped + 1;
      END IF;
    END IF;
  END LOOP;
  RETURN dropped;
END
$$;
