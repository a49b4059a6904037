import { defaultClientConditions, defaultServerConditions } from "vite"
import type { UserWorkspaceConfig } from "vitest/config"

/**
 * Inside this repository `@resilient-ai/<package>` resolves to the TypeScript
 * sources through the `"source"` export condition (tsc does the same with
 * `customConditions`), so tests need no build step and load one copy of each
 * module. Plain node and apps outside the repository never ask for `"source"`:
 * they get the `types`/`import` conditions, that is the `dist/` build.
 */
export const resolveSources: Pick<UserWorkspaceConfig, "resolve" | "ssr"> = {
  resolve: { conditions: ["source", ...defaultClientConditions] },
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } }
}
