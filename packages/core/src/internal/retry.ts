import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleInterval from "effect/ScheduleInterval"
import * as Schema from "effect/Schema"
import * as Deadline from "../Deadline.js"
import * as Errors from "../Errors.js"
import type * as Retry from "../Retry.js"
import type * as RetryBudget from "../RetryBudget.js"
import { Millis, NonNegativeInt } from "./config.js"

// ---------------------------------------------------------------------------
// options
// ---------------------------------------------------------------------------

const NonNegativeFinite = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n >= 0) || "expected a finite number, 0 or more")
)

const Proportional = Schema.Struct({
  kind: Schema.Literal("proportional"),
  min: NonNegativeFinite,
  max: NonNegativeFinite
}).pipe(Schema.filter((j) => j.max >= j.min || "expected max to be at least min"))

const JitterSchema = Schema.Union(Schema.Literal("none", "full", "equal", "decorrelated"), Proportional)

/** The data options; functions and the budget instance are taken as they are. */
export const OptionsSchema = Schema.Struct({
  maxRetries: Schema.optionalWith(NonNegativeInt, { default: () => 3 }),
  baseDelay: Schema.optionalWith(Millis, { default: () => 500 }),
  factor: Schema.optionalWith(
    Schema.Number.pipe(Schema.filter((n) => (Number.isFinite(n) && n >= 1) || "expected a finite factor of 1 or more")),
    { default: () => 2 }
  ),
  maxDelay: Schema.optionalWith(Millis, { default: () => 30_000 }),
  jitter: Schema.optionalWith(JitterSchema, { default: () => "full" as const }),
  maxRetryAfter: Schema.optionalWith(Millis, { default: () => 60_000 })
})

// ---------------------------------------------------------------------------
// backoff arithmetic
// ---------------------------------------------------------------------------

/** AWS's growth for decorrelated jitter: the next sleep is drawn from [base, 3 · previous]. */
export const DECORRELATED_GROWTH = 3

/** `base · factor^(n−1)` without `0 · Infinity = NaN` for huge `n`. */
const exponential = (backoff: Retry.Backoff, retry: number): number =>
  backoff.baseDelay === 0 ? 0 : backoff.baseDelay * Math.pow(backoff.factor, Math.max(0, retry - 1))

export const backoffDelay = (backoff: Retry.Backoff, retry: number, draw: number, previous?: number): number => {
  const cap = backoff.maxDelay
  const ceiling = Math.min(cap, exponential(backoff, retry))
  const jitter = backoff.jitter
  let delay: number
  if (jitter === "none") {
    delay = ceiling
  } else if (jitter === "full") {
    delay = draw * ceiling
  } else if (jitter === "equal") {
    delay = ceiling / 2 + (draw * ceiling) / 2
  } else if (jitter === "decorrelated") {
    const prev = previous ?? backoff.baseDelay
    delay = backoff.baseDelay + draw * (DECORRELATED_GROWTH * prev - backoff.baseDelay)
  } else {
    delay = ceiling * (jitter.min + draw * (jitter.max - jitter.min))
  }
  return Math.max(0, Math.min(cap, delay))
}

export const nextBackoffDelay = (backoff: Retry.Backoff, retry: number, previous?: number): Effect.Effect<number> =>
  backoff.jitter === "none"
    ? Effect.sync(() => backoffDelay(backoff, retry, 0, previous))
    : Effect.map(Random.next, (draw) => backoffDelay(backoff, retry, draw, previous))

// ---------------------------------------------------------------------------
// the retry schedule
// ---------------------------------------------------------------------------

export interface Policy {
  readonly name: string | undefined
  readonly maxRetries: number
  readonly maxRetryAfter: number
  readonly backoff: Retry.Backoff
  readonly budget: RetryBudget.Service | undefined
  readonly retryOn: ((error: Errors.RetryableError) => boolean) | undefined
  readonly honorRetryAfter: ((error: Errors.RateLimitError) => Effect.Effect<boolean>) | undefined
  readonly onRetry: ((event: Retry.RetryEvent) => Effect.Effect<void>) | undefined
  readonly onGiveUp: ((event: Retry.GiveUpEvent) => Effect.Effect<void>) | undefined
}

interface State {
  /** Retries decided so far. */
  readonly retries: number
  /** The last computed backoff delay, the `previous` of decorrelated jitter. */
  readonly previous: number
}

type Decision = Retry.RetryEvent | Retry.GiveUpEvent

/** The server's (or local limiter's) Retry-After in ms, if the error carries one. */
const retryAfterOf = (error: Errors.RetryableError): number | undefined =>
  error._tag === "RateLimitError" && error.retryAfter !== undefined ? Duration.toMillis(error.retryAfter) : undefined

