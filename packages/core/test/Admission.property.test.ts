/**
 * The policies as services (each alone, and inside `Policy`) against their
 * pure state machines: random scripts of outcomes, interruptions and clock
 * steps must give the admissions, refusals and transitions the machines
 * give. The services add effects (fibers, the clock, a store, metrics) around
 * the machines; these properties pin that they add no rule of their own.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import * as Bulkhead from "../src/Bulkhead.js"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import * as Errors from "../src/Errors.js"
import * as breaker from "../src/internal/breakerState.js"
import * as keys from "../src/internal/keyPoolState.js"
import * as bucket from "../src/internal/tokenBucket.js"
import * as KeyPool from "../src/KeyPool.js"
import * as Policy from "../src/Policy.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as StateStore from "../src/StateStore.js"

const runTest = <A, E>(program: Effect.Effect<A, E, StateStore.StateStore>): Promise<A> =>
  Effect.runPromise(program.pipe(Effect.provide(StateStore.layerMemory), Effect.provide(TestContext.TestContext)))

/** Moves the TestClock and the model's clock together. */
const advance = (now: number, millis: number) => Effect.as(TestClock.adjust(millis), now + millis)

/** How a script's call is made: through the policy alone, or through a `Policy` holding only it. */
type Via = "alone" | "policy"
const vias: ReadonlyArray<Via> = ["alone", "policy"]

const down = new Errors.ProviderUnavailableError({ status: 503 })

// ---------------------------------------------------------------------------
// circuit breaker

type BreakerCommand =
  | { readonly _tag: "advance"; readonly millis: number }
  | {
    readonly _tag: "call"
    readonly outcome: "success" | "failure" | "local-refusal" | "interrupted"
    readonly millis: number
  }

const breakerCommand: fc.Arbitrary<BreakerCommand> = fc.oneof(
  fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 15_000 }) }),
  fc.record({
    _tag: fc.constant("call" as const),
    outcome: fc.constantFrom("success" as const, "failure" as const, "failure" as const, "local-refusal" as const, "interrupted" as const),
    millis: fc.integer({ min: 1, max: 3_000 })
  })
)

const breakerOptions: fc.Arbitrary<Omit<CircuitBreaker.Options, "name">> = fc.record({
  trigger: fc.oneof(
    fc.record({ kind: fc.constant("consecutive" as const), failures: fc.integer({ min: 1, max: 4 }) }),
    fc.record({
      kind: fc.constant("failure-rate" as const),
      window: fc.record({ kind: fc.constant("count" as const), size: fc.integer({ min: 1, max: 8 }) }),
      threshold: fc.constantFrom(0.25, 0.5, 1),
      minimumCalls: fc.integer({ min: 1, max: 6 })
    })
  ),
  openDuration: fc.constantFrom(1_000, 5_000),
  permittedCallsInHalfOpen: fc.integer({ min: 1, max: 3 }),
  slowCallDuration: fc.constantFrom(500, 2_000)
})

/** The machine's configuration for these options, as `CircuitBreaker.make` builds it. */
const machineConfig = (o: Omit<CircuitBreaker.Options, "name">): breaker.Config => {
  const t = o.trigger ?? { kind: "consecutive", failures: 5 }
  const open = typeof o.openDuration === "number" ? o.openDuration : 30_000
  return {
    trigger: t.kind === "consecutive" ? t : {
      kind: "failure-rate",
      window: t.window.kind === "count" ? t.window : { kind: "time", buckets: 10, bucketMillis: 1_000 },
      threshold: t.threshold,
      minimumCalls: t.minimumCalls ?? 10,
      slowCallRateThreshold: t.slowCallRateThreshold
    },
    slowCallMillis: typeof o.slowCallDuration === "number" ? o.slowCallDuration : undefined,
    permittedCallsInHalfOpen: o.permittedCallsInHalfOpen ?? 1,
    maxHalfOpenMillis: 60_000,
    openMillis: () => open
  }
}

