/**
 * Timeouts for one attempt and for a whole request (docs/semantics.md rule 19).
 *
 * When the timeout fires, the effect is interrupted (an HTTP request's
 * `AbortSignal` fires) and awaited before the `TimeoutError` is returned, so
 * its finalizers have run, and a value it produced after the deadline (say,
 * from an uninterruptible region) is dropped. With `disconnect: true` the
 * error comes at the deadline exactly and the loser finishes its
 * interruption in the background. Time is the effect `Clock`, so `TestClock`
 * drives it.
 *
 * The semantics are `Effect.timeoutFail`'s, without its fibers: the effect
 * runs on the caller's fiber and one timer interrupts it, and an effect that
 * is already an `Exit` is returned as it is (see `internal/timeout.ts`).
 *
 * `total` also sets the request's `Deadline`, so inner policies (retry, key
 * pool, rate limiter) can see how much time is left and give up at once
 * instead of sleeping past it.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Deadline from "./Deadline.js"
import { TimeoutError } from "./Errors.js"
import * as DeadlineQueue from "./internal/deadlineQueue.js"
import * as internal from "./internal/timeout.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Copied into the `TimeoutError`, for logs. */
  readonly provider?: string
  readonly deployment?: string
  /**
   * Fail at the deadline exactly and let the timed-out effect finish its
   * interruption in the background, instead of waiting for it. Default false.
   */
  readonly disconnect?: boolean
}

/**
 * A timeout as a function from effect to effect.
 *
 * @since 0.1.0
 * @category models
 */
export type Timeout = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | TimeoutError, R>

const timed = (phase: "attempt" | "total", timeout: Duration.Duration, options: Options | undefined): Timeout => {
  const { deployment, provider } = options ?? {}
  const millis = Duration.toMillis(timeout)
  DeadlineQueue.register(millis)
  return internal.timeout(
    millis,
    () => new TimeoutError({ phase, timeout, provider, deployment }, true),
    options?.disconnect === true
  )
}

/**
 * Fails with `TimeoutError { phase: "attempt" }` when one attempt takes
 * longer than `duration`. The attempt is interrupted, and awaited unless
 * `disconnect` is set. An infinite duration adds nothing.
 *
 * @since 0.1.0
 * @category combinators
 */
export const attempt = (duration: Duration.DurationInput, options?: Options): Timeout => {
  const timeout = Duration.decode(duration)
  if (!Duration.isFinite(timeout)) return (self) => self
  return timed("attempt", timeout, options)
}

/**
 * The deadline of the whole request: fails with `TimeoutError { phase:
 * "total" }` after `duration`, and runs the effect under `Deadline.at(now +
 * duration)` (or an enclosing earlier deadline) so the policies inside can
 * read `Deadline.remaining`. An infinite duration adds nothing.
 *
 * @since 0.1.0
 * @category combinators
 */
export const total = (duration: Duration.DurationInput, options?: Options): Timeout => {
  const timeout = Duration.decode(duration)
  if (!Duration.isFinite(timeout)) return (self) => self
  const millis = Duration.toMillis(timeout)
  const run = timed("total", timeout, options)
  return (self) => Effect.flatMap(Clock.currentTimeMillis, (now) => run(Deadline.at(now + millis)(self)))
}

/**
 * `Effect.timeoutFail` without its fibers, for timeouts with an error of
 * their own (a provider's first byte, a stream's first token or stall):
 * `self`, failing with `onTimeout()` when it has not completed `duration`
 * after it started, interrupted and awaited first as with {@link attempt}.
 * An infinite duration adds nothing.
 *
 * `Effect.timeoutFail` races two fibers; around an HTTP call it cost 40-60 µs
 * of CPU (2-core VM), about a tenth of a whole gateway request. Here: 2-3 µs.
 *
 * @since 0.1.0
 * @category combinators
 */
export const failWith = <E1>(
  duration: Duration.DurationInput,
  onTimeout: () => E1
): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | E1, R> => {
  const timeout = Duration.decode(duration)
  if (!Duration.isFinite(timeout)) return (self) => self
  // Not given a shared timer: its callers derive the duration from a deadline, a new one at each call.
  return internal.timeout(Duration.toMillis(timeout), onTimeout, false)
}
