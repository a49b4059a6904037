/**
 * A retry budget: retries may add at most a fixed share to the load of first
 * attempts (SEMANTICS.md rule 17, Envoy / gRPC / Finagle retry throttling).
 *
 * Over a rolling window (default 10 s) the budget counts first attempts and
 * retries. A retry is admitted while the retries of the window stay below
 *
 *     allowed = max(⌊ratio · attempts⌋, ⌊minRetriesPerSecond · windowSeconds⌋)
 *
 * so 100 first attempts with the default ratio 0.2 admit 20 retries, and a
 * quiet service still gets its floor (10 retries per 10 s window by default).
 * Beyond that, the retry policy fails fast with the last error: when a
 * provider is failing, retries must not multiply the load on it.
 *
 * The window is kept as 1 s buckets aligned to the `Clock` (a bucket holds the
 * calls of one clock second) and expired by arithmetic on every call: no
 * timer fiber, and an idle gap longer than the window leaves nothing stale.
 * The state is plain JSON in the {@link StateStore.StateStore} under
 * `retry-budget/<name>`, changed only by one atomic `modify` each call, so a
 * shared store gives N replicas one budget. Budgets of the same name in the
 * same store share their counts.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { InvalidConfigError } from "./Errors.js"
import { decodeOptions, Millis } from "./internal/config.js"
import * as fastPath from "./internal/fastPath.js"
import * as StateStore from "./StateStore.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the budget; its state lives under `retry-budget/<name>`. */
  readonly name: string
  /** The share of first attempts that may be retried, from 0 to 1. Default 0.2. */
  readonly ratio?: number | undefined
  /** Retries per second of the window always admitted, whatever the traffic. Default 1. */
  readonly minRetriesPerSecond?: number | undefined
  /** The rolling window, a whole number of seconds. Default 10 seconds. */
  readonly window?: Duration.DurationInput | undefined
}

/**
 * The counts of the current window.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  /** First attempts recorded in the window. */
  readonly attempts: number
  /** Retries admitted in the window. */
  readonly retries: number
  /** How many retries the window admits in all right now; the next is admitted while `retries < allowed`. */
  readonly allowed: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** Records a first attempt (not a retry) in the current second. */
  readonly recordAttempt: Effect.Effect<void>
  /** Takes one retry from the budget if the window admits it; `false` means fail fast. */
  readonly tryAcquireRetry: Effect.Effect<boolean>
  /** The counts of the current window. */
  readonly status: Effect.Effect<Status>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RetryBudget extends Context.Tag("@resilient-ai/core/RetryBudget")<RetryBudget, Service>() {}

// ---------------------------------------------------------------------------
// state: plain JSON, never mutated
// ---------------------------------------------------------------------------

/** The calls of one clock second: `second` is `⌊epochMillis / 1000⌋`. */
interface Bucket {
  readonly second: number
  readonly attempts: number
  readonly retries: number
}

interface State {
  /** Ascending by `second`; at most one bucket a second. */
  readonly buckets: ReadonlyArray<Bucket>
}

const BUCKET_MILLIS = 1000

/** Guards `0.29 * 100 = 28.999999999999996` style float error before flooring. */
const EPSILON = 1e-9

const OptionsSchema = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })),
  ratio: Schema.optionalWith(
    Schema.Number.pipe(Schema.filter((n) => (n >= 0 && n <= 1) || "expected a ratio from 0 to 1 (0.2 = 20 %)")),
    { default: () => 0.2 }
  ),
  minRetriesPerSecond: Schema.optionalWith(
    Schema.Number.pipe(
      Schema.filter((n) => (Number.isFinite(n) && n >= 0) || "expected a finite number of retries per second, 0 or more")
    ),
    { default: () => 1 }
  ),
  window: Schema.optionalWith(
    Millis.pipe(
      Schema.filter((ms) => (ms >= BUCKET_MILLIS && ms % BUCKET_MILLIS === 0) || "expected a whole number of seconds, at least 1 second")
    ),
    { default: () => 10_000 }
  )
})

interface Config {
  readonly ratio: number
  readonly minRetriesPerSecond: number
  readonly windowSeconds: number
}

/** The buckets still inside the window that ends with the second `now`. */
const live = (state: State, now: number, config: Config): ReadonlyArray<Bucket> => {
  const oldest = now - config.windowSeconds + 1
  const first = state.buckets[0]
  // The hot path: nothing expired, nothing copied.
  return first === undefined || first.second >= oldest ? state.buckets : state.buckets.filter((b) => b.second >= oldest)
}

const totals = (buckets: ReadonlyArray<Bucket>): { readonly attempts: number; readonly retries: number } => {
  let attempts = 0
  let retries = 0
  for (const b of buckets) {
    attempts += b.attempts
    retries += b.retries
  }
  return { attempts, retries }
}

