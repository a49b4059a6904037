import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import * as Errors from "../src/Errors.js"
import * as KeyPool from "../src/KeyPool.js"
import * as Policy from "../src/Policy.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as RequestBudget from "../src/RequestBudget.js"
import * as StateStore from "../src/StateStore.js"

const down = new Errors.ProviderUnavailableError({ status: 503 })
const run = <A, E>(effect: Effect.Effect<A, E, StateStore.StateStore>) => Effect.provide(effect, StateStore.layerMemory)
const noJitter = { jitter: "none", baseDelay: "100 millis" } as const

describe("Policy: the order of rule 18", () => {
  it.effect("the breaker sees every attempt: one request whose 3 attempts fail opens a 3-failure breaker", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: { ...noJitter, maxRetries: 2 },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 3 } }
      })
      let calls = 0
      const fiber = yield* Effect.fork(Effect.either(policy.execute(() => Effect.suspend(() => { calls++; return Effect.fail(down) }))))
      yield* TestClock.adjust("1 seconds")
      expect(yield* Fiber.join(fiber)).toEqual(Either.left(down))
      expect(calls).toBe(3)
      expect((yield* policy.status).circuitBreaker?.state).toBe("open")
    })))

  it.effect("a circuit-open error is not retried against the same breaker", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: { ...noJitter, maxRetries: 5 },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } }
      })
      let calls = 0
      const call = () => Effect.suspend(() => { calls++; return Effect.fail(down) })
      const first = yield* Effect.fork(Effect.either(policy.execute(call)))
      yield* TestClock.adjust("10 seconds")
      const result = yield* Fiber.join(first)
      // The first attempt opened the breaker; the retry met CircuitOpenError and stopped at once.
      expect(Either.isLeft(result) && result.left._tag).toBe("CircuitOpenError")
      expect(calls).toBe(1)
    })))

  it.effect("a retry's sleep holds no bulkhead permit", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: { jitter: "none", baseDelay: "5 seconds", maxRetries: 1 },
        bulkhead: { maxConcurrent: 1 },
        circuitBreaker: false
      })
      let failed = false
      const flaky = policy.execute(() => Effect.suspend(() => (failed ? Effect.succeed("a") : ((failed = true), Effect.fail(down)))))
      const a = yield* Effect.fork(flaky)
      yield* TestClock.adjust("1 seconds") // a is sleeping before its retry
      const b = yield* policy.execute(() => Effect.succeed("b"))
      expect(b).toBe("b")
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(a)).toBe("a")
    })))

  it.effect("the attempt timeout interrupts one attempt and counts as a breaker failure; the retry makes another", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        attemptTimeout: "2 seconds",
        retry: { ...noJitter, maxRetries: 1 },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 5 } }
      })
      const attempts: Array<number> = []
      let interrupted = 0
      const fiber = yield* Effect.fork(
        policy.execute(({ attempt }) => {
          attempts.push(attempt)
          return attempt === 1
            ? Effect.onInterrupt(Effect.never, () => Effect.sync(() => { interrupted++ }))
            : Effect.succeed("second")
        })
      )
      yield* TestClock.adjust("3 seconds")
      expect(yield* Fiber.join(fiber)).toBe("second")
      expect(attempts).toEqual([1, 2])
      expect(interrupted).toBe(1)
      expect((yield* policy.status).circuitBreaker?.consecutiveFailures).toBe(0) // the success reset it
    })))

  it.effect("the total timeout bounds all attempts and sets the deadline the retry respects", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        totalTimeout: "3 seconds",
        retry: { jitter: "none", baseDelay: "2 seconds", maxRetries: 5 },
        circuitBreaker: false
      })
      let calls = 0
      const seen: Array<Option.Option<number>> = []
      const fiber = yield* Effect.fork(Effect.either(policy.execute(() =>
        Effect.flatMap(Deadline.remaining, (left) => {
          calls++
          seen.push(left)
          return Effect.fail(down)
        })
      )))
      yield* TestClock.adjust("10 seconds")
      // t=0 attempt, t=2 s retry; the next sleep (4 s) would cross the deadline: give up with the last error.
      expect(yield* Fiber.join(fiber)).toEqual(Either.left(down))
      expect(calls).toBe(2)
      expect(seen).toEqual([Option.some(3000), Option.some(1000)])
    })))

  it.effect("the request's own deadline cutting an attempt is not held against the provider", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: false,
        attemptTimeout: "10 seconds",
        circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } }
      })
      const fiber = yield* Effect.fork(
        Effect.either(Deadline.within(200)(policy.execute(() => Effect.delay(Effect.succeed("slow but healthy"), "800 millis"))))
      )
      yield* TestClock.adjust("1 seconds")
      const result = yield* Fiber.join(fiber)
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "TimeoutError", phase: "total" })
      expect((yield* policy.status).circuitBreaker?.state).toBe("closed")
    })))

  it.effect("a local rate-limit rejection is not recorded by the breaker", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: false,
        rateLimiter: { requestsPerMinute: 1 },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } }
      })
      yield* policy.execute(() => Effect.succeed("ok"))
      const refused = yield* Effect.either(policy.execute(() => Effect.succeed("ok")))
      expect(Either.isLeft(refused) && refused.left).toMatchObject({ _tag: "RateLimitError", source: "local" })
      expect((yield* policy.status).circuitBreaker?.state).toBe("closed")
    })))

  it.effect("an upstream 429 with Retry-After pauses the deployment's limiter until then", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: false,
        rateLimiter: { requestsPerMinute: 100 },
        circuitBreaker: false
      })
      yield* Effect.either(policy.execute(() =>
        Effect.fail(new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(7) }))
      ))
      const paused = yield* Effect.either(policy.execute(() => Effect.succeed("ok")))
      expect(Either.isLeft(paused) && paused.left).toMatchObject({ _tag: "RateLimitError", source: "local" })
      yield* TestClock.adjust("7 seconds")
      expect(yield* policy.execute(() => Effect.succeed("ok"))).toBe("ok")
    })))

  it.effect("a bulkhead rejection fails fast and is neither retried nor recorded", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: { ...noJitter, maxRetries: 3 },
        bulkhead: { maxConcurrent: 1 },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } }
      })
      const holder = yield* Effect.fork(policy.execute(() => Effect.never))
      yield* Effect.yieldNow()
      const refused = yield* Effect.either(policy.execute(() => Effect.succeed("ok")))
      expect(Either.isLeft(refused) && refused.left._tag).toBe("BulkheadFullError")
      expect((yield* policy.status).circuitBreaker?.state).toBe("closed")
      yield* Fiber.interrupt(holder)
    })))
})

