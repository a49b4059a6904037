import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import * as Errors from "../src/Errors.js"
import * as KeyPool from "../src/KeyPool.js"
import * as StateStore from "../src/StateStore.js"

const SECRET = "sk-live-DO-NOT-LEAK"
const keyOf = (name: string, extra: Partial<KeyPool.Key> = {}): KeyPool.Key => ({
  name,
  key: Redacted.make(`${SECRET}-${name}`),
  ...extra
})
const three = [keyOf("k1"), keyOf("k2"), keyOf("k3")]

const run = <A, E>(effect: Effect.Effect<A, E, StateStore.StateStore>) => Effect.provide(effect, StateStore.layerMemory)

const make = (options: Partial<KeyPool.Options> = {}) => KeyPool.make({ name: "openai", keys: three, ...options })

/** One attempt that succeeds with the picked key's name. */
const pickName = (pool: KeyPool.Service, options?: KeyPool.WithKeyOptions) =>
  pool.withKey((k) => Effect.succeed(k.name), options)

const picks = (pool: KeyPool.Service, n: number, options?: KeyPool.WithKeyOptions) =>
  Effect.replicateEffect(pickName(pool, options), n)

/** One attempt that fails with `error` on whichever key it gets; returns that key's name. */
const failOnPicked = (pool: KeyPool.Service, error: unknown) =>
  Effect.gen(function*() {
    let name = ""
    yield* Effect.either(pool.withKey((k) => Effect.suspend(() => {
      name = k.name
      return Effect.fail(error)
    })))
    return name
  })

const keyStatus = (pool: KeyPool.Service, name: string) =>
  Effect.orDie(Effect.flatMap(pool.status, (s) => Effect.fromNullable(s.keys.find((key) => key.name === name))))
const stateOf = (pool: KeyPool.Service, name: string) => Effect.map(keyStatus(pool, name), (k) => k.state)

const upstream429 = (retryAfter?: Duration.DurationInput) =>
  new Errors.RateLimitError({ source: "upstream", ...(retryAfter === undefined ? {} : { retryAfter: Duration.decode(retryAfter) }) })
const down = new Errors.ProviderUnavailableError({ status: 503 })
const unauthorized = new Errors.AuthError({ status: 401 })

const noKey = (pool: KeyPool.Service, options?: KeyPool.WithKeyOptions) => Effect.flip(pickName(pool, options))

describe("KeyPool: picking", () => {
  it.effect("round-robin takes the keys in turn", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      expect(yield* picks(pool, 7)).toEqual(["k1", "k2", "k3", "k1", "k2", "k3", "k1"])
    })))

  it.effect("round-robin skips a key that is out, and keeps the turn of the others", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      yield* pool.disable("k2")
      expect(yield* picks(pool, 4)).toEqual(["k1", "k3", "k1", "k3"])
    })))

  it.effect("weighted 5:1:1 is nginx's smooth sequence: exactly 5, 1, 1 per 7 picks, interleaved", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({
        strategy: "weighted",
        keys: [keyOf("a", { weight: 5 }), keyOf("b", { weight: 1 }), keyOf("c", { weight: 1 })]
      })
      const sequence = ["a", "a", "b", "a", "c", "a", "a"]
      expect(yield* picks(pool, 21)).toEqual([...sequence, ...sequence, ...sequence])
    })))

  it.effect("weighted 3:2 gives each key exactly its weight in every 5 picks", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ strategy: "weighted", keys: [keyOf("a", { weight: 3 }), keyOf("b", { weight: 2 })] })
      for (let round = 0; round < 4; round++) {
        const got = yield* picks(pool, 5)
        expect(got.filter((n) => n === "a").length).toBe(3)
        expect(got.filter((n) => n === "b").length).toBe(2)
      }
    })))

  it.effect("avoid: the next attempt goes to another key first, to the avoided key only when nothing else is healthy", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      // The round-robin turn is k1's, but k1 served the failed attempt.
      expect(yield* pickName(pool, { avoid: new Set(["k1"]) })).toBe("k2")
      expect(yield* pickName(pool, { avoid: new Set(["k3", "k1"]) })).toBe("k2")
      yield* pool.disable("k2")
      yield* pool.disable("k3")
      expect(yield* pickName(pool, { avoid: new Set(["k1"]) })).toBe("k1")
    })))

  it.effect("the picked key carries its name, group and the Redacted secret", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1", { group: "acct" })] })
      const k = yield* pool.withKey((key) => Effect.succeed(key))
      expect(k.name).toBe("k1")
      expect(k.group).toBe("acct")
      expect(Redacted.value(k.key)).toBe(`${SECRET}-k1`)
    })))
})

