import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const repo = fileURLToPath(new URL("..", import.meta.url))
const read = (path: string): string => readFileSync(join(repo, path), "utf8")

/**
 * The examples of the packages' READMEs. `tsc -b` type-checks them (each package's tsconfig
 * includes `examples/`); the runnable ones run here with plain node from that build, so
 * `@resilient-ai/*` resolves to the packages' `dist/` as in an app.
 */
const examples = [
  { pkg: "core", file: "policies-with-layers", prints: "echo: hello (after 3 calls)" },
  { pkg: "testkit", file: "simulated-outage", prints: "answered by {\"claude\":10,\"gpt-4o\":50} in 61 virtual minutes" },
  { pkg: "testkit", file: "chaos-providers", prints: "20 answers in 31 calls with chaos on, 20 in 20 with it off" },
  // Calls OpenAI and Anthropic: type-checked only.
  { pkg: "llm", file: "two-providers", prints: undefined },
  // Its deployments point at a closed loopback port: the static reply answers.
  {
    pkg: "effect-ai",
    file: "swap-layers",
    prints: "Hello! Our assistant is briefly unavailable. Please try again in a minute. (gpt-4o → claude, claude → static)"
  }
] as const

describe("package examples", () => {
  for (const { file, pkg, prints } of examples) {
    it(`packages/${pkg}/README.md quotes examples/${file}.ts as it is`, () => {
      expect(read(`packages/${pkg}/README.md`)).toContain("```ts\n" + read(`packages/${pkg}/examples/${file}.ts`).trim() + "\n```")
    })
    if (prints !== undefined) {
      it(`examples/${file}.ts of ${pkg} runs with node and prints what its README says`, () => {
        const out = execFileSync(process.execPath, [join(repo, `packages/${pkg}/build/examples/${file}.js`)], { encoding: "utf8" })
        expect(out.trim()).toBe(prints)
        expect(read(`packages/${pkg}/README.md`)).toContain(`prints \`${prints}\``)
        // Loading @effect/ai's generated provider clients alone takes seconds on a busy machine.
      }, 30_000)
    }
  }
})
