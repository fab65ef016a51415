/**
 * SourceActor: one per pull source (/v1/sources), driven by its alarm. Being built: see issue 15.
 */
import { DurableObject } from "cloudflare:workers";

export class SourceActor extends DurableObject<Env> {}
