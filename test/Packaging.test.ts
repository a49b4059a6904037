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
const effectAiFixture = join(repo, "test/fixtures/installed-effect-ai")
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

const expectedEffectAiResult = { static: true, source: "static", aiError: "HttpRequestError", ours: "ConnectionError" }

interface Packed {
  readonly name: string
  readonly filename: string
  readonly size: number
  readonly files: ReadonlyArray<{ readonly path: string }>
}

/** `npm pack` of the workspaces into `dir` (each builds its dist first); a tarball holds its dist, README, LICENSE and package.json only. */
const pack = (dir: string, workspaces: ReadonlyArray<string>): ReadonlyArray<Packed> => {
  const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir, ...workspaces.flatMap((w) => ["-w", w])], repo)) as ReadonlyArray<Packed>
  for (const p of packed) {
    const files = p.files.map((f) => f.path)
    expect(files.filter((f) => !f.startsWith("dist/")).sort()).toEqual(["LICENSE", "README.md", "package.json"])
    expect(files).toContain("dist/index.d.ts")
    expect(files).toContain("dist/index.js.map")
    expect(files).toContain("dist/index.d.ts.map")
  }
  return packed
}

/** How many copies of `name` an app's `npm ls` shows. */
const copiesOf = async (app: string, name: string): Promise<number> => {
  const paths = (await runAsync("npm", ["ls", name, "--all", "--parseable"], app)).trim().split("\n")
  return new Set(paths.filter((l) => l.endsWith(`/node_modules/${name}`))).size
}

const effectAiPacks: ReadonlyArray<string> = ["@resilient-ai/core", "@resilient-ai/llm", "@resilient-ai/effect-ai"]

/**
 * The @effect/ai app (`fixtures/installed-effect-ai`) with @resilient-ai/effect-ai's tarballs and
 * the repository's peers: installed, type-checked (NodeNext), run with node; effect and the
 * @effect/* peers that @effect/ai and its providers share with the repository resolve to one copy each.
 */
const effectAiApp = async (app: string, packs: string, packed: ReadonlyArray<Packed>): Promise<void> => {
  mkdirSync(app)
  for (const file of ["app.ts", "tsconfig.nodenext.json"]) copyFileSync(join(effectAiFixture, file), join(app, file))
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({
      name: "installed-effect-ai-app",
      private: true,
      type: "module",
      dependencies: {
        ...Object.fromEntries(packed.map((p) => [p.name, `file:${join(packs, p.filename)}`])),
        effect: "3.22.4",
        "@effect/platform": "0.97.2",
        "@effect/platform-node": "0.108.2",
        "@effect/experimental": "0.61.1",
        "@effect/rpc": "0.76.2",
        "@effect/ai": "0.37.0",
        "@effect/ai-openai": "0.41.0",
        "@effect/ai-anthropic": "0.27.0",
        "@types/node": "20.19.43"
      }
    })
  )
  await runAsync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"], app)
  await runAsync(process.execPath, [tsc, "-p", "tsconfig.nodenext.json"], app)
  const out = await runAsync(process.execPath, ["out/app.js"], app)
  expect(JSON.parse(out)).toEqual(expectedEffectAiResult)
  const peers = ["effect", "@effect/platform", "@effect/experimental", "@effect/rpc", "@effect/ai"]
  const copies = await Promise.all(peers.map(async (name) => [name, await copiesOf(app, name)] as const))
  expect(Object.fromEntries(copies)).toEqual(Object.fromEntries(peers.map((name) => [name, 1])))
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
    "npm pack, install into apps outside the repository, type-check (NodeNext, Bundler) and run with node: current peers and the lowest; an @effect/ai app on @resilient-ai/effect-ai with one copy of each @effect peer",
    async () => {
      const root = mkdtempSync(join(tmpdir(), "resilient-ai-app-"))
      try {
        const packs = join(root, "packs")
        mkdirSync(packs)
        const all = pack(packs, ["packages/core", "packages/llm", "packages/testkit", "packages/gateway", "packages/effect-ai"])
        const packed = all.filter((p) => p.name !== "@resilient-ai/effect-ai")
        // The three apps install, type-check and run side by side.
        const effectAi = effectAiApp(join(root, "effect-ai"), packs, all.filter((p) => effectAiPacks.includes(p.name)))
        await Promise.all([effectAi, ...Object.entries(variants).map(async ([variant, peers]) => {
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
          expect({ variant, effects: await copiesOf(app, "effect") }).toEqual({ variant, effects: 1 })
        })])
      } finally {
        rmSync(root, { recursive: true, force: true })
      }
    },
    420_000
  )
})