describe("KeyPool: health", () => {
  it.effect("an upstream 429 cools the key for exactly its retryAfter: out at t+retryAfter-1, back at t+retryAfter", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1")] })
      yield* TestClock.adjust(1_000)
      expect(yield* failOnPicked(pool, upstream429("10 seconds"))).toBe("k1")
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "cooling", until: 11_000, lastError: "RateLimitError" })
      yield* TestClock.adjust(9_999)
      expect(yield* noKey(pool)).toEqual(new Errors.NoKeyAvailableError({ pool: "openai", availableAt: 11_000 }))
      yield* TestClock.adjust(1)
      expect(yield* pickName(pool)).toBe("k1")
    })))

  it.effect("an upstream 429 without retryAfter cools for the default 60 s (or rateLimitCooldown)", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1")] })
      yield* failOnPicked(pool, upstream429())
      yield* TestClock.adjust(59_999)
      expect(yield* stateOf(pool, "k1")).toBe("cooling")
      yield* TestClock.adjust(1)
      expect(yield* stateOf(pool, "k1")).toBe("healthy")

      const custom = yield* KeyPool.make({ name: "custom", keys: [keyOf("k1")], rateLimitCooldown: "5 seconds" })
      yield* failOnPicked(custom, upstream429())
      expect((yield* keyStatus(custom, "k1")).until).toBe(60_000 + 5_000)
    })))

  it.effect("while cooling the other keys take the traffic", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      yield* failOnPicked(pool, upstream429("10 seconds")) // k1
      expect(yield* picks(pool, 4)).toEqual(["k2", "k3", "k2", "k3"])
    })))

  it.effect("a later, shorter 429 never shortens a cooldown", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1"), keyOf("k2")] })
      yield* pool.report("k1", Exit.fail(upstream429("10 seconds")))
      yield* pool.report("k1", Exit.fail(upstream429("2 seconds")))
      expect((yield* keyStatus(pool, "k1")).until).toBe(10_000)
      yield* pool.report("k1", Exit.fail(upstream429("20 seconds")))
      expect((yield* keyStatus(pool, "k1")).until).toBe(20_000)
    })))

  it.effect("a 401 disables the key until enable, however long", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1"), keyOf("k2")] })
      expect(yield* failOnPicked(pool, unauthorized)).toBe("k1")
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "disabled", until: undefined, lastError: "AuthError" })
      yield* TestClock.adjust("30 days")
      expect(yield* picks(pool, 3)).toEqual(["k2", "k2", "k2"])
      yield* pool.enable("k1")
      expect(yield* stateOf(pool, "k1")).toBe("healthy")
      expect(yield* picks(pool, 2)).toContain("k1")
    })))

  it.effect("quota exhaustion parks every key of the group until resetAt; other groups keep serving", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({
        keys: [keyOf("a1", { group: "acct-a" }), keyOf("b1", { group: "acct-b" }), keyOf("a2", { group: "acct-a" })]
      })
      const resetAt = 5 * 60_000
      yield* pool.report("a1", Exit.fail(new Errors.QuotaExhaustedError({ resetAt })))
      const s = yield* pool.status
      expect(s.keys.map((k) => [k.name, k.state, k.until])).toEqual([
        ["a1", "parked", resetAt],
        ["b1", "healthy", undefined],
        ["a2", "parked", resetAt]
      ])
      expect(yield* picks(pool, 3)).toEqual(["b1", "b1", "b1"])
      yield* TestClock.adjust(resetAt - 1)
      expect(yield* stateOf(pool, "a2")).toBe("parked")
      yield* TestClock.adjust(1)
      expect(yield* stateOf(pool, "a1")).toBe("healthy")
      expect(yield* stateOf(pool, "a2")).toBe("healthy")
    })))

  it.effect("a group member already cooling when its group's quota runs out is parked until resetAt, not back at the end of its cooldown", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({
        keys: [keyOf("a1", { group: "acct-a" }), keyOf("b1", { group: "acct-b" }), keyOf("a2", { group: "acct-a" })]
      })
      yield* pool.report("a2", Exit.fail(upstream429("10 seconds")))
      const resetAt = 5 * 60_000
      yield* pool.report("a1", Exit.fail(new Errors.QuotaExhaustedError({ resetAt })))
      expect(yield* keyStatus(pool, "a2")).toMatchObject({ state: "parked", until: resetAt })
      // Its own cooldown ends: it stays parked and the other group takes every call.
      yield* TestClock.adjust("10 seconds")
      expect(yield* stateOf(pool, "a2")).toBe("parked")
      expect(yield* picks(pool, 4)).toEqual(["b1", "b1", "b1", "b1"])
      yield* TestClock.adjust(resetAt - 10_000 - 1)
      expect(yield* stateOf(pool, "a2")).toBe("parked")
      yield* TestClock.adjust(1)
      expect(yield* stateOf(pool, "a2")).toBe("healthy")
    })))

  it.effect("quota without resetAt parks for quotaResetAfter (default 1 hour); a key without group parks alone", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      yield* pool.report("k2", Exit.fail(new Errors.QuotaExhaustedError({})))
      expect(yield* pool.status).toMatchObject({
        keys: [{ state: "healthy" }, { state: "parked", until: 3_600_000 }, { state: "healthy" }]
      })
    })))

  it.effect("keys sharing a rate limit (rateLimitGroup) cool together on a 429 or on headers saying nothing is left", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({
        keys: [keyOf("k1", { rateLimitGroup: "org" }), keyOf("k2", { rateLimitGroup: "org" }), keyOf("k3")]
      })
      yield* pool.report("k1", Exit.fail(upstream429("20 seconds")))
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "cooling", until: 20_000 })
      expect(yield* keyStatus(pool, "k2")).toMatchObject({ state: "cooling", until: 20_000 })
      expect(yield* stateOf(pool, "k3")).toBe("healthy")
      expect([yield* pickName(pool), yield* pickName(pool)]).toEqual(["k3", "k3"])
      yield* TestClock.adjust("20 seconds")
      yield* pool.feedback("k2", { remainingRequests: 0, resetAfter: "5 seconds" })
      expect(yield* stateOf(pool, "k1")).toBe("cooling")
      expect(yield* stateOf(pool, "k2")).toBe("cooling")
      expect(yield* stateOf(pool, "k3")).toBe("healthy")
    })))

  it.effect("rule 23: by default a provider-wide failure (5xx, timeout) never cools a key, however many in a row", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      for (let i = 0; i < 50; i++) yield* pool.report("k1", Exit.fail(down))
      yield* pool.report("k1", Exit.fail(new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(5) })))
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "healthy", consecutiveFailures: 51 })
    })))

  it.effect("opted in with failuresBeforeCooldown: 5 transient failures in a row cool the key for 30 s; 4 do not", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ failuresBeforeCooldown: 5 })
      for (let i = 0; i < 4; i++) yield* pool.report("k1", Exit.fail(down))
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "healthy", consecutiveFailures: 4 })
      yield* pool.report("k1", Exit.fail(new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(5) })))
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "cooling", until: 30_000, lastError: "TimeoutError" })
      yield* TestClock.adjust(29_999)
      expect(yield* stateOf(pool, "k1")).toBe("cooling")
      yield* TestClock.adjust(1)
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "healthy", consecutiveFailures: 0 })
    })))

  it.effect("a success resets the failure count; so does any answer of the provider (400)", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1")] })
      const fail = pool.withKey(() => Effect.fail(down))
      for (let i = 0; i < 4; i++) yield* Effect.either(fail)
      yield* pickName(pool)
      for (let i = 0; i < 4; i++) yield* Effect.either(fail)
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "healthy", consecutiveFailures: 4 })
      yield* Effect.either(pool.withKey(() => Effect.fail(new Errors.BadRequestError({ status: 400 }))))
      expect((yield* keyStatus(pool, "k1")).consecutiveFailures).toBe(0)
    })))

  it.effect("interruption and our own rejections say nothing about the key", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1")], failuresBeforeCooldown: 1 })
      const ours = [
        new Errors.RateLimitError({ source: "local", retryAfter: Duration.seconds(1) }),
        new Errors.CircuitOpenError({ breaker: "b", state: "open" }),
        new Errors.BulkheadFullError({ bulkhead: "b", reason: "queue-full", maxConcurrent: 1, maxQueue: 0 }),
        new Errors.NoKeyAvailableError({ pool: "other" })
      ]
      for (const e of ours) yield* Effect.either(pool.withKey(() => Effect.fail(e)))
      const fiber = yield* Effect.fork(pool.withKey(() => Effect.never))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(fiber)
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "healthy", consecutiveFailures: 0, picks: 5 })
    })))

  it.effect("feedback: no requests left cools the key until the reset, before any 429", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1"), keyOf("k2")] })
      yield* pool.feedback("k1", { remainingRequests: 3, resetAt: 9_000 })
      expect(yield* stateOf(pool, "k1")).toBe("healthy")
      yield* pool.feedback("k1", { remainingRequests: 0, resetAt: 9_000 })
      expect(yield* keyStatus(pool, "k1")).toMatchObject({ state: "cooling", until: 9_000 })
      expect(yield* picks(pool, 2)).toEqual(["k2", "k2"])
      yield* pool.feedback("k2", { remainingTokens: 0, resetAfter: "2 seconds" })
      expect(yield* keyStatus(pool, "k2")).toMatchObject({ state: "cooling", until: 2_000 })
    })))

  it.effect("enable and disable by hand; an unknown name fails with NoSuchElementException", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      yield* pool.disable("k3")
      expect(yield* stateOf(pool, "k3")).toBe("disabled")
      yield* pool.report("k1", Exit.fail(upstream429("1 hour")))
      yield* pool.enable("k1")
      expect(yield* stateOf(pool, "k1")).toBe("healthy")
      const error = yield* Effect.flip(pool.enable("nope"))
      expect(error._tag).toBe("NoSuchElementException")
    })))
})

