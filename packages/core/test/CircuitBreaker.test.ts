import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import * as CircuitBreaker from "../src/CircuitBreaker.js"
import * as Errors from "../src/Errors.js"
import * as StateStore from "../src/StateStore.js"

const down = new Errors.ProviderUnavailableError({ status: 503 })

const run = <R>(effect: Effect.Effect<void, unknown, R | StateStore.StateStore>) =>
  Effect.provide(effect, StateStore.layerMemory)

const make = (options: Omit<CircuitBreaker.Options, "name"> & { readonly name?: string }) =>
  CircuitBreaker.make({ name: "openai", ...options })

const succeed = (b: CircuitBreaker.Service) => Effect.either(b.execute(Effect.succeed("ok")))
const failWith = (b: CircuitBreaker.Service, error: unknown = down) =>
  Effect.either(b.execute(Effect.fail(error)))
const times = <A, E, R>(n: number, effect: Effect.Effect<A, E, R>) => Effect.replicateEffect(effect, n, { discard: true })
const stateOf = (b: CircuitBreaker.Service) => Effect.map(b.status, (s) => s.state)

/** A call that takes `millis` of virtual time, then ends with `outcome`. */
const timed = (b: CircuitBreaker.Service, millis: number, outcome: "ok" | "fail") =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(
      Effect.either(b.execute(Effect.delay(outcome === "ok" ? Effect.void : Effect.fail(down), Duration.millis(millis))))
    )
    yield* TestClock.adjust(Duration.millis(millis))
    return yield* Fiber.join(fiber)
  })

describe("CircuitBreaker: consecutive-failure mode (rule 7)", () => {
  it.effect("opens on the 5th consecutive failure, not the 4th", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 5 } })
      yield* times(4, failWith(b))
      expect(yield* stateOf(b)).toBe("closed")
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("a success in between resets the count", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 5 } })
      yield* times(4, failWith(b))
      yield* succeed(b)
      yield* times(4, failWith(b))
      expect(yield* stateOf(b)).toBe("closed")
    })))

  it.effect("while open it fails fast with CircuitOpenError carrying retryAt, without running the call", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 2 }, openDuration: "30 seconds" })
      yield* times(2, failWith(b))
      let ran = false
      const result = yield* Effect.either(b.execute(Effect.sync(() => { ran = true })))
      expect(ran).toBe(false)
      expect(result).toEqual(Either.left(new Errors.CircuitOpenError({ breaker: "openai", deployment: "openai", state: "open", retryAt: 30_000 })))
    })))

  it.effect("open admits nothing before openedAt + openDuration and admits a trial exactly then (rule 8)", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 1 }, openDuration: "30 seconds" })
      yield* failWith(b)
      yield* TestClock.adjust("29999 millis")
      expect(Either.isLeft(yield* succeed(b))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(yield* succeed(b)).toEqual(Either.right("ok"))
    })))

  it.effect("half-open admits exactly K trials, the first failed trial re-opens, K successes close (seed: 5 / 30 s / 2)", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds", permittedCallsInHalfOpen: 2 })
      yield* times(5, failWith(b))
      yield* TestClock.adjust("30 seconds")
      // Two hanging trials take the whole budget: a third call is rejected at once.
      const gate1 = yield* Effect.makeLatch(false)
      const gate2 = yield* Effect.makeLatch(false)
      const t1 = yield* Effect.fork(b.execute(gate1.await))
      const t2 = yield* Effect.fork(b.execute(gate2.await))
      yield* Effect.yieldNow()
      const third = yield* succeed(b)
      expect(third).toEqual(Either.left(new Errors.CircuitOpenError({ breaker: "openai", deployment: "openai", state: "half-open" })))
      yield* gate1.open
      yield* Fiber.join(t1)
      expect(yield* stateOf(b)).toBe("half-open")
      yield* gate2.open
      yield* Fiber.join(t2)
      expect(yield* stateOf(b)).toBe("closed")

      // Open again, then fail the first trial: back to open at once.
      yield* times(5, failWith(b))
      yield* TestClock.adjust("30 seconds")
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))
})