const breakerScript = (via: Via, options: Omit<CircuitBreaker.Options, "name">, commands: ReadonlyArray<BreakerCommand>) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    const onTransition = (t: CircuitBreaker.Transition) => Effect.sync(() => seen.push(`${t.at} ${t.from}->${t.to}`))
    const run: <A, E>(self: Effect.Effect<A, E>) => Effect.Effect<A, E | Policy.PolicyError> = via === "alone"
      ? yield* Effect.map(CircuitBreaker.make({ ...options, name: "b", onTransition }), (b) => b.execute)
      : yield* Effect.map(
        Policy.make({ deployment: "b", retry: false, retryBudget: false, circuitBreaker: { ...options, onTransition } }),
        (p) => <A, E>(self: Effect.Effect<A, E>) => p.execute(() => self)
      )
    const config = machineConfig(options)
    let state = breaker.initial(config)
    let now = 0
    const expected: Array<string> = []
    const step = <A>(s: breaker.Step<A>): A => {
      state = s.state
      for (const t of s.transitions) expected.push(`${t.at} ${t.from}->${t.to}`)
      return s.result
    }
    for (const c of commands) {
      if (c._tag === "advance") {
        now = yield* advance(now, c.millis)
        continue
      }
      const admission = step(breaker.admit(config, state, now))
      const body: Effect.Effect<string, unknown> = c.outcome === "success"
        ? Effect.succeed("ok")
        : c.outcome === "failure"
        ? Effect.fail(down)
        : c.outcome === "local-refusal"
        ? Effect.fail(new Errors.RateLimitError({ source: "local" }))
        : Effect.never
      const fiber = yield* Effect.fork(run(Effect.zipRight(Effect.sleep(c.millis), body)))
      now = yield* advance(now, c.millis)
      if (c.outcome === "interrupted") yield* Fiber.interrupt(fiber)
      const exit = yield* Fiber.await(fiber)
      if (admission._tag === "rejected") {
        // Refused at once: the refusal says when to come back, and nothing ran.
        expect(failureOf(exit)).toMatchObject({
          _tag: "CircuitOpenError",
          state: admission.rejection.state,
          retryAt: admission.rejection.retryAt
        })
        continue
      }
      const outcome: breaker.Outcome = c.outcome === "success" ? "success" : c.outcome === "failure" ? "failure" : "ignored"
      step(breaker.record(config, state, admission, outcome, c.millis, now))
    }
    expect(seen).toEqual(expected)
  })

const failureOf = (exit: Exit.Exit<unknown, unknown>): unknown =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe("CircuitBreaker as a service = its state machine (property)", () => {
  for (const via of vias) {
    it(`random scripts of outcomes, interruptions and clock steps: same admissions, refusals and transitions (${via})`, async () => {
      await fc.assert(
        fc.asyncProperty(breakerOptions, fc.array(breakerCommand, { minLength: 20, maxLength: 60 }), (options, commands) =>
          runTest(breakerScript(via, options, commands))),
        { numRuns: 15, seed: 27 }
      )
    }, 60_000)
  }
})

// ---------------------------------------------------------------------------
// rate limiter

type LimiterCommand =
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "call"; readonly tokens: number; readonly upstream429: number | undefined }

const limiterCommand: fc.Arbitrary<LimiterCommand> = fc.oneof(
  fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 20_000 }) }),
  fc.record({
    _tag: fc.constant("call" as const),
    tokens: fc.integer({ min: 0, max: 400 }),
    upstream429: fc.option(fc.integer({ min: 1, max: 30_000 }), { nil: undefined, freq: 4 })
  })
)

