import { ErrorMapping } from "@resilient-ai/llm"
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const readme = readFileSync(fileURLToPath(new URL("../README.md", import.meta.url)), "utf8")

describe("README", () => {
  it("opens with the two commands a newcomer needs", () => {
    const lines = readme.split("\n").filter((l) => l.startsWith("npm "))
    expect(lines[0]).toMatch(/^npm ci && npm start\b/)
    expect(lines[1]).toMatch(/^npm ci && npm test\b/)
  })

  it("shows the HTTP error table exactly as ErrorMapping.table has it", () => {
    const section = readme.split("<!-- error-table:start -->")[1]?.split("<!-- error-table:end -->")[0] ?? ""
    const rows = section.split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| status") && !l.startsWith("| ---"))
    expect(rows).toEqual(ErrorMapping.table.map((r) => `| ${r.status} | ${r.when} | ${r.tag} |`))
  })

  it("quotes the two-provider example as it is in the repository, in under 30 lines", () => {
    const example = readFileSync(
      fileURLToPath(new URL("../packages/llm/examples/two-providers.ts", import.meta.url)),
      "utf8"
    )
    const body = example.split("\n").filter((l) => !l.startsWith("//")).join("\n").trim()
    expect(readme).toContain(body)
    expect(example.trim().split("\n").length).toBeLessThan(30)
  })

  it("quotes the @effect/ai example as it is in the repository", () => {
    const example = readFileSync(
      fileURLToPath(new URL("../packages/effect-ai/examples/swap-layers.ts", import.meta.url)),
      "utf8"
    )
    expect(readme).toContain("```ts\n" + example.trim() + "\n```")
  })
})