describe("CircuitBreaker: failure-rate mode, count window (rules 3-5)", () => {
  const trigger = (size: number, minimumCalls: number): CircuitBreaker.FailureRateTrigger => ({
    kind: "failure-rate",
    window: { kind: "count", size },
    threshold: 0.5,
    minimumCalls
  })

  it.effect("minimum calls hold it closed: 9 failures in a row with minimum 10 do not open it", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: trigger(50, 10) })
      yield* times(9, failWith(b))
      expect(yield* stateOf(b)).toBe("closed")
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("the success that fills the window to its minimum can open it, at a rate equal to the threshold", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: trigger(50, 10) })
      yield* times(5, failWith(b))
      yield* times(4, succeed(b))
      expect(yield* stateOf(b)).toBe("closed")
      yield* succeed(b) // 10 calls, 5 failures: 50 % >= 50 %
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("below the threshold it stays closed", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: trigger(50, 10) })
      yield* times(4, failWith(b))
      yield* times(6, succeed(b))
      const status = yield* b.status
      expect(status.state).toBe("closed")
      expect(status.failureRate).toBeCloseTo(0.4)
    })))

  it.effect("the minimum is clamped to the window size", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: trigger(4, 10) })
      yield* times(2, succeed(b))
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("closed")
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("the window holds the last N calls: old failures are evicted", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: trigger(4, 4) })
      yield* failWith(b)
      yield* times(3, succeed(b)) // F S S S: 25 %
      yield* succeed(b) // S S S S: the failure left
      const status = yield* b.status
      expect([status.calls, status.failureRate]).toEqual([4, 0])
      yield* failWith(b) // S S S F
      expect(yield* stateOf(b)).toBe("closed")
    })))
})

describe("CircuitBreaker: failure-rate mode, time window (rule 4)", () => {
  const timeTrigger: CircuitBreaker.FailureRateTrigger = {
    kind: "failure-rate",
    window: { kind: "time", duration: "10 seconds", buckets: 10 },
    threshold: 0.5,
    minimumCalls: 4
  }

  it.effect("failures older than the window are forgotten", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: timeTrigger })
      yield* times(3, failWith(b))
      yield* TestClock.adjust("10 seconds")
      yield* failWith(b)
      const status = yield* b.status
      expect([status.state, status.calls]).toEqual(["closed", 1])
    })))

  it.effect("failures inside the window still count", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: timeTrigger })
      yield* TestClock.adjust("500 millis")
      yield* times(3, failWith(b))
      yield* TestClock.adjust("9 seconds") // bucket of t=0.5 s is still live at t=9.5 s
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("buckets are aligned to the clock: a bucket expires at its boundary, not 10 s after its first call", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: timeTrigger })
      yield* TestClock.adjust("900 millis")
      yield* times(3, failWith(b)) // bucket [0 s, 1 s)
      yield* TestClock.adjust("9100 millis") // t = 10 s: that bucket just left
      expect((yield* b.status).calls).toBe(0)
    })))

  it.effect("an idle gap longer than the window leaves nothing stale", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: timeTrigger })
      yield* times(3, failWith(b))
      yield* TestClock.adjust("1 hours")
      yield* times(3, succeed(b))
      yield* failWith(b)
      const status = yield* b.status
      expect([status.state, status.calls, status.failureRate]).toEqual(["closed", 4, 0.25])
    })))
})

describe("CircuitBreaker: slow calls (rule 6)", () => {
  const slowTrigger: CircuitBreaker.FailureRateTrigger = {
    kind: "failure-rate",
    window: { kind: "count", size: 10 },
    threshold: 1,
    minimumCalls: 2,
    slowCallRateThreshold: 0.5
  }

  it.effect("a call of exactly slowCallDuration is not slow; strictly above is", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: slowTrigger, slowCallDuration: "1 seconds" })
      yield* timed(b, 1000, "ok")
      yield* timed(b, 1000, "ok")
      expect((yield* b.status).slowCallRate).toBe(0)
      yield* timed(b, 1001, "ok")
      yield* timed(b, 1001, "ok")
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("slow failures count as slow too", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: slowTrigger, slowCallDuration: "1 seconds" })
      yield* timed(b, 5000, "fail")
      yield* timed(b, 10, "ok")
      const status = yield* b.status
      expect(status.state).toBe("open") // 1 slow of 2 = 50 %
    })))

  it.effect("a slow-rate threshold without slowCallDuration is a config error naming the field", () =>
    Effect.gen(function*() {
      const result = yield* Effect.either(run(Effect.asVoid(make({ trigger: slowTrigger }))))
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "InvalidConfigError", path: "slowCallDuration" })
    }))
})