describe("KeyPool: an answer already done (an Exit)", () => {
  it.effect("teaches the pool as an answer that runs: 401 disables, 429 cools, success resets", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ failuresBeforeCooldown: 2 })
      yield* Effect.either(pool.withKey(() => Effect.fail(unauthorized)))
      expect(yield* stateOf(pool, "k1")).toBe("disabled")
      yield* Effect.either(pool.withKey(() => Effect.fail(upstream429("10 seconds"))))
      expect(yield* keyStatus(pool, "k2")).toMatchObject({ state: "cooling", until: 10_000 })
      yield* Effect.either(pool.withKey(() => Effect.fail(down)))
      expect((yield* keyStatus(pool, "k3")).consecutiveFailures).toBe(1)
      expect(yield* pickName(pool)).toBe("k3")
      expect((yield* keyStatus(pool, "k3")).consecutiveFailures).toBe(0)
    })))
})

describe("KeyPool: no key available", () => {
  it.effect("every key out: NoKeyAvailableError with availableAt = the earliest return; none when all are disabled", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ provider: "openai" })
      yield* TestClock.adjust(1_000)
      yield* pool.report("k1", Exit.fail(upstream429("10 seconds")))
      yield* pool.report("k2", Exit.fail(upstream429("5 seconds")))
      yield* pool.report("k3", Exit.fail(new Errors.QuotaExhaustedError({ resetAt: 7_000 })))
      let ran = false
      const error = yield* Effect.flip(pool.withKey(() => Effect.sync(() => { ran = true })))
      expect(ran).toBe(false)
      expect(error).toEqual(new Errors.NoKeyAvailableError({ pool: "openai", provider: "openai", availableAt: 6_000 }))
      expect((yield* pool.status).availableAt).toBe(6_000)

      for (const k of ["k1", "k2", "k3"]) yield* pool.disable(k)
      const none = yield* noKey(pool)
      expect(none.availableAt).toBeUndefined()
    })))

  it.effect("waitForKey waits exactly until the first key is back", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1"), keyOf("k2")], waitForKey: "10 seconds" })
      yield* pool.report("k1", Exit.fail(upstream429("8 seconds")))
      yield* pool.report("k2", Exit.fail(upstream429("5 seconds")))
      const fiber = yield* Effect.fork(pickName(pool))
      yield* TestClock.adjust(4_999)
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust(1)
      expect(yield* Fiber.join(fiber)).toBe("k2")
    })))

  it.effect("waitForKey fails at once when the first key comes back after waitForKey", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1")], waitForKey: "4 seconds" })
      yield* pool.report("k1", Exit.fail(upstream429("5 seconds")))
      const result = yield* Effect.either(pickName(pool)) // no TestClock.adjust: it must not sleep
      expect(result).toEqual(Either.left(new Errors.NoKeyAvailableError({ pool: "openai", availableAt: 5_000 })))
    })))

  it.effect("waitForKey fails at once when the key would come back at or after the request's deadline", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ keys: [keyOf("k1")], waitForKey: "1 minute" })
      yield* pool.report("k1", Exit.fail(upstream429("5 seconds")))
      const atDeadline = yield* Effect.either(Deadline.within(5_000)(pickName(pool)))
      expect(atDeadline).toEqual(Either.left(new Errors.NoKeyAvailableError({ pool: "openai", availableAt: 5_000 })))
      // One millisecond more of deadline and it waits.
      const fiber = yield* Effect.fork(Deadline.within(5_001)(pickName(pool)))
      yield* TestClock.adjust(5_000)
      expect(yield* Fiber.join(fiber)).toBe("k1")
    })))
})

