import type { Config } from "../../core/config";
import type { KeyGrant } from "../../core/protocol";

export type AppEnv = {
  Bindings: Env;
  Variables: { grant: KeyGrant; config: Config };
};