const limiterScript = (via: Via, commands: ReadonlyArray<LimiterCommand>) =>
  Effect.gen(function*() {
    const options = { buckets: { requests: { capacity: 5, refillInterval: 10_000 }, tokens: { capacity: 1_000, refillInterval: 10_000 } } }
    const run: <A, E>(self: Effect.Effect<A, E>, tokens: number) => Effect.Effect<A, E | Policy.PolicyError> = via === "alone"
      ? yield* Effect.map(RateLimiter.make({ ...options, name: "l" }), (l) =>
        <A, E>(self: Effect.Effect<A, E>, tokens: number) => l.execute(self, { tokens }))
      : yield* Effect.map(
        Policy.make({ deployment: "l", retry: false, retryBudget: false, circuitBreaker: false, rateLimiter: options }),
        (p) => <A, E>(self: Effect.Effect<A, E>, tokens: number) => p.execute(() => self, { tokens })
      )
    const config = bucket.makeConfig([
      { name: "requests", capacity: 5, refillAmount: 5, refillInterval: 10_000 },
      { name: "tokens", capacity: 1_000, refillAmount: 1_000, refillInterval: 10_000 }
    ])
    let state: bucket.State | null = null
    let now = 0
    for (const c of commands) {
      if (c._tag === "advance") {
        now = yield* advance(now, c.millis)
        continue
      }
      const [decision, next] = bucket.reserve(config, [1, c.tokens], now, 0, Infinity)(state)
      state = next
      const body = c.upstream429 === undefined
        ? Effect.succeed("ok")
        : Effect.fail(new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.millis(c.upstream429) }))
      const exit = yield* Effect.exit(run(body, c.tokens))
      if (decision._tag === "Rejected") {
        expect(exit._tag).toBe("Failure")
        expect(failureOf(exit)).toMatchObject({ _tag: "RateLimitError", source: "local", retryAfter: Duration.millis(decision.retryAfter) })
        continue
      }
      if (c.upstream429 === undefined) expect(exit).toEqual(Exit.succeed("ok"))
      else expect(failureOf(exit)).toMatchObject({ _tag: "RateLimitError", source: "upstream" })
      if (c.upstream429 !== undefined) state = bucket.pause(config, now + c.upstream429, now)(state)[1]
    }
  })