describe("KeyPool: affinity", () => {
  const sessions = Array.from({ length: 60 }, (_, i) => `session-${i}`)
  const assign = (pool: KeyPool.Service) =>
    Effect.forEach(sessions, (affinity) => Effect.map(pickName(pool, { affinity }), (key) => [affinity, key] as const))

  it.effect("pins a session to one key, spreads sessions over keys, and moves only the sessions of a key that went out", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      const before = new Map(yield* assign(pool))
      // Pinned: the same answer again, whatever the round-robin turn.
      expect(new Map(yield* assign(pool))).toEqual(before)
      const used = new Set(before.values())
      expect(used).toEqual(new Set(["k1", "k2", "k3"]))

      yield* pool.report("k2", Exit.fail(upstream429("10 seconds")))
      const during = new Map(yield* assign(pool))
      for (const s of sessions) {
        if (before.get(s) === "k2") expect(during.get(s)).not.toBe("k2")
        else expect(during.get(s)).toBe(before.get(s))
      }
      yield* TestClock.adjust(10_000)
      expect(new Map(yield* assign(pool))).toEqual(before)
    })))

  it.effect("under affinity each key takes sessions in proportion to its weight (8:1:1 over 3,000 sessions)", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({
        strategy: "weighted",
        keys: [keyOf("heavy", { weight: 8 }), keyOf("light1", { weight: 1 }), keyOf("light2", { weight: 1 })]
      })
      const counts: Record<string, number> = {}
      for (let i = 0; i < 3_000; i++) {
        const key = yield* pickName(pool, { affinity: `user-${i}` })
        counts[key] = (counts[key] ?? 0) + 1
      }
      // Expected 2,400 / 300 / 300; a binomial's standard deviation here is 22 and 16. Unweighted would be 1,000 each.
      expect(counts["heavy"]).toBeGreaterThan(2_300)
      expect(counts["heavy"]).toBeLessThan(2_500)
      for (const light of ["light1", "light2"]) {
        expect(counts[light]).toBeGreaterThan(230)
        expect(counts[light]).toBeLessThan(370)
      }
    })))

  it.effect("affinity still honours avoid", () =>
    run(Effect.gen(function*() {
      const pool = yield* make()
      const home = yield* pickName(pool, { affinity: "s" })
      const other = yield* pickName(pool, { affinity: "s", avoid: new Set([home]) })
      expect(other).not.toBe(home)
    })))
})

