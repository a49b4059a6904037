import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as LogLevel from "effect/LogLevel"
import * as Predicate from "effect/Predicate"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleInterval from "effect/ScheduleInterval"
import * as Schema from "effect/Schema"
import * as Errors from "../Errors.js"
import type * as Retry from "../Retry.js"
import type * as RetryBudget from "../RetryBudget.js"
import { LimitMillis, Millis, NonNegativeInt } from "./config.js"
import * as RequestScope from "./requestScope.js"

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
  maxDelay: Schema.optionalWith(LimitMillis, { default: () => 30_000 }),
  jitter: Schema.optionalWith(JitterSchema, { default: () => "full" as const }),
  maxRetryAfter: Schema.optionalWith(LimitMillis, { default: () => 60_000 })
})

// ---------------------------------------------------------------------------
// backoff arithmetic
// ---------------------------------------------------------------------------

/** AWS's growth for decorrelated jitter: the next sleep is drawn from [base, 3 · previous]. */
export const DECORRELATED_GROWTH = 3

/** `base · factor^(n−1)` without `0 · Infinity = NaN` for huge `n`. */
const exponential = (backoff: Retry.Backoff, retry: number): number =>
  backoff.baseDelay === 0 ? 0 : backoff.baseDelay * Math.pow(backoff.factor, Math.max(0, retry - 1))

/**
 * The longest computed sleep (about 285,000 years), whatever `maxDelay`: with
 * `maxDelay` off (`Infinity`), `factor^n` must not overflow to `Infinity`, nor
 * full jitter's `0 · Infinity` give NaN.
 */
const LONGEST_DELAY = Number.MAX_SAFE_INTEGER

