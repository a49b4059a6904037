import { defineProject } from "vitest/config"
import { resolveSources } from "../../vitest.shared.js"

export default defineProject({
  ...resolveSources,
  test: {
    name: "gateway",
    include: ["test/**/*.test.ts"],
    // A redis-server of the tests' own (or REDIS_URL) for two gateways sharing state; none: those tests are skipped.
    globalSetup: ["../redis/test/globalSetup.ts"]
  }
})
