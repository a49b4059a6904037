/**
 * Redis trouble never fails a call: a store whose Redis is killed and
 * restarted, or stalled, keeps answering on local state, says so once and
 * in its status, and shares state again once Redis is back. Each test runs a
 * redis-server of its own, to stop and start.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Errors from "@resilient-ai/core/Errors"
import * as Policy from "@resilient-ai/core/Policy"
import * as StateStore from "@resilient-ai/core/StateStore"
import * as RedisStore from "@resilient-ai/redis/RedisStore"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import { Redis } from "ioredis"
import { freshPrefix, realSleep, redisServerBinary } from "./stores.js"
import { type RedisServer, startRedisServer } from "./redisServer.js"

/** A store on `url` (default timeouts: 50 ms an operation), its warnings collected in `warnings`. */
const storeOn = (url: string, warnings: Array<string>, prefix = freshPrefix()) =>
  RedisStore.make({ url, prefix }).pipe(
    Effect.provide(Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
    ))
  )

const policyOptions: Policy.Options = {
  deployment: "gpt",
  retry: false,
  circuitBreaker: { trigger: { kind: "failure-rate", window: { kind: "count", size: 20 }, threshold: 0.5, minimumCalls: 10 } },
  rateLimiter: { requestsPerMinute: 1_000_000 }
}

/** Calls through `policy` until `until` holds, every 5 ms; returns how many failed and the slowest. */
const callUntil = (policy: Policy.Service, until: () => Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    let failed = 0
    let calls = 0
    let slowest = 0
    const started = performance.now()
    while (!(yield* until()) && performance.now() - started < 15_000) {
      const t0 = performance.now()
      const exit = yield* Effect.exit(policy.execute(() => Effect.succeed("answer")))
      slowest = Math.max(slowest, performance.now() - t0)
      calls++
      if (Exit.isFailure(exit)) failed++
      yield* realSleep(5)
    }
    return { failed, calls, slowest }
  })

describe.skipIf(!redisServerBinary)("Redis trouble", () => {
  let server: RedisServer
  beforeAll(async () => {
    server = await startRedisServer()
  })
  afterAll(async () => {
    await server.dispose()
  })

  it.scopedLive("Redis killed mid-run and restarted: no call fails, one warning, status degraded and back, state shared again", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const prefix = freshPrefix()
      const { redis, store } = yield* storeOn(server.url, warnings, prefix)
      const policy = yield* Policy.make(policyOptions).pipe(Effect.provideService(StateStore.StateStore, store))
      const connected = Effect.map(redis.status, (s) => s.connected)
      expect(yield* redis.status).toEqual({ connected: true })
      const before = yield* callUntil(policy, () => Effect.succeed(false)).pipe(Effect.timeout("200 millis"), Effect.option)
      expect(before._tag).toBe("None")

      // A loaded test machine can stall a command past 50 ms before the kill: that is an episode of its own.
      const warningsBefore = warnings.length
      yield* Effect.promise(() => server.stop())
      const whileDown = yield* callUntil(policy, () => Effect.map(connected, (c) => !c))
      const status = yield* redis.status
      expect(status.connected).toBe(false)
      expect(status.degradedSince).toBeGreaterThan(0)
      // Down for a while: calls go on at local speed.
      const down = yield* callUntil(policy, () => Effect.succeed(false)).pipe(Effect.timeout("300 millis"), Effect.option)
      expect(down._tag).toBe("None")

      yield* Effect.promise(() => server.start())
      const back = yield* callUntil(policy, () => connected)
      expect(yield* redis.status).toEqual({ connected: true })
      expect(whileDown.failed + back.failed).toBe(0)
      expect(back.calls).toBeGreaterThan(0)
      // One warning for the whole episode (down, reconnecting, back), not one per failed command.
      expect(warnings.length - warningsBefore).toBe(1)
      expect(warnings[warningsBefore]).toContain("degraded to local state")

      // Shared again: a breaker this store opens now is open for another instance.
      const failure = new Errors.ProviderUnavailableError({ status: 503 })
      for (let i = 0; i < 12; i++) yield* Effect.either(policy.execute(() => Effect.fail(failure)))
      expect((yield* policy.status).circuitBreaker?.state).toBe("open")
      const other = yield* storeOn(server.url, warnings, prefix)
      const otherPolicy = yield* Policy.make(policyOptions).pipe(Effect.provideService(StateStore.StateStore, other.store))
      expect((yield* otherPolicy.status).circuitBreaker?.state).toBe("open")
    }), 30_000)

  it.scopedLive("Redis paused (DEBUG SLEEP 1): calls go on within the 50 ms store timeout, and the store comes back", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const { redis, store } = yield* storeOn(server.url, warnings)
      const policy = yield* Policy.make(policyOptions).pipe(Effect.provideService(StateStore.StateStore, store))
      yield* policy.execute(() => Effect.succeed("warm"))
      const admin = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.promise(() => admin.quit()))
      const sleeping = admin.call("DEBUG", "SLEEP", "1")
      yield* realSleep(20)
      let done = false
      sleeping.then(() => (done = true), () => (done = true))
      // The first call meets the stalled Redis: its operations wait out the 50 ms, then go local.
      const t0 = performance.now()
      expect(yield* policy.execute(() => Effect.succeed("first"))).toBe("first")
      expect(performance.now() - t0).toBeLessThan(50 + 40)
      const early = yield* callUntil(policy, () => Effect.succeed(false)).pipe(Effect.timeout("300 millis"), Effect.option)
      expect(early._tag).toBe("None")
      expect((yield* redis.status).connected).toBe(false)
      const paused = yield* callUntil(policy, () => Effect.sync(() => done))
      expect(paused.failed).toBe(0)
      expect(paused.calls).toBeGreaterThan(10)
      // Degraded: the rest run on local state at once.
      expect(paused.slowest).toBeLessThan(50)
      const back = yield* callUntil(policy, () => Effect.map(redis.status, (s) => s.connected))
      expect(back.failed).toBe(0)
      expect(warnings.length).toBe(1)
    }), 30_000)
})
