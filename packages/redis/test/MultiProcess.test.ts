/**
 * Four Node processes on one Redis, each with its own Policy (or response
 * cache) in front of the same simulated provider: they act as one.
 */
import { describe, it } from "@effect/vitest"
import { breakerOpensClusterWide, cacheServesAll, limiterHoldsTheRate, revokedKeySkippedByAll } from "./scenarios.js"
import { redisUrl } from "./stores.js"

describe.skipIf(redisUrl === "")("4 processes on one Redis", () => {
  const target = { REDIS_URL: redisUrl }

  it("a down provider gets at most threshold + K calls in all, plus the calls already in flight when the breaker opened (rules 1, 9)", async () => {
    const { perProcess, upstream } = await breakerOpensClusterWide(target)
    console.log(`4 processes, threshold 5, K 1: ${upstream} calls reached the down provider (${perProcess.join(" + ")})`)
  }, 180_000)

  it("the calls admitted in all stay within 2 % of the limiter's rate under concurrent load for 30 s (rule 21)", async () => {
    const r = await limiterHoldsTheRate(target, 30_000)
    console.log(
      `4 processes × 16 fibers for ${r.windowMillis} ms: ${r.admitted} admitted (${r.perProcess.join(" + ")}), ` +
        `${r.ratePerSecond.toFixed(1)}/s against a limit of ${r.limitPerSecond}/s (${(100 * r.error).toFixed(2)} %); ` +
        `${r.clashes} version clashes, ${r.contended} batches past the retries`
    )
  }, 180_000)

  it("a cache entry written by one process serves the others; identical concurrent requests from all 4 make one upstream call", async () => {
    await cacheServesAll(target)
  }, 180_000)

  it("a key revoked on one process is skipped by all (rule 23)", async () => {
    await revokedKeySkippedByAll(target)
  }, 180_000)
})
