import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as AttemptEvents from "../src/AttemptEvents.js"
import * as Deadline from "../src/Deadline.js"
import * as Errors from "../src/Errors.js"
import * as KeyPool from "../src/KeyPool.js"
import * as Policy from "../src/Policy.js"
import * as Retry from "../src/Retry.js"
import * as RetryBudget from "../src/RetryBudget.js"
import * as StateStore from "../src/StateStore.js"

const connection = new Errors.ConnectionError({ detail: "ECONNRESET" })
const unavailable = new Errors.ProviderUnavailableError({ status: 503 })
const rateLimited = (retryAfterMs: number) =>
  new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.millis(retryAfterMs) })

/** A call that fails with `errors[i]` on its i-th attempt and succeeds with "ok" after them. */
const scripted = <E>(errors: ReadonlyArray<E>) =>
  Effect.map(Ref.make(0), (attempts) => ({
    attempts,
    call: Effect.flatMap(Ref.getAndUpdate(attempts, (n) => n + 1), (n): Effect.Effect<string, E> => {
      const error = errors[n]
      return error === undefined ? Effect.succeed("ok") : Effect.fail(error)
    })
  }))

/** A call that always fails with `error`. */
const failing = <E>(error: E) =>
  Effect.map(Ref.make(0), (attempts) => ({
    attempts,
    call: Effect.zipRight(Ref.update(attempts, (n) => n + 1), Effect.fail(error))
  }))

/**
 * Asserts, on the TestClock, that attempt i+2 starts exactly `delays[i]` ms
 * after attempt i+1: one millisecond earlier it has not started.
 */
const expectSleeps = (attempts: Ref.Ref<number>, delays: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    yield* TestClock.adjust(0)
    expect(yield* Ref.get(attempts)).toBe(1)
    for (const [i, delay] of delays.entries()) {
      if (delay >= 1) {
        yield* TestClock.adjust(delay - 1)
        expect(yield* Ref.get(attempts)).toBe(i + 1)
        yield* TestClock.adjust(1)
      } else {
        yield* TestClock.adjust(delay)
      }
      expect(yield* Ref.get(attempts)).toBe(i + 2)
    }
  })

/** Collects the retry events of a policy. */
const recorder = Effect.map(Ref.make<ReadonlyArray<Retry.RetryEvent | Retry.GiveUpEvent>>([]), (events) => ({
  events,
  onRetry: (e: Retry.RetryEvent) => Ref.update(events, (es) => [...es, e]),
  onGiveUp: (e: Retry.GiveUpEvent) => Ref.update(events, (es) => [...es, e])
}))

const delaysOf = (events: ReadonlyArray<Retry.RetryEvent | Retry.GiveUpEvent>) =>
  events.flatMap((e) => (e._tag === "Retry" ? [e.delayMs] : []))

/**
 * Runs an always-failing call with `options`, advancing the TestClock far
 * enough, and returns the computed sleeps.
 */
const sleepsOf = (options: Retry.Options) =>
  Effect.gen(function*() {
    const { events, onRetry } = yield* recorder
    const retry = yield* Retry.make({ ...options, onRetry })
    const { call } = yield* failing(connection)
    const fiber = yield* Effect.fork(retry.execute(call))
    yield* TestClock.adjust("1 day")
    yield* Fiber.await(fiber)
    return delaysOf(yield* Ref.get(events))
  })

/** How many draws were made from a `Random.fixed(sequence)` so far: the next value tells. */
const sequence = () => Random.fixed([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09])
const drawsMade = Effect.map(Random.next, (next) => Math.round(next * 100) - 1)

/**
 * A first error with a 7 s Retry-After, then a connection error: the sleep is
 * 7000 exactly (above maxDelay 1 s), and retry 2 is full jitter of 1000 with
 * the FIRST draw (0.5) => 500. Had the Retry-After drawn, retry 2 would have
 * used 0.9 => 900.
 */
const replacesBackoffExactly = (first: Errors.RetryableError) =>
  Effect.gen(function*() {
    const { events, onRetry } = yield* recorder
    const retry = yield* Retry.make({ maxDelay: "1 second", onRetry })
    const { attempts, call } = yield* scripted([first, connection])
    const fiber = yield* Effect.fork(retry.execute(call))
    yield* expectSleeps(attempts, [7_000, 500])
    expect(yield* Fiber.join(fiber)).toBe("ok")
    expect(yield* Ref.get(events)).toMatchObject([
      { _tag: "Retry", retry: 1, delayMs: 7_000, reason: "retry-after" },
      { _tag: "Retry", retry: 2, delayMs: 500, reason: "backoff" }
    ])
    expect(yield* Random.next).toBe(0.9)
  }).pipe(Effect.withRandom(Random.fixed([0.5, 0.9])))

