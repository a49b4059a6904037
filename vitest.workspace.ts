import { defineWorkspace } from "vitest/config"
import { resolveSources } from "./vitest.shared.js"

// One project per package plus the cross-package tests in test/.
export default defineWorkspace([
  "packages/*",
  {
    ...resolveSources,
    test: {
      name: "e2e",
      root: "./test",
      include: ["**/*.test.ts"]
    }
  }
])
