/**
 * The multi-process breaker and limiter scenarios on a Redis Cluster of 3
 * masters: every slot's key carries its hash tag, so each script runs on
 * one node, and 4 processes still act as one.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as RedisStore from "@resilient-ai/redis/RedisStore"
import * as Effect from "effect/Effect"
import { type RedisCluster, startRedisCluster } from "./redisServer.js"
import { breakerOpensClusterWide, cacheServesAll, limiterHoldsTheRate } from "./scenarios.js"
import { freshPrefix, redisServerBinary } from "./stores.js"

describe.skipIf(!redisServerBinary)("4 processes on a 3-node Redis Cluster", () => {
  let cluster: RedisCluster | undefined
  const target = () => ({ REDIS_CLUSTER: cluster!.urls.join(",") })

  beforeAll(async () => {
    cluster = await startRedisCluster()
  }, 180_000)
  afterAll(async () => {
    await cluster?.dispose()
  })

  it("a store made with `cluster: [urls]` connects to the Cluster", async () => {
    const prefix = freshPrefix()
    const connected = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const { redis } = yield* RedisStore.make({ cluster: cluster!.urls, prefix })
      return (yield* redis.status).connected
    })))
    expect(connected).toBe(true)
  }, 30_000)

  it("a down provider gets at most threshold + K calls in all, plus those in flight when it opened (rules 1, 9)", async () => {
    const { perProcess, upstream } = await breakerOpensClusterWide(target())
    console.log(`Cluster, 4 processes, threshold 5, K 1: ${upstream} calls reached the down provider (${perProcess.join(" + ")})`)
  }, 180_000)

  it("the calls admitted in all stay within 2 % of the limiter's rate under concurrent load for 10 s (rule 21)", async () => {
    const r = await limiterHoldsTheRate(target(), 10_000)
    console.log(`Cluster: ${r.admitted} admitted in ${r.windowMillis} ms, ${r.ratePerSecond.toFixed(1)}/s against ${r.limitPerSecond}/s (${(100 * r.error).toFixed(2)} %)`)
  }, 180_000)

  it("the response cache: one upstream call for identical concurrent requests from all 4", async () => {
    await cacheServesAll(target())
  }, 180_000)
})
