/**
 * Retry with exponential backoff, jitter, Retry-After, a deadline and a
 * retry budget (docs/semantics.md rules 13–17).
 *
 * - `maxRetries` counts retries after the first attempt: a call makes at most
 *   `maxRetries + 1` attempts.
 * - The n-th retry sleeps `baseDelay · factor^(n−1)`, jittered, and never
 *   more than `maxDelay` (see {@link backoffDelay}). Each computed delay makes
 *   exactly one draw from effect's `Random` service (none for `"none"`).
 * - Any retryable error with a `retryAfter` (a 429's, a 503's or 529's, a
 *   local limiter's: rule 24) replaces that delay exactly: no jitter, no
 *   `maxDelay`, no draw. Above `maxRetryAfter` the retry gives up at once with
 *   that error, which keeps its `retryAfter` for the caller. Errors are read
 *   by `_tag` and fields, never by class, so an error made by a second copy of
 *   this package is treated the same.
 * - Any sleep (backoff or Retry-After) that would end at or after the
 *   request's deadline (`Deadline.at`, `Timeout.total`) gives up at once.
 * - Only tags that {@link Errors.isRetryable} marks are retried; `retryOn` can
 *   only narrow that set. `CircuitOpenError` is never retried.
 * - With a {@link RetryBudget.Service}, the first attempt is recorded and every
 *   retry must be admitted by the budget, else the retry gives up at once.
 * - `retryOnResult` (for the policy, or per call in `execute`) retries an
 *   attempt that succeeded with a value it holds for (an empty answer,
 *   structured output that does not parse) as it retries a retryable
 *   failure: the same backoff and draw (a value has no Retry-After), the same
 *   `maxRetries`, deadline and budget. `retryOn` and {@link retryOnly} narrow
 *   the failures retried; they are never asked about a value.
 *
 * Giving up surfaces the last outcome as it was: the last error, so the
 * error type of the retried effect is unchanged, or, when the last attempt
 * gave a rejected value, that value (as Polly's `HandleResult` and
 * resilience4j's `retryOnResult` do). Failing instead would need an error the
 * effect's type does not have, and the caller, who wrote the predicate, can
 * still tell the value is poor; a value that is no use at all is the
 * caller's to turn into an error. Defects and interruption are never retried.
 * Time comes only from `Clock` and randomness only from `Random`, so
 * `TestClock` and `Effect.withRandom(Random.fixed([...]))` make it exact.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Errors from "./Errors.js"
import { decodeOptions } from "./internal/config.js"
import * as internal from "./internal/retry.js"
import * as AttemptCharge from "./internal/attemptCharge.js"
import { exitOf } from "./internal/done.js"
import { clockOf } from "./internal/fiberClock.js"
import type * as RetryBudget from "./RetryBudget.js"

/**
 * Multiplies the backoff by a factor drawn uniformly from `[min, max]` (the
 * seed's `0.5`–`1.5`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Proportional {
  readonly kind: "proportional"
  readonly min: number
  readonly max: number
}

/**
 * How the exponential delay `d = min(maxDelay, baseDelay · factor^(n−1))` of
 * the n-th retry is randomised, for a draw `r` in `[0, 1)`:
 *
 * - `"none"`: `d`, no draw;
 * - `"full"` (default, AWS's recommendation): `r · d`;
 * - `"equal"`: `d/2 + r · d/2`;
 * - `{ kind: "proportional", min, max }`: `d · (min + r · (max − min))`;
 * - `"decorrelated"` (AWS): `baseDelay + r · (3 · previous − baseDelay)`, where
 *   `previous` is the last computed backoff (`baseDelay` at first); `factor`
 *   plays no part.
 *
 * Every result is then capped at `maxDelay` again, so `maxDelay` is a hard
 * ceiling on every computed sleep.
 *
 * @since 0.1.0
 * @category models
 */
export type Jitter = "none" | "full" | "equal" | "decorrelated" | Proportional

/**
 * The backoff part of the options, decoded: times in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backoff {
  readonly baseDelay: number
  readonly factor: number
  /** `Infinity`: no ceiling. */
  readonly maxDelay: number
  readonly jitter: Jitter
}