describe("CircuitBreaker: half-open in failure-rate mode (rules 9-10)", () => {
  const rateTrigger: CircuitBreaker.FailureRateTrigger = {
    kind: "failure-rate",
    window: { kind: "count", size: 10 },
    threshold: 0.5,
    minimumCalls: 2
  }
  const opened = (permittedCallsInHalfOpen: number, extra: Partial<CircuitBreaker.Options> = {}) =>
    Effect.gen(function*() {
      const b = yield* make({ trigger: rateTrigger, openDuration: "10 seconds", permittedCallsInHalfOpen, ...extra })
      yield* times(2, failWith(b))
      yield* TestClock.adjust("10 seconds")
      return b
    })

  it.effect("the verdict waits for all K trials: an early failure does not re-open it", () =>
    run(Effect.gen(function*() {
      const b = yield* opened(3)
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("half-open")
      yield* succeed(b)
      yield* succeed(b) // 1 of 3 failed: 33 % < 50 %
      expect(yield* stateOf(b)).toBe("closed")
      expect((yield* b.status).calls).toBe(0) // fresh window
    })))

  it.effect("trial failure rate at the threshold re-opens", () =>
    run(Effect.gen(function*() {
      const b = yield* opened(2)
      yield* succeed(b)
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("K trials that all succeed but are all slower than slowCallDuration re-open it: the slow-call rate is judged in half-open too", () =>
    run(Effect.gen(function*() {
      const b = yield* opened(2, {
        trigger: { ...rateTrigger, slowCallRateThreshold: 0.5 },
        slowCallDuration: "1 seconds"
      })
      const first = yield* timed(b, 1001, "ok")
      expect(first).toEqual(Either.right(undefined))
      expect(yield* stateOf(b)).toBe("half-open") // the verdict waits for the second trial
      yield* timed(b, 1001, "ok")
      // No trial failed, both were slow: 100 % slow >= 50 %.
      const status = yield* b.status
      expect([status.state, status.openings]).toEqual(["open", 2])
    })))

  it.effect("it is a budget, not a concurrency limit: a finished trial does not free a slot", () =>
    run(Effect.gen(function*() {
      const b = yield* opened(2)
      const gate = yield* Effect.makeLatch(false)
      const hanging = yield* Effect.fork(b.execute(gate.await))
      yield* Effect.yieldNow()
      yield* failWith(b) // second trial done
      expect(Either.isLeft(yield* succeed(b))).toBe(true) // budget spent
      yield* gate.open
      yield* Fiber.join(hanging)
    })))

  it.effect("a trial interrupted by its caller, or ignored, gives its slot back", () =>
    run(Effect.gen(function*() {
      const b = yield* opened(1)
      const hanging = yield* Effect.fork(b.execute(Effect.never))
      yield* Effect.yieldNow()
      expect(Either.isLeft(yield* succeed(b))).toBe(true)
      yield* Fiber.interrupt(hanging)
      yield* failWith(b, new Errors.RateLimitError({ source: "upstream" })) // ignored
      expect((yield* b.status).halfOpenTrials).toEqual({ admitted: 0, done: 0 })
      yield* succeed(b)
      expect(yield* stateOf(b)).toBe("closed")
    })))

  it.effect("a probe that hangs past maxHalfOpenDuration sends it back to open, and its late success is ignored", () =>
    run(Effect.gen(function*() {
      const b = yield* opened(1, { maxHalfOpenDuration: "5 seconds" })
      const gate = yield* Effect.makeLatch(false)
      const probe = yield* Effect.fork(b.execute(gate.await))
      yield* Effect.yieldNow()
      yield* TestClock.adjust("4999 millis")
      expect(yield* stateOf(b)).toBe("half-open")
      yield* TestClock.adjust("1 millis")
      const status = yield* b.status
      expect([status.state, status.retryAt]).toEqual(["open", 15_000 + 10_000])
      yield* gate.open
      yield* Fiber.join(probe)
      expect(yield* stateOf(b)).toBe("open")
    })))
})

describe("CircuitBreaker: hung probes without anyone looking (rules 10-11)", () => {
  const rateTrigger: CircuitBreaker.FailureRateTrigger = {
    kind: "failure-rate",
    window: { kind: "count", size: 10 },
    threshold: 0.5,
    minimumCalls: 2
  }
  const opened = (extra: Partial<CircuitBreaker.Options> = {}) =>
    Effect.gen(function*() {
      const b = yield* make({ trigger: rateTrigger, openDuration: "10 seconds", maxHalfOpenDuration: "5 seconds", ...extra })
      yield* times(2, failWith(b))
      yield* TestClock.adjust("10 seconds")
      return b
    })

  it.effect("a probe that hung past maxHalfOpenDuration cannot close the breaker, even if nothing read it meanwhile", () =>
    run(Effect.gen(function*() {
      const b = yield* opened()
      const gate = yield* Effect.makeLatch(false)
      const probe = yield* Effect.fork(b.execute(gate.await))
      yield* Effect.yieldNow()
      yield* TestClock.adjust("60 seconds") // no call, no status read in between
      yield* gate.open
      yield* Fiber.join(probe)
      expect(yield* stateOf(b)).not.toBe("closed")
    })))

  it.effect("with no trial outstanding, idle time does not re-open a half-open breaker nor grow its open duration", () =>
    run(Effect.gen(function*() {
      const b = yield* opened()
      yield* failWith(b, new Errors.RateLimitError({ source: "upstream" })) // an ignored trial gives its slot back
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust("6 seconds")
        yield* b.status // a status page polling
      }
      const status = yield* b.status
      expect([status.state, status.openings]).toEqual(["half-open", 1])
      yield* succeed(b)
      expect(yield* stateOf(b)).toBe("closed")
    })))
})

describe("CircuitBreaker: generations (rule 11)", () => {
  it.effect("a late failure never extends an open period", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 1 }, openDuration: "10 seconds" })
      const gate = yield* Effect.makeLatch(false)
      const late = yield* Effect.fork(Effect.either(b.execute(Effect.zipRight(gate.await, Effect.fail(down)))))
      yield* Effect.yieldNow()
      yield* failWith(b) // opens at t=0 until t=10 s
      yield* TestClock.adjust("5 seconds")
      yield* gate.open
      const result = yield* Fiber.join(late)
      expect(result).toEqual(Either.left(down)) // the caller still gets its real result
      expect((yield* b.status).retryAt).toBe(10_000)
    })))

  it.effect("a late success never closes a half-open breaker", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 1 }, openDuration: "10 seconds" })
      const gate = yield* Effect.makeLatch(false)
      const late = yield* Effect.fork(b.execute(gate.await))
      yield* Effect.yieldNow()
      yield* failWith(b)
      yield* TestClock.adjust("10 seconds")
      expect(yield* stateOf(b)).toBe("half-open")
      yield* gate.open
      yield* Fiber.join(late)
      expect(yield* stateOf(b)).toBe("half-open")
    })))
})

