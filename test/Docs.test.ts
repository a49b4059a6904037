import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const repo = fileURLToPath(new URL("..", import.meta.url))
const read = (path: string): string => readFileSync(join(repo, path), "utf8")

/** The TypeScript and Markdown files of the project (sources, tests, examples, docs). */
const projectFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(join(repo, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      return ["node_modules", "dist", "build", "fixtures"].includes(entry.name) ? [] : projectFiles(path)
    }
    return /\.(ts|md)$/.test(entry.name) ? [path] : []
  })

const semantics = read("docs/semantics.md")
const ruleNumbers = [...semantics.matchAll(/^(\d+)\. /gm)].map((m) => Number(m[1]))

describe("docs/semantics.md", () => {
  it("numbers the policy rules from 1, each once and in order", () => {
    expect(ruleNumbers.length).toBeGreaterThanOrEqual(28)
    expect(ruleNumbers).toEqual(Array.from({ length: ruleNumbers.length }, (_, i) => i + 1))
  })

  it("is what the code, the tests and the READMEs cite: no reference to another rules page, no rule it lacks", () => {
    // This file names the old page to look for it.
    const files = ["README.md", ...projectFiles("packages"), ...projectFiles("test")].filter((f) => f !== "test/Docs.test.ts")
    const cited = new Set<number>()
    for (const file of files) {
      const text = read(file)
      expect({ file, foreign: text.includes("SEMANTICS.md") }).toEqual({ file, foreign: false })
      for (const m of text.matchAll(/\b[Rr]ules? (\d+)(?:\s*[-–]\s*(\d+))?/g)) {
        cited.add(Number(m[1]))
        if (m[2] !== undefined) cited.add(Number(m[2]))
      }
    }
    expect([...cited].filter((n) => n < 1 || n > ruleNumbers.length)).toEqual([])
  })
})
