CREATE TABLE "backfill_batches" (
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"batch" text NOT NULL,
	"applied_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "backfill_batches_tenant_id_stream_batch_pk" PRIMARY KEY("tenant_id","stream","batch")
);
--> statement-breakpoint
CREATE INDEX "backfill_batches_applied_idx" ON "backfill_batches" USING btree ("applied_at");