describe("CircuitBreaker: what is recorded (rules 1-2)", () => {
  const oneFailureOpens = { trigger: { kind: "consecutive", failures: 1 } } as const

  it.effect.each([
    ["BadRequestError (the provider answered)", new Errors.BadRequestError({ status: 400 })],
    ["AuthError (the provider answered)", new Errors.AuthError({ status: 401 })],
    ["upstream RateLimitError (the key pool's business)", new Errors.RateLimitError({ source: "upstream" })],
    ["local RateLimitError (our own rejection)", new Errors.RateLimitError({ source: "local" })],
    ["BulkheadFullError (our own rejection)", new Errors.BulkheadFullError({ bulkhead: "x", reason: "queue-full", maxConcurrent: 1, maxQueue: 0 })],
    ["CircuitOpenError of an inner breaker", new Errors.CircuitOpenError({ breaker: "inner", state: "open" })],
    ["NoKeyAvailableError (our own rejection)", new Errors.NoKeyAvailableError({ pool: "p" })]
  ] as const)("%s does not count as a failure", ([, error]) =>
    run(Effect.gen(function*() {
      const b = yield* make(oneFailureOpens)
      yield* failWith(b, error)
      expect(yield* stateOf(b)).toBe("closed")
    })))

  it.effect.each([
    ["ProviderUnavailableError", down],
    ["ConnectionError", new Errors.ConnectionError({})],
    ["MalformedResponseError", new Errors.MalformedResponseError({})],
    ["TimeoutError from inside", new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(1) })],
    ["an error outside the taxonomy", new Error("boom")]
  ] as const)("%s counts as a failure", ([, error]) =>
    run(Effect.gen(function*() {
      const b = yield* make(oneFailureOpens)
      yield* failWith(b, error)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("a defect counts as a failure", () =>
    run(Effect.gen(function*() {
      const b = yield* make(oneFailureOpens)
      yield* Effect.exit(b.execute(Effect.die("bug")))
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("a BadRequestError is a success: it resets the consecutive count", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 2 } })
      yield* failWith(b)
      yield* failWith(b, new Errors.BadRequestError({ status: 422 }))
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("closed")
    })))

  it.effect("interruption from outside is ignored", () =>
    run(Effect.gen(function*() {
      const b = yield* make(oneFailureOpens)
      const fiber = yield* Effect.fork(b.execute(Effect.never))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(fiber)
      expect(yield* stateOf(b)).toBe("closed")
    })))

  it.effect("countUpstreamRateLimit makes an upstream 429 a failure, but never a local one", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ ...oneFailureOpens, countUpstreamRateLimit: true })
      yield* failWith(b, new Errors.RateLimitError({ source: "local" }))
      expect(yield* stateOf(b)).toBe("closed")
      yield* failWith(b, new Errors.RateLimitError({ source: "upstream" }))
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.effect("classify overrides the table", () =>
    run(Effect.gen(function*() {
      const b = yield* make({
        ...oneFailureOpens,
        classify: (e) => (Errors.isResilienceError(e) && e._tag === "BadRequestError" ? "failure" : undefined)
      })
      yield* failWith(b, new Errors.BadRequestError({}))
      expect(yield* stateOf(b)).toBe("open")
    })))
})

