CREATE TABLE "metrics_dim_day" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"dim" text NOT NULL,
	"value" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"value_count" bigint NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision,
	"max" double precision,
	"sketch" "bytea" NOT NULL,
	"hll" "bytea" NOT NULL,
	"p50" double precision,
	"p90" double precision,
	"p95" double precision,
	"p99" double precision,
	"distinct_users" bigint,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"topk_count" "bytea",
	"topk_sum" "bytea",
	CONSTRAINT "metrics_dim_day_tenant_id_stream_dim_value_bucket_pk" PRIMARY KEY("tenant_id","stream","dim","value","bucket")
) PARTITION BY RANGE ("bucket");
--> statement-breakpoint
CREATE TABLE "metrics_dim_hour" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"dim" text NOT NULL,
	"value" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"value_count" bigint NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision,
	"max" double precision,
	"sketch" "bytea" NOT NULL,
	"hll" "bytea" NOT NULL,
	"p50" double precision,
	"p90" double precision,
	"p95" double precision,
	"p99" double precision,
	"distinct_users" bigint,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"topk_count" "bytea",
	"topk_sum" "bytea",
	CONSTRAINT "metrics_dim_hour_tenant_id_stream_dim_value_bucket_pk" PRIMARY KEY("tenant_id","stream","dim","value","bucket")
) PARTITION BY RANGE ("bucket");
--> statement-breakpoint
CREATE TABLE "metrics_dim_minute" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"dim" text NOT NULL,
	"value" text NOT NULL,
	"bucket" timestamp with time zone NOT NULL,
	"count" bigint NOT NULL,
	"value_count" bigint NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision,
	"max" double precision,
	"sketch" "bytea" NOT NULL,
	"hll" "bytea" NOT NULL,
	"p50" double precision,
	"p90" double precision,
	"p95" double precision,
	"p99" double precision,
	"distinct_users" bigint,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"topk_count" "bytea",
	"topk_sum" "bytea",
	CONSTRAINT "metrics_dim_minute_tenant_id_stream_dim_value_bucket_pk" PRIMARY KEY("tenant_id","stream","dim","value","bucket")
) PARTITION BY RANGE ("bucket");
--> statement-breakpoint
ALTER TABLE "metrics_day" ADD COLUMN "p50" double precision;--> statement-breakpoint
ALTER TABLE "metrics_day" ADD COLUMN "p90" double precision;--> statement-breakpoint
ALTER TABLE "metrics_day" ADD COLUMN "p95" double precision;--> statement-breakpoint
ALTER TABLE "metrics_day" ADD COLUMN "p99" double precision;--> statement-breakpoint
ALTER TABLE "metrics_day" ADD COLUMN "distinct_users" bigint;--> statement-breakpoint
ALTER TABLE "metrics_hour" ADD COLUMN "p50" double precision;--> statement-breakpoint
ALTER TABLE "metrics_hour" ADD COLUMN "p90" double precision;--> statement-breakpoint
ALTER TABLE "metrics_hour" ADD COLUMN "p95" double precision;--> statement-breakpoint
ALTER TABLE "metrics_hour" ADD COLUMN "p99" double precision;--> statement-breakpoint
ALTER TABLE "metrics_hour" ADD COLUMN "distinct_users" bigint;--> statement-breakpoint
ALTER TABLE "metrics_minute" ADD COLUMN "p50" double precision;--> statement-breakpoint
ALTER TABLE "metrics_minute" ADD COLUMN "p90" double precision;--> statement-breakpoint
ALTER TABLE "metrics_minute" ADD COLUMN "p95" double precision;--> statement-breakpoint
ALTER TABLE "metrics_minute" ADD COLUMN "p99" double precision;--> statement-breakpoint
ALTER TABLE "metrics_minute" ADD COLUMN "distinct_users" bigint;--> statement-breakpoint
CREATE INDEX "metrics_dim_day_updated_at_idx" ON "metrics_dim_day" USING btree ("updated_at");--> statement-breakpoint
CREATE INDEX "metrics_dim_day_dim_bucket_idx" ON "metrics_dim_day" USING btree ("tenant_id","stream","dim","bucket");--> statement-breakpoint
CREATE INDEX "metrics_dim_hour_updated_at_idx" ON "metrics_dim_hour" USING btree ("updated_at");--> statement-breakpoint
CREATE INDEX "metrics_dim_hour_dim_bucket_idx" ON "metrics_dim_hour" USING btree ("tenant_id","stream","dim","bucket");--> statement-breakpoint
CREATE INDEX "metrics_dim_minute_updated_at_idx" ON "metrics_dim_minute" USING btree ("updated_at");--> statement-breakpoint
CREATE INDEX "metrics_dim_minute_dim_bucket_idx" ON "metrics_dim_minute" USING btree ("tenant_id","stream","dim","bucket");
--> statement-breakpoint
-- Partition management (hand-written): the dimension tables are partitioned like the stream tables.
CREATE OR REPLACE FUNCTION edgepulse_partition_unit(parent text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE parent
    WHEN 'metrics_minute' THEN 'day' WHEN 'metrics_hour' THEN 'month' WHEN 'metrics_day' THEN 'year'
    WHEN 'metrics_dim_minute' THEN 'day' WHEN 'metrics_dim_hour' THEN 'month' WHEN 'metrics_dim_day' THEN 'year'
  END
$$;
