import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import * as AttemptEvents from "../src/AttemptEvents.js"
import * as Errors from "../src/Errors.js"
import * as Fallback from "../src/Fallback.js"
import * as Policy from "../src/Policy.js"
import * as Retry from "../src/Retry.js"
import * as StateStore from "../src/StateStore.js"

const rateLimited = new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(1) })
const timedOut = new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(10) })
const badRequest = new Errors.BadRequestError({ status: 400 })
const contextTooLong = new Errors.ContextLengthError({ status: 400 })

type PrimaryError = Errors.RateLimitError | Errors.TimeoutError | Errors.CircuitOpenError | Errors.BadRequestError | Errors.ContextLengthError
const primaryFailing = (error: PrimaryError): Effect.Effect<string, PrimaryError> => Effect.fail(error)
const backup: Effect.Effect<string, Errors.ProviderUnavailableError> = Effect.succeed("backup")

describe("Fallback: typing", () => {
  it("each step removes the tags it handles from the error type; a static reply leaves never", () => {
    const primary = Fallback.primary({ name: "gpt-4o", deployment: "openai-gpt-4o" }, primaryFailing(rateLimited))
    expectTypeOf(primary).toEqualTypeOf<Fallback.Chain<string, PrimaryError, never>>()

    const withBackup = primary.pipe(
      Fallback.orElse(
        { name: "claude", deployment: "anthropic", on: ["RateLimitError", "TimeoutError", "CircuitOpenError"] },
        () => backup
      )
    )
    expectTypeOf(withBackup).toEqualTypeOf<
      Fallback.Chain<string, Errors.BadRequestError | Errors.ContextLengthError | Errors.ProviderUnavailableError, never>
    >()

    const withLargerContext = withBackup.pipe(
      Fallback.orElse({ name: "long-context", on: ["ContextLengthError"] }, () => Effect.succeed(42))
    )
    expectTypeOf(withLargerContext).toEqualTypeOf<
      Fallback.Chain<string | number, Errors.BadRequestError | Errors.ProviderUnavailableError, never>
    >()

    const fallbackable = withLargerContext.pipe(Fallback.orElseFallbackable({ name: "cheap" }, () => Effect.succeed("cheap")))
    expectTypeOf(fallbackable).toEqualTypeOf<Fallback.Chain<string | number, Errors.BadRequestError, never>>()

    const total = fallbackable.pipe(Fallback.orStatic("static", () => "sorry"))
    expectTypeOf(total).toEqualTypeOf<Fallback.Chain<string | number, never, never>>()
    expectTypeOf(Fallback.run(total)).toEqualTypeOf<Effect.Effect<Fallback.Answer<string | number>, never, never>>()
  })

  it("naming a tag the chain cannot fail with is a compile error", () => {
    const primary = Fallback.primary({ name: "p" }, backup)
    // @ts-expect-error: "AuthError" is not in the primary's error type
    Fallback.orElse(primary, { name: "b", on: ["AuthError"] }, () => backup)
    expect(primary.steps).toEqual(["p"])
  })

  it("a cache step keeps the error type: a miss fails with the error before it", () => {
    const chain = Fallback.primary({ name: "p" }, primaryFailing(timedOut)).pipe(
      Fallback.orCache("cache", Effect.succeed(Option.none<{ value: string; ageMs: number; stale: boolean }>()))
    )
    expectTypeOf(chain).toEqualTypeOf<Fallback.Chain<string, PrimaryError, never>>()
  })
})

