/**
 * A store operation's result, once the transitions it made are published:
 * taken in the same op when the store finished it at once (an `Exit`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { exitOf } from "./done.js"

export interface Stepped<A, T> {
  readonly result: A
  readonly transitions: ReadonlyArray<T>
}

export const published = <A, T>(
  step: Effect.Effect<Stepped<A, T>>,
  publish: (transitions: ReadonlyArray<T>) => Effect.Effect<void>
): Effect.Effect<A> => {
  const resultOf = (stepped: Stepped<A, T>): Effect.Effect<A> =>
    stepped.transitions.length === 0 ? Exit.succeed(stepped.result) : Effect.as(publish(stepped.transitions), stepped.result)
  const done = exitOf(step)
  return done !== undefined && Exit.isSuccess(done) ? resultOf(done.value) : Effect.flatMap(step, resultOf)
}
