DROP INDEX "metrics_dim_day_dim_bucket_idx";--> statement-breakpoint
DROP INDEX "metrics_dim_hour_dim_bucket_idx";--> statement-breakpoint
DROP INDEX "metrics_dim_minute_dim_bucket_idx";--> statement-breakpoint
ALTER TABLE "metrics_dim_day" DROP CONSTRAINT "metrics_dim_day_tenant_id_stream_dim_value_bucket_pk";--> statement-breakpoint
ALTER TABLE "metrics_dim_hour" DROP CONSTRAINT "metrics_dim_hour_tenant_id_stream_dim_value_bucket_pk";--> statement-breakpoint
ALTER TABLE "metrics_dim_minute" DROP CONSTRAINT "metrics_dim_minute_tenant_id_stream_dim_value_bucket_pk";--> statement-breakpoint
ALTER TABLE "metrics_dim_day" ADD CONSTRAINT "metrics_dim_day_pk" PRIMARY KEY("tenant_id","stream","dim","bucket","value");--> statement-breakpoint
ALTER TABLE "metrics_dim_hour" ADD CONSTRAINT "metrics_dim_hour_pk" PRIMARY KEY("tenant_id","stream","dim","bucket","value");--> statement-breakpoint
ALTER TABLE "metrics_dim_minute" ADD CONSTRAINT "metrics_dim_minute_pk" PRIMARY KEY("tenant_id","stream","dim","bucket","value");