/**
 * A value an attempt succeeded with and `retryOnResult` rejected, as the
 * retry's events carry it in the place of an error. It never reaches the
 * caller as a failure: when the retry gives up on it, the call succeeds with
 * `value`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RejectedResult {
  readonly _tag: "RejectedResult"
  readonly value: unknown
}

/**
 * A retry decided, reported before its sleep: the `retry`-th retry (1-based),
 * why it waits `delayMs`, and what caused it:
 *
 * - `"backoff"`: a retryable failure, and the computed delay;
 * - `"retry-after"`: a retryable failure, and its Retry-After;
 * - `"result"`: a value `retryOnResult` rejected (`error` is the
 *   {@link RejectedResult}), and the computed delay.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryEvent =
  | {
    readonly _tag: "Retry"
    readonly retry: number
    readonly delayMs: number
    readonly reason: "backoff" | "retry-after"
    readonly error: Errors.RetryableError
  }
  | {
    readonly _tag: "Retry"
    readonly retry: number
    readonly delayMs: number
    readonly reason: "result"
    readonly error: RejectedResult
  }

/**
 * The retry stopped and the call ends with `error`, after `retries` retries:
 * it fails with it, or, for a {@link RejectedResult}, succeeds with its value.
 * `delayMs` is the sleep that was refused, when one was computed.
 *
 * - `not-retryable`: the tag is not retryable, or `retryOn` refused it;
 * - `max-retries`: `maxRetries` retries were made;
 * - `retry-after-too-long`: the error's `retryAfter` is above `maxRetryAfter`;
 * - `deadline`: the sleep would end at or after the request's deadline;
 * - `budget`: the retry budget refused.
 *
 * @since 0.1.0
 * @category models
 */
export interface GiveUpEvent {
  readonly _tag: "GiveUp"
  readonly reason: "not-retryable" | "max-retries" | "retry-after-too-long" | "deadline" | "budget"
  readonly retries: number
  readonly error: unknown
  readonly delayMs?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the policy in logs and config errors. */
  readonly name?: string | undefined
  /** Retries after the first attempt. Default 3 (so at most 4 attempts). */
  readonly maxRetries?: number | undefined
  /** Delay before the first retry, before jitter. Default 500 ms. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** Growth of the delay per retry, 1 or more. Default 2. */
  readonly factor?: number | undefined
  /**
   * Hard ceiling on every computed (not Retry-After) sleep. Default 30
   * seconds; `Duration.infinity` for none.
   */
  readonly maxDelay?: Duration.DurationInput | undefined
  /** Default `"full"`. */
  readonly jitter?: Jitter | undefined
  /**
   * A Retry-After above this gives up at once instead of waiting. Default 60
   * seconds; `Duration.infinity` for no limit (an infinite Retry-After still
   * gives up: it asks for no retry at all).
   */
  readonly maxRetryAfter?: Duration.DurationInput | undefined
  /** Records first attempts and must admit every retry. */
  readonly budget?: RetryBudget.Service | undefined
  /**
   * Narrows which retryable errors are retried. It is asked only about errors
   * {@link Errors.isRetryable} accepts, so it can never widen the set: a
   * non-retryable tag (auth, bad request, circuit open, ...) is not retried
   * whatever it returns.
   */
  readonly retryOn?: ((error: Errors.RetryableError) => boolean) | undefined
  /**
   * Retries an attempt that succeeded with a value this holds for, as a
   * retryable failure is retried (see the module's rules). The policy serves
   * calls of every value type, so the value is `unknown` here: for a typed
   * predicate, pass `retryOnResult` to `execute`. With both, a value either
   * rejects is retried.
   *
   * A policy with it is composed by `Policy` through `execute` (no hot path):
   * the hot path hands the retry failures only.
   */
  readonly retryOnResult?: ((value: unknown) => boolean) | undefined
  /**
   * Whether a `RateLimitError`'s Retry-After applies to the next attempt.
   * Default: always. A key pool answers false while another key is healthy:
   * a 429's Retry-After belongs to the key (or limiter) that refused, and the
   * retry goes to another key after the ordinary backoff.
   *
   * It is asked only about a `RateLimitError` that carries a `retryAfter`.
   * The Retry-After of any other error (a 503's, a 529's) is the
   * deployment's, which another key does not escape (rule 24): it is always
   * honoured, and this hook is not asked.
   */
  readonly honorRetryAfter?: ((error: Errors.RateLimitError) => Effect.Effect<boolean>) | undefined
  /** Observes each retry before its sleep (for attempt events and metrics). */
  readonly onRetry?: ((event: RetryEvent) => Effect.Effect<void>) | undefined
  /** Observes the decision to stop retrying. */
  readonly onGiveUp?: ((event: GiveUpEvent) => Effect.Effect<void>) | undefined
}

