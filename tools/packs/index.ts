/** The solution packs `npm run demo -- <pack>` runs. */
import { app } from "./app";
import { courses } from "./courses";
import type { Pack } from "./pack";
import { shop } from "./shop";

export const PACKS: Record<string, Pack> = { shop, courses, app };