describe("Policy: a call's duration is the provider's (rule 6)", () => {
  /** Two calls at once through a breaker that opens on half of 2 calls slower than 1 s: its status once both ended. */
  const twoCallsAtOnce = (stages: Partial<Policy.Options>, call: () => Effect.Effect<string>, settleIn: Duration.DurationInput) =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: false,
        circuitBreaker: {
          trigger: { kind: "failure-rate", window: { kind: "count", size: 10 }, threshold: 0.5, minimumCalls: 2, slowCallRateThreshold: 0.5 },
          slowCallDuration: "1 seconds"
        },
        ...stages
      })
      const first = yield* Effect.fork(policy.execute(call))
      const second = yield* Effect.fork(policy.execute(call))
      yield* TestClock.adjust(settleIn)
      expect([yield* Fiber.join(first), yield* Fiber.join(second)]).toEqual(["ok", "ok"])
      return (yield* policy.status).circuitBreaker
    }))

  it.effect("the time a call waits in our own bulkhead's queue does not make it slow", () =>
    Effect.gen(function*() {
      // Each provider call takes 800 ms; the second waits 800 ms for the first's permit: 1.6 s in all, none slow.
      const breaker = yield* twoCallsAtOnce({ bulkhead: { maxConcurrent: 1, maxQueue: 10 } }, () => Effect.as(Effect.sleep("800 millis"), "ok"), "2 seconds")
      expect([breaker?.slowCalls, breaker?.state]).toEqual([0, "closed"])
    }))

  it.effect("the time a call waits for the rate limiter's tokens does not make it slow", () =>
    Effect.gen(function*() {
      // The provider answers at once; the second call waits 5 s for a token.
      const breaker = yield* twoCallsAtOnce(
        { rateLimiter: { buckets: { requests: { capacity: 1, refillInterval: "5 seconds" } }, maxWait: "10 seconds" } },
        () => Effect.succeed("ok"),
        "6 seconds"
      )
      expect([breaker?.slowCalls, breaker?.state]).toEqual([0, "closed"])
    }))

  it.effect("a provider call slower than slowCallDuration is still slow behind a queue", () =>
    Effect.gen(function*() {
      const breaker = yield* twoCallsAtOnce({ bulkhead: { maxConcurrent: 1, maxQueue: 10 } }, () => Effect.as(Effect.sleep("1500 millis"), "ok"), "3 seconds")
      expect([breaker?.slowCalls, breaker?.state]).toEqual([2, "open"])
    }))
})

