import type { Logger } from "pino";
import type { Store } from "../store/index.ts";
import type { ChangeFeed } from "../changes/index.ts";
import { startSubjectTokens, type SubjectTokens } from "./tokens.ts";
import { startTouchpoints, type Touchpoints } from "./touchpoints.ts";
import type { ClusterJobs } from "../coordination/jobs.ts";

export type { Link, TouchpointChange, TouchpointSession, Touchpoints } from "./touchpoints.ts";
export type { SubjectToken, SubjectTokens } from "./tokens.ts";
export { TokenError } from "./tokens.ts";
export { LINKS } from "./touchpoints.ts";
export { linkChanges, sessionChanges, type LinkEvent, type SessionEvent } from "./touchpoints-view.ts";
export { tokenChanges, type TokenEvent } from "./tokens-view.ts";
export { TOKENS } from "./tokens.ts";

export interface SubjectsConfig {
  /** A shared device's session with a customer ends after this long if its session_end never comes. */
  sessionTtlMs: number;
}

/** Customers: which devices serve each of them (links and sessions), and their own bearer tokens. */
export interface Subjects {
  readonly touchpoints: Touchpoints;
  readonly tokens: SubjectTokens;
  close(): Promise<void>;
}

export async function startSubjects(
  config: SubjectsConfig,
  deps: { store: Store; log: Logger; changes: ChangeFeed; jobs?: Pick<ClusterJobs, "leads"> },
): Promise<Subjects> {
  const touchpoints = await startTouchpoints(config, deps);
  const tokens = await startSubjectTokens(deps);
  return {
    touchpoints,
    tokens,
    async close() {
      await tokens.close();
      await touchpoints.close();
    },
  };
}