/**
 * The retry policy as an effect `Schedule` over the failed errors.
 *
 * Built with `Schedule.makeWithState` rather than composed from
 * `exponential` / `jitteredWith` / `either` / `addDelay`, because:
 * - Retry-After must REPLACE the backoff exactly (no jitter, no `maxDelay`,
 *   no Random draw); `intersect` takes the longer of two delays, `union` the
 *   shorter, and a composed jittered schedule draws on every step anyway;
 * - giving up depends on the delay itself (above `maxRetryAfter`, or ending
 *   at or after the request's `Deadline`), which no stock combinator sees
 *   before the driver sleeps;
 * - the budget is consulted only once every other check passed, so a retry
 *   we would not make never spends a budget token.
 * The driver of `Effect.retry` still does the sleeping (on `Clock`) and
 * returns the last error when the schedule is done, so the error type of the
 * retried effect is unchanged.
 */
/** A narrowing of the retryable set for the calls inside (one request), on top of the policy's own. */
export const currentRetryOn: FiberRef.FiberRef<((error: Errors.RetryableError) => boolean) | undefined> = FiberRef
  .unsafeMake<((error: Errors.RetryableError) => boolean) | undefined>(undefined)

export const makeSchedule = (policy: Policy): Schedule.Schedule<Decision, unknown> => {
  const initial: State = { retries: 0, previous: policy.backoff.baseDelay }

  const giveUp = (state: State, event: Retry.GiveUpEvent) => {
    const done = [state, event, ScheduleDecision.done] as const
    const logged = Effect.logDebug(`retry${policy.name === undefined ? "" : ` "${policy.name}"`}: giving up (${event.reason})`).pipe(
      Effect.annotateLogs({ retries: event.retries, reason: event.reason })
    )
    return Effect.as(
      policy.onGiveUp === undefined ? logged : Effect.zipRight(logged, policy.onGiveUp(event)),
      done
    )
  }

  return Schedule.makeWithState<State, unknown, Decision>(initial, (now, error, state) =>
    Effect.gen(function*() {
      // A local limiter that gives no retryAfter refused a cost it can never grant: waiting cannot help.
      const neverGranted = error instanceof Errors.RateLimitError && error.source === "local" &&
        error.retryAfter === undefined
      const callRetryOn = yield* FiberRef.get(currentRetryOn)
      if (
        !Errors.isRetryable(error) || neverGranted || (policy.retryOn !== undefined && !policy.retryOn(error)) ||
        (callRetryOn !== undefined && !callRetryOn(error))
      ) {
        return yield* giveUp(state, { _tag: "GiveUp", reason: "not-retryable", retries: state.retries, error })
      }
      const retry = state.retries + 1
      if (retry > policy.maxRetries) {
        return yield* giveUp(state, { _tag: "GiveUp", reason: "max-retries", retries: state.retries, error })
      }

      const retryAfter = error._tag === "RateLimitError" && policy.honorRetryAfter !== undefined &&
          !(yield* policy.honorRetryAfter(error))
        ? undefined
        : retryAfterOf(error)
      if (retryAfter !== undefined && retryAfter > policy.maxRetryAfter) {
        return yield* giveUp(state, {
          _tag: "GiveUp",
          reason: "retry-after-too-long",
          retries: state.retries,
          error,
          delayMs: retryAfter
        })
      }
      const delayMs = retryAfter ?? (yield* nextBackoffDelay(policy.backoff, retry, state.previous))
      const reason: Retry.RetryEvent["reason"] = retryAfter === undefined ? "backoff" : "retry-after"

      const deadline = yield* FiberRef.get(Deadline.currentDeadline)
      if (Option.isSome(deadline) && now + delayMs >= deadline.value) {
        return yield* giveUp(state, { _tag: "GiveUp", reason: "deadline", retries: state.retries, error, delayMs })
      }

      if (policy.budget !== undefined && !(yield* policy.budget.tryAcquireRetry)) {
        return yield* giveUp(state, { _tag: "GiveUp", reason: "budget", retries: state.retries, error, delayMs })
      }

      const event: Retry.RetryEvent = { _tag: "Retry", retry, delayMs, reason, error }
      yield* Effect.logDebug(`retry${policy.name === undefined ? "" : ` "${policy.name}"`}: retry ${retry} in ${delayMs} ms (${reason})`).pipe(
        Effect.annotateLogs({ retry, delayMs, reason })
      )
      if (policy.onRetry !== undefined) {
        yield* policy.onRetry(event)
      }
      const next: State = { retries: retry, previous: retryAfter === undefined ? delayMs : state.previous }
      return [next, event, ScheduleDecision.continueWith(ScheduleInterval.after(now + delayMs))] as const
    }))
}
