/**
 * Compile-time checks that each response schema (core/responses.ts) is exactly
 * the type the code that builds the response returns: `npm run typecheck`
 * fails when a field is added to, removed from or retyped in one and not the
 * other. (The end-to-end tests check real responses against the document too.)
 */
import type { z } from "zod";
import type { Figures } from "../../core/aggregate";
import type { AlertEventView, AlertRuleView, RuleView } from "../../core/alerts";
import type * as B from "../../core/boards";
import type { BoardSummaryView, BoardView, PanelView } from "../../core/boards";
import type { CourseView, EntityView, ProductView, UserView } from "../../core/catalog";
import type { OidcPublicConfig } from "../../core/oidc";
import type { FlushStatus, KeyInfo, StreamCounters, StreamSnapshot, Tenant, TenantLimits } from "../../core/protocol";
import type * as R from "../../core/responses";
import type { ScalingStatus } from "../../core/shards";
import type { SinkView } from "../../core/sinks";
import type { SourceView } from "../../core/sources";
import type { Aggregates } from "../../core/window";
import type { HistoryPoint } from "../../db/history";
import type { ActorStats, DeliveryInfo, MetricActor } from "../../durable-objects/metric-actor";
import type { StreamScaling } from "../../durable-objects/metric-actor/scaling";
import type { StreamListing, TenantHub } from "../../durable-objects/tenant-hub";
import type { TenantRegistry } from "../../durable-objects/tenant-registry";
import type { OidcView } from "../aggregator/oidc";
import type { Receipt } from "../collector/app";

/** Each type is assignable to the other, with the same keys: no field missing, extra or typed differently. */
type Same<A, B> = [A] extends [B]
  ? [B] extends [A]
    ? [keyof A] extends [keyof B]
      ? [keyof B] extends [keyof A]
        ? true
        : false
      : false
    : false
  : false;
type Check<T extends true> = T;
type Out<S extends z.ZodType> = z.output<S>;

export type ResponseShapeChecks = [
  Check<Same<Out<typeof R.Receipt>, Receipt>>,
  Check<Same<Out<typeof R.Figures>, Figures>>,
  Check<Same<Out<typeof R.WindowFigures>, Aggregates>>,
  Check<Same<Out<typeof R.StreamCounters>, StreamCounters>>,
  Check<Same<Out<typeof R.HistoryStatus>, FlushStatus>>,
  Check<Same<Out<typeof R.Scaling>, ScalingStatus>>,
  Check<Same<Out<typeof R.StreamSnapshot>, StreamSnapshot>>,
  Check<Same<Out<typeof R.StreamListing>, StreamListing>>,
  Check<Same<Omit<Out<typeof R.StreamList>, "window">, ReturnType<TenantHub["streams"]>>>,
  Check<Same<Out<typeof R.HistoryPoint>, HistoryPoint>>,
  Check<Same<Out<typeof R.StreamConfiguration>["scaling"], StreamScaling>>,
  Check<Same<Out<typeof R.StreamConfiguration>["dimensions"], ReturnType<MetricActor["dimensions"]>>>,
  Check<Same<Out<typeof R.ActorStats>, ActorStats>>,
  Check<Same<Out<typeof R.AlertRule>, AlertRuleView>>,
  Check<Same<Out<typeof R.Rule>, RuleView>>,
  Check<Same<Out<typeof R.AlertEvent>, AlertEventView>>,
  Check<Same<Out<typeof R.Delivery>, Omit<DeliveryInfo, "delivered_at"> & { delivered_at: string | null }>>,
  Check<Same<Out<typeof R.Key>, KeyInfo>>,
  Check<Same<Out<typeof R.Tenant>, Tenant>>,
  Check<Same<Out<typeof R.TenantLimits>, TenantLimits>>,
  Check<Same<Out<typeof R.TenantUsage>["usage"], ReturnType<TenantRegistry["usage"]>>>,
  Check<Same<Out<typeof R.OidcConfigView>, OidcView>>,
  Check<Same<Out<typeof R.OidcPublicConfig>, OidcPublicConfig>>,
  Check<Same<Out<typeof R.Source>, SourceView>>,
  Check<Same<Out<typeof R.SourceStatus>, SourceView["status"]>>,
  Check<Same<Out<typeof R.Sink>, SinkView>>,
  Check<Same<Out<typeof R.SinkStatus>, SinkView["status"]>>,
  Check<Same<Out<typeof R.Product>, ProductView>>,
  Check<Same<Out<typeof R.CatalogUser>, UserView>>,
  Check<Same<Out<typeof R.Course>, CourseView>>,
  Check<Same<Out<typeof R.CatalogEntity>, EntityView>>,
  Check<Same<Out<typeof B.Panel>, PanelView>>,
  Check<Same<Out<typeof B.Board>, BoardView>>,
  Check<Same<Out<typeof B.BoardSummary>, BoardSummaryView>>,
];
