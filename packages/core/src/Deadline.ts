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
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Option from "effect/Option"
import * as RequestScope from "./internal/requestScope.js"

/**
 * The current deadline, if any, in epoch milliseconds.
 *
 * @since 0.1.0
 * @category fiber refs
 */
export const currentDeadline: FiberRef.FiberRef<Option.Option<number>> = globalValue(
  // One ref however many copies of this module are loaded: a second copy must see the same deadline.
  Symbol.for("@resilient-ai/core/Deadline/currentDeadline"),
  () => FiberRef.unsafeMake<Option.Option<number>>(Option.none())
)

/**
 * Runs `self` giving up on any wait longer than `millis` (docs/semantics.md
 * rule 25), or the enclosing limit if that one is shorter: a fallback chain
 * sets it on every step that has a later step to fall back to. A
 * Retry-After or a wait for a key longer than this ends the step at once
 * with its error, so the caller can go elsewhere.
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
  Effect.locallyWith(self, currentDeadline, (current) =>
    Option.some(Option.match(current, { onNone: () => at, onSome: (c) => Math.min(c, at) })))

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
export const remaining: Effect.Effect<Option.Option<number>> = Effect.flatMap(
  FiberRef.get(currentDeadline),
  (deadline) =>
    Option.isNone(deadline)
      ? Effect.succeedNone
      : Effect.map(Clock.currentTimeMillis, (now) => Option.some(Math.max(0, deadline.value - now)))
)
