/**
 * Latencies of one deployment's successful calls over a rolling time window,
 * answering percentiles (p50, p95, p99, ...) cheaply. The hedge reads its
 * delay from here (docs/semantics.md rule 22).
 *
 * The window is `buckets` slices of `window / buckets`, aligned to the effect
 * `Clock` (slice `⌊now / slice⌋`) and expired by arithmetic on every record
 * and read: no timer fiber, and an idle gap longer than the window leaves
 * nothing stale. A read sees the slices whose number is within `buckets − 1`
 * of the current one, so a sample stays between `window − slice` and `window`.
 *
 * Each slice is a fixed log-scale histogram (the DDSketch mapping), not a list
 * of samples: memory is constant (574 counters a slice) whatever the traffic,
 * a record is O(1) and a percentile O(buckets · 574). Every percentile is the
 * nearest-rank percentile of the samples in the window (the value at rank
 * `max(1, ⌈p · n⌉)`), estimated with a relative error of at most 2 %
 * ({@link relativeError}) for latencies from 10 µs to one day; latencies under
 * 10 µs read as 0, and estimates never leave the exact minimum and maximum of
 * the window.
 *
 * The state is local to the process, not in the `StateStore`: a latency is a
 * local observation (this replica's network path, its own event loop), and
 * the histogram changes on every call, which a JSON store would have to copy
 * and encode each time.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { InvalidConfigError } from "./Errors.js"
import { decodeOptions, PositiveInt, PositiveMillis } from "./internal/config.js"
import * as histogram from "./internal/latencyHistogram.js"

/**
 * The bound on the relative error of every percentile estimate: `|q̂ − q| ≤
 * 0.02 · q` for an exact percentile `q` between 10 µs and one day.
 *
 * @since 0.1.0
 * @category constants
 */
export const relativeError: number = histogram.RELATIVE_ERROR

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The deployment whose latencies these are; it names the tracker in snapshots and errors. */
  readonly name: string
  /** The rolling window. Default 60 seconds. */
  readonly window?: Duration.DurationInput | undefined
  /** Slices of the window; more slices expire samples more smoothly. Default 6. */
  readonly buckets?: number | undefined
  /** Percentiles are `none` while the window holds fewer samples. Default 20. */
  readonly minSamples?: number | undefined
}

/**
 * The latencies of the current window, for logs and status pages. Percentiles
 * are `undefined` while the window holds fewer than `minSamples` samples; the
 * exact `min`, `max` and `mean` are `undefined` only when it holds none.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly name: string
  readonly count: number
  readonly min: number | undefined
  readonly max: number | undefined
  readonly mean: number | undefined
  readonly p50: number | undefined
  readonly p90: number | undefined
  readonly p95: number | undefined
  readonly p99: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /**
   * Records the latency of one successful call, in milliseconds. A negative,
   * NaN or infinite value is a clock bug, not a latency, and is ignored.
   */
  readonly record: (millis: number) => Effect.Effect<void>
  /** Runs `self` and records its duration on the `Clock` when it succeeds. */
  readonly track: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * The nearest-rank percentile `p` (a fraction: `0.95` is p95) of the
   * window, within {@link relativeError}. `none` with fewer than `minSamples`
   * samples, or when `p` is not within `[0, 1]`.
   */
  readonly percentile: (p: number) => Effect.Effect<Option.Option<number>>
  readonly snapshot: Effect.Effect<Snapshot>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class LatencyTracker extends Context.Tag("@resilient-ai/core/LatencyTracker")<LatencyTracker, Service>() {}

const OptionsSchema = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })),
  window: Schema.optionalWith(PositiveMillis, { default: () => 60_000 }),
  buckets: Schema.optionalWith(PositiveInt, { default: () => 6 }),
  minSamples: Schema.optionalWith(PositiveInt, { default: () => 20 })
})

/** One slice of the window: `id` is `⌊now / sliceMillis⌋` of the samples it holds. */
interface Slice {
  id: number
  readonly counts: histogram.Counts
}

/**
 * Builds a tracker. Bad options fail with `InvalidConfigError` naming the field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError> =>
  Effect.map(decodeOptions("LatencyTracker", OptionsSchema, options), (o) => {
    const sliceMillis = o.window / o.buckets
    // A ring of slices: slice id `i` lives at `i mod buckets`, and a slot whose
    // id is not the current one is stale and reset before it is reused.
    const ring: Array<Slice> = Array.from({ length: o.buckets }, () => ({ id: Number.NaN, counts: histogram.emptyCounts() }))
    const slotOf = (id: number): Slice => {
      const slot = ring[((id % o.buckets) + o.buckets) % o.buckets]
      // The ring has `buckets` slots and the index is in range; this keeps the types honest.
      return slot ?? { id, counts: histogram.emptyCounts() }
    }
    const sliceId = (now: number) => Math.floor(now / sliceMillis)

    /** The merged samples of the slices still inside the window at `now`. */
    const window = (now: number): histogram.Counts => {
      const current = sliceId(now)
      const merged = histogram.emptyCounts()
      for (const slice of ring) {
        if (slice.id <= current && slice.id > current - o.buckets) histogram.merge(merged, slice.counts)
      }
      return merged
    }

    const record = (millis: number): Effect.Effect<void> =>
      Number.isFinite(millis) && millis >= 0
        ? Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.sync(() => {
            const id = sliceId(now)
            const slice = slotOf(id)
            if (slice.id !== id) {
              histogram.reset(slice.counts)
              slice.id = id
            }
            histogram.add(slice.counts, millis)
          }))
        : Effect.void

    const track = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.flatMap(Clock.currentTimeMillis, (start) =>
        Effect.tap(self, () => Effect.flatMap(Clock.currentTimeMillis, (end) => record(end - start))))

    const estimate = (counts: histogram.Counts, p: number): number | undefined =>
      counts.count < o.minSamples ? undefined : histogram.quantile(counts, p)

    const percentile = (p: number): Effect.Effect<Option.Option<number>> =>
      p >= 0 && p <= 1
        ? Effect.map(Clock.currentTimeMillis, (now) => Option.fromNullable(estimate(window(now), p)))
        : Effect.succeed(Option.none())

    const snapshot: Effect.Effect<Snapshot> = Effect.map(Clock.currentTimeMillis, (now) => {
      const counts = window(now)
      const hasSamples = counts.count > 0
      return {
        name: o.name,
        count: counts.count,
        min: hasSamples ? counts.min : undefined,
        max: hasSamples ? counts.max : undefined,
        mean: hasSamples ? counts.sum / counts.count : undefined,
        p50: estimate(counts, 0.5),
        p90: estimate(counts, 0.9),
        p95: estimate(counts, 0.95),
        p99: estimate(counts, 0.99)
      }
    })

    return { name: o.name, record, track, percentile, snapshot } satisfies Service
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LatencyTracker, InvalidConfigError> =>
  Layer.effect(LatencyTracker, make(options))
