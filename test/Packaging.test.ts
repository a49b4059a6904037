import * as SourceErrors from "@resilient-ai/core/Errors"
import { describe, expect, it } from "@effect/vitest"
import { execFile, execFileSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import * as RelativeErrors from "../packages/core/src/Errors.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
const fixture = join(repo, "test/fixtures/installed-app")
const tsc = join(repo, "node_modules/typescript/bin/tsc")

// Child processes must not inherit npm's settings for this repository (npm test runs under npm).
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith("npm_")))
const run = (command: string, args: ReadonlyArray<string>, cwd: string): string =>
  execFileSync(command, args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

const runAsync = async (command: string, args: ReadonlyArray<string>, cwd: string): Promise<string> =>
  (await promisify(execFile)(command, args, { cwd, env, encoding: "utf8", maxBuffer: 16 * 1024 * 1024 })).stdout

interface AppResult {
  readonly gatewayUrl: string
  readonly sources: ReadonlyArray<string>
  readonly breaker: string
  readonly answered: string
  readonly gatewayModels: ReadonlyArray<string>
  readonly sameCore: boolean
}

const expectedResult: AppResult = { gatewayUrl: "http://127.0.0.1:8080", sources: ["static", "static", "static"], breaker: "open", answered: "gpt-4o", gatewayModels: ["a"], sameCore: true }

/** Peer versions an app installs: the repository's own, and the lowest of each peer range. */
const variants = {
  current: { effect: "3.22.4", "@effect/platform": "0.97.2", "@effect/platform-node": "0.108.2" },
  // One minor lower, at the bottom of the peer ranges. npm would add @effect/platform-node's own
  // peers at their newest 0.x minor, which wants a newer effect: an app this old pins them too.
  lowest: {
    effect: "3.21.0",
    "@effect/platform": "0.96.0",
    "@effect/platform-node": "0.106.0",
    "@effect/cluster": "0.58.0",
    "@effect/rpc": "0.75.0",
    "@effect/sql": "0.51.0",
    "@effect/workflow": "0.18.0",
    "@effect/experimental": "0.60.0"
  }
} as const

describe("packaging", () => {
  it("in the repository, vitest loads @resilient-ai/* from the sources (one copy of each module)", () => {
    expect(SourceErrors.ProviderUnavailableError).toBe(RelativeErrors.ProviderUnavailableError)
  })

  it("with plain node, the llm, testkit and gateway builds use the built core: the errors they make are core's dist classes", () => {
    // build/test/... is the `tsc -b` output of the fixture app; node resolves @resilient-ai/* to dist/.
    const out = run(process.execPath, [join(repo, "build/test/fixtures/installed-app/app.js")], repo)
    expect(JSON.parse(out)).toEqual(expectedResult)
    const resolved = run(process.execPath, [
      "--input-type=module",
      "-e",
      "console.log(import.meta.resolve('@resilient-ai/core/Errors'))"
    ], join(repo, "packages/llm"))
    expect(resolved.trim()).toMatch(/\/packages\/core\/dist\/Errors\.js$/)
  })

  it(
    "npm pack, install into an app outside the repository, type-check (NodeNext, Bundler) and run with node: current peers and the lowest",
    async () => {
      const root = mkdtempSync(join(tmpdir(), "resilient-ai-app-"))
      try {
        const packs = join(root, "packs")
        mkdirSync(packs)
        const packed = JSON.parse(run("npm", [
          "pack",
          "--json",
          "--pack-destination",
          packs,
          "-w",
          "packages/core",
          "-w",
          "packages/llm",
          "-w",
          "packages/testkit",
          "-w",
          "packages/gateway"
        ], repo)) as ReadonlyArray<{ readonly name: string; readonly filename: string; readonly size: number; readonly files: ReadonlyArray<{ readonly path: string }> }>
        for (const p of packed) {
          const files = p.files.map((f) => f.path)
          expect(files.filter((f) => !f.startsWith("dist/")).sort()).toEqual(["LICENSE", "README.md", "package.json"])
          expect(files).toContain("dist/index.d.ts")
          expect(files).toContain("dist/index.js.map")
          expect(files).toContain("dist/index.d.ts.map")
        }
        // The two apps install, type-check and run side by side.
        await Promise.all(Object.entries(variants).map(async ([variant, peers]) => {
          const app = join(root, variant)
          mkdirSync(app)
          for (const file of ["app.ts", "tsconfig.nodenext.json", "tsconfig.bundler.json"]) {
            copyFileSync(join(fixture, file), join(app, file))
          }
          writeFileSync(
            join(app, "package.json"),
            JSON.stringify({
              name: `installed-app-${variant}`,
              private: true,
              type: "module",
              dependencies: {
                ...Object.fromEntries(packed.map((p) => [p.name, `file:${join(packs, p.filename)}`])),
                ...peers,
                "@types/node": "20.19.43"
              }
            })
          )
          await runAsync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"], app)
          // The lowest peers are checked with the libraries' declarations too (no skipLibCheck): ours must
          // type-check against the oldest effect the ranges allow (DOM types are for @effect/platform's).
          // The Bundler check reads the same exports maps, so it runs once, on the current peers.
          if (variant === "lowest") {
            await runAsync(process.execPath, [tsc, "-p", "tsconfig.nodenext.json", "--skipLibCheck", "false", "--lib", "ES2022,DOM"], app)
          } else {
            await runAsync(process.execPath, [tsc, "-p", "tsconfig.nodenext.json"], app)
            await runAsync(process.execPath, [tsc, "-p", "tsconfig.bundler.json"], app)
          }
          const out = await runAsync(process.execPath, ["out/app.js"], app)
          expect({ variant, result: JSON.parse(out) }).toEqual({ variant, result: expectedResult })
          const effects = (await runAsync("npm", ["ls", "effect", "--all", "--parseable"], app)).trim().split("\n")
          expect({ variant, effects: [...new Set(effects.filter((l) => l.endsWith("/effect")))].length })
            .toEqual({ variant, effects: 1 })
        }))
      } finally {
        rmSync(root, { recursive: true, force: true })
      }
    },
    180_000
  )
})
