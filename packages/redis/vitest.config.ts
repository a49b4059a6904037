import { defineProject } from "vitest/config"
import { resolveSources } from "../../vitest.shared.js"

export default defineProject({
  ...resolveSources,
  test: {
    name: "redis",
    include: ["test/**/*.test.ts"],
    // Starts a redis-server of its own when none is given (REDIS_URL) and the binary is on PATH.
    globalSetup: ["./test/globalSetup.ts"]
  }
})
