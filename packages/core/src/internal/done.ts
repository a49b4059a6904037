/**
 * An effect that has completed already: effect's `Exit` is itself an
 * effect, so a call whose answer was ready hands one back, and the policies
 * complete it in the op that admits it, without a handler or a mask.
 *
 * @internal
 */
import * as Exit from "effect/Exit"
import type * as Effect from "effect/Effect"

/** `self` when it is an `Exit`, with its types; `undefined` when it still has to run. */
export const exitOf = <A, E, R>(self: Effect.Effect<A, E, R>): Exit.Exit<A, E> | undefined =>
  Exit.isExit(self) ? (self as Exit.Exit<A, E>) : undefined