describe("KeyPool: observability and secrets", () => {
  it.effect("transitions are published with pool, key name, from, to, at and reason; recovery is seen lazily", () =>
    run(Effect.scoped(Effect.gen(function*() {
      const pool = yield* make()
      const queue = yield* pool.subscribe
      yield* TestClock.adjust(1_000)
      yield* pool.report("k1", Exit.fail(upstream429("10 seconds")))
      const cooling = yield* Queue.take(queue)
      expect(cooling).toMatchObject({ pool: "openai", key: "k1", from: "healthy", to: "cooling", at: 1_000 })
      expect(cooling.reason).toContain("rate limit")
      yield* TestClock.adjust(10_000)
      yield* pickName(pool)
      expect(yield* Queue.take(queue)).toMatchObject({ key: "k1", from: "cooling", to: "healthy", at: 11_000 })
      yield* pool.report("k3", Exit.fail(unauthorized))
      expect(yield* Queue.take(queue)).toMatchObject({ key: "k3", from: "healthy", to: "disabled" })
      expect(yield* Queue.size(queue)).toBe(0)
    }))))

  it.effect("status, transitions, stored state and errors never contain the secret", () =>
    Effect.gen(function*() {
      const store = StateStore.makeMemory()
      const pool = yield* Effect.provideService(make({ name: "leaky" }), StateStore.StateStore, store)
      yield* pool.report("k1", Exit.fail(unauthorized))
      yield* pool.report("k2", Exit.fail(upstream429("1 minute")))
      yield* pool.report("k3", Exit.fail(new Errors.QuotaExhaustedError({})))
      const error = yield* noKey(pool)
      const stored = store.inspect("key-pool/leaky")
      const texts = [
        JSON.stringify(yield* pool.status),
        JSON.stringify(stored),
        JSON.stringify(error),
        error.message,
        String(error)
      ]
      for (const text of texts) expect(text).not.toContain(SECRET)
      // The picked key prints as redacted too.
      yield* pool.enable("k1")
      const picked = yield* pool.withKey((k) => Effect.succeed(k))
      expect(JSON.stringify(picked)).not.toContain(SECRET)
      expect(String(picked.key)).not.toContain(SECRET)
    }))

  it.effect("pools of one name on one store share key health", () =>
    run(Effect.gen(function*() {
      const a = yield* make({ name: "shared" })
      const b = yield* make({ name: "shared" })
      yield* a.report("k1", Exit.fail(unauthorized))
      expect(yield* stateOf(b, "k1")).toBe("disabled")
    })))

  it.effect("a pool rebuilt with another key set keeps the health of the keys still present", () =>
    run(Effect.gen(function*() {
      const a = yield* make({ name: "rebuilt" })
      yield* a.report("k2", Exit.fail(unauthorized))
      const b = yield* make({ name: "rebuilt", keys: [keyOf("k2"), keyOf("k4")] })
      expect((yield* b.status).keys.map((k) => [k.name, k.state])).toEqual([["k2", "disabled"], ["k4", "healthy"]])
    })))

  it.effect("metrics: picks by key name, key state gauge by pool and key name", () =>
    run(Effect.gen(function*() {
      const pool = yield* make({ name: "metered" })
      yield* picks(pool, 4)
      yield* pool.report("k2", Exit.fail(unauthorized))
      const picked = (key: string) =>
        Metric.value(KeyPool.metrics.picks.pipe(Metric.tagged("pool", "metered"), Metric.tagged("key", key)))
      const state = (key: string) =>
        Metric.value(KeyPool.metrics.keyState.pipe(Metric.tagged("pool", "metered"), Metric.tagged("key", key)))
      expect((yield* picked("k1")).count).toBe(2)
      expect((yield* picked("k2")).count).toBe(1)
      expect((yield* state("k2")).value).toBe(3)
      expect((yield* state("k1")).value).toBe(0)
      expect((yield* pool.status).keys.map((k) => k.picks)).toEqual([2, 1, 1])
    })))
})

