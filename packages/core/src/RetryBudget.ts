/**
 * A retry budget: retries may add at most a fixed share to the load of first
 * attempts (docs/semantics.md rule 17, Envoy / gRPC / Finagle retry throttling).
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
 * timer fiber, and an idle gap longer than the window leaves nothing stale
 * (`internal/retryBudgetState.ts`). The state lives in the
 * {@link StateStore.StateStore} under `retry-budget/<name>`, changed by one
 * atomic store operation per call, so a shared store gives N replicas one
 * budget. Budgets of the same name in the same store share their counts.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { InvalidConfigError } from "./Errors.js"
import { decodeOptions, Millis } from "./internal/config.js"
import * as machine from "./internal/retryBudgetState.js"
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
  /** `recordAttempt` at epoch ms `now`, for a caller that has read the clock already. */
  readonly recordAttemptAt: (now: number) => Effect.Effect<void>
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
      Schema.filter((ms) =>
        (ms >= machine.BUCKET_MILLIS && ms % machine.BUCKET_MILLIS === 0) || "expected a whole number of seconds, at least 1 second"
      )
    ),
    { default: () => 10_000 }
  )
})

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
    const slot = store.retryBudget(decoded.name, {
      ratio: decoded.ratio,
      minRetriesPerSecond: decoded.minRetriesPerSecond,
      windowSeconds: decoded.window / machine.BUCKET_MILLIS
    })
    return {
      name: decoded.name,
      recordAttempt: Effect.clockWith((clock) => slot.recordAttempt(clock.unsafeCurrentTimeMillis())),
      recordAttemptAt: slot.recordAttempt,
      tryAcquireRetry: Effect.clockWith((clock) => slot.tryAcquireRetry(clock.unsafeCurrentTimeMillis())),
      status: Effect.clockWith((clock) => slot.read(clock.unsafeCurrentTimeMillis()))
    }
  })

/**
 * A layer with one budget, for the single-instance case.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RetryBudget, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(RetryBudget, make(options))
