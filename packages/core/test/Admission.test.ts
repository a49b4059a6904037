import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Admission from "../src/Admission.js"
import * as Bulkhead from "../src/Bulkhead.js"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import * as Errors from "../src/Errors.js"
import * as KeyPool from "../src/KeyPool.js"
import * as Policy from "../src/Policy.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as StateStore from "../src/StateStore.js"

const down = new Errors.ProviderUnavailableError({ status: 503 })
const upstream429 = (seconds: number) => new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(seconds) })

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "success"
  if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
  return Option.match(Cause.failureOption(exit.cause), { onNone: () => "defect", onSome: (e) => `failure ${String(e)}` })
}

/** A gate that records what it is asked and told, refusing when `refuse` is set. */
const recordingGate = (name: string, log: Array<string>, refuse = false): Admission.Gate<string, Admission.Permit, string> => ({
  acquire: (request) => {
    log.push(`${name} acquire ${request}`)
    if (refuse) return Exit.fail(`${name} refused`)
    return Exit.succeed({
      release: (exit) => {
        log.push(`${name} release ${outcomeOf(exit)}`)
        return Exit.void
      }
    })
  }
})

describe("Admission: one contract for every gate (rule 27)", () => {
  it.effect("executeAll takes permits outermost first and releases them innermost first with the call's outcome", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const result = yield* Admission.executeAll(
        [recordingGate("a", log), recordingGate("b", log)],
        "req",
        () => Effect.sync(() => log.push("call"))
      )
      expect(result).toBe(3)
      expect(log).toEqual(["a acquire req", "b acquire req", "call", "b release success", "a release success"])
    }))

  it.effect("a gate that refuses fails the call with its refusal; the gates before it are released with that refusal", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const exit = yield* Effect.exit(Admission.executeAll(
        [recordingGate("a", log), recordingGate("b", log, true), recordingGate("c", log)],
        "req",
        () => Effect.sync(() => log.push("call"))
      ))
      expect(exit).toEqual(Exit.fail("b refused"))
      expect(log).toEqual(["a acquire req", "b acquire req", "a release failure b refused"])
    }))

  it.effect("a call interrupted from outside releases every permit, as interrupted", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const fiber = yield* Effect.fork(Admission.executeAll([recordingGate("a", log), recordingGate("b", log)], "req", () => Effect.never))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(log.slice(2)).toEqual([
        "b release interrupted",
        "a release interrupted"
      ])
    }))

  it.effect("a call that throws is a defect, and its permits are released", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const exit = yield* Effect.exit(Admission.execute(recordingGate("a", log), "req", (): Effect.Effect<number> => {
        throw new Error("bad call")
      }))
      expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map((c) => c._tag))).toEqual(Option.some("Die"))
      expect(log).toEqual(["a acquire req", "a release defect"])
    }))

  it.effect("each policy's execute is its gate: a breaker's gate refuses while it is open, and counts the refusal", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ name: "b", trigger: { kind: "consecutive", failures: 1 } })
      yield* Effect.either(breaker.execute(Effect.fail(down)))
      const refused = yield* Effect.flip(Admission.execute(breaker.gate, undefined, () => Effect.succeed(1)))
      expect(refused._tag).toBe("CircuitOpenError")
      expect((yield* breaker.status).notPermitted).toBe(1)
    }).pipe(Effect.provide(StateStore.layerMemory)))
})

describe("RateLimiter: pause on an upstream 429 belongs to the limiter (rule 21)", () => {
  it.effect("a limiter used alone pauses until the Retry-After of an upstream 429 met by a call it admitted", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "alone", requestsPerMinute: 100 })
      yield* Effect.either(limiter.execute(Effect.fail(upstream429(5))))
      expect((yield* limiter.status).pausedUntil).toEqual(Option.some(5_000))
      const refused = yield* Effect.flip(limiter.acquire())
      expect(refused.source).toBe("local")
      yield* TestClock.adjust("5 seconds")
      yield* limiter.acquire()
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("an upstream 429 built by a second copy of the core package pauses it too (errors are matched by tag)", () =>
    Effect.gen(function*() {
      // A query string makes vite load the module a second time: another class, as a second installed copy would be.
      const path = "../src/Errors.js?second-copy"
      const copy: typeof Errors = yield* Effect.promise(() => import(/* @vite-ignore */ path))
      expect(copy.RateLimitError).not.toBe(Errors.RateLimitError)
      const foreign = new copy.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(3) })
      expect(foreign instanceof Errors.RateLimitError).toBe(false)
      const limiter = yield* RateLimiter.make({ name: "copies", requestsPerMinute: 100 })
      yield* Effect.either(limiter.execute(Effect.fail(foreign)))
      expect((yield* limiter.status).pausedUntil).toEqual(Option.some(3_000))
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("pauseOnUpstreamRateLimit: false leaves it running; a local refusal never pauses it", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "no-pause", requestsPerMinute: 100, pauseOnUpstreamRateLimit: false })
      yield* Effect.either(limiter.execute(Effect.fail(upstream429(5))))
      expect((yield* limiter.status).pausedUntil).toEqual(Option.none())
      const other = yield* RateLimiter.make({ name: "local", requestsPerMinute: 100 })
      yield* Effect.either(other.execute(Effect.fail(new Errors.RateLimitError({ source: "local", retryAfter: Duration.seconds(5) }))))
      expect((yield* other.status).pausedUntil).toEqual(Option.none())
    }).pipe(Effect.provide(StateStore.layerMemory)))
})

