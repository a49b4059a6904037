import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { InvalidConfigError } from "../src/Errors.js"
import * as LatencyTracker from "../src/LatencyTracker.js"

/** The exact nearest-rank percentile: the value at rank max(1, ⌈p · n⌉) of the sorted samples. */
const nearestRank = (samples: ReadonlyArray<number>, p: number): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil(p * sorted.length - 1e-9))
  return sorted[rank - 1] ?? Number.NaN
}

const recordAll = (tracker: LatencyTracker.Service, samples: ReadonlyArray<number>) =>
  Effect.forEach(samples, (ms) => tracker.record(ms), { discard: true })

const percentileOf = (tracker: LatencyTracker.Service, p: number) =>
  Effect.map(tracker.percentile(p), Option.getOrElse(() => Number.NaN))

/** Asserts every percentile from 1 % to 100 % is within the documented relative error. */
const expectWithinBound = (tracker: LatencyTracker.Service, samples: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    for (let i = 1; i <= 100; i++) {
      const p = i / 100
      const exact = nearestRank(samples, p)
      const estimate = yield* percentileOf(tracker, p)
      // 1e-9 absorbs float rounding at a bin edge; the bound itself is 2 %.
      expect(Math.abs(estimate - exact), `p${i}: exact ${exact}, estimate ${estimate}`).toBeLessThanOrEqual(
        LatencyTracker.relativeError * exact * (1 + 1e-9)
      )
    }
  })

