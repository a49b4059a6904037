import type * as Http from "node:http"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { StreamWriter as Writer } from "../Endpoint.js"

/** Waits until `response` takes more bytes, or is gone (a client that left: its `close` may have come already). */
const drained = (response: Http.ServerResponse): Effect.Effect<void> =>
  response.destroyed ? Effect.void : Effect.async<void>((resume) => {
    const stop = () => {
      response.off("drain", done)
      response.off("close", done)
    }
    const done = () => {
      stop()
      resume(Effect.void)
    }
    response.on("drain", done)
    response.on("close", done)
    return Effect.sync(stop)
  })

const send = (response: Http.ServerResponse, bytes: Chunk.Chunk<Uint8Array>): Effect.Effect<void> => {
  let room = true
  for (const piece of bytes) room = response.write(piece)
  return room ? Effect.void : drained(response)
}

/**
 * Writes `chunks` through `writer` on the Node `response` (a 200 with
 * `headers`, written first), in the caller's fiber, then ends it and runs
 * `after`; a failure of the chunks is written as `writer.failed` says, and
 * `after` runs then too. A defect or an interruption ends the response
 * where it stands.
 *
 * Why not `HttpServerResponse.stream`: the Node server runs such a body as a
 * stream of its own, a channel executor with a forked fiber, a child scope
 * and two `Deferred`s for every response (about 500 Effect ops for an empty
 * one), behind the stages that encode the chunks and charge the request.
 * Pulled here, a streamed answer through the gateway runs 1,124 Effect ops
 * and 2 fibers instead of 1,547 and 3 (`npm run bench:gateway-cost`). The
 * server skips a response that is already ended, so the handler's own
 * `HttpServerResponse` (the same 200 and headers) is only what its
 * middleware sees. A client that leaves interrupts the handler, and with it
 * this loop, as it interrupted the server's writer.
 */
export const writeTo = <A, E>(
  response: Http.ServerResponse,
  headers: Readonly<Record<string, string>>,
  chunks: Stream.Stream<A, E>,
  writer: Writer<A, E>,
  after: Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Stream.toPull(chunks), (pull) => {
    response.writeHead(200, headers)
    const finish = (bytes: Chunk.Chunk<Uint8Array>): Effect.Effect<void> =>
      Effect.zipRight(
        send(response, bytes),
        Effect.suspend(() => {
          response.end()
          return after
        })
      )
    const loop: Effect.Effect<void> = Effect.matchEffect(pull, {
      onSuccess: (batch) => Effect.zipRight(send(response, writer.write(batch)), Effect.suspend(() => loop)),
      onFailure: Option.match({
        onNone: () => finish(writer.end()),
        onSome: (error) => finish(writer.failed(error))
      })
    })
    return Effect.onExit(loop, (exit) =>
      Exit.isSuccess(exit) || response.writableEnded ? Effect.void : Effect.sync(() => void response.end()))
  })