describe("Policy: composes existing instances", () => {
  it.effect("a breaker shared by two deployments: failures through one refuse calls through the other", () =>
    Effect.gen(function*() {
      const shared = yield* CircuitBreaker.make({ name: "account", trigger: { kind: "consecutive", failures: 2 } })
      const a = yield* Policy.make({ deployment: "a", circuitBreaker: shared, retry: false })
      const b = yield* Policy.make({ deployment: "b", circuitBreaker: shared, retry: false })
      yield* Effect.either(a.execute(() => Effect.fail(down)))
      yield* Effect.either(b.execute(() => Effect.fail(down)))
      const refused = yield* Effect.flip(a.execute(() => Effect.succeed("never called")))
      expect(refused._tag).toBe("CircuitOpenError")
      expect(a.circuitBreaker).toBe(shared)
      expect((yield* b.status).circuitBreaker?.state).toBe("open")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("a bulkhead and a limiter given as services are the ones the policy admits through", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "pool", maxConcurrent: 1 })
      const limiter = yield* RateLimiter.make({ name: "shared", requestsPerMinute: 3 })
      const a = yield* Policy.make({ deployment: "a", bulkhead, rateLimiter: limiter, retry: false, circuitBreaker: false })
      const b = yield* Policy.make({ deployment: "b", bulkhead, rateLimiter: limiter, retry: false, circuitBreaker: false })
      const holding = yield* Effect.fork(a.execute(() => Effect.never))
      yield* TestClock.adjust("1 millis")
      const full = yield* Effect.flip(b.execute(() => Effect.succeed(1)))
      expect(full._tag).toBe("BulkheadFullError")
      yield* Fiber.interrupt(holding)
      yield* b.execute(() => Effect.succeed(1))
      // Three requests went through the one limiter: a's, b's refused one (granted, then the bulkhead refused), b's.
      expect((yield* limiter.status).requests?.available).toBe(0)
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("execute(effect, options): the effect reads its attempt and key from Policy.CurrentAttempt, once per attempt", () =>
    Effect.gen(function*() {
      const pool = yield* KeyPool.make({
        name: "keys",
        keys: [{ name: "k1", key: Redacted.make("sk-1") }, { name: "k2", key: Redacted.make("sk-2") }]
      })
      const policy = yield* Policy.make({ deployment: "d", keyPool: pool, retry: { maxRetries: 1, jitter: "none", baseDelay: 0 } })
      const seen: Array<string> = []
      const call = Effect.flatMap(Policy.CurrentAttempt, ({ attempt, key }) => {
        seen.push(`${key?.name}#${attempt}`)
        return attempt === 1 ? Effect.fail(down) : Effect.succeed(`answered by ${key?.name}`)
      })
      const detailed = yield* policy.executeDetailed(call, { tokens: 10 })
      expect(detailed).toMatchObject({ value: "answered by k2", keyName: "k2", backupKey: true, attempts: 2 })
      expect(seen).toEqual(["k1#1", "k2#2"])
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("KeyPool.execute(effect, options): the effect reads its key from KeyPool.CurrentKey", () =>
    Effect.gen(function*() {
      const pool = yield* KeyPool.make({ name: "keys", keys: [{ name: "k1", key: Redacted.make("sk-1") }] })
      const name = yield* pool.execute(Effect.map(KeyPool.CurrentKey, (k) => k.name), { affinity: "session-1" })
      expect(name).toBe("k1")
      yield* Effect.either(pool.execute(Effect.flatMap(KeyPool.CurrentKey, () => Effect.fail(new Errors.AuthError({ status: 401 })))))
      expect((yield* pool.status).keys[0]?.state).toBe("disabled")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("a call's retryOnResult retries an answer it rejects, through the Policy's retry", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "d", retry: { maxRetries: 2, jitter: "none", baseDelay: 0 } })
      const answers = ["", "", "hello"]
      const fiber = yield* Effect.fork(policy.executeDetailed(
        Effect.map(Policy.CurrentAttempt, ({ attempt }) => answers[attempt - 1] ?? "late"),
        { retryOnResult: (text) => text === "" }
      ))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toMatchObject({ value: "hello", attempts: 3 })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("Duration.infinity switches a wait limit off: bulkhead queue wait, limiter wait, key wait", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1, maxQueue: 1, maxQueueWait: Duration.infinity })
      const holder = yield* Effect.fork(bulkhead.execute(Effect.sleep("1 hour")))
      yield* TestClock.adjust("1 millis")
      const waiter = yield* Effect.fork(bulkhead.execute(Effect.succeed("served")))
      yield* TestClock.adjust("1 hour")
      yield* Fiber.join(holder)
      expect(yield* Fiber.join(waiter)).toBe("served")

      const limiter = yield* RateLimiter.make({
        name: "slow",
        buckets: { requests: { capacity: 1, refillInterval: "1 hour" } },
        maxWait: Duration.infinity
      })
      yield* limiter.acquire()
      const second = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust("1 hour")
      expect((yield* Fiber.join(second)).waited).toBe(3_600_000)

      const pool = yield* KeyPool.make({ name: "wait", keys: [{ name: "k1", key: Redacted.make("sk-1") }], waitForKey: Duration.infinity })
      yield* pool.report("k1", Exit.fail(upstream429(7_200)))
      const keyed = yield* Effect.fork(pool.execute(Effect.map(KeyPool.CurrentKey, (k) => k.name)))
      yield* TestClock.adjust("2 hours")
      expect(yield* Fiber.join(keyed)).toBe("k1")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it("states the order of rule 18 once, as data", () => {
    expect(Policy.order).toEqual([
      "totalTimeout",
      "retry",
      "circuitBreaker",
      "keyPool",
      "rateLimiter",
      "bulkhead",
      "attemptTimeout"
    ])
  })
})

describe("CircuitBreaker: status counts (rule 12)", () => {
  it.effect("reports calls, failures, slow calls and slow failures of the window, and 'not rated yet' below the minimum", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        name: "counts",
        trigger: { kind: "failure-rate", window: { kind: "count", size: 10 }, threshold: 0.9, minimumCalls: 4 },
        slowCallDuration: "1 second"
      })
      const slow = <A, E>(self: Effect.Effect<A, E>) => Effect.zipRight(TestClock.adjust("2 seconds"), self)
      yield* breaker.execute(Effect.succeed(1))
      yield* Effect.either(breaker.execute(Effect.fail(down)))
      const notRated = yield* breaker.status
      expect(notRated).toMatchObject({ calls: 2, failures: 1, slowCalls: 0, slowFailures: 0, minimumCalls: 4, rated: false })
      const f1 = yield* Effect.fork(breaker.execute(slow(Effect.succeed(1))))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(f1)
      const f2 = yield* Effect.fork(Effect.either(breaker.execute(slow(Effect.fail(down)))))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(f2)
      expect(yield* breaker.status).toMatchObject({
        state: "closed",
        calls: 4,
        failures: 2,
        slowCalls: 2,
        slowFailures: 1,
        rated: true,
        failureRate: 0.5,
        slowCallRate: 0.5
      })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("an answer counts as a failure only when classifyResult says so (an empty completion)", () =>
    Effect.gen(function*() {
      const plain = yield* CircuitBreaker.make({ name: "plain", trigger: { kind: "consecutive", failures: 2 } })
      const strict = yield* CircuitBreaker.make({
        name: "strict",
        trigger: { kind: "consecutive", failures: 2 },
        classifyResult: (value) => (value === "" ? "failure" : undefined)
      })
      for (const breaker of [plain, strict]) {
        yield* breaker.execute(Effect.succeed(""))
        yield* breaker.execute(Effect.succeed(""))
      }
      expect((yield* plain.status).state).toBe("closed")
      expect((yield* strict.status).state).toBe("open")
      // Non-empty answers stay successes.
      const other = yield* CircuitBreaker.make({
        name: "other",
        trigger: { kind: "consecutive", failures: 1 },
        classifyResult: (value) => (value === "" ? "failure" : undefined)
      })
      yield* other.execute(Effect.succeed("hello"))
      expect((yield* other.status).state).toBe("closed")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("maxHalfOpenDuration: Duration.infinity lets a half-open probe take as long as it takes (rule 10 off)", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        name: "patient",
        trigger: { kind: "consecutive", failures: 1 },
        openDuration: "1 second",
        maxHalfOpenDuration: Duration.infinity
      })
      yield* Effect.either(breaker.execute(Effect.fail(down)))
      yield* TestClock.adjust("1 second")
      const probe = yield* Effect.fork(breaker.execute(Effect.zipRight(Effect.sleep("10 minutes"), Effect.succeed("late"))))
      yield* TestClock.adjust("5 minutes")
      expect((yield* breaker.status).state).toBe("half-open")
      yield* TestClock.adjust("5 minutes")
      expect(yield* Fiber.join(probe)).toBe("late")
      expect((yield* breaker.status).state).toBe("closed")
    }).pipe(Effect.provide(StateStore.layerMemory)))
})