const allowedFor = (attempts: number, config: Config): number =>
  Math.max(
    Math.floor(config.ratio * attempts + EPSILON),
    Math.floor(config.minRetriesPerSecond * config.windowSeconds + EPSILON)
  )

/** Adds `count` attempts or retries to the bucket of the second `now`, creating it if needed. */
const bump = (buckets: ReadonlyArray<Bucket>, now: number, field: "attempts" | "retries", count = 1): State => {
  const last = buckets[buckets.length - 1]
  if (last !== undefined && last.second === now) {
    // The hot path: the current second is the last bucket.
    const next = buckets.slice()
    next[next.length - 1] = field === "attempts"
      ? { second: now, attempts: last.attempts + count, retries: last.retries }
      : { second: now, attempts: last.attempts, retries: last.retries + count }
    return { buckets: next }
  }
  const index = buckets.findIndex((b) => b.second === now)
  if (index === -1) {
    const fresh: Bucket = {
      second: now,
      attempts: field === "attempts" ? count : 0,
      retries: field === "retries" ? count : 0
    }
    return { buckets: [...buckets, fresh].sort((a, b) => a.second - b.second) }
  }
  return {
    buckets: buckets.map((b, i) => (i === index ? { ...b, [field]: b[field] + count } : b))
  }
}

/**
 * First attempts recorded on a synchronous store but not yet written to its
 * slot: one counter for the latest second. Every call records a first
 * attempt, and a new state per call (states are never mutated) cost more than
 * the rest of the retry. The count is written when the second changes, and
 * by the store before anything reads the slot, so every reader sees it.
 */
interface Unwritten {
  second: number
  attempts: number
}

/** Per slot (the store keeps one cell per slot), shared by every budget of that name. */
const unwrittenOf = new WeakMap<fastPath.SyncCell<State>, Unwritten>()

const statusOf = (buckets: ReadonlyArray<Bucket>, config: Config): Status => {
  const { attempts, retries } = totals(buckets)
  return { attempts, retries, allowed: allowedFor(attempts, config) }
}

const currentSecond: Effect.Effect<number> = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / BUCKET_MILLIS))

/**
 * Builds a budget whose state lives in the {@link StateStore.StateStore}.
 * Bad options fail with `InvalidConfigError` naming the field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const decoded = yield* decodeOptions("RetryBudget", OptionsSchema, options)
    const store = yield* StateStore.StateStore
    const config: Config = {
      ratio: decoded.ratio,
      minRetriesPerSecond: decoded.minRetriesPerSecond,
      windowSeconds: decoded.window / BUCKET_MILLIS
    }
    const key = StateStore.key<State>(`retry-budget/${decoded.name}`, () => ({ buckets: [] }))

    const sync = fastPath.syncCell(store, key)
    const unwritten = sync === undefined ? undefined : unwrittenOf.get(sync) ?? { second: 0, attempts: 0 }
    const write = (): void => {
      if (sync === undefined || unwritten === undefined || unwritten.attempts === 0) return
      const { attempts, second } = unwritten
      unwritten.attempts = 0
      sync.set(bump(live(sync.get(), second, config), second, "attempts", attempts))
    }
    if (sync !== undefined && unwritten !== undefined && !unwrittenOf.has(sync)) {
      unwrittenOf.set(sync, unwritten)
      sync.beforeRead(write)
    }
    const recordAt = (millis: number): void => {
      const now = Math.floor(millis / BUCKET_MILLIS)
      if (unwritten === undefined) return
      if (unwritten.second !== now) write()
      unwritten.second = now
      unwritten.attempts += 1
    }
    const recordAttempt: Effect.Effect<void> = Effect.clockWith((clock) => {
      if (sync !== undefined) {
        recordAt(clock.unsafeCurrentTimeMillis())
        return Effect.void
      }
      const now = Math.floor(clock.unsafeCurrentTimeMillis() / BUCKET_MILLIS)
      return store.modify(key, (state) => [undefined, bump(live(state, now, config), now, "attempts")] as const)
    })

    const tryAcquireRetry: Effect.Effect<boolean> = Effect.flatMap(currentSecond, (now) =>
      store.modify(key, (state): readonly [boolean, State] => {
        const buckets = live(state, now, config)
        const { attempts, retries } = totals(buckets)
        return retries < allowedFor(attempts, config)
          ? [true, bump(buckets, now, "retries")]
          : [false, { buckets }]
      }))

    const status: Effect.Effect<Status> = Effect.flatMap(currentSecond, (now) =>
      Effect.map(store.get(key), (state) => statusOf(live(state, now, config), config)))

    const service: Service = { name: decoded.name, recordAttempt, tryAcquireRetry, status }
    if (sync !== undefined) fastPath.retryBudgets.set(service, recordAt)
    return service
  })

/**
 * A layer with one budget, for the single-instance case.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RetryBudget, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(RetryBudget, make(options))