describe("Fallback: running", () => {
  it.effect("the primary answers: source primary, no fallbacks", () =>
    Effect.gen(function*() {
      const answer = yield* Fallback.run(Fallback.primary({ name: "p", deployment: "openai" }, Effect.succeed("hi")))
      expect(answer).toMatchObject({ value: "hi", source: "primary", step: "p", deployment: "openai", fallbacks: [] })
    }))

  it.effect("a handled tag goes to the next step, and the answer says who answered and what was met", () =>
    Effect.gen(function*() {
      const answer = yield* Fallback.primary({ name: "p" }, primaryFailing(rateLimited)).pipe(
        Fallback.orElse({ name: "backup", deployment: "anthropic", on: ["RateLimitError"] }, () => backup),
        Fallback.run
      )
      expect(answer).toMatchObject({
        value: "backup",
        source: "fallback-provider",
        step: "backup",
        deployment: "anthropic",
        fallbacks: [{ from: "p", to: "backup", tag: "RateLimitError" }]
      })
    }))

  it.effect("an unhandled tag skips steps that do not name it", () =>
    Effect.gen(function*() {
      const result = yield* Fallback.primary({ name: "p" }, primaryFailing(badRequest)).pipe(
        Fallback.orElse({ name: "backup", on: ["RateLimitError", "TimeoutError"] }, () => backup),
        Fallback.orElseFallbackable({ name: "cheap" }, () => backup),
        Fallback.run,
        Effect.either
      )
      expect(result).toEqual(Either.left(badRequest))
    }))

  it.effect("a ContextLengthError goes only to the step that names it", () =>
    Effect.gen(function*() {
      const answer = yield* Fallback.primary({ name: "p" }, primaryFailing(contextTooLong)).pipe(
        Fallback.orElseFallbackable({ name: "cheap" }, () => Effect.succeed("cheap")),
        Fallback.orElse({ name: "long-context", on: ["ContextLengthError"] }, () => Effect.succeed("long")),
        Fallback.run
      )
      expect([answer.value, answer.step]).toEqual(["long", "long-context"])
      expect(answer.fallbacks).toEqual([{ from: "p", to: "long-context", tag: "ContextLengthError" }])
    }))

  it.effect("a fresh or stale cache entry answers with its source and age; a miss goes on", () =>
    Effect.gen(function*() {
      const stale = yield* Fallback.primary({ name: "p" }, primaryFailing(timedOut)).pipe(
        Fallback.orCache("cache", Effect.succeed(Option.some({ value: "cached", ageMs: 7_200_000, stale: true }))),
        Fallback.orStatic("static", () => "sorry"),
        Fallback.run
      )
      expect(stale).toMatchObject({ value: "cached", source: "stale-cache", ageMs: 7_200_000 })

      const miss = yield* Fallback.primary({ name: "p" }, primaryFailing(timedOut)).pipe(
        Fallback.orCache("cache", Effect.succeed(Option.none())),
        Fallback.orStatic("static", (e) => `sorry (${e._tag})`),
        Fallback.run
      )
      expect(miss).toMatchObject({ value: "sorry (TimeoutError)", source: "static" })
      expect(miss.fallbacks.map((f) => `${f.from}->${f.to}:${f.tag}`)).toEqual([
        "p->cache:TimeoutError",
        "cache->static:TimeoutError"
      ])
    }))

  it.effect.each([
    ["AuthError (a key refused: another deployment has other keys)", new Errors.AuthError({ status: 401, keyName: "prod-1" })],
    ["NoKeyAvailableError (every key out: another deployment may have one)", new Errors.NoKeyAvailableError({ pool: "openai", availableAt: 60_000 })]
  ] as const)("%s goes to the next step that takes any fallbackable error", ([, error]) =>
    Effect.gen(function*() {
      const failing: Effect.Effect<string, Errors.AuthError | Errors.NoKeyAvailableError> = Effect.fail(error)
      const answer = yield* Fallback.primary({ name: "p" }, failing).pipe(
        Fallback.orElseFallbackable({ name: "backup", deployment: "anthropic" }, () => Effect.succeed("backup")),
        Fallback.run,
        Effect.either
      )
      expect(answer).toEqual(Either.right(expect.objectContaining({
        value: "backup",
        source: "fallback-provider",
        step: "backup",
        fallbacks: [{ from: "p", to: "backup", tag: error._tag }]
      })))
    }))

  it.effect("fallbacks are published as events", () =>
    Effect.gen(function*() {
      const events = yield* AttemptEvents.AttemptEvents
      const queue = yield* events.subscribe
      yield* Fallback.primary({ name: "p" }, primaryFailing(rateLimited)).pipe(
        Fallback.orStatic("static", () => "sorry"),
        Fallback.run
      )
      const all = yield* Queue.takeAll(queue)
      expect([...all]).toEqual([{ _tag: "FallbackTaken", at: 0, from: "p", to: "static", errorTag: "RateLimitError" }])
    }).pipe(Effect.scoped, Effect.provide(AttemptEvents.layer)))
})