describe("LatencyTracker", () => {
  it("documents a 2 % relative error bound", () => {
    expect(LatencyTracker.relativeError).toBe(0.02)
  })

  it.effect("percentiles of a uniform distribution are within 2 % of the exact nearest-rank ones", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "gpt-4o" })
      const samples = Array.from({ length: 1000 }, (_, i) => i + 1)
      yield* recordAll(tracker, samples)
      yield* expectWithinBound(tracker, samples)
      const p95 = yield* percentileOf(tracker, 0.95)
      expect(Math.abs(p95 - 950)).toBeLessThanOrEqual(19)
    }))

  it.effect("percentiles of a long-tailed (exponential) and a wide (10 µs to 1 h) distribution stay within 2 %", () =>
    Effect.gen(function*() {
      const exponential = Array.from({ length: 2000 }, (_, i) => -Math.log(1 - (i + 0.5) / 2000) * 300)
      const a = yield* LatencyTracker.make({ name: "exp" })
      yield* recordAll(a, exponential)
      yield* expectWithinBound(a, exponential)

      const wide = Array.from({ length: 500 }, (_, i) => 0.01 * Math.pow(3.6e8, i / 499))
      const b = yield* LatencyTracker.make({ name: "wide" })
      yield* recordAll(b, wide)
      yield* expectWithinBound(b, wide)
    }))

  it.effect("p0 is the minimum and p100 the exact maximum; latencies under 10 µs read as 0", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a", minSamples: 1 })
      yield* recordAll(tracker, [0, 0.001, 12.345, 812.5])
      expect(yield* percentileOf(tracker, 0)).toBe(0)
      expect(yield* percentileOf(tracker, 1)).toBe(812.5)
      expect(yield* percentileOf(tracker, 0.5)).toBe(0) // 0.001 ms is in the zero bin
      expect(Math.abs((yield* percentileOf(tracker, 0.75)) - 12.345)).toBeLessThanOrEqual(0.02 * 12.345)
    }))

  it.effect("percentiles are none before minSamples samples (default 20), some from then on", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a" })
      yield* recordAll(tracker, Array.from({ length: 19 }, () => 100))
      expect(yield* tracker.percentile(0.5)).toEqual(Option.none())
      expect((yield* tracker.snapshot).p95).toBeUndefined()
      yield* tracker.record(100)
      expect(Option.isSome(yield* tracker.percentile(0.5))).toBe(true)

      const three = yield* LatencyTracker.make({ name: "b", minSamples: 3 })
      yield* recordAll(three, [10, 20])
      expect(yield* three.percentile(0.5)).toEqual(Option.none())
      yield* three.record(30)
      expect(Option.isSome(yield* three.percentile(0.5))).toBe(true)
    }))

  it.effect("a percentile outside [0, 1] is none", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a", minSamples: 1 })
      yield* tracker.record(10)
      expect(yield* tracker.percentile(95)).toEqual(Option.none())
      expect(yield* tracker.percentile(-0.1)).toEqual(Option.none())
      expect(yield* tracker.percentile(Number.NaN)).toEqual(Option.none())
    }))

  it.effect("samples expire with their slice of the window under TestClock (60 s, 6 slices of 10 s)", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a", minSamples: 1 })
      yield* TestClock.adjust(9_999) // still slice 0: [0, 10 s)
      yield* recordAll(tracker, Array.from({ length: 10 }, () => 10))
      yield* TestClock.adjust(20_001) // t = 30 s: slice 3
      yield* recordAll(tracker, Array.from({ length: 10 }, () => 1000))

      yield* TestClock.adjust(29_999) // t = 59.999 s: slice 5, slices 0..5 live
      expect((yield* tracker.snapshot).count).toBe(20)
      expect(yield* percentileOf(tracker, 0.5)).toBe(10)

      yield* TestClock.adjust(1) // t = 60 s: slice 6, slice 0 has left the window
      const snapshot = yield* tracker.snapshot
      expect(snapshot.count).toBe(10)
      expect(snapshot.min).toBe(1000)
      expect(yield* percentileOf(tracker, 0.5)).toBe(1000)

      yield* TestClock.adjust(30_000) // t = 90 s: slice 9, slice 3 has left too
      expect((yield* tracker.snapshot).count).toBe(0)
      expect(yield* tracker.percentile(0.5)).toEqual(Option.none())
    }))

  it.effect("an idle gap longer than the window leaves nothing stale when a ring slot is reused", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a", window: "6 seconds", buckets: 6, minSamples: 1 })
      yield* recordAll(tracker, [5, 5, 5])
      yield* TestClock.adjust("60 seconds") // slice 60: the same ring slot as slice 0
      expect((yield* tracker.snapshot).count).toBe(0)
      yield* tracker.record(700)
      const snapshot = yield* tracker.snapshot
      expect(snapshot.count).toBe(1)
      expect(snapshot.max).toBe(700)
      expect(snapshot.min).toBe(700)
    }))

  it.effect("snapshot reports count, exact min / max / mean and p50 / p90 / p95 / p99", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "claude" })
      expect(yield* tracker.snapshot).toEqual({
        name: "claude",
        count: 0,
        min: undefined,
        max: undefined,
        mean: undefined,
        p50: undefined,
        p90: undefined,
        p95: undefined,
        p99: undefined
      })
      const samples = Array.from({ length: 100 }, (_, i) => (i + 1) * 10)
      yield* recordAll(tracker, samples)
      const s = yield* tracker.snapshot
      expect(s.count).toBe(100)
      expect(s.min).toBe(10)
      expect(s.max).toBe(1000)
      expect(s.mean).toBe(505)
      for (const [p, value] of [[0.5, s.p50], [0.9, s.p90], [0.95, s.p95], [0.99, s.p99]] as const) {
        const exact = nearestRank(samples, p)
        expect(Math.abs((value ?? Number.NaN) - exact)).toBeLessThanOrEqual(0.02 * exact)
      }
    }))

  it.effect("record ignores negative, NaN and infinite latencies", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a" })
      yield* recordAll(tracker, [-1, Number.NaN, Number.POSITIVE_INFINITY])
      expect((yield* tracker.snapshot).count).toBe(0)
    }))

  it.effect("track records the Clock duration of successes only", () =>
    Effect.gen(function*() {
      const tracker = yield* LatencyTracker.make({ name: "a", minSamples: 1 })
      const fiber = yield* Effect.fork(tracker.track(Effect.sleep("250 millis")))
      const failing = yield* Effect.fork(Effect.either(tracker.track(Effect.zipRight(Effect.sleep("900 millis"), Effect.fail("boom")))))
      yield* TestClock.adjust("1 second")
      yield* Effect.all([fiber.await, failing.await])
      const snapshot = yield* tracker.snapshot
      expect(snapshot.count).toBe(1)
      expect(snapshot.max).toBe(250)
    }))

  it.effect("bad options fail with InvalidConfigError naming the field", () =>
    Effect.gen(function*() {
      const buckets = yield* Effect.flip(LatencyTracker.make({ name: "a", buckets: 0 }))
      expect(buckets).toBeInstanceOf(InvalidConfigError)
      expect(buckets.path).toBe("buckets")
      const window = yield* Effect.flip(LatencyTracker.make({ name: "a", window: 0 }))
      expect(window.path).toBe("window")
      const minSamples = yield* Effect.flip(LatencyTracker.make({ name: "a", minSamples: 1.5 }))
      expect(minSamples.path).toBe("minSamples")
      const name = yield* Effect.flip(LatencyTracker.make({ name: "" }))
      expect(name.path).toBe("name")
    }))
})
