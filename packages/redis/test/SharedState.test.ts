/**
 * Two instances on one Redis act as one: two stores on two connections with
 * one prefix, each under its own `Policy`, as two processes would have them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Errors from "@resilient-ai/core/Errors"
import * as KeyPool from "@resilient-ai/core/KeyPool"
import * as Policy from "@resilient-ai/core/Policy"
import * as Machines from "@resilient-ai/core/StateMachines"
import * as StateStore from "@resilient-ai/core/StateStore"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { type Instance, instances, realSleep, redisUrl } from "./stores.js"

const on = <A, E>(instance: Instance, effect: Effect.Effect<A, E, StateStore.StateStore>) =>
  Effect.provideService(effect, StateStore.StateStore, instance.store)

const down = new Errors.ProviderUnavailableError({ status: 503 })

describe.skipIf(redisUrl === "")("two instances on one Redis", () => {
  it.scopedLive("a breaker opened through one instance refuses calls through the other within 100 ms (rule 1)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const options: Policy.Options = {
        deployment: "gpt",
        retry: false,
        circuitBreaker: { trigger: { kind: "consecutive", failures: 3 }, openDuration: "30 seconds" }
      }
      const policyA = yield* on(a!, Policy.make(options))
      const policyB = yield* on(b!, Policy.make(options))
      // B has just read the breaker: its cached view is fresh (closed) when A opens it.
      expect(yield* policyB.execute(() => Effect.succeed("ok"))).toBe("ok")
      for (let i = 0; i < 3; i++) yield* Effect.either(policyA.execute(() => Effect.fail(down)))
      expect((yield* policyA.status).circuitBreaker?.state).toBe("open")
      const openedAt = performance.now()
      let refusedAfter: number | undefined
      let calls = 0
      while (refusedAfter === undefined && performance.now() - openedAt < 1000) {
        const result = yield* Effect.either(policyB.execute(() => Effect.succeed("ok")))
        calls++
        if (Either.isLeft(result)) {
          expect(result.left._tag).toBe("CircuitOpenError")
          refusedAfter = performance.now() - openedAt
        } else {
          yield* realSleep(5)
        }
      }
      expect(refusedAfter).toBeDefined()
      // 100 ms of staleness, plus a call's own scheduling on a loaded machine.
      expect(refusedAfter!).toBeLessThan(130)
      expect(calls).toBeGreaterThan(0)
    }))

  it.scopedLive("the token buckets are shared: both instances together admit at most the limit", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const options: Policy.Options = {
        deployment: "gpt",
        retry: false,
        circuitBreaker: false,
        rateLimiter: { requestsPerMinute: 10 }
      }
      const policies = [yield* on(a!, Policy.make(options)), yield* on(b!, Policy.make(options))]
      const results = yield* Effect.forEach(
        Array.from({ length: 40 }, (_, i) => policies[i % 2]!),
        (policy) => Effect.either(policy.execute(() => Effect.succeed("ok"))),
        { concurrency: 8 }
      )
      const admitted = results.filter(Either.isRight).length
      const refused = results.filter((r) => Either.isLeft(r) && r.left._tag === "RateLimitError").length
      expect(admitted).toBe(10)
      expect(refused).toBe(30)
    }))

  it.scopedLive("a key cooled on one instance (429 with Retry-After) is skipped by the other within the 100 ms refresh interval (rule 24)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const keys = [{ name: "k1", key: Redacted.make("sk-1") }, { name: "k2", key: Redacted.make("sk-2") }]
      const make = (instance: Instance) =>
        on(
          instance,
          Effect.flatMap(KeyPool.make({ name: "keys", keys }), (keyPool) =>
            Policy.make({ deployment: "gpt", keyPool, retry: false, circuitBreaker: false }))
        )
      const policyA = yield* make(a!)
      const policyB = yield* make(b!)
      const limited = new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(30) })
      const first = yield* Effect.either(policyA.executeDetailed(({ key }) =>
        key?.name === "k1" ? Effect.fail(limited) : Effect.succeed(key?.name)
      ))
      expect(Either.isLeft(first)).toBe(true)
      const cooledAt = performance.now()
      // B picks from its view, read in the background every 50 ms: the cooling shows within the
      // refresh interval (100 ms) and a round trip; until then B may still pick k1.
      let lastK1 = 0
      const used: Array<string | undefined> = []
      while (performance.now() - cooledAt < 400) {
        const name = (yield* policyB.executeDetailed(({ key }) => Effect.succeed(key?.name))).keyName
        if (name === "k1") lastK1 = performance.now() - cooledAt
        used.push(name)
        yield* realSleep(5)
      }
      // 100 ms of staleness, plus scheduling on a loaded machine.
      expect(lastK1).toBeLessThan(160)
      expect(used.slice(-10)).toEqual(Array.from({ length: 10 }, () => "k2"))
      const status = yield* policyB.status
      expect(status.keyPool?.keys.find((k) => k.name === "k1")?.state).toBe("cooling")
    }))

  it.scopedLive("the retry budget is shared: first attempts through either count in one window (rule 17)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const options: Policy.Options = { deployment: "gpt", circuitBreaker: false, retry: { maxRetries: 3, baseDelay: "1 millis" } }
      const policyA = yield* on(a!, Policy.make(options))
      const policyB = yield* on(b!, Policy.make(options))
      for (let i = 0; i < 5; i++) yield* policyA.execute(() => Effect.succeed(i))
      for (let i = 0; i < 3; i++) yield* policyB.execute(() => Effect.succeed(i))
      // A read answers from a view at most 100 ms old (refreshInterval): past that, both see all 8.
      yield* realSleep(110)
      expect((yield* policyA.status).retryBudget?.attempts).toBe(8)
      expect((yield* policyB.status).retryBudget?.attempts).toBe(8)
      // Retries taken through A leave fewer for B: the window's allowance is spent once.
      const allowed = (yield* policyA.status).retryBudget!.allowed
      let retriesA = 0
      yield* Effect.either(policyA.execute(({ attempt }) => {
        if (attempt > 1) retriesA++
        return Effect.fail(down)
      }))
      yield* realSleep(110)
      const afterA = (yield* policyB.status).retryBudget!
      expect(afterA.retries).toBe(retriesA)
      expect(afterA.retries).toBeLessThanOrEqual(allowed)
    }))

  it.scopedLive("the adaptive limit learns from both instances: one window, one learned limit (rule 29)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2, { refreshInterval: 0 })
      const config: Machines.AdaptiveLimit.Config = {
        initialLimit: 10,
        minLimit: 1,
        maxLimit: 100,
        windowMillis: 1000,
        slowFactor: 3,
        backoff: 0.5,
        saturation: 0.8,
        workBase: 100,
        smoothing: 0.2,
        initialHangMillis: 60_000,
        minJudgedMillis: 100
      }
      const now = Date.now()
      const slotA = a!.store.adaptiveLimit("gpt", config)
      const slotB = b!.store.adaptiveLimit("gpt", config)
      const none = () => 0
      yield* slotA.step({ _tag: "Admitted", inFlight: 1 }, now, none)
      yield* slotB.step({ _tag: "Admitted", inFlight: 1 }, now + 1, none)
      yield* slotA.step({ _tag: "Drop" }, now + 2, none)
      const [seen] = yield* slotB.step({ _tag: "Read" }, now + 3, none)
      expect(seen.admissions).toBe(2)
      expect(seen.drops).toBe(1)
      // The window closes with a drop in it: the limit halves, for both.
      const [closedB] = yield* slotB.step({ _tag: "Read" }, now + 1001, none)
      expect(closedB.limit).toBe(5)
      const [closedA] = yield* slotA.step({ _tag: "Read" }, now + 1002, none)
      expect(closedA.limit).toBe(5)
    }))
})