describe("Fallback: a failed chain's cause", () => {
  const down = new Errors.ProviderUnavailableError({ status: 503 })
  const unavailable = (): Effect.Effect<string, Errors.ProviderUnavailableError> => Effect.fail(down)
  const refused = new Errors.BadRequestError({ status: 422 })

  it.effect("keeps every step's error, the surfaced one first; the typed error is the surfaced one alone", () =>
    Effect.gen(function*() {
      const chain = Fallback.primary({ name: "p" }, primaryFailing(rateLimited)).pipe(
        Fallback.orElse({ name: "b", on: ["RateLimitError"] }, () => unavailable()),
        Fallback.run
      )
      expectTypeOf(chain).toEqualTypeOf<
        Effect.Effect<Fallback.Answer<string>, Exclude<PrimaryError, Errors.RateLimitError> | Errors.ProviderUnavailableError>
      >()
      const cause = yield* Effect.flip(Effect.sandbox(chain))
      expect(Cause.failures(cause)).toEqual(Chunk.make(down, rateLimited))
      expect(Cause.failureOption(cause)).toEqual(Option.some(down))
      expect(yield* Effect.either(chain)).toEqual(Either.left(down))
    }))

  it.effect("three failed steps: newest to oldest, and a step's error no later step names still carries the others", () =>
    Effect.gen(function*() {
      const cause = yield* Fallback.primary({ name: "p" }, primaryFailing(timedOut)).pipe(
        Fallback.orElse({ name: "b", on: ["TimeoutError"] }, () => unavailable()),
        Fallback.orElseFallbackable({ name: "c" }, () => Effect.fail(refused)),
        Fallback.orElse({ name: "d", on: ["ContextLengthError"] }, () => Effect.succeed("never")),
        Fallback.run,
        Effect.sandbox,
        Effect.flip
      )
      expect(Cause.failures(cause)).toEqual(Chunk.make(refused, down, timedOut))
      expect(Cause.failureOption(cause)).toEqual(Option.some(refused))
    }))

  it.effect("a step that passes on the error it was handed (a cache miss) does not count it twice", () =>
    Effect.gen(function*() {
      const cause = yield* Fallback.primary({ name: "p" }, primaryFailing(timedOut)).pipe(
        Fallback.orCache("cache", Effect.succeed(Option.none())),
        Fallback.orElse({ name: "b", on: ["TimeoutError"] }, () => unavailable()),
        Fallback.run,
        Effect.sandbox,
        Effect.flip
      )
      expect(Cause.failures(cause)).toEqual(Chunk.make(down, timedOut))
    }))

  it.effect("a defect in a later step ends the chain with the defect alone, so catchAll cannot recover from it", () =>
    Effect.gen(function*() {
      const chain = Fallback.primary({ name: "p" }, primaryFailing(rateLimited)).pipe(
        Fallback.orElse({ name: "b", on: ["RateLimitError"] }, () => Effect.die("boom")),
        Fallback.run
      )
      const cause = yield* Effect.flip(Effect.sandbox(chain))
      expect(Cause.failures(cause)).toEqual(Chunk.empty())
      expect(Cause.defects(cause)).toEqual(Chunk.make("boom"))
      const exit = yield* Effect.exit(Effect.catchAll(chain, () => Effect.succeed("recovered")))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    }))
})

