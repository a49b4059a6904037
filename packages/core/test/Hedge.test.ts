import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import {
  BadRequestError,
  CircuitOpenError,
  ConnectionError,
  ContextLengthError,
  InvalidConfigError,
  ProviderUnavailableError,
  type ResilienceError,
  TimeoutError
} from "../src/Errors.js"
import * as Hedge from "../src/Hedge.js"
import * as LatencyTracker from "../src/LatencyTracker.js"
import * as RetryBudget from "../src/RetryBudget.js"
import * as StateStore from "../src/StateStore.js"
import * as Timeout from "../src/Timeout.js"

/** What attempt `index` does: answer (or fail) after `after` ms, or never; its interruption finalizer may take time. */
interface Step {
  readonly after: number | "never"
  readonly error?: ResilienceError
  readonly finalizerMillis?: number
}

/** An attempt factory that records launches and interruptions on the virtual clock. */
const harness = (plan: ReadonlyArray<Step>) => {
  const launches: Array<{ readonly index: number; readonly at: number }> = []
  const log: Array<string> = []
  const launchInfos: Array<Hedge.LaunchInfo> = []
  const note = (text: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (at) =>
      Effect.sync(() => {
        log.push(`${text} @${at}`)
      }))
  const attempt = (index: number): Effect.Effect<string, ResilienceError> => {
    const step: Step = plan[index] ?? { after: "never" }
    return Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      launches.push({ index, at })
      if (step.after === "never") return yield* Effect.never
      yield* Effect.sleep(Duration.millis(step.after))
      if (step.error !== undefined) return yield* Effect.fail(step.error)
      return `r${index}`
    }).pipe(
      Effect.onInterrupt(() =>
        Effect.zipRight(
          step.finalizerMillis === undefined ? Effect.void : Effect.sleep(Duration.millis(step.finalizerMillis)),
          note(`interrupted ${index}`)
        )
      )
    )
  }
  const onLaunch = (info: Hedge.LaunchInfo) =>
    Effect.sync(() => {
      launchInfos.push(info)
    })
  return { attempt, launches, log, launchInfos, onLaunch, note }
}

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

const unavailable = (status: number) => new ProviderUnavailableError({ status })