export const backoffDelay = (backoff: Retry.Backoff, retry: number, draw: number, previous?: number): number => {
  const cap = Math.min(backoff.maxDelay, LONGEST_DELAY)
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
    // The previous sleep was capped too; a larger one handed in must not overflow 3 · previous.
    const prev = Math.min(cap, previous ?? backoff.baseDelay)
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

/**
 * The Retry-After in ms of any error that carries one: a 429's, a 503's or
 * 529's (rule 24), a local limiter's. Read as a field, not by class, so an
 * error made by a second copy of this package is read too.
 */
const retryAfterOf = (error: unknown): number | undefined =>
  Predicate.hasProperty(error, "retryAfter") && Duration.isDuration(error.retryAfter)
    ? Duration.toMillis(error.retryAfter)
    : undefined

/** A narrowing of the retryable set for the calls inside (one request), on top of the policy's own. */
export const currentRetryOn: FiberRef.FiberRef<((error: Errors.RetryableError) => boolean) | undefined> = globalValue(
  // One ref however many copies of this module are loaded.
  Symbol.for("@resilient-ai/core/Retry/currentRetryOn"),
  () => FiberRef.unsafeMake<((error: Errors.RetryableError) => boolean) | undefined>(undefined)
)

/** One step of the schedule: the next state, the decision, and whether (and when) to go on. */
type Step = Effect.Effect<readonly [State, Decision, ScheduleDecision.ScheduleDecision]>

/**
 * Whether the policy may retry `error` (before the call's own narrowing,
 * `currentRetryOn`); false: it never does, whatever the attempt.
 */
export const mayRetry = (
  retryOn: ((error: Errors.RetryableError) => boolean) | undefined,
  error: unknown
): error is Errors.RetryableError =>
  Errors.isRetryable(error) &&
  // A local limiter that gives no retryAfter refused a cost it can never grant: waiting cannot help.
  !(error._tag === "RateLimitError" && error.source === "local" && error.retryAfter === undefined) &&
  // The provider said not to (`x-should-retry: false`).
  !(Predicate.hasProperty(error, "shouldRetry") && error.shouldRetry === false) &&
  (retryOn === undefined || retryOn(error))

/** Whether a `logDebug` in `fiber` would log: when it would not, the message is not even built. */
export const debugEnabled = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  LogLevel.greaterThanEqual(LogLevel.Debug, fiber.getFiberRef(FiberRef.currentMinimumLogLevel))

/**
 * Marks the {@link Retry.RejectedResult}s this package made: the schedule
 * tells a rejected value from a failure by identity, so an error of the
 * caller's own that happens to be tagged "RejectedResult" stays an error.
 */
const rejectedResults = globalValue(Symbol.for("@resilient-ai/core/Retry/rejectedResults"), () => new WeakSet<object>())

/** A value `retryOnResult` rejected, as the schedule's input and the events' `error`. */
export const rejectResult = (value: unknown): Retry.RejectedResult => {
  const rejected: Retry.RejectedResult = { _tag: "RejectedResult", value }
  rejectedResults.add(rejected)
  return rejected
}

const isRejectedResult = (u: unknown): u is Retry.RejectedResult =>
  typeof u === "object" && u !== null && rejectedResults.has(u)

/**
 * What the retry would retry: a rejected value, or a failure the policy and
 * the call (`currentRetryOn`) let it retry; `undefined`: neither.
 */
const retriable = (
  policy: Policy,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  input: unknown
): Errors.RetryableError | Retry.RejectedResult | undefined => {
  if (isRejectedResult(input)) return input
  const callRetryOn = fiber.getFiberRef(currentRetryOn)
  return mayRetry(policy.retryOn, input) && (callRetryOn === undefined || callRetryOn(input)) ? input : undefined
}

/**
 * The retry policy as an effect `Schedule` over the failed errors and the
 * rejected values ({@link rejectResult}).
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
 * A driver ({@link retryFrom}) still does the sleeping (on `Clock`) and
 * surfaces the last outcome when the schedule is done, so the error type of
 * the retried effect is unchanged.
 */
export const makeSchedule = (policy: Policy): Schedule.Schedule<Decision, unknown> => {
  const initial: State = { retries: 0, previous: policy.backoff.baseDelay }
  const label = `retry${policy.name === undefined ? "" : ` "${policy.name}"`}`

  const giveUp = (fiber: Fiber.RuntimeFiber<unknown, unknown>, state: State, event: Retry.GiveUpEvent): Step => {
    const done: readonly [State, Decision, ScheduleDecision.ScheduleDecision] = [state, event, ScheduleDecision.done]
    const logged = debugEnabled(fiber)
      ? Effect.logDebug(`${label}: giving up (${event.reason})`).pipe(
        Effect.annotateLogs({ retries: event.retries, reason: event.reason })
      )
      : Effect.void
    return Effect.as(
      policy.onGiveUp === undefined ? logged : Effect.zipRight(logged, policy.onGiveUp(event)),
      done
    )
  }

  // One op reads what the decision needs from the fiber (its refs, its `Random`); only a
  // Retry-After check, a jitter draw, the budget and the hooks are effects of their own.
  return Schedule.makeWithState<State, unknown, Decision>(initial, (now, input, state) =>
    Effect.withFiberRuntime((fiber): Step => {
      const error = retriable(policy, fiber, input)
      if (error === undefined) {
        return giveUp(fiber, state, { _tag: "GiveUp", reason: "not-retryable", retries: state.retries, error: input })
      }
      const retry = state.retries + 1
      if (retry > policy.maxRetries) {
        return giveUp(fiber, state, { _tag: "GiveUp", reason: "max-retries", retries: state.retries, error })
      }

      const scheduled = (delayMs: number, retryAfter: number | undefined): Step => {
        const event: Retry.RetryEvent = error._tag === "RejectedResult"
          ? { _tag: "Retry", retry, delayMs, reason: "result", error }
          : { _tag: "Retry", retry, delayMs, reason: retryAfter === undefined ? "backoff" : "retry-after", error }
        const reason = event.reason
        const deadline = RequestScope.deadlineOf(fiber)
        if (deadline !== undefined && now + delayMs >= deadline) {
          return giveUp(fiber, state, { _tag: "GiveUp", reason: "deadline", retries: state.retries, error, delayMs })
        }
        const next: State = { retries: retry, previous: retryAfter === undefined ? delayMs : state.previous }
        const decided: readonly [State, Decision, ScheduleDecision.ScheduleDecision] = [
          next,
          event,
          ScheduleDecision.continueWith(ScheduleInterval.after(now + delayMs))
        ]
        const logged = debugEnabled(fiber)
          ? Effect.logDebug(`${label}: retry ${retry} in ${delayMs} ms (${reason})`).pipe(
            Effect.annotateLogs({ retry, delayMs, reason })
          )
          : Effect.void
        const retrying = policy.onRetry === undefined
          ? Effect.as(logged, decided)
          : Effect.as(Effect.zipRight(logged, policy.onRetry(event)), decided)
        if (policy.budget === undefined) return retrying
        return Effect.flatMap(policy.budget.tryAcquireRetry, (granted) =>
          granted
            ? retrying
            : giveUp(fiber, state, { _tag: "GiveUp", reason: "budget", retries: state.retries, error, delayMs }))
      }

      const withRetryAfter = (retryAfter: number | undefined): Step => {
        // An infinite Retry-After asks for no retry at all, even with maxRetryAfter off. Rule 25: with a later
        // step of a fallback chain to go to, a wait above its limit ends this step instead.
        const limit = Math.min(policy.maxRetryAfter, RequestScope.maxWaitOf(fiber))
        if (retryAfter !== undefined && (retryAfter > limit || !Number.isFinite(retryAfter))) {
          return giveUp(fiber, state, {
            _tag: "GiveUp",
            reason: "retry-after-too-long",
            retries: state.retries,
            error,
            delayMs: retryAfter
          })
        }
        if (retryAfter !== undefined) return scheduled(retryAfter, retryAfter)
        const backoff = policy.backoff
        if (backoff.jitter === "none") return scheduled(backoffDelay(backoff, retry, 0, state.previous), undefined)
        return Effect.flatMap(
          Context.get(fiber.currentDefaultServices, Random.Random).next,
          (draw) => scheduled(backoffDelay(backoff, retry, draw, state.previous), undefined)
        )
      }

      // A value has no Retry-After: it is retried after the computed backoff.
      const retryAfter = error._tag === "RejectedResult" ? undefined : retryAfterOf(error)
      // Only a 429's Retry-After binds a key, which another key may escape; any other error's binds the deployment.
      if (retryAfter !== undefined && error._tag === "RateLimitError" && policy.honorRetryAfter !== undefined) {
        return Effect.flatMap(policy.honorRetryAfter(error), (honored) => withRetryAfter(honored ? retryAfter : undefined))
      }
      return withRetryAfter(retryAfter)
    }))
}

/**
 * Runs `effect` again while `schedule` goes on, from a first outcome the
 * retry considers: a failure (`Either.left`) or a value `rejects` holds for
 * (`Either.right`). Each later failure, and each value `rejects` holds for,
 * goes to the schedule; when it is done, that last outcome is the call's as
 * it was: an error fails, a value succeeds. The schedule's driver (its state
 * and clock) is built here, so a call whose first attempt is kept pays
 * nothing for it.
 */
export const retryFrom = <A, E, R>(
  schedule: Schedule.Schedule<unknown, unknown>,
  effect: Effect.Effect<A, E, R>,
  rejects: ((value: A) => boolean) | undefined,
  first: Either.Either<A, E>
): Effect.Effect<A, E, R> =>
  Effect.flatMap(Schedule.driver(schedule), (driver) => {
    const failed = (error: E): Effect.Effect<A, E, R> =>
      Effect.matchEffect(driver.next(error), { onFailure: () => Effect.fail(error), onSuccess: () => attempt })
    const rejected = (value: A): Effect.Effect<A, E, R> =>
      Effect.matchEffect(driver.next(rejectResult(value)), {
        onFailure: () => Effect.succeed(value),
        onSuccess: () => attempt
      })
    const attempt: Effect.Effect<A, E, R> = rejects === undefined
      ? Effect.catchAll(effect, failed)
      : Effect.matchEffect(effect, {
        onFailure: failed,
        onSuccess: (value) => (rejects(value) ? rejected(value) : Effect.succeed(value))
      })
    return Either.isLeft(first) ? failed(first.left) : rejected(first.right)
  })