describe("Policy: with a key pool", () => {
  const pool = KeyPool.make({
    name: "openai-keys",
    keys: [
      { name: "k1", key: Redacted.make("sk-one") },
      { name: "k2", key: Redacted.make("sk-two") }
    ]
  })

  it.effect("a retry after a 429 goes to the other key, and the answer says a backup key answered", () =>
    run(Effect.gen(function*() {
      const keyPool = yield* pool
      const policy = yield* Policy.make({
        deployment: "primary",
        keyPool,
        retry: { ...noJitter, maxRetries: 2 },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } }
      })
      const used: Array<string> = []
      const answer = yield* policy.executeDetailed(({ key }) => {
        used.push(key?.name ?? "none")
        return key?.name === "k1"
          ? Effect.fail(new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(30) }))
          : Effect.succeed(Redacted.value(key?.key ?? Redacted.make("")))
      }).pipe(Effect.fork, Effect.tap(() => TestClock.adjust("1 seconds")), Effect.flatMap(Fiber.join))
      expect(used).toEqual(["k1", "k2"])
      expect(answer).toEqual({ value: "sk-two", deployment: "primary", keyName: "k2", backupKey: true, attempts: 2 })
      const status = yield* policy.status
      expect(status.circuitBreaker?.state).toBe("closed") // a 429 is the key pool's business
      expect(status.keyPool?.keys.map((k) => [k.name, k.state])).toEqual([["k1", "cooling"], ["k2", "healthy"]])
    })))

  it.effect("a revoked key (401) is disabled and the retry uses the other key; the next call starts there", () =>
    run(Effect.gen(function*() {
      const keyPool = yield* pool
      const policy = yield* Policy.make({ deployment: "primary", keyPool, retry: { ...noJitter, maxRetries: 1 } })
      const used: Array<string> = []
      const call = ({ key }: Policy.Attempt) => {
        used.push(key?.name ?? "none")
        return key?.name === "k1" ? Effect.fail(new Errors.AuthError({ status: 401 })) : Effect.succeed("ok")
      }
      // An AuthError is not retryable: the call fails, but k1 is disabled for the next one.
      const first = yield* Effect.either(policy.execute(call))
      expect(Either.isLeft(first) && first.left._tag).toBe("AuthError")
      expect(yield* policy.execute(call)).toBe("ok")
      expect(used).toEqual(["k1", "k2"])
      expect((yield* policy.status).keyPool?.keys[0]?.state).toBe("disabled")
    })))

  it.effect("the rate limiter is per key: one key's budget spent does not block the other", () =>
    run(Effect.gen(function*() {
      const keyPool = yield* pool
      const policy = yield* Policy.make({ deployment: "primary", keyPool, retry: false, rateLimiter: { requestsPerMinute: 1 } })
      const used: Array<string> = []
      const call = ({ key }: Policy.Attempt) => Effect.sync(() => used.push(key?.name ?? "none"))
      yield* policy.execute(call)
      yield* policy.execute(call)
      const third = yield* Effect.either(policy.execute(call))
      expect(used).toEqual(["k1", "k2"])
      expect(Either.isLeft(third) && third.left).toMatchObject({ _tag: "RateLimitError", source: "local" })
      expect(Object.keys((yield* policy.status).keyRateLimiters ?? {})).toEqual(["k1", "k2"])
    })))

  it.effect("with every key out, the call fails with NoKeyAvailableError, which the breaker ignores", () =>
    run(Effect.gen(function*() {
      const keyPool = yield* pool
      yield* keyPool.disable("k1")
      yield* keyPool.disable("k2")
      const policy = yield* Policy.make({
        deployment: "primary",
        keyPool,
        circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } }
      })
      const result = yield* Effect.either(policy.execute(() => Effect.succeed("never")))
      expect(Either.isLeft(result) && result.left._tag).toBe("NoKeyAvailableError")
      expect((yield* policy.status).circuitBreaker?.state).toBe("closed")
    })))
})

