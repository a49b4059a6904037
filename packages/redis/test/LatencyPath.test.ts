/**
 * What a successful call costs on Redis: at most one round trip on its
 * latency path (the limiter's reservation), with the key pick and the
 * outcome records answered from the slot's view and committed behind; and
 * the delay that behind commit adds to another process's view of the breaker.
 */
import { describe, expect, it } from "@effect/vitest"
import * as KeyPool from "@resilient-ai/core/KeyPool"
import * as Policy from "@resilient-ai/core/Policy"
import * as StateStore from "@resilient-ai/core/StateStore"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { type Instance, instances, realSleep, redisUrl } from "./stores.js"

const on = <A, E>(instance: Instance, effect: Effect.Effect<A, E, StateStore.StateStore>) =>
  Effect.provideService(effect, StateStore.StateStore, instance.store)

const breakerOnly: Policy.Options = {
  deployment: "gpt",
  retry: false,
  // A count window: every success changes the breaker's state, so its record has a write to make.
  circuitBreaker: { trigger: { kind: "failure-rate", window: { kind: "count", size: 50 }, threshold: 0.5 } }
}

const options = (keyPool: KeyPool.Service): Policy.Options => ({
  ...breakerOnly,
  keyPool,
  rateLimiter: { requestsPerMinute: 1_000_000 }
})

const policyOn = (instance: Instance) =>
  on(
    instance,
    Effect.flatMap(
      KeyPool.make({ name: "keys", keys: [1, 2, 3].map((i) => ({ name: `k${i}`, key: Redacted.make(`sk-${i}`) })) }),
      (keyPool) => Policy.make(options(keyPool))
    )
  )

describe.skipIf(redisUrl === "")("the latency path of a call on the Redis store", () => {
  it.scopedLive("a successful call waits for one round trip (the reservation); the pick and the records commit behind", () =>
    Effect.gen(function*() {
      // A view that stays fresh 2 s: the count below is what the path costs, not how late a loaded
      // machine ran the background reads.
      const [a] = yield* instances(1, { refreshInterval: "2 seconds" })
      const policy = yield* policyOn(a!)
      // The first calls read every slot once; then the background reads keep them fresh.
      for (let i = 0; i < 5; i++) yield* policy.execute(() => Effect.succeed("ok"))
      yield* realSleep(60)
      const before = yield* a!.redis.counters
      const calls = 100
      for (let i = 0; i < calls; i++) yield* policy.execute(() => Effect.succeed("ok"))
      const after = yield* a!.redis.counters
      const awaited = after.awaited - before.awaited
      // One reservation per call, and nothing else.
      expect(awaited).toBe(calls)
      // The pick, the breaker's and the key's records and the retry budget's count were made,
      // answered at once, and written behind: the breaker's window in Redis holds every call.
      expect(after.answered - before.answered).toBeGreaterThanOrEqual(3 * calls)
      yield* realSleep(200)
      const [reader] = yield* instances(1, { prefix: a!.prefix })
      const status = yield* (yield* policyOn(reader!)).status
      expect(status.circuitBreaker?.calls).toBe(50)
    }), 60_000)

  it.scopedLive("without a limiter a successful call waits for no round trip at all", () =>
    Effect.gen(function*() {
      const [a] = yield* instances(1, { refreshInterval: "2 seconds" })
      const policy = yield* on(a!, Policy.make(breakerOnly))
      for (let i = 0; i < 5; i++) yield* policy.execute(() => Effect.succeed("ok"))
      yield* realSleep(60)
      const before = yield* a!.redis.counters
      for (let i = 0; i < 100; i++) yield* policy.execute(() => Effect.succeed("ok"))
      const after = yield* a!.redis.counters
      expect(after.awaited - before.awaited).toBe(0)
    }), 60_000)

  it.scopedLive("a success recorded behind reaches another process's breaker within the refresh interval and a round trip", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const policyA = yield* policyOn(a!)
      const policyB = yield* policyOn(b!)
      expect((yield* policyB.status).circuitBreaker?.calls).toBe(0)
      for (let i = 0; i < 10; i++) yield* policyA.execute(() => Effect.succeed("ok"))
      const recordedAt = performance.now()
      let seenAfter: number | undefined
      while (seenAfter === undefined && performance.now() - recordedAt < 1000) {
        if ((yield* policyB.status).circuitBreaker?.calls === 10) seenAfter = performance.now() - recordedAt
        else yield* realSleep(2)
      }
      expect(seenAfter).toBeDefined()
      // 100 ms of staleness at most, plus the behind commit's round trip and a loaded machine's scheduling.
      expect(seenAfter!).toBeLessThan(160)
    }), 60_000)
})
