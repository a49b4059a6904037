import { defineWorkspace } from "vitest/config"

// One project per package plus the cross-package tests in test/.
export default defineWorkspace([
  "packages/*",
  {
    test: {
      name: "e2e",
      root: "./test",
      include: ["**/*.test.ts"]
    }
  }
])