describe("RateLimiter as a service = its token buckets (property)", () => {
  for (const via of vias) {
    it(`random costs, upstream 429s and clock steps: same grants, refusals and retryAfter (${via})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(limiterCommand, { minLength: 20, maxLength: 80 }), (commands) =>
          runTest(limiterScript(via, commands))),
        { numRuns: 15, seed: 11 }
      )
    }, 60_000)
  }
})

// ---------------------------------------------------------------------------
// key pool

type KeyCommand =
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "call"; readonly outcome: "ok" | "429" | "401" | "503" | "quota" | "interrupted" }

const keyCommand: fc.Arbitrary<KeyCommand> = fc.oneof(
  fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 40_000 }) }),
  fc.record({
    _tag: fc.constant("call" as const),
    outcome: fc.constantFrom("ok" as const, "ok" as const, "429" as const, "401" as const, "503" as const, "quota" as const, "interrupted" as const)
  })
)

const keyOutcome = (outcome: Exclude<KeyCommand & { _tag: "call" }, never>["outcome"]): keys.Outcome => {
  switch (outcome) {
    case "ok":
      return keys.success
    case "429":
      return { _tag: "rate-limited", error: "RateLimitError", retryAfter: 20_000 }
    case "401":
      return { _tag: "auth", error: "AuthError" }
    case "503":
      return { _tag: "failure", error: "ProviderUnavailableError" }
    case "quota":
      return { _tag: "quota", error: "QuotaExhaustedError", resetAt: undefined }
    case "interrupted":
      return keys.ignored
  }
}

const keyBody = (outcome: (KeyCommand & { _tag: "call" })["outcome"]): Effect.Effect<string, unknown> => {
  switch (outcome) {
    case "ok":
      return Effect.succeed("ok")
    case "429":
      return Effect.fail(new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(20) }))
    case "401":
      return Effect.fail(new Errors.AuthError({ status: 401 }))
    case "503":
      return Effect.fail(down)
    case "quota":
      return Effect.fail(new Errors.QuotaExhaustedError({}))
    case "interrupted":
      return Effect.never
  }
}

const keyScript = (via: Via, commands: ReadonlyArray<KeyCommand>) =>
  Effect.gen(function*() {
    const names = ["k1", "k2", "k3"]
    const pool = yield* KeyPool.make({
      name: "p",
      keys: names.map((name, i) => ({ name, key: Redacted.make(`sk-${i}`), ...(i < 2 ? { group: "account" } : {}) })),
      failuresBeforeCooldown: 2
    })
    const run: <A, E>(use: (key: string) => Effect.Effect<A, E>) => Effect.Effect<A, E | Policy.PolicyError> = via === "alone"
      ? (use) => pool.withKey((k) => use(k.name))
      : yield* Effect.map(
        Policy.make({ deployment: "p", keyPool: pool, retry: false, retryBudget: false, circuitBreaker: false }),
        (p) => <A, E>(use: (key: string) => Effect.Effect<A, E>) => p.execute(({ key }) => use(key?.name ?? "none"))
      )
    const config: keys.Config = {
      names,
      weights: [1, 1, 1],
      groups: [[0, 1], [0, 1], [2]],
      groupNames: ["account", "account", undefined],
      strategy: "round-robin",
      rateLimitCooldown: 60_000,
      failuresBeforeCooldown: 2,
      failureCooldown: 30_000,
      quotaResetAfter: 3_600_000
    }
    let state = keys.initial(config)
    let now = 0
    for (const c of commands) {
      if (c._tag === "advance") {
        now = yield* advance(now, c.millis)
        continue
      }
      const pick = keys.pick(config, state, now, undefined, undefined)
      state = pick.state
      let used: string | undefined
      const fiber = yield* Effect.fork(run((key) => Effect.suspend(() => {
        used = key
        return keyBody(c.outcome)
      })))
      yield* TestClock.adjust(1)
      now += 1
      if (c.outcome === "interrupted") yield* Fiber.interrupt(fiber)
      const exit = yield* Fiber.await(fiber)
      if (pick.result._tag === "none") {
        expect(used).toBeUndefined()
        expect(failureOf(exit)).toMatchObject({ _tag: "NoKeyAvailableError" })
        continue
      }
      expect(used).toBe(names[pick.result.index])
      state = keys.record(config, state, pick.result.index, keyOutcome(c.outcome), now).state
    }
    const status = yield* pool.status
    expect(status.keys.map((k) => k.state)).toEqual(keys.advance(config, state, now).state.keys.map((k) => k.state))
  })

describe("KeyPool as a service = its key-health machine (property)", () => {
  for (const via of vias) {
    it(`random outcomes per key, interruptions and clock steps: same picks, refusals and key states (${via})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(keyCommand, { minLength: 20, maxLength: 80 }), (commands) => runTest(keyScript(via, commands))),
        { numRuns: 15, seed: 5 }
      )
    }, 60_000)
  }
})

// ---------------------------------------------------------------------------
// bulkhead

type BulkheadCommand =
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "call"; readonly millis: number }
  | { readonly _tag: "interrupt"; readonly pick: number }

const bulkheadCommand: fc.Arbitrary<BulkheadCommand> = fc.oneof(
  fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ _tag: fc.constant("call" as const), millis: fc.integer({ min: 1, max: 500 }) }),
  fc.record({ _tag: fc.constant("interrupt" as const), pick: fc.nat() })
)

/**
 * A model of rule 20: `maxConcurrent` permits, a FIFO queue of `maxQueue`, a
 * freed permit handed to the oldest waiter, an interrupted waiter leaving
 * without a permit, a full queue refusing at once.
 */