/**
 * What one call adds to the policy.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecuteOptions<A> {
  /**
   * Retries an attempt that succeeded with a value this holds for (a 200
   * whose answer is empty, or whose structured output does not parse), on
   * top of the policy's own `retryOnResult`.
   */
  readonly retryOnResult?: ((value: A) => boolean) | undefined
  /**
   * The effect charges each of its runs to the request's budget itself (a
   * `Policy`'s attempt does, inside the policy's own retry): each run is
   * then only checked against the budget before it starts, not paid for
   * twice. Leave it off for any other effect: a run nobody charges would
   * not count as an attempt.
   */
  readonly chargesEachRun?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Runs `effect`, retrying its failures (and the values `retryOnResult`
   * rejects) by the policy. When the policy gives up, the last outcome is
   * the call's: the last error, or the last value.
   *
   * Inside a request (`Fallback.run`, `RequestBudget.track`) each run of
   * `effect` is an attempt its budget pays for: past `maxAttempts` (or its
   * money or deadline) the run is refused with `BudgetExhaustedError`. A
   * `Policy` run inside takes that charge over rather than paying twice.
   */
  readonly execute: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: ExecuteOptions<A>
  ) => Effect.Effect<A, E | Errors.BudgetExhaustedError, R>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Retry extends Context.Tag("@resilient-ai/core/Retry")<Retry, Service>() {}

/**
 * The backoff of the default options: 500 ms base, factor 2, 30 s cap, full jitter.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBackoff: Backoff = { baseDelay: 500, factor: 2, maxDelay: 30_000, jitter: "full" }

/**
 * The computed delay in milliseconds of the `retry`-th retry (1-based) for a
 * random `draw` in `[0, 1)`; `previous` is the last computed delay, used by
 * decorrelated jitter only (default `baseDelay`). Pure: for tests and
 * benchmarks. The result is always in `[0, maxDelay]`, and finite (at most
 * `Number.MAX_SAFE_INTEGER`) when `maxDelay` is `Infinity`.
 *
 * @since 0.1.0
 * @category backoff
 */
export const backoffDelay: (backoff: Backoff, retry: number, draw: number, previous?: number) => number =
  internal.backoffDelay

/**
 * {@link backoffDelay} with the draw taken from effect's `Random` service:
 * exactly one draw, or none for `"none"`.
 *
 * @since 0.1.0
 * @category backoff
 */
export const nextBackoffDelay: (backoff: Backoff, retry: number, previous?: number) => Effect.Effect<number> =
  internal.nextBackoffDelay

