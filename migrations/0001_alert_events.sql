CREATE TABLE "alert_events" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"stream" text NOT NULL,
	"rule_id" text NOT NULL,
	"rule_name" text NOT NULL,
	"kind" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"value" double precision,
	"labels" jsonb NOT NULL,
	"deliveries" jsonb NOT NULL
);
--> statement-breakpoint
CREATE INDEX "alert_events_tenant_at_idx" ON "alert_events" USING btree ("tenant_id","at");