describe("CircuitBreaker: open duration growth (rule 8)", () => {
  it.effect("a Schedule grows the open duration per consecutive opening and starts over after closing", () =>
    run(Effect.gen(function*() {
      const b = yield* make({
        trigger: { kind: "consecutive", failures: 1 },
        openDuration: Schedule.exponential("10 seconds")
      })
      const reopen = Effect.gen(function*() {
        yield* failWith(b)
        const { retryAt } = yield* b.status
        const now = yield* TestClock.currentTimeMillis
        return (retryAt ?? 0) - now
      })
      expect(yield* reopen).toBe(10_000) // first opening
      yield* TestClock.adjust("10 seconds")
      expect(yield* reopen).toBe(20_000) // the trial failed: second opening
      yield* TestClock.adjust("20 seconds")
      expect(yield* reopen).toBe(40_000)
      yield* TestClock.adjust("40 seconds")
      yield* succeed(b) // closes
      expect(yield* reopen).toBe(10_000)
    })))

  it.effect("a function of the opening number works the same way", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 1 }, openDuration: (n) => Duration.seconds(n * 5) })
      yield* failWith(b)
      expect((yield* b.status).retryAt).toBe(5_000)
      yield* TestClock.adjust("5 seconds")
      yield* failWith(b)
      expect((yield* b.status).retryAt).toBe(5_000 + 10_000)
    })))
})