/**
 * Builds a retry policy. Bad options fail with `InvalidConfigError` naming
 * the field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, Errors.InvalidConfigError> => {
  const { budget, honorRetryAfter, name, onGiveUp, onRetry, retryOn, retryOnResult, ...data } = options
  const component = name === undefined ? "Retry" : `Retry "${name}"`
  return Effect.map(decodeOptions(component, internal.OptionsSchema, data), (decoded): Service => {
    const schedule = internal.makeSchedule({
      name,
      maxRetries: decoded.maxRetries,
      maxRetryAfter: decoded.maxRetryAfter,
      backoff: {
        baseDelay: decoded.baseDelay,
        factor: decoded.factor,
        maxDelay: decoded.maxDelay,
        jitter: decoded.jitter
      },
      budget,
      retryOn,
      honorRetryAfter,
      onRetry,
      onGiveUp
    })
    // `catchAllCause`, not `catchAll`: `catchAll` is a `matchEffect` whose success handler costs a
    // call that succeeds an extra op. The failure goes through `catchAll`'s own rules as before.
    const retryFailed = <A, E, R>(
      cause: Cause.Cause<E>,
      effect: Effect.Effect<A, E, R>,
      rejects?: ((value: A) => boolean) | undefined
    ): Effect.Effect<A, E, R> => {
      const scheduled = () =>
        Effect.catchAll(Exit.failCause(cause), (first) => internal.retryFrom(schedule, effect, rejects, Either.left(first)))
      // An error the policy never retries (an open breaker, a 400) with no hook to tell: the schedule
      // would give up at its first step, so its driver is not built; only a debug log still wants it.
      if (onGiveUp !== undefined) return scheduled()
      const failure = Cause.failureOption(cause)
      if (Option.isNone(failure) || internal.mayRetry(retryOn, failure.value)) return scheduled()
      const error = failure.value
      return Effect.withFiberRuntime((fiber) => (internal.debugEnabled(fiber) ? scheduled() : Exit.fail(error)))
    }
    const executeRecorded = <A, E, R>(
      effect: Effect.Effect<A, E, R>,
      rejects: ((value: A) => boolean) | undefined
    ): Effect.Effect<A, E, R> =>
      rejects === undefined
        ? Effect.catchAllCause(effect, (cause) => retryFailed(cause, effect))
        : Effect.matchCauseEffect(effect, {
          onFailure: (cause) => retryFailed(cause, effect, rejects),
          onSuccess: (value) =>
            rejects(value) ? internal.retryFrom(schedule, effect, rejects, Either.right(value)) : Effect.succeed(value)
        })
    // A value either predicate rejects is retried.
    const rejectsOf = <A>(call: ((value: A) => boolean) | undefined): ((value: A) => boolean) | undefined =>
      retryOnResult === undefined
        ? call
        : call === undefined
        ? retryOnResult
        : (value) => retryOnResult(value) || call(value)
    const charge = { deployment: name ?? "retry" }
    const service: Service = {
      execute: <A, E, R>(
        effect: Effect.Effect<A, E, R>,
        options?: ExecuteOptions<A>
      ): Effect.Effect<A, E | Errors.BudgetExhaustedError, R> => {
        // Each run reaches the provider: the request's budget pays for it (a policy inside takes the charge over).
        const chargeRun = options?.chargesEachRun === true ? AttemptCharge.checked : AttemptCharge.charged
        const each = Effect.withFiberRuntime<A, E | Errors.BudgetExhaustedError, R>((fiber) =>
          chargeRun(fiber, charge, effect)
        )
        const retried = executeRecorded(each, rejectsOf(options?.retryOnResult))
        if (budget === undefined) return retried
        // The first attempt is recorded in the op that reads the clock: on the memory store, no op of its own.
        return Effect.withFiberRuntime((fiber) => {
          const recorded = budget.recordAttemptAt(clockOf(fiber).unsafeCurrentTimeMillis())
          return exitOf(recorded) === undefined ? Effect.zipRight(recorded, retried) : retried
        })
      }
    }
    return service
  })
}

/**
 * A layer with one retry policy, for the single-instance case.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Retry, Errors.InvalidConfigError> =>
  Layer.effect(Retry, make(options))

/**
 * Narrows, for the calls inside `self` only, which retryable errors are
 * retried (on top of each policy's `retryOn`). A request that must not be
 * paid twice uses it to refuse retries once the upstream may have started
 * work.
 *
 * @since 0.1.0
 * @category combinators
 */
export const retryOnly = (predicate: (error: Errors.RetryableError) => boolean) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => Effect.locally(self, internal.currentRetryOn, predicate)

/**
 * Whether the upstream may have started work on a request that failed with
 * `error`: a timeout after sending, or a connection lost after it was
 * established. A refused connection, a DNS failure, a 429 or a 5xx answer
 * mean the provider did not produce an answer to bill.
 *
 * @since 0.1.0
 * @category predicates
 */
export const mayHaveStartedWork = (error: Errors.RetryableError): boolean => {
  if (error._tag === "TimeoutError") return true
  if (error._tag === "ConnectionError") {
    return !/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|UND_ERR_CONNECT_TIMEOUT|ECONNABORTED/.test(error.detail ?? "")
  }
  return false
}

/**
 * Proportional jitter: the backoff times a factor drawn from `[min, max]`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const proportional = (min: number, max: number): Proportional => ({ kind: "proportional", min, max })