describe("KeyPool: options", () => {
  const invalid = (options: unknown) =>
    run(Effect.flip(KeyPool.make(options as KeyPool.Options)))

  it.effect.each([
    ["an empty key list", { name: "p", keys: [] }, "keys"],
    ["duplicate key names", { name: "p", keys: [keyOf("k1"), keyOf("k1")] }, "keys.1.name"],
    ["weight 0", { name: "p", strategy: "weighted", keys: [keyOf("k1", { weight: 0 })] }, "keys.0.weight"],
    ["a fractional weight", { name: "p", strategy: "weighted", keys: [keyOf("k1", { weight: 1.5 })] }, "keys.0.weight"],
    ["a weight without strategy weighted", { name: "p", keys: [keyOf("k1", { weight: 2 })] }, "keys.0.weight"],
    ["an empty key name", { name: "p", keys: [keyOf("")] }, "keys.0.name"],
    ["an empty pool name", { name: "", keys: three }, "name"],
    ["an unknown strategy", { name: "p", keys: three, strategy: "random" }, "strategy"],
    ["failuresBeforeCooldown 0", { name: "p", keys: three, failuresBeforeCooldown: 0 }, "failuresBeforeCooldown"],
    ["a negative waitForKey", { name: "p", keys: three, waitForKey: -1 }, "waitForKey"],
    ["an unknown option", { name: "p", keys: three, cooldown: 5 }, "cooldown"]
  ] as const)("%s is an InvalidConfigError naming the field", ([, options, path]) =>
    Effect.gen(function*() {
      const error = yield* invalid(options)
      expect(error).toBeInstanceOf(Errors.InvalidConfigError)
      expect(error.path).toBe(path)
    }))

  it.effect("a plain-string key is refused without printing it", () =>
    Effect.gen(function*() {
      const error = yield* invalid({ name: "p", keys: [{ name: "k1", key: SECRET }] })
      expect(error.path).toBe("keys.0.key")
      expect(error.message).toContain("Redacted")
      expect(error.message).not.toContain(SECRET)
      expect(JSON.stringify(error)).not.toContain(SECRET)
    }))

  it.effect("a secret in an unexpected field is not printed either", () =>
    Effect.gen(function*() {
      const error = yield* invalid({ name: "p", keys: [{ ...keyOf("k1"), apiKey: SECRET }] })
      expect(error.path).toBe("keys.0.apiKey")
      expect(error.message).not.toContain(SECRET)
    }))

  it.effect("the layer provides the KeyPool tag", () =>
    Effect.gen(function*() {
      const pool = yield* KeyPool.KeyPool
      expect(pool.name).toBe("tagged")
      expect(yield* pickName(pool)).toBe("k1")
    }).pipe(Effect.provide(KeyPool.layer({ name: "tagged", keys: three })), Effect.provide(StateStore.layerMemory)))
})
