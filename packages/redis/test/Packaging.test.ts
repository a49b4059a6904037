/**
 * @resilient-ai/redis as an application gets it: packed with core, installed
 * into an app outside the repository, run with plain node on the test's Redis.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile, execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { freshPrefix, redisUrl } from "./stores.js"

const repo = fileURLToPath(new URL("../../..", import.meta.url))

// Child processes must not inherit npm's settings for this repository (npm test runs under npm).
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith("npm_")))
const runAsync = async (command: string, args: ReadonlyArray<string>, cwd: string, extra: Record<string, string> = {}) =>
  (await promisify(execFile)(command, args, { cwd, env: { ...env, ...extra }, encoding: "utf8", maxBuffer: 16 * 1024 * 1024 }))
    .stdout

/**
 * Two stores on one prefix, as two processes would have them: a breaker
 * opened through the first refuses through the second. Prints one JSON line.
 */
const app = `
import { Errors, Policy, StateStore } from "@resilient-ai/core"
import { RedisStore } from "@resilient-ai/redis"
import { Effect } from "effect"

const down = new Errors.ProviderUnavailableError({ status: 503 })
const options = { deployment: "gpt", retry: false, circuitBreaker: { trigger: { kind: "consecutive", failures: 2 }, openDuration: "1 minute" } }
const program = Effect.gen(function*() {
  const a = yield* RedisStore.make({ url: process.env.REDIS_URL, prefix: process.env.PREFIX })
  const b = yield* RedisStore.make({ url: process.env.REDIS_URL, prefix: process.env.PREFIX, refreshInterval: 0 })
  const policyA = yield* Effect.provideService(Policy.make(options), StateStore.StateStore, a.store)
  const policyB = yield* Effect.provideService(Policy.make(options), StateStore.StateStore, b.store)
  for (let i = 0; i < 2; i++) yield* Effect.either(policyA.execute(() => Effect.fail(down)))
  const refused = yield* Effect.either(policyB.execute(() => Effect.succeed("ok")))
  const status = yield* b.redis.status
  return { refusedBy: refused._tag === "Left" ? refused.left._tag : "nothing", connected: status.connected }
})
Effect.runPromise(Effect.scoped(program)).then((r) => console.log(JSON.stringify(r)))
`

describe.skipIf(redisUrl === "")("packaging of @resilient-ai/redis", () => {
  it("npm pack with core, install into an app outside the repository, run with node: two stores share one breaker", async () => {
    const root = mkdtempSync(join(tmpdir(), "resilient-ai-redis-app-"))
    try {
      const packs = join(root, "packs")
      mkdirSync(packs)
      const packed = JSON.parse(
        execFileSync("npm", ["pack", "--json", "--pack-destination", packs, "-w", "packages/core", "-w", "packages/redis"], {
          cwd: repo,
          env,
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"]
        })
      ) as ReadonlyArray<{ readonly name: string; readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }>
      const redis = packed.find((p) => p.name === "@resilient-ai/redis")
      expect(redis).toBeDefined()
      const files = redis!.files.map((f) => f.path)
      expect(files.filter((f) => !f.startsWith("dist/")).sort()).toEqual(["LICENSE", "README.md", "package.json"])
      expect(files).toContain("dist/index.d.ts")
      expect(files).toContain("dist/RedisStore.js")
      // What is internal ships (the public modules import it) but is not exported.
      expect(files).toContain("dist/internal/sharedCell.js")
      const dir = join(root, "app")
      mkdirSync(dir)
      writeFileSync(join(dir, "app.mjs"), app)
      writeFileSync(
        join(dir, "package.json"),
        JSON.stringify({
          name: "installed-redis-app",
          private: true,
          type: "module",
          dependencies: { ...Object.fromEntries(packed.map((p) => [p.name, `file:${join(packs, p.filename)}`])), effect: "3.22.4" }
        })
      )
      await runAsync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"], dir)
      const out = await runAsync(process.execPath, ["app.mjs"], dir, { REDIS_URL: redisUrl, PREFIX: freshPrefix() })
      expect(JSON.parse(out)).toEqual({ refusedBy: "CircuitOpenError", connected: true })
      // The internal modules are not reachable from an app.
      await expect(runAsync(process.execPath, ["--input-type=module", "-e", "await import('@resilient-ai/redis/internal/link')"], dir))
        .rejects.toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }, 180_000)
})