describe("Hedge", () => {
  it.effect("no hedge when attempt 0 answers before the delay", () =>
    Effect.gen(function*() {
      const h = harness([{ after: 99 }])
      const hedge = yield* Hedge.make({ delay: "100 millis", onLaunch: h.onLaunch })
      const fiber = yield* Effect.fork(hedge.execute(h.attempt))
      yield* TestClock.adjust(99)
      expect(yield* Fiber.join(fiber)).toBe("r0")
      yield* TestClock.adjust(10_000)
      expect(h.launches).toEqual([{ index: 0, at: 0 }])
      expect(h.launchInfos).toEqual([])
    }))

  it.effect("execute(effect): the effect reads its attempt's index from Hedge.CurrentHedge, one run per attempt", () =>
    Effect.gen(function*() {
      const hedge = yield* Hedge.make({ delay: "100 millis" })
      const started: Array<number> = []
      const attempt = Effect.flatMap(Hedge.CurrentHedge, (index) => {
        started.push(index)
        // Attempt 0 hangs; the hedge answers after 10 ms.
        return index === 0 ? Effect.never : Effect.as(Effect.sleep(10), `r${index}`)
      })
      const fiber = yield* Effect.fork(hedge.execute(attempt))
      yield* TestClock.adjust(110)
      expect(yield* Fiber.join(fiber)).toBe("r1")
      expect(started).toEqual([0, 1])
    }))

  it.effect("the hedge starts exactly at the delay since the last launch, not 1 ms before", () =>
    Effect.gen(function*() {
      const h = harness([])
      const hedge = yield* Hedge.make({ delay: "100 millis", maxExtraAttempts: 2, onLaunch: h.onLaunch })
      const fiber = yield* Effect.fork(hedge.execute(h.attempt))
      yield* TestClock.adjust(99)
      expect(h.launches).toEqual([{ index: 0, at: 0 }])
      yield* TestClock.adjust(1)
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 100 }])
      yield* TestClock.adjust(99)
      expect(h.launches.length).toBe(2)
      yield* TestClock.adjust(1)
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 100 }, { index: 2, at: 200 }])
      expect(h.launchInfos).toEqual([
        { index: 1, reason: "delay", delayMs: 100 },
        { index: 2, reason: "delay", delayMs: 100 }
      ])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("the faster hedge wins; attempt 0 is interrupted and its finalizer has run before execute returns", () =>
    Effect.gen(function*() {
      const h = harness([{ after: 1000, finalizerMillis: 30 }, { after: 50 }])
      const hedge = yield* Hedge.make({ delay: "100 millis" })
      const fiber = yield* Effect.fork(Effect.tap(hedge.execute(h.attempt), () => h.note("returned")))
      yield* TestClock.adjust(150) // attempt 1 answers at 150; attempt 0's finalizer takes until 180
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(30)
      expect(yield* Fiber.join(fiber)).toBe("r1")
      expect(h.log).toEqual(["interrupted 0 @180", "returned @180"])
    }))

  it.effect("a handled failure launches the next attempt at once, before the delay", () =>
    Effect.gen(function*() {
      const h = harness([{ after: 10, error: unavailable(503) }, { after: 20 }])
      const hedge = yield* Hedge.make({ delay: "100 millis", onLaunch: h.onLaunch })
      const fiber = yield* Effect.fork(hedge.execute(h.attempt))
      yield* TestClock.adjust(10)
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 10 }])
      expect(h.launchInfos).toEqual([{ index: 1, reason: "failure", delayMs: 10 }])
      yield* TestClock.adjust(20)
      expect(yield* Fiber.join(fiber)).toBe("r1")
    }))

  it.effect("the delay restarts at every launch, including one after a failure", () =>
    Effect.gen(function*() {
      const h = harness([{ after: 30, error: unavailable(500) }, { after: "never" }])
      const hedge = yield* Hedge.make({ delay: "100 millis", maxExtraAttempts: 2 })
      const fiber = yield* Effect.fork(hedge.execute(h.attempt))
      yield* TestClock.adjust(129) // attempt 1 started at 30: its delay ends at 130, not 100
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 30 }])
      yield* TestClock.adjust(1)
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 30 }, { index: 2, at: 130 }])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a non-handled failure ends the whole hedge at once with that error; the others are interrupted", () =>
    Effect.gen(function*() {
      const bad = new BadRequestError({ status: 400 })
      const h = harness([{ after: "never" }, { after: 20, error: bad }])
      const hedge = yield* Hedge.make({ delay: "100 millis", maxExtraAttempts: 2 })
      // The log is read as execute returns, in the fiber that ran it: that fiber's end would interrupt its
      // children anyway, so only a log read before it tells that execute itself stopped the others.
      const fiber = yield* Effect.fork(Effect.map(Effect.exit(hedge.execute(h.attempt)), (exit) => ({ exit, log: [...h.log] })))
      yield* TestClock.adjust(120)
      const { exit, log } = yield* Fiber.join(fiber)
      expect(exit).toEqual(Exit.fail(bad))
      expect(log).toEqual(["interrupted 0 @120"])
      yield* TestClock.adjust(1000)
      expect(h.launches.length).toBe(2) // no attempt 2 at 220

      const first = harness([{ after: 10, error: new ContextLengthError({}) }])
      const again = yield* Effect.fork(Effect.flip(hedge.execute(first.attempt)))
      yield* TestClock.adjust(10)
      expect((yield* Fiber.join(again))._tag).toBe("ContextLengthError")
      expect(first.launches).toEqual([{ index: 0, at: 1120 }])
    }))

  it.effect("maxExtraAttempts bounds the launches: 1 + maxExtraAttempts attempts at most", () =>
    Effect.gen(function*() {
      const slow = harness([])
      const two = yield* Hedge.make({ delay: "100 millis", maxExtraAttempts: 2 })
      const fiber = yield* Effect.fork(two.execute(slow.attempt))
      yield* TestClock.adjust(10_000)
      expect(slow.launches.map((l) => l.at)).toEqual([0, 100, 200])
      yield* Fiber.interrupt(fiber)

      const failing = harness([0, 1, 2, 3].map(() => ({ after: 0, error: unavailable(502) })))
      const one = yield* Hedge.make({ delay: "100 millis" }) // default: 1 extra attempt
      const exit = yield* Effect.exit(one.execute(failing.attempt))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(failing.launches).toEqual([{ index: 0, at: 10_000 }, { index: 1, at: 10_000 }])

      const alone = harness([{ after: 0, error: unavailable(502) }])
      const none = yield* Hedge.make({ delay: 0, maxExtraAttempts: 0 })
      yield* Effect.exit(none.execute(alone.attempt))
      expect(alone.launches.length).toBe(1)
    }))

  it.effect("a zero delay launches every attempt at once", () =>
    Effect.gen(function*() {
      const h = harness([{ after: 30 }, { after: 20 }, { after: 10 }])
      const hedge = yield* Hedge.make({ delay: 0, maxExtraAttempts: 2 })
      const fiber = yield* Effect.fork(Effect.map(hedge.execute(h.attempt), (value) => ({ value, log: [...h.log] })))
      yield* TestClock.adjust(0)
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 0 }, { index: 2, at: 0 }])
      yield* TestClock.adjust(10)
      // Read as execute returns: the losers were stopped by execute, not by the end of the fiber that ran it.
      expect(yield* Fiber.join(fiber)).toEqual({ value: "r2", log: ["interrupted 0 @10", "interrupted 1 @10"] })
    }))

  it.effect("all fail: catchAll sees attempt 0's error, Cause.failures has all of them in launch order", () =>
    Effect.gen(function*() {
      const e0 = unavailable(500)
      const e1 = new TimeoutError({ phase: "attempt", timeout: Duration.millis(10) })
      const e2 = new ConnectionError({ detail: "reset" })
      // Completion order is 1 (t=20), 2 (t=30), 0 (t=50); launch order is 0, 1, 2.
      const h = harness([{ after: 50, error: e0 }, { after: 10, error: e1 }, { after: 10, error: e2 }])
      const hedge = yield* Hedge.make({ delay: "10 millis", maxExtraAttempts: 2 })
      const fiber = yield* Effect.fork(Effect.exit(hedge.execute(h.attempt)))
      yield* TestClock.adjust(49)
      expect(yield* isDone(fiber)).toBe(false) // attempt 0 is still running
      yield* TestClock.adjust(1)
      const exit = yield* Fiber.join(fiber)
      expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 10 }, { index: 2, at: 20 }])

      const caught = yield* Effect.catchAll(exit, (e) => Effect.succeed(e))
      expect(caught).toBe(e0)
      const either = yield* Effect.either(exit)
      expect(Either.isLeft(either) && either.left).toBe(e0)
      const cause = yield* Effect.catchAllCause(exit, (c) => Effect.succeed(c))
      expect(Chunk.toReadonlyArray(Cause.failures(cause as Cause.Cause<ResilienceError>))).toEqual([e0, e1, e2])
    }))

  it.effect("the default handled failures include fallbackable ones: a hedge's CircuitOpenError does not end the hedge", () =>
    Effect.gen(function*() {
      const h = harness([{ after: 300 }, { after: 0, error: new CircuitOpenError({ breaker: "b", state: "open" }) }])
      const hedge = yield* Hedge.make({ delay: "100 millis" })
      const fiber = yield* Effect.fork(hedge.execute(h.attempt))
      yield* TestClock.adjust(300)
      expect(yield* Fiber.join(fiber)).toBe("r0")
      expect(Hedge.isHandled(new CircuitOpenError({ breaker: "b", state: "open" }))).toBe(true)
      expect(Hedge.isHandled(unavailable(503))).toBe(true)
      expect(Hedge.isHandled(new BadRequestError({}))).toBe(false)
      expect(Hedge.isHandled(new Error("unknown"))).toBe(false)
    }))

  it.effect("shouldHedgeOn decides what is handled: a failure it rejects ends the hedge", () =>
    Effect.gen(function*() {
      const e0 = unavailable(503)
      const h = harness([{ after: 10, error: e0 }, { after: 1 }])
      const hedge = yield* Hedge.make({ delay: "100 millis", shouldHedgeOn: () => false })
      const fiber = yield* Effect.fork(Effect.flip(hedge.execute(h.attempt)))
      yield* TestClock.adjust(10)
      expect(yield* Fiber.join(fiber)).toBe(e0)
      expect(h.launches.length).toBe(1)
    }))

  it.effect("interrupting execute interrupts every running attempt and awaits them, on a fiber that goes on", () =>
    Effect.gen(function*() {
      const h = harness([{ after: "never", finalizerMillis: 5 }, { after: "never" }])
      const hedge = yield* Hedge.make({ delay: "100 millis" })
      // The attempt timeout interrupts execute on this very fiber and takes its interruption back: the fiber goes on,
      // so nothing but execute stops the attempts it forked. The log is read the moment the timeout returns.
      const fiber = yield* Effect.fork(
        Effect.map(Effect.either(Timeout.attempt("150 millis")(hedge.execute(h.attempt))), (result) => ({ result, log: [...h.log].sort() }))
      )
      yield* TestClock.adjust(150)
      yield* TestClock.adjust(5)
      const { result, log } = yield* Fiber.join(fiber)
      expect(Either.isLeft(result) && result.left._tag).toBe("TimeoutError")
      expect(log).toEqual(["interrupted 0 @155", "interrupted 1 @150"])
    }))

  describe("budget", () => {
    it.effect("a refusal prevents the hedge; execute records its first attempt", () =>
      Effect.gen(function*() {
        const budget = yield* RetryBudget.make({ name: "hedge", ratio: 0, minRetriesPerSecond: 0 })
        const h = harness([{ after: 500 }])
        const hedge = yield* Hedge.make({ delay: "100 millis", budget, onLaunch: h.onLaunch })
        const fiber = yield* Effect.fork(hedge.execute(h.attempt))
        yield* TestClock.adjust(500)
        expect(yield* Fiber.join(fiber)).toBe("r0")
        expect(h.launches).toEqual([{ index: 0, at: 0 }])
        expect(h.launchInfos).toEqual([])
        expect(yield* budget.status).toEqual({ attempts: 1, retries: 0, allowed: 0 })

        // Refused after a handled failure: nothing else runs, so attempt 0's error comes back at once.
        const e0 = unavailable(503)
        const failing = harness([{ after: 10, error: e0 }, { after: 1 }])
        const again = yield* Effect.fork(Effect.flip(hedge.execute(failing.attempt)))
        yield* TestClock.adjust(10)
        expect(yield* Fiber.join(again)).toBe(e0)
        expect(failing.launches.length).toBe(1)
      }).pipe(Effect.provide(StateStore.layerMemory)))

    it.effect("an admitted hedge takes one retry from the budget; once refused, no later launch is tried", () =>
      Effect.gen(function*() {
        // ratio 1, no floor: one first attempt admits exactly one hedge
        const budget = yield* RetryBudget.make({ name: "hedge", ratio: 1, minRetriesPerSecond: 0 })
        const h = harness([])
        const hedge = yield* Hedge.make({ delay: "100 millis", maxExtraAttempts: 3, budget })
        const fiber = yield* Effect.fork(hedge.execute(h.attempt))
        yield* TestClock.adjust(100)
        expect(h.launches.map((l) => l.at)).toEqual([0, 100])
        expect(yield* budget.status).toEqual({ attempts: 1, retries: 1, allowed: 1 })
        yield* TestClock.adjust(100) // refused at 200
        expect(h.launches.map((l) => l.at)).toEqual([0, 100])
        yield* budget.recordAttempt // the budget would admit one more now ...
        expect(yield* budget.status).toEqual({ attempts: 2, retries: 1, allowed: 2 })
        yield* TestClock.adjust(500)
        expect(h.launches.map((l) => l.at)).toEqual([0, 100]) // ... but the refusal at 200 ended the hedging
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.provide(StateStore.layerMemory)))
  })

  describe("percentile delay", () => {
    const trackerWith = (samples: ReadonlyArray<number>) =>
      Effect.tap(LatencyTracker.make({ name: "gpt-4o" }), (t) => Effect.forEach(samples, (ms) => t.record(ms), { discard: true }))
    const oneToHundred = Array.from({ length: 100 }, (_, i) => i + 1)

    it.effect("the delay is the tracker's p95, and the hedge starts exactly then", () =>
      Effect.gen(function*() {
        const tracker = yield* trackerWith(oneToHundred)
        const h = harness([])
        const hedge = yield* Hedge.make({
          delay: { percentile: 0.95, tracker, fallback: "1 second" },
          onLaunch: h.onLaunch
        })
        const delay = yield* hedge.currentDelay
        const p95 = Option.getOrElse(yield* tracker.percentile(0.95), () => Number.NaN)
        expect(delay).toBe(Math.ceil(p95)) // rounded up to a whole millisecond
        expect(Math.abs(p95 - 95)).toBeLessThanOrEqual(0.02 * 95) // p95 of 1..100 is 95

        const fiber = yield* Effect.fork(hedge.execute(h.attempt))
        yield* TestClock.adjust(delay - 1)
        expect(h.launches.length).toBe(1)
        yield* TestClock.adjust(1)
        expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: delay }])
        expect(h.launchInfos).toEqual([{ index: 1, reason: "delay", delayMs: delay }])
        yield* Fiber.interrupt(fiber)
      }))

    it.effect("min and max clamp the percentile", () =>
      Effect.gen(function*() {
        const tracker = yield* trackerWith(oneToHundred)
        const floor = yield* Hedge.make({ delay: { percentile: 0.95, tracker, min: "200 millis", fallback: 0 } })
        expect(yield* floor.currentDelay).toBe(200)
        const ceiling = yield* Hedge.make({ delay: { percentile: 0.95, tracker, max: "50 millis", fallback: 0 } })
        expect(yield* ceiling.currentDelay).toBe(50)

        const h = harness([])
        const fiber = yield* Effect.fork(floor.execute(h.attempt))
        yield* TestClock.adjust(199)
        expect(h.launches.length).toBe(1)
        yield* TestClock.adjust(1)
        expect(h.launches).toEqual([{ index: 0, at: 0 }, { index: 1, at: 200 }])
        yield* Fiber.interrupt(fiber)
      }))

    it.effect("a max of Duration.infinity is no ceiling, the same as none", () =>
      Effect.gen(function*() {
        const tracker = yield* trackerWith(oneToHundred)
        const open = yield* Hedge.make({ delay: { percentile: 0.95, tracker, max: Duration.infinity, fallback: 0 } })
        const none = yield* Hedge.make({ delay: { percentile: 0.95, tracker, fallback: 0 } })
        expect(yield* open.currentDelay).toBe(yield* none.currentDelay)
        expect(Number.isFinite(yield* open.currentDelay)).toBe(true)
      }))

    it.effect("the fallback delay applies until the tracker has minSamples samples (it is not clamped)", () =>
      Effect.gen(function*() {
        const tracker = yield* trackerWith(Array.from({ length: 19 }, () => 40))
        const hedge = yield* Hedge.make({
          delay: { percentile: 0.95, tracker, min: "10 millis", max: "100 millis", fallback: "300 millis" }
        })
        expect(yield* hedge.currentDelay).toBe(300)
        const h = harness([])
        const fiber = yield* Effect.fork(hedge.execute(h.attempt))
        yield* TestClock.adjust(299)
        expect(h.launches.length).toBe(1)
        yield* TestClock.adjust(1)
        expect(h.launches.map((l) => l.at)).toEqual([0, 300])
        yield* Fiber.interrupt(fiber)

        yield* tracker.record(40) // the 20th sample
        expect(yield* hedge.currentDelay).toBe(40)
      }))
  })

  it.effect("bad options fail with InvalidConfigError naming the field", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "t" })
      const cases: ReadonlyArray<readonly [Hedge.Options, string]> = [
        [{ delay: -5 }, "delay"],
        [{ delay: "soon" as Duration.DurationInput }, "delay"],
        [{ delay: { percentile: 0, tracker, fallback: 0 } }, "delay.percentile"],
        [{ delay: { percentile: 1.5, tracker, fallback: 0 } }, "delay.percentile"],
        [{ delay: { percentile: 0.95, tracker, fallback: -1 } }, "delay.fallback"],
        [{ delay: { percentile: 0.95, tracker, min: 100, max: 50, fallback: 0 } }, "delay.max"],
        [{ delay: 100, maxExtraAttempts: -1 }, "maxExtraAttempts"],
        [{ delay: 100, maxExtraAttempts: 1.5 }, "maxExtraAttempts"]
      ]
      for (const [options, path] of cases) {
        const error = yield* Effect.flip(Hedge.make(options))
        expect(error).toBeInstanceOf(InvalidConfigError)
        expect(error.path, JSON.stringify(options.delay)).toBe(path)
      }
    }))
})
