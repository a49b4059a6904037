import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as RetryBudget from "../src/RetryBudget.js"
import * as StateStore from "../src/StateStore.js"

/** Takes retries until the budget refuses; returns how many it admitted (at most `limit`). */
const drain = (budget: RetryBudget.Service, limit = 1_000) =>
  Effect.gen(function*() {
    let admitted = 0
    while (admitted < limit && (yield* budget.tryAcquireRetry)) admitted++
    return admitted
  })

const recordAttempts = (budget: RetryBudget.Service, n: number) =>
  Effect.repeatN(budget.recordAttempt, n - 1)

describe("RetryBudget", () => {
  it.effect("100 first attempts in the window admit 20 retries (ratio 0.2); the 21st is refused", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ name: "openai" })
      yield* recordAttempts(budget, 100)
      expect(yield* drain(budget)).toBe(20)
      expect(yield* budget.tryAcquireRetry).toBe(false)
      expect(yield* budget.status).toEqual({ attempts: 100, retries: 20, allowed: 20 })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("the ratio is of first attempts only: admitted retries do not raise the allowance", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ name: "b", ratio: 0.5, minRetriesPerSecond: 0 })
      yield* recordAttempts(budget, 4)
      expect(yield* drain(budget)).toBe(2)
      expect(yield* budget.status).toEqual({ attempts: 4, retries: 2, allowed: 2 })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("the floor admits minRetriesPerSecond x window seconds retries with zero traffic", () =>
    Effect.gen(function*() {
      const defaults = yield* RetryBudget.make({ name: "quiet" })
      expect(yield* defaults.status).toEqual({ attempts: 0, retries: 0, allowed: 10 })
      expect(yield* drain(defaults)).toBe(10)

      const small = yield* RetryBudget.make({ name: "small", minRetriesPerSecond: 0.5, window: "4 seconds" })
      expect(yield* drain(small)).toBe(2)

      const none = yield* RetryBudget.make({ name: "none", minRetriesPerSecond: 0 })
      expect(yield* none.tryAcquireRetry).toBe(false)
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("the floor is a minimum, not added to the ratio's share", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ name: "b" })
      yield* recordAttempts(budget, 30)
      // 0.2 * 30 = 6 < floor 10 => 10, not 16
      expect(yield* drain(budget)).toBe(10)
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("buckets expire after the window under TestClock, aligned to clock seconds", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ name: "b", minRetriesPerSecond: 0 })
      yield* TestClock.adjust(999) // still second 0
      yield* recordAttempts(budget, 100)
      expect(yield* drain(budget)).toBe(20)

      yield* TestClock.adjust(9_000) // t = 9999 ms: second 9, second 0 still inside the 10 s window
      expect(yield* budget.tryAcquireRetry).toBe(false)
      expect(yield* budget.status).toEqual({ attempts: 100, retries: 20, allowed: 20 })

      yield* TestClock.adjust(1) // t = 10000 ms: second 10, second 0 has left the window
      expect(yield* budget.status).toEqual({ attempts: 0, retries: 0, allowed: 0 })
      expect(yield* budget.tryAcquireRetry).toBe(false)
      yield* recordAttempts(budget, 5)
      expect(yield* drain(budget)).toBe(1)
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("the window rolls: only the seconds still inside it count", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ name: "b", minRetriesPerSecond: 0 })
      yield* recordAttempts(budget, 50) // second 0
      yield* TestClock.adjust("5 seconds")
      yield* recordAttempts(budget, 50) // second 5
      expect(yield* drain(budget)).toBe(20) // retries land in second 5
      yield* TestClock.adjust("5 seconds") // second 10: second 0 expired
      expect(yield* budget.status).toEqual({ attempts: 50, retries: 20, allowed: 10 })
      expect(yield* budget.tryAcquireRetry).toBe(false)
      yield* TestClock.adjust("5 seconds") // second 15: everything expired
      expect(yield* budget.status).toEqual({ attempts: 0, retries: 0, allowed: 0 })
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("an idle gap longer than the window leaves nothing stale in the stored state", () => {
    const store = StateStore.makeMemory()
    return Effect.gen(function*() {
      const budget = yield* RetryBudget.make({ name: "b" })
      yield* recordAttempts(budget, 10)
      yield* TestClock.adjust("1 hour")
      yield* budget.recordAttempt
      expect(store.inspect("retry-budget/b")).toEqual({ buckets: [{ second: 3600, attempts: 1, retries: 0 }] })
    }).pipe(Effect.provideService(StateStore.StateStore, store))
  })

  it.effect("state is plain JSON under retry-budget/<name>, shared by budgets of one name", () => {
    const store = StateStore.makeMemory()
    return Effect.gen(function*() {
      const a = yield* RetryBudget.make({ name: "shared", minRetriesPerSecond: 0 })
      const b = yield* RetryBudget.make({ name: "shared", minRetriesPerSecond: 0 })
      yield* recordAttempts(a, 5)
      expect(yield* b.tryAcquireRetry).toBe(true)
      expect(yield* a.tryAcquireRetry).toBe(false)
      const state = store.inspect("retry-budget/shared")
      expect(JSON.parse(JSON.stringify(state))).toEqual(state)
      expect(state).toEqual({ buckets: [{ second: 0, attempts: 5, retries: 1 }] })
    }).pipe(Effect.provideService(StateStore.StateStore, store))
  })

  it.effect("bad options fail with InvalidConfigError naming the field", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [RetryBudget.Options, string]> = [
        [{ name: "" }, "name"],
        [{ name: "b", ratio: 1.5 }, "ratio"],
        [{ name: "b", ratio: -0.1 }, "ratio"],
        [{ name: "b", minRetriesPerSecond: -1 }, "minRetriesPerSecond"],
        [{ name: "b", window: 1500 }, "window"],
        [{ name: "b", window: 0 }, "window"],
        [{ name: "b", window: Duration.infinity }, "window"],
        // @ts-expect-error options read from JSON can hold anything
        [{ name: "b", window: "forever" }, "window"]
      ]
      for (const [options, path] of cases) {
        const error = yield* Effect.flip(RetryBudget.make(options))
        expect(error._tag).toBe("InvalidConfigError")
        expect(error.path).toBe(path)
        expect(error.component).toBe("RetryBudget")
      }
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("layer provides the RetryBudget tag", () =>
    Effect.gen(function*() {
      const budget = yield* RetryBudget.RetryBudget
      expect(budget.name).toBe("tagged")
      expect(yield* budget.status).toEqual({ attempts: 0, retries: 0, allowed: 10 })
    }).pipe(Effect.provide(RetryBudget.layer({ name: "tagged" })), Effect.provide(StateStore.layerMemory)))
})
