/**
 * Reads a request body up to a size limit.
 *
 * Why not `HttpServerRequest.text` with `HttpIncomingMessage.withMaxBodySize`:
 * on overflow @effect/platform-node destroys the request stream, which
 * destroys the socket, so the client gets a reset instead of a 413; and its
 * error is a generic `RequestError` that does not say "too large". Here a
 * declared `content-length` over the limit is refused before a byte is read,
 * and a chunked body is refused at the first byte over it, the socket kept
 * for the answer (sent with `connection: close`).
 */
import * as Effect from "effect/Effect"
import type * as Http from "node:http"

export type Body =
  | { readonly _tag: "Body"; readonly text: string }
  | { readonly _tag: "TooLarge" }
  /** The client went away (or the stream failed) before the body ended. */
  | { readonly _tag: "Aborted" }

const tooLarge: Body = { _tag: "TooLarge" }
const aborted: Body = { _tag: "Aborted" }

export const read = (request: Http.IncomingMessage, maxBytes: number): Effect.Effect<Body> => {
  const declared = Number(request.headers["content-length"])
  if (Number.isFinite(declared) && declared > maxBytes) return Effect.succeed(tooLarge)
  return Effect.async<Body>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      request.off("data", onData)
      request.off("end", onEnd)
      request.off("error", onAbort)
      request.off("aborted", onAbort)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) {
        cleanup()
        request.pause()
        resume(Effect.succeed(tooLarge))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed<Body>({ _tag: "Body", text: Buffer.concat(chunks).toString("utf8") }))
    }
    const onAbort = () => {
      cleanup()
      resume(Effect.succeed(aborted))
    }
    if (request.readableEnded) {
      resume(Effect.succeed(aborted))
      return
    }
    request.on("data", onData)
    request.once("end", onEnd)
    request.once("error", onAbort)
    request.once("aborted", onAbort)
    return Effect.sync(cleanup)
  })
}
