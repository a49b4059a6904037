/**
 * Graceful shutdown of a Node HTTP server: stop accepting, let the requests
 * in flight (streams included) finish up to a deadline, then close every
 * connection, which makes @effect/platform-node interrupt the handlers still
 * running (it interrupts a handler whose response closes before it ended).
 *
 * Requests are counted from the server's `request` event to their
 * response's `close` (finished or aborted), so a stream counts until its
 * last byte. While draining, responses carry `connection: close`, so a
 * keep-alive client does not send its next request to a closing server.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Http from "node:http"

export interface Tracker {
  readonly inFlight: () => number
  /** Stops accepting, waits for the requests in flight up to `deadline`, then cuts the rest. */
  readonly drain: (deadline: Duration.DurationInput) => Effect.Effect<{ readonly cut: number }>
}

export const track = (server: Http.Server): Tracker => {
  let inFlight = 0
  let draining = false
  const idle = new Set<() => void>()
  server.on("request", (_request: Http.IncomingMessage, response: Http.ServerResponse) => {
    inFlight += 1
    if (draining) response.setHeader("connection", "close")
    response.once("close", () => {
      inFlight -= 1
      if (inFlight === 0) for (const wake of idle) wake()
    })
  })
  const whenIdle = Effect.async<void>((resume) => {
    if (inFlight === 0) return resume(Effect.void)
    const wake = () => {
      idle.delete(wake)
      resume(Effect.void)
    }
    idle.add(wake)
    return Effect.sync(() => void idle.delete(wake))
  })
  return {
    inFlight: () => inFlight,
    drain: (deadline) =>
      Effect.gen(function*() {
        draining = true
        // Stops accepting connections (and, on Node 19+, closes the idle keep-alive ones).
        server.close()
        server.closeIdleConnections()
        // A finalizer runs uninterruptibly: the wait must be made interruptible, or the timeout could not stop it.
        const finished = yield* Effect.timeout(Effect.interruptible(whenIdle), Duration.decode(deadline)).pipe(Effect.option)
        const cut = finished._tag === "Some" ? 0 : inFlight
        server.closeAllConnections()
        // Closing a connection closes its response at once; the handlers' interruption (and the abort of
        // their upstream calls) follows on their own fibers.
        yield* Effect.timeout(Effect.interruptible(whenIdle), Duration.seconds(5)).pipe(Effect.ignore)
        return { cut }
      })
  }
}