describe("Policy: a local limiter's Retry-After with a key pool (rule 15)", () => {
  const oneRequestPer10s = { buckets: { requests: { capacity: 1, refillInterval: "10 seconds" } }, maxWait: 0 } as const

  /** A second call right after the first is refused by the limiter: it is retried exactly 10 s later, and answered. */
  const retriedAfterTheLimitersWait = (stages: Pick<Policy.Options, "keyPool" | "rateLimiter">) =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "primary", retryBudget: false, retry: { ...noJitter, maxRetries: 3 }, ...stages })
      let calls = 0
      const call = () => Effect.sync(() => ++calls)
      yield* policy.execute(call)
      const second = yield* Effect.fork(policy.execute(call))
      yield* TestClock.adjust("9999 millis")
      // Before: retries after 100, 200 and 400 ms of backoff, each refused, and the call failed after 700 ms.
      expect(Option.isNone(yield* Fiber.poll(second))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(second)).toBe(2)
      expect(calls).toBe(2)
    }))

  it.effect("is obeyed exactly: the pool's healthy key does not make the retry come back early", () =>
    Effect.gen(function*() {
      const keyPool = yield* Effect.provide(
        KeyPool.make({ name: "one-key", keys: [{ name: "k1", key: Redacted.make("sk-one") }] }),
        StateStore.layerMemory
      )
      yield* retriedAfterTheLimitersWait({ keyPool, rateLimiter: oneRequestPer10s })
    }))

  it.effect("is obeyed exactly with one limiter for every key: another healthy key cannot escape it", () =>
    run(Effect.gen(function*() {
      const keyPool = yield* KeyPool.make({
        name: "two-keys",
        keys: [{ name: "k1", key: Redacted.make("sk-one") }, { name: "k2", key: Redacted.make("sk-two") }]
      })
      const rateLimiter = yield* RateLimiter.make({ name: "shared", ...oneRequestPer10s })
      yield* retriedAfterTheLimitersWait({ keyPool, rateLimiter })
    })))
})