describe("Fallback: one budget per request", () => {
  const failingPolicy = (deployment: string, maxRetries: number) =>
    Policy.make({ deployment, retry: { maxRetries, jitter: "none", baseDelay: "100 millis" }, circuitBreaker: false })

  it.effect("attempts across retries and fallbacks are counted and capped by maxAttempts", () =>
    Effect.gen(function*() {
      const a = yield* failingPolicy("a", 3)
      const b = yield* failingPolicy("b", 3)
      let calls = 0
      const down = () => Effect.suspend(() => { calls++; return Effect.fail(new Errors.ProviderUnavailableError({ status: 503 })) })
      const fiber = yield* Effect.fork(
        Fallback.primary({ name: "a" }, a.execute(down)).pipe(
          Fallback.orElseFallbackable({ name: "b" }, () => b.execute(down)),
          Fallback.orStatic("static", (e) => e._tag),
          (chain) => Fallback.run(chain, { maxAttempts: 5 })
        )
      )
      yield* TestClock.adjust("1 minutes")
      const answer = yield* Fiber.join(fiber)
      // 4 attempts on a (1 + 3 retries), then b gets 1 and is refused the 2nd: 5, not 8.
      expect(calls).toBe(5)
      expect(answer).toMatchObject({ value: "BudgetExhaustedError", source: "static", attempts: 5 })
      expect(answer.errors.map((e) => `${e.deployment}:${e.tag}`)).toEqual([
        "a:ProviderUnavailableError",
        "a:ProviderUnavailableError",
        "a:ProviderUnavailableError",
        "a:ProviderUnavailableError",
        "b:ProviderUnavailableError"
      ])
    }).pipe(Effect.provide(StateStore.layerMemory)))

  const countCalls = () => {
    const counter = { calls: 0 }
    const down = Effect.suspend(() => {
      counter.calls++
      return Effect.fail(new Errors.ProviderUnavailableError({ status: 503 }))
    })
    return { counter, down }
  }
  const runForked = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(effect)
      yield* TestClock.adjust("10 minutes")
      return yield* Fiber.join(fiber)
    })

  it.effect("rule 33: maxAttempts holds for a chain of standalone Retry steps: 3 calls and attempts: 3, not 11 calls and attempts: 0", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ maxRetries: 10, jitter: "none" })
      const { counter, down } = countCalls()
      const answer = yield* runForked(
        Fallback.primary({ name: "a" }, retry.execute(down)).pipe(
          Fallback.orElseFallbackable({ name: "b" }, () => retry.execute(down)),
          Fallback.orStatic("static", (e) => e._tag),
          (chain) => Fallback.run(chain, { maxAttempts: 3 })
        )
      )
      expect(counter.calls).toBe(3)
      expect(answer).toMatchObject({ value: "BudgetExhaustedError", attempts: 3 })
    }))

  it.effect("rule 33: maxAttempts holds for a chain of standalone Policy.make steps, retries included", () =>
    Effect.gen(function*() {
      const a = yield* failingPolicy("a", 10)
      const b = yield* failingPolicy("b", 10)
      const { counter, down } = countCalls()
      const answer = yield* runForked(
        Fallback.primary({ name: "a" }, a.execute(down)).pipe(
          Fallback.orElseFallbackable({ name: "b" }, () => b.execute(down)),
          Fallback.orStatic("static", (e) => e._tag),
          (chain) => Fallback.run(chain, { maxAttempts: 4 })
        )
      )
      expect(counter.calls).toBe(4)
      expect(answer).toMatchObject({ value: "BudgetExhaustedError", attempts: 4 })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("rule 33: a Policy inside a standalone Retry is charged once per call, never twice; a run its breaker refuses is not charged", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ maxRetries: 3, jitter: "none", baseDelay: "1 second" })
      const policy = yield* Policy.make({
        deployment: "p",
        retry: { maxRetries: 1, jitter: "none", baseDelay: "100 millis" },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 2 }, openDuration: "1 hour" }
      })
      const { counter, down } = countCalls()
      const answer = yield* runForked(
        Fallback.primary({ name: "p" }, retry.execute(policy.execute(down))).pipe(
          Fallback.orStatic("static", (e) => e._tag),
          (chain) => Fallback.run(chain, { maxAttempts: 10 })
        )
      )
      // The first run: the policy's call and its retry (2 calls); the breaker opens; the retry's 3 more runs are refused by it.
      expect(counter.calls).toBe(2)
      expect(answer).toMatchObject({ value: "CircuitOpenError", attempts: 2 })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("a cache step answers a request whose budget is spent: orCache takes over a BudgetExhaustedError", () =>
    Effect.gen(function*() {
      const a = yield* failingPolicy("a", 10)
      const { counter, down } = countCalls()
      const answer = yield* runForked(
        Fallback.primary({ name: "a" }, a.execute(down)).pipe(
          Fallback.orCache("cache", Effect.succeed(Option.some({ value: "cached", ageMs: 5_000, stale: true }))),
          Fallback.orStatic("static", (e) => e._tag),
          (chain) => Fallback.run(chain, { maxAttempts: 2 })
        )
      )
      // The first attempt and one retry; the second retry is refused by the budget, and the cache answers.
      expect(counter.calls).toBe(2)
      expect(answer).toMatchObject({ value: "cached", source: "stale-cache", step: "cache", ageMs: 5_000, attempts: 2 })
      expect(answer.fallbacks.map((f) => `${f.from}->${f.to}:${f.tag}`)).toEqual(["a->cache:BudgetExhaustedError"])
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("money: an attempt whose estimated cost would pass maxCostUsd is refused", () =>
    Effect.gen(function*() {
      const expensive = yield* Policy.make({ deployment: "expensive", retry: false, circuitBreaker: false })
      const cheap = yield* Policy.make({ deployment: "cheap", retry: false, circuitBreaker: false })
      const answer = yield* Fallback.primary(
        { name: "expensive" },
        expensive.execute(() => Effect.fail(timedOut), { estimatedCostUsd: 0.03 })
      ).pipe(
        Fallback.orElseFallbackable(
          { name: "expensive-again" },
          () => expensive.execute(() => Effect.succeed("x"), { estimatedCostUsd: 0.03 })
        ),
        Fallback.orElse({ name: "cheap", on: ["BudgetExhaustedError"] }, () =>
          cheap.execute(() => Effect.succeed("cheap answer"), { estimatedCostUsd: 0.001, costUsd: () => 0.0005 })),
        (chain) => Fallback.run(chain, { maxCostUsd: 0.05 })
      )
      expect(answer.value).toBe("cheap answer")
      expect(answer.costUsd).toBeCloseTo(0.0305)
      expect(answer.fallbacks.map((f) => f.tag)).toEqual(["TimeoutError", "BudgetExhaustedError"])
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("deadline: the attempt in flight is cut at the deadline with a TimeoutError the next step takes over", () =>
    Effect.gen(function*() {
      const slow = yield* Policy.make({ deployment: "slow", retry: false, circuitBreaker: false })
      let interrupted = false
      const fiber = yield* Effect.fork(
        Fallback.primary(
          { name: "slow" },
          slow.execute(() => Effect.onInterrupt(Effect.never, () => Effect.sync(() => { interrupted = true })))
        ).pipe(
          Fallback.orStatic("static", (e) => (e._tag === "TimeoutError" ? `${e._tag}:${e.phase}` : e._tag)),
          (chain) => Fallback.run(chain, { deadline: "3 seconds" })
        )
      )
      yield* TestClock.adjust("2999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const answer = yield* Fiber.join(fiber)
      expect(interrupted).toBe(true)
      expect(answer).toMatchObject({ value: "TimeoutError:total", source: "static", latencyMs: 3000 })
    }).pipe(Effect.provide(StateStore.layerMemory)))
})