describe("CircuitBreaker: manual control, transitions, config (rule 12)", () => {
  it.effect("forceOpen rejects until reset; forceClosed admits and never opens; disable records nothing", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 1 } })
      yield* b.forceOpen
      expect(yield* succeed(b)).toEqual(Either.left(new Errors.CircuitOpenError({ breaker: "openai", deployment: "openai", state: "forced-open" })))
      yield* TestClock.adjust("1 hours")
      expect(Either.isLeft(yield* succeed(b))).toBe(true)
      yield* b.forceClosed
      yield* times(3, failWith(b))
      expect(yield* stateOf(b)).toBe("forced-closed")
      expect((yield* b.status).consecutiveFailures).toBe(3)
      yield* b.disable
      yield* failWith(b)
      expect((yield* b.status).consecutiveFailures).toBe(3)
      yield* b.reset
      const status = yield* b.status
      expect([status.state, status.consecutiveFailures]).toEqual(["closed", 0])
      yield* failWith(b)
      expect(yield* stateOf(b)).toBe("open")
    })))

  it.scoped("transitions are published for every state change in order with its reason", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ trigger: { kind: "consecutive", failures: 2 }, openDuration: "1 seconds" })
      const queue = yield* b.subscribe
      yield* times(2, failWith(b))
      yield* TestClock.adjust("1 seconds")
      yield* succeed(b)
      const transitions = Chunk.toReadonlyArray(yield* Queue.takeAll(queue))
      expect(transitions.map((t) => [t.from, t.to, t.at])).toEqual([
        ["closed", "open", 0],
        ["open", "half-open", 1000],
        ["half-open", "closed", 1000]
      ])
      expect(transitions[0]?.reason).toBe("2 consecutive failures")
    })))

  it.effect.each([
    [{ trigger: { kind: "failure-rate", window: { kind: "count", size: 10 }, threshold: 1.5 } }, "trigger.threshold"],
    [{ trigger: { kind: "consecutive", failures: 0 } }, "trigger.failures"],
    [{ permittedCallsInHalfOpen: 0 }, "permittedCallsInHalfOpen"],
    [{ openDuration: "soon" }, "openDuration"],
    // Duration.decode would clamp it to 0: a breaker that reopens for no time at all.
    [{ openDuration: "-1 seconds" }, "openDuration"],
    [{ slowCallDuration: "-2 seconds" }, "slowCallDuration"],
    [{ name: "" }, "name"]
  ] as const)("a bad option names its field: %j", ([options, path]) =>
    Effect.gen(function*() {
      const result = yield* Effect.exit(run(Effect.asVoid(make(options as unknown as CircuitBreaker.Options))))
      expect(Exit.isFailure(result)).toBe(true)
      if (Exit.isFailure(result)) {
        expect(result.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path } })
      }
    }))

  it.effect("metrics: the state gauge from construction on, calls by outcome, not-permitted calls", () =>
    run(Effect.gen(function*() {
      const b = yield* make({ name: "metered-breaker", trigger: { kind: "consecutive", failures: 1 } })
      const gauge = Metric.gauge("resilient_ai_breaker_state", {
        description: "0 closed, 1 open, 2 half-open, 3 forced-open, 4 forced-closed, 5 disabled"
      }).pipe(Metric.tagged("breaker", "metered-breaker"))
      const calls = (outcome: string) =>
        Metric.counter("resilient_ai_breaker_calls_total", {
          description: "calls seen by a circuit breaker, by outcome (success, failure, ignored, not-permitted)",
          incremental: true
        }).pipe(Metric.tagged("breaker", "metered-breaker"), Metric.tagged("outcome", outcome))
      expect((yield* Metric.value(gauge)).value).toBe(0)
      yield* succeed(b)
      yield* failWith(b)
      yield* succeed(b)
      yield* succeed(b)
      expect((yield* Metric.value(gauge)).value).toBe(1)
      expect([
        (yield* Metric.value(calls("success"))).count,
        (yield* Metric.value(calls("failure"))).count,
        (yield* Metric.value(calls("not-permitted"))).count
      ]).toEqual([1, 1, 2])
    })))

  it.effect("two breakers on one store keep separate state by name", () =>
    run(Effect.gen(function*() {
      const a = yield* make({ name: "a", trigger: { kind: "consecutive", failures: 1 } })
      const b = yield* make({ name: "b", trigger: { kind: "consecutive", failures: 1 } })
      yield* failWith(a)
      expect([yield* stateOf(a), yield* stateOf(b)]).toEqual(["open", "closed"])
    })))
})

describe("CircuitBreaker: an effect already done (an Exit) and one that runs", () => {
  // An `Exit` is admitted and recorded in one op without the mask; anything else takes the masked
  // path. The same outcomes at the same instants must move the breaker the same way.
  const script = ["ok", "fail", "fail", "fail", "ok", "fail", "fail", "fail", "fail", "ok", "ok", "fail", "ok", "ok", "ok", "ok", "ok", "ok"] as const
  const drive = (name: string, wrap: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const breaker = yield* make({
        name,
        trigger: { kind: "failure-rate", threshold: 0.5, minimumCalls: 4, window: { kind: "count", size: 6 } },
        openDuration: "2 seconds",
        permittedCallsInHalfOpen: 2
      })
      const transitions = yield* breaker.subscribe
      const seen: Array<string> = []
      for (const outcome of script) {
        const result = yield* Effect.either(breaker.execute(wrap(outcome === "ok" ? Effect.succeed("ok") : Effect.fail(down))))
        const status = yield* breaker.status
        seen.push(`${Either.isRight(result) ? "ok" : result.left._tag} ${status.state} ${status.failureRate ?? "-"}`)
        yield* TestClock.adjust("700 millis")
      }
      const moves = Chunk.toReadonlyArray(yield* Queue.takeAll(transitions)).map((t) => `${t.from}->${t.to}@${t.at - start}`)
      return { seen, moves }
    })

  it.scoped("move the breaker the same way, call for call", () =>
    run(Effect.gen(function*() {
      const done = yield* drive("done", (effect) => effect)
      const running = yield* drive("running", (effect) => Effect.suspend(() => effect))
      expect(done).toEqual(running)
      expect(done.moves.join(" ")).toContain("closed->open")
      expect(done.moves.join(" ")).toContain("half-open->closed")
      expect(done.seen.join(" ")).toContain("CircuitOpenError")
    })))
})
