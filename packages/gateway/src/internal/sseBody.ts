import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import type * as Chunk from "effect/Chunk"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"

/**
 * How a stream of answer chunks is written as the bytes of an event stream,
 * for one response (the writers hold its state: usage held back, the open
 * content block).
 */
export interface Writer<A, E> {
  /** The bytes of a batch of chunks. */
  readonly write: (batch: Chunk.Chunk<A>) => Chunk.Chunk<Uint8Array>
  /** The bytes after the last chunk (`[DONE]`, `message_stop`). */
  readonly end: () => Chunk.Chunk<Uint8Array>
  /** The bytes of a failure after the first chunk (an error event); nothing follows them. */
  readonly failed: (error: E) => Chunk.Chunk<Uint8Array>
}

/**
 * `chunks` written by `writer` (made for each run) in one stream stage: a
 * read loop over the chunks' channel instead of a map, a concatenated end
 * and a `catchAll`, a stage each, whose pulls a streamed answer paid for
 * every batch. A defect or an interruption of `chunks` is not an error
 * event: it ends the response as the server ends a failed one.
 */
export const sseBody = <A, E>(chunks: Stream.Stream<A, E>, writer: () => Writer<A, E>): Stream.Stream<Uint8Array> =>
  Stream.suspend(() => {
    const { end, failed, write } = writer()
    const loop: Channel.Channel<Chunk.Chunk<Uint8Array>, Chunk.Chunk<A>, never, E, void, unknown> = Channel.readWithCause({
      onInput: (batch: Chunk.Chunk<A>) => Channel.zipRight(Channel.write(write(batch)), loop),
      onFailure: (cause: Cause.Cause<E>) => {
        const failure = Cause.failureOrCause(cause)
        return Either.isLeft(failure) ? Channel.write(failed(failure.left)) : Channel.failCause(failure.right)
      },
      onDone: () => Channel.write(end())
    })
    return Stream.pipeThroughChannel(chunks, loop)
  })