const bulkheadScript = (via: Via, commands: ReadonlyArray<BulkheadCommand>) =>
  Effect.gen(function*() {
    const maxConcurrent = 2
    const maxQueue = 2
    const options = { maxConcurrent, maxQueue }
    const started: Array<number> = []
    const body = (id: number, millis: number) => Effect.zipRight(Effect.sync(() => started.push(id)), Effect.sleep(millis))
    const { run, status } = via === "alone"
      ? yield* Effect.map(Bulkhead.make({ ...options, name: "b" }), (b) => ({
        run: (id: number, millis: number): Effect.Effect<void, unknown> => b.execute(body(id, millis)),
        status: b.status
      }))
      : yield* Effect.map(
        Policy.make({ deployment: "b", retry: false, retryBudget: false, circuitBreaker: false, bulkhead: options }),
        (p) => ({
          run: (id: number, millis: number): Effect.Effect<void, unknown> => p.execute(() => body(id, millis)),
          status: Effect.map(p.status, (s) => s.bulkhead)
        })
      )
    const fibers: Array<{ readonly id: number; readonly fiber: Fiber.RuntimeFiber<void, unknown> }> = []
    // The model: who runs (until when), who waits, in order.
    const running = new Map<number, number>()
    let waiting: Array<{ readonly id: number; readonly millis: number }> = []
    const expectedStarts: Array<number> = []
    const refused: Array<number> = []
    let now = 0
    const grant = () => {
      while (running.size < maxConcurrent && waiting.length > 0) {
        const next = waiting.shift()!
        running.set(next.id, now + next.millis)
        expectedStarts.push(next.id)
      }
    }
    const finishUpTo = (until: number) => {
      // Calls end in time order; each end frees a permit for the oldest waiter at that instant.
      for (;;) {
        const ends = [...running.entries()].filter(([, end]) => end <= until).sort((a, b) => a[1] - b[1] || a[0] - b[0])
        const first = ends[0]
        if (first === undefined) break
        now = first[1]
        running.delete(first[0])
        grant()
      }
      now = until
    }
    let nextId = 0
    for (const c of commands) {
      if (c._tag === "advance") {
        yield* TestClock.adjust(c.millis)
        finishUpTo(now + c.millis)
        continue
      }
      if (c._tag === "call") {
        const id = nextId++
        const fiber = yield* Effect.fork(run(id, c.millis))
        yield* Effect.yieldNow()
        fibers.push({ id, fiber })
        if (running.size < maxConcurrent) {
          running.set(id, now + c.millis)
          expectedStarts.push(id)
        } else if (waiting.length < maxQueue) {
          waiting.push({ id, millis: c.millis })
        } else {
          refused.push(id)
        }
        continue
      }
      const target = fibers[c.pick % Math.max(1, fibers.length)]
      if (target === undefined) continue
      yield* Fiber.interrupt(target.fiber)
      if (running.delete(target.id)) grant()
      waiting = waiting.filter((w) => w.id !== target.id)
    }
    expect(started).toEqual(expectedStarts)
    for (const id of refused) {
      const exit = yield* Fiber.await(fibers.find((f) => f.id === id)!.fiber)
      expect(failureOf(exit)).toMatchObject({ _tag: "BulkheadFullError", reason: "queue-full" })
    }
    // However the calls ended, no permit is left taken and nobody is left queued.
    yield* TestClock.adjust(100_000)
    yield* Effect.forEach(fibers, (f) => Fiber.await(f.fiber), { discard: true })
    expect(yield* status).toMatchObject({ running: 0, queued: 0 })
  })

describe("Bulkhead as a service = rule 20's permits and FIFO queue (property)", () => {
  for (const via of vias) {
    it(`random calls, durations, interruptions and clock steps: same start order, refusals, nothing leaked (${via})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(bulkheadCommand, { minLength: 20, maxLength: 80 }), (commands) =>
          runTest(bulkheadScript(via, commands))),
        { numRuns: 25, seed: 3 }
      )
    }, 60_000)
  }
})