describe("Retry", () => {
  describe("maxRetries (rule 13)", () => {
    it.effect("makes exactly maxRetries + 1 attempts, then fails with the last error", () =>
      Effect.gen(function*() {
        for (const maxRetries of [0, 1, 3, 5]) {
          const retry = yield* Retry.make({ maxRetries, baseDelay: 0 })
          const { attempts, call } = yield* scripted([connection, connection, connection, connection, connection, unavailable])
          const error = yield* Effect.flip(retry.execute(call))
          expect(yield* Ref.get(attempts)).toBe(maxRetries + 1)
          expect(error).toBe(maxRetries === 5 ? unavailable : connection)
        }
      }))

    it.effect("the default is 3 retries (4 attempts)", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ baseDelay: 0 })
        const { attempts, call } = yield* failing(connection)
        yield* Effect.flip(retry.execute(call))
        expect(yield* Ref.get(attempts)).toBe(4)
      }))

    it.effect("returns the value of the first successful attempt", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ baseDelay: 0 })
        const { attempts, call } = yield* scripted([connection, unavailable])
        expect(yield* retry.execute(call)).toBe("ok")
        expect(yield* Ref.get(attempts)).toBe(3)
      }))
  })

  describe("retryable tags only (rule 16)", () => {
    const nonRetryable: ReadonlyArray<unknown> = [
      new Errors.AuthError({ status: 401 }),
      new Errors.BadRequestError({ status: 422 }),
      new Errors.CircuitOpenError({ breaker: "openai", state: "open" }),
      new Errors.BulkheadFullError({ bulkhead: "openai", reason: "queue-full", maxConcurrent: 1, maxQueue: 0 }),
      new Errors.QuotaExhaustedError({}),
      new Errors.StreamInterruptedError({ chunksReceived: 2 }),
      new Errors.BudgetExhaustedError({ budget: "attempts", limit: 3 }),
      new Error("not of the taxonomy"),
      "a string"
    ]

    it.effect("non-retryable errors (AuthError, BadRequestError, CircuitOpenError, ...) fail after 1 attempt", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ baseDelay: 0, retryOn: () => true })
        for (const error of nonRetryable) {
          const { attempts, call } = yield* failing(error)
          expect(yield* Effect.flip(retry.execute(call))).toBe(error)
          expect(yield* Ref.get(attempts)).toBe(1)
        }
      }))

    it.effect("every retryable tag is retried", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ baseDelay: 0, maxRetries: 1 })
        const retryable: ReadonlyArray<Errors.RetryableError> = [
          new Errors.RateLimitError({ source: "upstream" }),
          new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(1) }),
          unavailable,
          connection,
          new Errors.MalformedResponseError({})
        ]
        for (const error of retryable) {
          const { attempts, call } = yield* failing(error)
          yield* Effect.flip(retry.execute(call))
          expect(yield* Ref.get(attempts)).toBe(2)
        }
      }))

    it.effect("retryOn narrows the retryable set", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ baseDelay: 0, retryOn: (e) => e._tag !== "TimeoutError" })
        const timeout = yield* failing(new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(1) }))
        yield* Effect.flip(retry.execute(timeout.call))
        expect(yield* Ref.get(timeout.attempts)).toBe(1)
        const conn = yield* failing(connection)
        yield* Effect.flip(retry.execute(conn.call))
        expect(yield* Ref.get(conn.attempts)).toBe(4)
      }))

    it.effect("defects and interruptions are not retried", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ baseDelay: 0 })
        const attempts = yield* Ref.make(0)
        const exit = yield* Effect.exit(retry.execute(Effect.zipRight(Ref.update(attempts, (n) => n + 1), Effect.die("boom"))))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(yield* Ref.get(attempts)).toBe(1)
      }))
  })

  describe("backoff and jitter (rule 14)", () => {
    it.effect("jitter none sleeps 500, 1000, 2000 ms exactly (the attempt starts neither 1 ms early nor late)", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none" })
        const { attempts, call } = yield* failing(connection)
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [500, 1000, 2000])
        expect(yield* Effect.flip(Fiber.join(fiber))).toBe(connection)
        expect(yield* Ref.get(attempts)).toBe(4)
      }))

    it.effect("full jitter (the default) is draw x delay with a pinned Random", () =>
      Effect.gen(function*() {
        const { attempts, call } = yield* failing(connection)
        const retry = yield* Retry.make({})
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [125, 500, 1500])
        expect(yield* Effect.flip(Fiber.join(fiber))).toBe(connection)
      }).pipe(Effect.withRandom(Random.fixed([0.25, 0.5, 0.75]))))

    it.effect("equal jitter is delay/2 + draw x delay/2", () =>
      Effect.gen(function*() {
        expect(yield* sleepsOf({ jitter: "equal" })).toEqual([250, 750, 1900])
      }).pipe(Effect.withRandom(Random.fixed([0, 0.5, 0.9]))))

    it.effect("proportional jitter (0.5-1.5) multiplies the delay by min + draw x (max - min)", () =>
      Effect.gen(function*() {
        expect(yield* sleepsOf({ jitter: Retry.proportional(0.5, 1.5) })).toEqual([250, 1000, 2800])
      }).pipe(Effect.withRandom(Random.fixed([0, 0.5, 0.9]))))

    it.effect("decorrelated jitter draws from [base, 3 x previous]", () =>
      Effect.gen(function*() {
        // 500 + .5 * (1500 - 500) = 1000; 500 + .5 * (3000 - 500) = 1750; 500 + .5 * (5250 - 500) = 2875
        expect(yield* sleepsOf({ jitter: "decorrelated" })).toEqual([1000, 1750, 2875])
      }).pipe(Effect.withRandom(Random.fixed([0.5]))))

    it.effect("maxDelay is a hard ceiling on every computed sleep, in every jitter mode", () =>
      Effect.gen(function*() {
        expect(yield* sleepsOf({ jitter: "none", maxRetries: 6, maxDelay: "3 seconds" })).toEqual([
          500,
          1000,
          2000,
          3000,
          3000,
          3000
        ])
        // draw 1: proportional would give 1.5x, equal and full 1x, decorrelated 3x
        const top = Effect.withRandom(Random.fixed([1]))
        expect(yield* top(sleepsOf({ jitter: Retry.proportional(0.5, 1.5), baseDelay: 1000, maxDelay: 1200 }))).toEqual([
          1200,
          1200,
          1200
        ])
        expect(yield* top(sleepsOf({ jitter: "decorrelated", baseDelay: 1000, maxDelay: 2500 }))).toEqual([
          2500,
          2500,
          2500
        ])
        expect(yield* top(sleepsOf({ jitter: "full", maxRetries: 8, maxDelay: "4 seconds" }))).toEqual([
          500,
          1000,
          2000,
          4000,
          4000,
          4000,
          4000,
          4000
        ])
      }))

    it.effect("full jitter keeps its spread once the exponential passes maxDelay (draw x maxDelay, AWS)", () =>
      Effect.gen(function*() {
        expect(yield* sleepsOf({ jitter: "full", maxRetries: 6, maxDelay: "1 second" })).toEqual([
          250,
          500,
          500,
          500,
          500,
          500
        ])
      }).pipe(Effect.withRandom(Random.fixed([0.5]))))

    it.effect("exactly one Random draw per computed delay, none for jitter none", () =>
      Effect.gen(function*() {
        for (const jitter of ["full", "equal", "decorrelated", Retry.proportional(0.5, 1.5)] as const) {
          const draws = yield* Effect.gen(function*() {
            yield* sleepsOf({ jitter })
            return yield* drawsMade
          }).pipe(Effect.withRandom(sequence()))
          expect(draws).toBe(3)
        }
        const none = yield* Effect.gen(function*() {
          yield* sleepsOf({ jitter: "none" })
          return yield* drawsMade
        }).pipe(Effect.withRandom(sequence()))
        expect(none).toBe(0)
      }))

    it.effect("with a seeded Random, 30 retries stay inside each mode's bounds and under the cap", () =>
      Effect.gen(function*() {
        const maxDelay = 10_000
        for (const seed of [1, "resilient"]) {
          const run = (jitter: Retry.Jitter) =>
            sleepsOf({ jitter, maxRetries: 30, maxDelay }).pipe(Effect.withRandom(Random.make(seed)))
          const ceilings = Array.from({ length: 30 }, (_, i) => Math.min(maxDelay, 500 * 2 ** i))

          const full = yield* run("full")
          full.forEach((d, i) => {
            expect(d).toBeGreaterThanOrEqual(0)
            expect(d).toBeLessThanOrEqual(ceilings[i] ?? 0)
          })

          const equal = yield* run("equal")
          equal.forEach((d, i) => {
            expect(d).toBeGreaterThanOrEqual((ceilings[i] ?? 0) / 2)
            expect(d).toBeLessThanOrEqual(ceilings[i] ?? 0)
          })

          const proportional = yield* run(Retry.proportional(0.5, 1.5))
          proportional.forEach((d, i) => {
            expect(d).toBeGreaterThanOrEqual((ceilings[i] ?? 0) * 0.5)
            expect(d).toBeLessThanOrEqual(Math.min(maxDelay, (ceilings[i] ?? 0) * 1.5))
          })

          const decorrelated = yield* run("decorrelated")
          decorrelated.forEach((d, i) => {
            const previous = i === 0 ? 500 : decorrelated[i - 1] ?? 0
            expect(d).toBeGreaterThanOrEqual(500)
            expect(d).toBeLessThanOrEqual(Math.min(maxDelay, 3 * previous))
          })

          for (const sleeps of [full, equal, proportional, decorrelated]) {
            expect(sleeps).toHaveLength(30)
            expect(Math.max(...sleeps)).toBeLessThanOrEqual(maxDelay)
            // jitter really spreads: not every sleep is the same
            expect(new Set(sleeps.slice(10)).size).toBeGreaterThan(1)
          }
        }
      }))

    it("backoffDelay is the pure n-th delay", () => {
      const b = (jitter: Retry.Jitter): Retry.Backoff => ({ ...Retry.defaultBackoff, jitter })
      expect([1, 2, 3, 4].map((n) => Retry.backoffDelay(b("none"), n, 0.7))).toEqual([500, 1000, 2000, 4000])
      expect(Retry.backoffDelay(b("full"), 3, 0.5)).toBe(1000)
      expect(Retry.backoffDelay(b("equal"), 3, 0.5)).toBe(1500)
      expect(Retry.backoffDelay(b(Retry.proportional(0.5, 1.5)), 3, 0.5)).toBe(2000)
      expect(Retry.backoffDelay(b("decorrelated"), 3, 0.5, 1000)).toBe(1750)
      expect(Retry.backoffDelay(b("none"), 1_000, 0)).toBe(30_000)
      expect(Retry.backoffDelay({ ...b("none"), baseDelay: 0 }, 10_000, 0)).toBe(0)
      expect(Retry.backoffDelay({ ...b("full"), factor: 3, baseDelay: 100 }, 3, 1)).toBe(900)
    })

    it.effect("nextBackoffDelay draws once from Random (none for jitter none)", () =>
      Effect.gen(function*() {
        expect(yield* Retry.nextBackoffDelay(Retry.defaultBackoff, 2)).toBe(10)
        expect(yield* drawsMade).toBe(1)
        expect(yield* Retry.nextBackoffDelay({ ...Retry.defaultBackoff, jitter: "none" }, 2)).toBe(1000)
        expect(yield* drawsMade).toBe(2) // only the previous drawsMade draw
      }).pipe(Effect.withRandom(sequence())))
  })

  describe("Retry-After (rule 15)", () => {
    it.effect("a Retry-After of 7 s replaces the backoff exactly, above maxDelay, without a Random draw", () =>
      replacesBackoffExactly(rateLimited(7_000)))

    it.effect("a local RateLimitError's retryAfter is used the same way", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none" })
        const local = new Errors.RateLimitError({ source: "local", retryAfter: Duration.millis(1_234) })
        const { attempts, call } = yield* scripted([local])
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [1_234])
        expect(yield* Fiber.join(fiber)).toBe("ok")
      }))

    it.effect("a RateLimitError without retryAfter gets the computed backoff", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none" })
        const { attempts, call } = yield* scripted([new Errors.RateLimitError({ source: "upstream" })])
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [500])
        expect(yield* Fiber.join(fiber)).toBe("ok")
      }))

    it.effect("retryOnly narrows retries for the calls inside it only; mayHaveStartedWork spots timeouts and lost connections", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", baseDelay: 0, maxRetries: 2 })
        const timeout = new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(1) })
        const narrowed = yield* failing(timeout)
        yield* Effect.flip(Retry.retryOnly((e) => !Retry.mayHaveStartedWork(e))(retry.execute(narrowed.call)))
        expect(yield* Ref.get(narrowed.attempts)).toBe(1)
        const outside = yield* failing(timeout)
        yield* Effect.flip(retry.execute(outside.call))
        expect(yield* Ref.get(outside.attempts)).toBe(3)
        expect(Retry.mayHaveStartedWork(new Errors.ConnectionError({ detail: "ECONNRESET" }))).toBe(true)
        expect(Retry.mayHaveStartedWork(new Errors.ConnectionError({ detail: "connect ECONNREFUSED 127.0.0.1:1" }))).toBe(false)
        expect(Retry.mayHaveStartedWork(new Errors.ProviderUnavailableError({ status: 503 }))).toBe(false)
      }))

    it.effect("a local RateLimitError without retryAfter (a cost the limiter can never grant) is not retried", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none" })
        const never = new Errors.RateLimitError({ source: "local", detail: "cost above capacity" })
        const { attempts, call } = yield* failing(never)
        expect(yield* Effect.exit(retry.execute(call))).toEqual(Exit.fail(never))
        expect(yield* Ref.get(attempts)).toBe(1)
      }))

    it.effect("an error it never retries fails at once, and the give-up is still heard and logged", () =>
      Effect.gen(function*() {
        const bad = new Errors.BadRequestError({ status: 400 })
        // Without a hook or a debug log: the plain error, one attempt.
        const plain = yield* Retry.make({})
        const once = yield* failing(bad)
        expect(yield* Effect.exit(plain.execute(once.call))).toEqual(Exit.fail(bad))
        expect(yield* Ref.get(once.attempts)).toBe(1)
        // With a hook: it hears why.
        const { events, onGiveUp } = yield* recorder
        const heard = yield* Retry.make({ onGiveUp })
        expect(yield* Effect.exit(heard.execute((yield* failing(bad)).call))).toEqual(Exit.fail(bad))
        expect(yield* Ref.get(events)).toMatchObject([{ _tag: "GiveUp", reason: "not-retryable", retries: 0 }])
        // With debug logs on: a line says so.
        const lines: Array<string> = []
        const logger = Logger.make(({ message }) => lines.push(String(message)))
        const logged = yield* Effect.exit(plain.execute((yield* failing(bad)).call)).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
          Logger.withMinimumLogLevel(LogLevel.Debug)
        )
        expect(logged).toEqual(Exit.fail(bad))
        expect(lines).toEqual(["retry: giving up (not-retryable)"])
      }))

    it.effect("retryAfter above maxRetryAfter gives up at once, keeping the error's retryAfter", () =>
      Effect.gen(function*() {
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ onGiveUp })
        const tooLong = rateLimited(60_001) // default maxRetryAfter is 60 s
        const { attempts, call } = yield* failing(tooLong)
        const error = yield* Effect.flip(retry.execute(call))
        expect(error).toBe(tooLong)
        expect(error._tag !== "BudgetExhaustedError" && error.retryAfter).toEqual(Duration.millis(60_001))
        expect(yield* Ref.get(attempts)).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)
        expect(yield* Ref.get(events)).toMatchObject([
          { _tag: "GiveUp", reason: "retry-after-too-long", retries: 0, delayMs: 60_001 }
        ])
      }))

    it.effect("retryAfter equal to maxRetryAfter is still waited for", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ maxRetryAfter: "10 seconds" })
        const { attempts, call } = yield* scripted([rateLimited(10_000)])
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [10_000])
        expect(yield* Fiber.join(fiber)).toBe("ok")
      }))
  })

  describe("the provider's advice (x-should-retry)", () => {
    it.effect("an error marked shouldRetry: false is not retried, whatever its tag", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none" })
        const final = new Errors.ProviderUnavailableError({ status: 503, shouldRetry: false })
        const { attempts, call } = yield* scripted([final])
        const error = yield* Effect.flip(retry.execute(call))
        expect(error).toBe(final)
        expect(yield* Ref.get(attempts)).toBe(1)
        // Without the advice, the same error is retried.
        const again = yield* scripted([new Errors.ProviderUnavailableError({ status: 503 })])
        const fiber = yield* Effect.fork(retry.execute(again.call))
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(fiber)).toBe("ok")
        expect(yield* Ref.get(again.attempts)).toBe(2)
      }))
  })

  describe("Retry-After on any retryable error (rule 24)", () => {
    const unavailableFor = (retryAfterMs: number) =>
      new Errors.ProviderUnavailableError({ status: 503, retryAfter: Duration.millis(retryAfterMs) })

    it.effect("a 503's Retry-After replaces the backoff exactly as a 429's: above maxDelay, no jitter, no draw", () =>
      replacesBackoffExactly(unavailableFor(7_000)))

    it.effect("a 529's Retry-After above maxRetryAfter gives up at once with it, keeping its retryAfter", () =>
      Effect.gen(function*() {
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ maxRetryAfter: "10 seconds", onGiveUp })
        const overloaded = new Errors.ProviderUnavailableError({ status: 529, retryAfter: Duration.millis(10_001) })
        const { attempts, call } = yield* failing(overloaded)
        const error = yield* Effect.flip(retry.execute(call))
        expect(error).toBe(overloaded)
        expect(error._tag !== "BudgetExhaustedError" && error.retryAfter).toEqual(Duration.millis(10_001))
        expect(yield* Ref.get(attempts)).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)
        expect(yield* Ref.get(events)).toMatchObject([
          { _tag: "GiveUp", reason: "retry-after-too-long", retries: 0, delayMs: 10_001 }
        ])
      }))

    it.effect("a 503's Retry-After that would reach the deadline gives up at once", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({})
        const down = unavailableFor(1_500)
        const { attempts, call } = yield* failing(down)
        expect(yield* Effect.flip(Deadline.within(1_500)(retry.execute(call)))).toBe(down)
        expect(yield* Ref.get(attempts)).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)
      }))

    it.effect("honorRetryAfter is asked about a 429's Retry-After only: a 503's binds the deployment and is always honoured", () =>
      Effect.gen(function*() {
        const asked: Array<string> = []
        const retry = yield* Retry.make({
          jitter: "none",
          maxRetries: 1,
          // As a key pool with another healthy key answers.
          honorRetryAfter: (e) => Effect.sync(() => asked.push(e._tag)).pipe(Effect.as(false))
        })
        const limited = yield* scripted([rateLimited(7_000)])
        const a = yield* Effect.fork(retry.execute(limited.call))
        yield* expectSleeps(limited.attempts, [500]) // the backoff: the other key is free now
        expect(yield* Fiber.join(a)).toBe("ok")

        const down = yield* scripted([unavailableFor(7_000)])
        const b = yield* Effect.fork(retry.execute(down.call))
        yield* expectSleeps(down.attempts, [7_000])
        expect(yield* Fiber.join(b)).toBe("ok")

        const plain = yield* scripted([new Errors.RateLimitError({ source: "upstream" })])
        const c = yield* Effect.fork(retry.execute(plain.call))
        yield* expectSleeps(plain.attempts, [500])
        expect(yield* Fiber.join(c)).toBe("ok")
        // Asked once: about the 429 that carried a Retry-After.
        expect(asked).toEqual(["RateLimitError"])
      }))

    it.effect("through a Policy with a key pool: a 503's Retry-After delays the next attempt though another key is healthy; a 429's does not", () =>
      Effect.gen(function*() {
        for (const store of [StateStore.makeMemory()]) {
          for (const [first, expected] of [
            [unavailableFor(7_000), [0, 7_000]],
            [rateLimited(7_000), [0, 100]]
          ] as const) {
            const attempts = yield* Effect.gen(function*() {
              const keyPool = yield* KeyPool.make({
                name: "keys",
                keys: [{ name: "k1", key: Redacted.make("sk-1") }, { name: "k2", key: Redacted.make("sk-2") }]
              })
              const policy = yield* Policy.make({
                deployment: "d",
                keyPool,
                retry: { jitter: "none", baseDelay: "100 millis", maxRetries: 1 },
                circuitBreaker: false
              })
              const start = yield* Clock.currentTimeMillis
              const log: Array<number> = []
              const fiber = yield* Effect.fork(policy.execute(({ attempt }) =>
                Effect.flatMap(Clock.currentTimeMillis, (now) => {
                  log.push(now - start)
                  return attempt === 1 ? Effect.fail(first) : Effect.succeed("ok")
                })
              ))
              yield* TestClock.adjust("10 seconds")
              expect(yield* Fiber.join(fiber)).toBe("ok")
              return log
            }).pipe(Effect.provideService(StateStore.StateStore, store))
            expect(attempts).toEqual(expected)
          }
        }
      }))

    it.effect("errors are read by _tag and fields, not by class: a copy from a second module instance is treated the same", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none" })
        // What `instanceof` would not recognise: the same tagged data, made by another class.
        const down = { _tag: "ProviderUnavailableError", status: 503, retryAfter: Duration.seconds(2) }
        const remote = yield* scripted([down])
        const fiber = yield* Effect.fork(retry.execute(remote.call))
        yield* expectSleeps(remote.attempts, [2_000])
        expect(yield* Fiber.join(fiber)).toBe("ok")

        const never = { _tag: "RateLimitError", source: "local", detail: "cost above capacity" }
        const local = yield* failing(never)
        expect(yield* Effect.flip(retry.execute(local.call))).toBe(never)
        expect(yield* Ref.get(local.attempts)).toBe(1)
      }))
  })

  describe("limits that are off: Duration.infinity", () => {
    it.effect("maxDelay Duration.infinity: no ceiling, each sleep the exact exponential", () =>
      Effect.gen(function*() {
        const sleeps = yield* sleepsOf({ jitter: "none", baseDelay: "1 second", factor: 10, maxDelay: Duration.infinity })
        expect(sleeps).toEqual([1_000, 10_000, 100_000])
        const { attempts, call } = yield* failing(connection)
        const retry = yield* Retry.make({ jitter: "none", baseDelay: "1 second", factor: 10, maxDelay: Infinity })
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [1_000, 10_000, 100_000])
        expect(yield* Effect.flip(Fiber.join(fiber))).toBe(connection)
      }))

    it("with maxDelay off, a delay whose exponential overflows stays finite in every jitter mode (never Infinity or NaN)", () => {
      const off = (jitter: Retry.Jitter): Retry.Backoff => ({ baseDelay: 500, factor: 2, maxDelay: Infinity, jitter })
      for (const jitter of ["none", "full", "equal", "decorrelated", Retry.proportional(0.5, 1.5)] as const) {
        for (const draw of [0, 0.5, 0.999]) {
          const delay = Retry.backoffDelay(off(jitter), 5_000, draw, Number.MAX_VALUE)
          expect({ jitter, draw, finite: Number.isFinite(delay) }).toEqual({ jitter, draw, finite: true })
          expect(delay).toBeGreaterThanOrEqual(0)
        }
      }
      expect(Retry.backoffDelay(off("none"), 5_000, 0)).toBe(Number.MAX_SAFE_INTEGER)
      expect(Retry.backoffDelay(off("full"), 5_000, 0)).toBe(0)
    })

    it.effect("maxRetryAfter Duration.infinity: a Retry-After of 2 hours is waited for exactly, not given up", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ maxRetryAfter: Duration.infinity })
        const { attempts, call } = yield* scripted([rateLimited(7_200_000)])
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* expectSleeps(attempts, [7_200_000])
        expect(yield* Fiber.join(fiber)).toBe("ok")
      }))

    it.effect("an infinite Retry-After gives up at once even with maxRetryAfter off: it asks for no retry", () =>
      Effect.gen(function*() {
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ maxRetryAfter: Duration.infinity, onGiveUp })
        const never = new Errors.ProviderUnavailableError({ status: 503, retryAfter: Duration.infinity })
        const { attempts, call } = yield* failing(never)
        expect(yield* Effect.flip(retry.execute(call))).toBe(never)
        expect(yield* Ref.get(attempts)).toBe(1)
        expect(yield* Ref.get(events)).toMatchObject([{ _tag: "GiveUp", reason: "retry-after-too-long", retries: 0 }])
      }))
  })

  describe("deadline (rule 15)", () => {
    it.effect("a backoff that would end at or after the deadline gives up at once with the last error", () =>
      Effect.gen(function*() {
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ jitter: "none", onGiveUp })
        const { attempts, call } = yield* scripted([connection, unavailable])
        // retry 1 ends at 500 < 1000: made; retry 2 would end at 500 + 1000 >= 1000: refused
        const fiber = yield* Effect.fork(Deadline.within(1_000)(retry.execute(call)))
        yield* expectSleeps(attempts, [500])
        expect(yield* Effect.flip(Fiber.join(fiber))).toBe(unavailable)
        expect(yield* Clock.currentTimeMillis).toBe(500)
        expect(yield* Ref.get(attempts)).toBe(2)
        expect(yield* Ref.get(events)).toMatchObject([{ _tag: "GiveUp", reason: "deadline", retries: 1, delayMs: 1_000 }])
      }))

    it.effect("a sleep ending exactly at the deadline gives up; one ending 1 ms before is made", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", maxRetries: 1 })
        const exact = yield* failing(connection)
        yield* Effect.flip(Deadline.within(500)(retry.execute(exact.call)))
        expect(yield* Ref.get(exact.attempts)).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)

        const before = yield* failing(connection)
        const fiber = yield* Effect.fork(Deadline.within(501)(retry.execute(before.call)))
        yield* expectSleeps(before.attempts, [500])
        yield* Effect.flip(Fiber.join(fiber))
      }))

    it.effect("a Retry-After that would cross the deadline gives up at once, keeping its retryAfter", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({})
        const limited = rateLimited(2_000)
        const { attempts, call } = yield* failing(limited)
        const error = yield* Effect.flip(Deadline.within(1_500)(retry.execute(call)))
        expect(error).toBe(limited)
        expect(error._tag !== "BudgetExhaustedError" && error.retryAfter).toEqual(Duration.seconds(2))
        expect(yield* Ref.get(attempts)).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)
      }))
  })

  describe("retry budget (rule 17)", () => {
    it.effect("records the first attempt and fails fast with the last error once the budget refuses", () =>
      Effect.gen(function*() {
        const budget = yield* RetryBudget.make({ name: "openai", minRetriesPerSecond: 0 })
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ baseDelay: 0, budget, onGiveUp })

        // 1 first attempt: 0.2 * 1 rounds down to 0 retries
        const first = yield* failing(connection)
        expect(yield* Effect.flip(retry.execute(first.call))).toBe(connection)
        expect(yield* Ref.get(first.attempts)).toBe(1)
        expect(yield* budget.status).toEqual({ attempts: 1, retries: 0, allowed: 0 })
        expect(yield* Ref.get(events)).toMatchObject([{ _tag: "GiveUp", reason: "budget", retries: 0 }])

        // 4 more first attempts elsewhere, then this call's own: 6 attempts admit 1 retry
        yield* Effect.repeatN(budget.recordAttempt, 3)
        const second = yield* failing(unavailable)
        expect(yield* Effect.flip(retry.execute(second.call))).toBe(unavailable)
        expect(yield* Ref.get(second.attempts)).toBe(2)
        expect(yield* budget.status).toEqual({ attempts: 6, retries: 1, allowed: 1 })
      }).pipe(Effect.provide(StateStore.layerMemory)))

    it.effect("a call that gives up for another reason spends no budget", () =>
      Effect.gen(function*() {
        const budget = yield* RetryBudget.make({ name: "b" })
        const retry = yield* Retry.make({ budget })
        yield* Effect.flip(retry.execute(Effect.fail(new Errors.AuthError({}))))
        yield* Effect.flip(retry.execute(Effect.fail(rateLimited(120_000))))
        expect(yield* budget.status).toEqual({ attempts: 2, retries: 0, allowed: 10 })
      }).pipe(Effect.provide(StateStore.layerMemory)))
  })

  describe("retry on a result (retryOnResult)", () => {
    /** A call whose i-th attempt gives `script[i]`: a string is its value, anything else its failure; then "ok". */
    const outcomes = <E>(script: ReadonlyArray<string | E>) =>
      Effect.map(Ref.make(0), (attempts) => ({
        attempts,
        call: Effect.flatMap(Ref.getAndUpdate(attempts, (n) => n + 1), (n): Effect.Effect<string, E> => {
          const outcome = script[n]
          return outcome === undefined ? Effect.succeed("ok") : typeof outcome === "string" ? Effect.succeed(outcome) : Effect.fail(outcome)
        })
      }))
    const empty = (answer: string) => answer === ""
    const rejected = (value: unknown) => ({ _tag: "RejectedResult", value })

    it.effect("a rejected value is retried with a failure's backoff and draws; onRetry says the reason was the result", () =>
      Effect.gen(function*() {
        const { events, onRetry } = yield* recorder
        const retry = yield* Retry.make({ onRetry })
        const { attempts, call } = yield* outcomes(["", ""])
        // Per call, the predicate is typed by the call's value: `answer` is a string.
        const fiber = yield* Effect.fork(retry.execute(call, { retryOnResult: (answer) => answer.length === 0 }))
        // Full jitter: 0.25 x 500, then 0.5 x 1000, as for a failure.
        yield* expectSleeps(attempts, [125, 500])
        expect(yield* Fiber.join(fiber)).toBe("ok")
        expect(yield* Ref.get(events)).toEqual([
          { _tag: "Retry", retry: 1, delayMs: 125, reason: "result", error: rejected("") },
          { _tag: "Retry", retry: 2, delayMs: 500, reason: "result", error: rejected("") }
        ])
        expect(yield* Random.next).toBe(0.75) // one draw per computed delay
      }).pipe(Effect.withRandom(Random.fixed([0.25, 0.5, 0.75]))))

    it.effect("when retries run out on rejected values, the call succeeds with the last value (Polly's HandleResult)", () =>
      Effect.gen(function*() {
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ jitter: "none", baseDelay: 0, maxRetries: 2, onGiveUp })
        const { attempts, call } = yield* outcomes(["bad-1", "bad-2", "bad-3", "bad-4"])
        const answer = yield* retry.execute(call, { retryOnResult: (a) => a.startsWith("bad") })
        expect(answer).toBe("bad-3")
        expect(yield* Ref.get(attempts)).toBe(3)
        expect(yield* Ref.get(events)).toEqual([
          { _tag: "GiveUp", reason: "max-retries", retries: 2, error: rejected("bad-3") }
        ])
      }))

    it.effect("failures and rejected values share one maxRetries, and the last outcome surfaces, whatever it is", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", baseDelay: 0, maxRetries: 2 })
        const bad = (a: string) => a.startsWith("bad")
        const endsFailed = yield* outcomes<Errors.RetryableError>([connection, "bad", unavailable])
        expect(yield* Effect.flip(retry.execute(endsFailed.call, { retryOnResult: bad }))).toBe(unavailable)
        expect(yield* Ref.get(endsFailed.attempts)).toBe(3)
        const endsRejected = yield* outcomes<Errors.RetryableError>(["bad-1", connection, "bad-2"])
        expect(yield* retry.execute(endsRejected.call, { retryOnResult: bad })).toBe("bad-2")
        expect(yield* Ref.get(endsRejected.attempts)).toBe(3)
      }))

    it.effect("the policy's retryOnResult (on unknown) and the call's both apply: a value either rejects is retried", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", baseDelay: 0, retryOnResult: (value) => value === "" })
        const both = yield* outcomes(["", "{\"broken", "{}"])
        const parses = (a: string) => Either.isRight(Either.try(() => JSON.parse(a)))
        expect(yield* retry.execute(both.call, { retryOnResult: (a) => !parses(a) })).toBe("{}")
        expect(yield* Ref.get(both.attempts)).toBe(3)
        const policyOnly = yield* outcomes(["", "{\"broken"])
        expect(yield* retry.execute(policyOnly.call)).toBe("{\"broken")
        expect(yield* Ref.get(policyOnly.attempts)).toBe(2)
      }))

    it.effect("a rejected value spends the retry budget and meets the deadline: either gives up at once with the value", () =>
      Effect.gen(function*() {
        const budget = yield* RetryBudget.make({ name: "b", minRetriesPerSecond: 0 })
        const { events, onGiveUp } = yield* recorder
        const retry = yield* Retry.make({ jitter: "none", budget, onGiveUp })
        const refused = yield* outcomes([""])
        expect(yield* retry.execute(refused.call, { retryOnResult: empty })).toBe("")
        expect(yield* Ref.get(refused.attempts)).toBe(1)
        expect(yield* budget.status).toEqual({ attempts: 1, retries: 0, allowed: 0 })

        yield* Effect.repeatN(budget.recordAttempt, 8) // 10 first attempts admit 2 retries
        const late = yield* outcomes([""])
        expect(yield* Deadline.within(500)(retry.execute(late.call, { retryOnResult: empty }))).toBe("")
        expect(yield* Ref.get(late.attempts)).toBe(1)
        expect(yield* Clock.currentTimeMillis).toBe(0)
        expect((yield* Ref.get(events)).map((e) => e._tag === "GiveUp" && e.reason)).toEqual(["budget", "deadline"])
        expect((yield* budget.status).retries).toBe(0)
      }).pipe(Effect.provide(StateStore.layerMemory)))

    it.effect("retryOn and retryOnly narrow failures only: a rejected value is still retried; a non-retryable failure still is not", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", baseDelay: 0, retryOn: () => false })
        const value = yield* outcomes([""])
        expect(yield* Retry.retryOnly(() => false)(retry.execute(value.call, { retryOnResult: empty }))).toBe("ok")
        expect(yield* Ref.get(value.attempts)).toBe(2)
        const bad = new Errors.BadRequestError({ status: 400 })
        const failure = yield* outcomes([bad])
        expect(yield* Effect.flip(retry.execute(failure.call, { retryOnResult: empty }))).toBe(bad)
        expect(yield* Ref.get(failure.attempts)).toBe(1)
      }))

    it.effect("a failure of the caller's own tagged RejectedResult stays a failure: not retried, not turned into a value", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", baseDelay: 0 })
        const impostor = { _tag: "RejectedResult", value: "ok" }
        const { attempts, call } = yield* outcomes([impostor])
        expect(yield* Effect.flip(retry.execute(call, { retryOnResult: empty }))).toBe(impostor)
        expect(yield* Ref.get(attempts)).toBe(1)
      }))

    it.effect("through a Policy, a policy-wide retryOnResult sees every value, and the attempt events say \"result\"", () =>
      Effect.gen(function*() {
        const queue = yield* (yield* AttemptEvents.AttemptEvents).subscribe
        const policy = yield* Policy.make({
          deployment: "d",
          retry: { jitter: "none", baseDelay: "100 millis", retryOnResult: (value) => value === "" },
          circuitBreaker: false
        })
        let calls = 0
        const fiber = yield* Effect.fork(policy.execute(() => Effect.sync(() => (++calls === 1 ? "" : "answer"))))
        yield* TestClock.adjust(99)
        expect(calls).toBe(1)
        yield* TestClock.adjust(1)
        expect(yield* Fiber.join(fiber)).toBe("answer")
        const retries = [...(yield* Queue.takeAll(queue))].filter((e) => e._tag === "RetryScheduled")
        expect(retries).toMatchObject([{ reason: "result", errorTag: "RejectedResult", delayMs: 100 }])
        // Answered at once (an Exit), as on Policy's hot path: the value is still seen.
        let exits = 0
        expect(yield* policy.execute(() => (++exits === 1 ? Effect.succeed("") : Effect.succeed("x"))).pipe(
          Effect.fork,
          Effect.tap(() => TestClock.adjust(100)),
          Effect.flatMap(Fiber.join)
        )).toBe("x")
      }).pipe(Effect.scoped, Effect.provide(AttemptEvents.layer), Effect.provide(StateStore.layerMemory)))
  })

  describe("observation", () => {
    it.effect("onRetry sees every retry with its number, delay, reason and error; onGiveUp the stop", () =>
      Effect.gen(function*() {
        const { events, onGiveUp, onRetry } = yield* recorder
        const retry = yield* Retry.make({ jitter: "none", maxRetries: 2, onRetry, onGiveUp })
        const { call } = yield* scripted([connection, rateLimited(100), unavailable])
        const fiber = yield* Effect.fork(retry.execute(call))
        yield* TestClock.adjust("1 minute")
        expect(yield* Effect.flip(Fiber.join(fiber))).toBe(unavailable)
        expect(yield* Ref.get(events)).toEqual([
          { _tag: "Retry", retry: 1, delayMs: 500, reason: "backoff", error: connection },
          { _tag: "Retry", retry: 2, delayMs: 100, reason: "retry-after", error: rateLimited(100) },
          { _tag: "GiveUp", reason: "max-retries", retries: 2, error: unavailable }
        ])
      }))

    it.effect("concurrent executions keep separate retry counts", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.make({ jitter: "none", maxRetries: 2 })
        const a = yield* failing(connection)
        const b = yield* failing(connection)
        const fa = yield* Effect.fork(retry.execute(a.call))
        yield* TestClock.adjust(500)
        const fb = yield* Effect.fork(retry.execute(b.call))
        yield* TestClock.adjust("1 minute")
        yield* Effect.flip(Fiber.join(fa))
        yield* Effect.flip(Fiber.join(fb))
        expect([yield* Ref.get(a.attempts), yield* Ref.get(b.attempts)]).toEqual([3, 3])
      }))
  })

  describe("config", () => {
    it.effect("bad options fail with InvalidConfigError naming the field", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [Retry.Options, string]> = [
          [{ maxRetries: -1 }, "maxRetries"],
          [{ maxRetries: 1.5 }, "maxRetries"],
          [{ factor: 0.5 }, "factor"],
          [{ factor: Number.NaN }, "factor"],
          // @ts-expect-error options read from JSON can hold anything
          [{ maxDelay: "soon" }, "maxDelay"],
          [{ maxRetryAfter: -1 }, "maxRetryAfter"],
          // A base delay is not a limit: infinity there is a mistake, not "off".
          [{ baseDelay: Duration.infinity }, "baseDelay"],
          [{ jitter: Retry.proportional(1.5, 0.5) }, "jitter"],
          [{ jitter: Retry.proportional(-1, 0.5) }, "jitter.min"]
        ]
        for (const [options, path] of cases) {
          const error = yield* Effect.flip(Retry.make({ ...options, name: "gpt" }))
          expect(error._tag).toBe("InvalidConfigError")
          expect(error.path).toBe(path)
          expect(error.component).toBe(`Retry "gpt"`)
        }
        // @ts-expect-error an unknown option is a config error, not silently ignored
        const unknown = yield* Effect.flip(Retry.make({ attempts: 3 }))
        expect(unknown.path).toBe("attempts")
        // @ts-expect-error an unknown jitter mode
        const mode = yield* Effect.flip(Retry.make({ jitter: "random" }))
        expect(mode.path).toBe("jitter")
      }))

    it.effect("layer provides the Retry tag", () =>
      Effect.gen(function*() {
        const retry = yield* Retry.Retry
        const { attempts, call } = yield* failing(connection)
        yield* Effect.flip(retry.execute(call))
        expect(yield* Ref.get(attempts)).toBe(2)
      }).pipe(Effect.provide(Retry.layer({ maxRetries: 1, baseDelay: 0 }))))
  })
})
