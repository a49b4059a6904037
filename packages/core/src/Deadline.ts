/**
 * The deadline of the current request, visible to every policy inside it.
 *
 * The total timeout sets it; the retry reads it to give up at once instead
 * of sleeping past it (docs/semantics.md rule 15), and the key pool reads it to
 * bound a wait for a cooling key. Nested deadlines only ever shrink.
 * Times are epoch milliseconds on effect's `Clock`, so `TestClock` drives them.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { clockOf } from "./internal/fiberClock.js"
import * as RequestScope from "./internal/requestScope.js"

/**
 * Runs `self` giving up on any wait longer than `millis` (docs/semantics.md
 * rule 25), or the enclosing limit if that one is shorter: a fallback chain
 * sets it on every step that has a later step to fall back to. A
 * Retry-After or a wait for a key longer than this ends the step at once
 * with its error, so the caller can go elsewhere; an adaptive limit
 * refuses a call over it at once instead of queueing it (rule 29).
 *
 * @since 0.1.0
 * @category combinators
 */
export const maxWait = (millis: number) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) =>
    RequestScope.within(fiber, (scope) => {
      const before = scope.maxWait
      scope.maxWait = Math.min(before, millis)
      return () => {
        scope.maxWait = before
      }
    }, self)
  )

/**
 * Runs `self` with the deadline at `at` (epoch ms), or the
 * enclosing deadline if that one is earlier.
 *
 * @since 0.1.0
 * @category combinators
 */
export const at = (at: number) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) =>
    RequestScope.within(fiber, (scope) => {
      const before = scope.deadline
      scope.deadline = before === undefined ? at : Math.min(before, at)
      return () => {
        scope.deadline = before
      }
    }, self)
  )

/**
 * Runs `self` with a deadline `millis` from now (or the enclosing one if earlier).
 *
 * @since 0.1.0
 * @category combinators
 */
export const within = (millis: number) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => at(now + millis)(self))

/**
 * Milliseconds left before the deadline (0 when passed), or none without one.
 *
 * @since 0.1.0
 * @category getters
 */
export const remaining: Effect.Effect<Option.Option<number>> = Effect.withFiberRuntime((fiber) => {
  const deadline = RequestScope.deadlineOf(fiber)
  return Effect.succeed(
    deadline === undefined ? Option.none() : Option.some(Math.max(0, deadline - clockOf(fiber).unsafeCurrentTimeMillis()))
  )
})