describe("Policy: registry", () => {
  it.effect("Policies.layer builds one policy per deployment, by name", () =>
    Effect.gen(function*() {
      const registry = yield* Policy.Policies
      expect(registry.all.map((p) => p.deployment)).toEqual(["a", "b"])
      expect(Option.map(registry.get("b"), (p) => p.deployment)).toEqual(Option.some("b"))
      expect(Option.isNone(registry.get("c"))).toBe(true)
    }).pipe(Effect.provide(Policy.layer([{ deployment: "a" }, { deployment: "b" }]).pipe(Layer.provide(StateStore.layerMemory)))))

  it.effect("a deployment defined twice is a config error naming it", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(Policy.layer([{ deployment: "a" }, { deployment: "a" }])).pipe(Effect.scoped, Effect.provide(StateStore.layerMemory))
      )
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path: "1.deployment" } })
    }))

  it.effect("a bad timeout is a config error naming the field, never a thrown Duration.decode; 0 and negative are refused", () =>
    Effect.gen(function*() {
      // "5s" as a JavaScript caller or a hand-written config would pass it.
      const typo: Duration.DurationInput = JSON.parse("\"5s\"")
      const inputs: ReadonlyArray<Duration.DurationInput> = [typo, "-5 seconds", 0]
      for (const attemptTimeout of inputs) {
        const exit = yield* Effect.exit(run(Policy.make({ deployment: "a", attemptTimeout })))
        expect(Exit.isFailure(exit) && exit.cause).toMatchObject({
          _tag: "Fail",
          error: { _tag: "InvalidConfigError", path: "attemptTimeout" }
        })
      }
      const total = yield* Effect.exit(run(Policy.make({ deployment: "a", totalTimeout: -1 })))
      expect(Exit.isFailure(total) && total.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path: "totalTimeout" } })
    }))

  it.effect("a bad option of one policy names the deployment's policy and field", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(run(Policy.make({ deployment: "a", bulkhead: { maxConcurrent: 0 } })))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({
        error: { _tag: "InvalidConfigError", path: "bulkhead.maxConcurrent" }
      })
    }))

  it.effect("appliesTimeLimit: the call puts the attempt's limit around its opening only; the total timeout sets the deadline without cutting the call (rule 28)", () =>
    Effect.gen(function*() {
      const policy = yield* run(Policy.make({ deployment: "a", attemptTimeout: "1 second", totalTimeout: "3 seconds", retry: false }))
      // Opens in 0.5 s, then runs 10 s: longer than both timeouts, and cut by neither.
      const long = policy.execute(
        ({ timeLimit }) => Effect.zipRight(timeLimit(Effect.sleep("500 millis")), Effect.as(Effect.sleep("10 seconds"), "whole answer")),
        { appliesTimeLimit: true }
      )
      const fiber = yield* Effect.fork(long)
      yield* TestClock.adjust("11 seconds")
      expect(yield* Fiber.join(fiber)).toBe("whole answer")
      // An opening slower than the limit fails as the attempt timeout.
      const late = policy.execute(({ timeLimit }) => timeLimit(Effect.sleep("2 seconds")), { appliesTimeLimit: true })
      const lateFiber = yield* Effect.fork(Effect.flip(late))
      yield* TestClock.adjust("3 seconds")
      expect(yield* Fiber.join(lateFiber)).toMatchObject({ _tag: "TimeoutError", phase: "attempt" })
      // Without the option the whole call is limited, and `timeLimit` is the identity.
      const whole = policy.execute(({ timeLimit }) => timeLimit(Effect.sleep("2 seconds")))
      const wholeFiber = yield* Effect.fork(Effect.flip(whole))
      yield* TestClock.adjust("3 seconds")
      expect(yield* Fiber.join(wholeFiber)).toMatchObject({ _tag: "TimeoutError", phase: "attempt" })
      const untimed = policy.execute(({ timeLimit }) => Effect.as(timeLimit(Effect.sleep("500 millis")), "ok"))
      const untimedFiber = yield* Effect.fork(untimed)
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(untimedFiber)).toBe("ok")
    }))

  it.effect("appliesTimeLimit: the request's deadline bounds the opening as the attempt timeout does", () =>
    Effect.gen(function*() {
      const policy = yield* run(Policy.make({ deployment: "a", attemptTimeout: "10 seconds", retry: false }))
      const call = policy.execute(({ timeLimit }) => timeLimit(Effect.sleep("5 seconds")), { appliesTimeLimit: true })
      const fiber = yield* Effect.fork(Effect.flip(Deadline.within(2_000)(call)))
      yield* TestClock.adjust("6 seconds")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "TimeoutError", phase: "total" })
    }))

  it.effect("bulkhead: { adaptive }: an adaptive limit in the bulkhead's place; over it a call with a later step to go to is refused at once, one without waits for a slot, and a bad option names its path", () =>
    Effect.gen(function*() {
      const policy = yield* run(Policy.make({ deployment: "a", retry: false, bulkhead: { adaptive: { initialLimit: 2 } } }))
      const slow = policy.execute(() => Effect.as(Effect.sleep("1 second"), "ok"))
      const first = yield* Effect.fork(slow)
      const second = yield* Effect.fork(slow)
      yield* TestClock.adjust("10 millis")
      // Rule 25: a step of a chain with a later step runs under a `maxWait`.
      const third = yield* Effect.flip(Deadline.maxWait(1_000)(slow))
      expect(third).toMatchObject({ _tag: "BulkheadFullError", reason: "adaptive-limit", maxConcurrent: 2 })
      expect(third).toEqual(expect.not.objectContaining({ waitedMillis: expect.anything() }))
      expect((yield* policy.status).adaptiveLimit).toMatchObject({ name: "a", limit: 2, running: 2, queued: 0 })
      const last = yield* Effect.fork(slow)
      yield* TestClock.adjust("10 millis")
      expect((yield* policy.status).adaptiveLimit).toMatchObject({ limit: 2, running: 2, queued: 1 })
      yield* TestClock.adjust("980 millis")
      expect([yield* Fiber.join(first), yield* Fiber.join(second)]).toEqual(["ok", "ok"])
      expect((yield* policy.status).adaptiveLimit).toMatchObject({ running: 1, queued: 0 })
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(last)).toBe("ok")
      const bad = yield* Effect.exit(run(Policy.make({ deployment: "a", bulkhead: { adaptive: { minLimit: 0 } } })))
      expect(Exit.isFailure(bad) && bad.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path: "bulkhead.adaptive.minLimit" } })
    }))
})

describe("Policy in a tracked request: each attempt is charged once", () => {
  it.effect("every call the policy makes, first try and retries, is one attempt of the request", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "primary", retry: { ...noJitter, maxRetries: 2 }, circuitBreaker: false })
      let calls = 0
      const flaky = () => Effect.suspend(() => (++calls < 3 ? Effect.fail(down) : Effect.succeed("ok")))
      const fiber = yield* Effect.fork(
        Effect.zip(policy.execute(flaky), RequestBudget.spent).pipe(RequestBudget.track({ maxAttempts: 10 }))
      )
      yield* TestClock.adjust("1 seconds")
      const [answer, spent] = yield* Fiber.join(fiber)
      expect(answer).toBe("ok")
      expect(calls).toBe(3)
      expect(Option.map(spent, (s) => s.attempts)).toEqual(Option.some(3))
    })))

  it.effect("a spent budget stops the retry before any gate: its next run takes no rate-limiter grant", () =>
    run(Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: { ...noJitter, maxRetries: 3 },
        rateLimiter: { requestsPerMinute: 10 },
        circuitBreaker: false
      })
      let calls = 0
      const fiber = yield* Effect.fork(Effect.either(
        policy.execute(() => Effect.suspend(() => { calls++; return Effect.fail(down) })).pipe(RequestBudget.track({ maxAttempts: 1 }))
      ))
      yield* TestClock.adjust("1 seconds")
      const result = yield* Fiber.join(fiber)
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "BudgetExhaustedError", budget: "attempts" })
      expect(calls).toBe(1)
      expect((yield* policy.status).rateLimiter?.requests?.available).toBe(9)
    })))
})

describe("Policy: a bad config", () => {
  it.effect("names every bad field of every stage at once, each under its stage's path", () =>
    run(Effect.gen(function*() {
      const error = yield* Effect.flip(Policy.make({
        deployment: "primary",
        retry: { maxRetries: -1, baseDelay: "soon" as Duration.DurationInput },
        bulkhead: { maxConcurrent: 0 }
      }))
      expect(error).toMatchObject({ _tag: "InvalidConfigError", component: 'Policy "primary"', path: "retry.maxRetries" })
      expect((error.problems ?? []).map((p) => p.path)).toEqual(["retry.maxRetries", "retry.baseDelay", "bulkhead.maxConcurrent"])
    })))

  it.effect("one bad stage keeps its own component and every problem under its path", () =>
    run(Effect.gen(function*() {
      const error = yield* Effect.flip(Policy.make({ deployment: "primary", retry: { maxRetries: -1, baseDelay: "soon" as Duration.DurationInput } }))
      expect(error.component).toBe('Retry "primary"')
      expect((error.problems ?? []).map((p) => p.path)).toEqual(["retry.maxRetries", "retry.baseDelay"])
    })))

  it.effect("Policy.layer names the deployment's index", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(Policy.layer([{ deployment: "a" }, { deployment: "b", bulkhead: { maxConcurrent: 0 } }])).pipe(
          Effect.scoped,
          Effect.provide(StateStore.layerMemory)
        )
      )
      expect(exit).toMatchObject({ _tag: "Failure", cause: { error: { _tag: "InvalidConfigError", path: "1.bulkhead.maxConcurrent" } } })
    }))
})
