/**
 * `HttpClient` over undici's `dispatch` (its handler API), for the providers'
 * calls.
 *
 * Why not `@effect/platform-node`'s undici client: it sends through
 * `dispatcher.request`, which builds a Node `Readable` per answer and hands
 * the body over through promises (`body.text()` wrapped in
 * `Effect.tryPromise`, then `Effect.cached` and `Effect.runSync` for each
 * answer). Per call to an instant upstream on loopback, 10 concurrent
 * callers, same dispatcher (`npx tsx bench/transport.ts`, 2-core VM): 214 µs
 * of CPU untraced and 291 µs traced with it, 157 and 202 µs with this one.
 * The surrounding `HttpClient.make` is kept, so spans, trace propagation,
 * interruption (the upstream request is aborted) and the response registry
 * behave as with the platform's client.
 *
 * The body arrives by `onResponseData` into a queue of chunks that `text`,
 * `json`, `arrayBuffer` and `stream` read. Reading keeps up with the socket
 * through back-pressure: past `highWaterMark` bytes not yet read, the request
 * is paused until a read takes them.
 *
 * @internal
 */
import * as Cookies from "@effect/platform/Cookies"
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as UrlParams from "@effect/platform/UrlParams"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { Dispatcher } from "undici"

/** Bytes received and not yet read before the socket is paused. */
const highWaterMark = 64 * 1024

/** undici's `DispatchController` (handler API): what a handler may do to its request. */
interface Controller {
  readonly abort: (reason: Error) => void
  readonly pause: () => void
  readonly resume: () => void
}

type RawHeaders = Record<string, string | ReadonlyArray<string> | undefined>

/** An answer's body as it arrives: chunks not yet read, and how it ended. */
class Body {
  private chunks: Array<Uint8Array> = []
  private buffered = 0
  private paused = false
  private waiters: Array<() => void> = []
  ended = false
  failure: unknown = undefined

  constructor(private readonly controller: Controller) {}

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    if (this.buffered > highWaterMark && !this.paused) {
      this.paused = true
      this.controller.pause()
    }
    this.wake()
  }

  end(failure?: unknown): void {
    if (this.ended) return
    this.ended = true
    this.failure = failure
    this.wake()
  }

  abort(): void {
    if (!this.ended) this.controller.abort(new Error("the response body was not read to its end"))
  }

  /** The chunks not yet read, taken. */
  take(): Array<Uint8Array> {
    const taken = this.chunks
    this.chunks = []
    this.buffered = 0
    if (this.paused) {
      this.paused = false
      this.controller.resume()
    }
    return taken
  }

  /** Waits until there is something to read or the body has ended. */
  readonly changed: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.chunks.length > 0 || this.ended) return resume(Effect.void)
    const waiter = () => resume(Effect.void)
    this.waiters.push(waiter)
    return Effect.sync(() => {
      this.waiters = this.waiters.filter((w) => w !== waiter)
    })
  })

  private wake(): void {
    if (this.waiters.length === 0) return
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter()
  }
}

class UndiciResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  private cachedHeaders: Headers.Headers | undefined = undefined
  private parts: Array<Uint8Array> = []

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    readonly status: number,
    private readonly rawHeaders: RawHeaders,
    private readonly body: Body
  ) {
    super()
  }

  get headers(): Headers.Headers {
    return this.cachedHeaders ??= Headers.fromInput(this.rawHeaders)
  }

  get cookies(): Cookies.Cookies {
    const header = this.rawHeaders["set-cookie"]
    if (header === undefined) return Cookies.empty
    return Cookies.fromSetCookie(typeof header === "string" ? [header] : header)
  }

  get remoteAddress(): Option.Option<string> {
    return Option.none()
  }

  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  /** The whole body, read once (every reader after the first gets the same bytes). */
  /** The whole body, read once: readers, concurrent or later, share the bytes taken so far. */
  private get bytes(): Effect.Effect<Uint8Array, HttpClientError.ResponseError> {
    return Effect.suspend(() => {
      for (const chunk of this.body.take()) this.parts.push(chunk)
      if (!this.body.ended) return Effect.zipRight(this.body.changed, this.bytes)
      if (this.body.failure !== undefined) return Effect.fail(this.decodeError(this.body.failure))
      if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts)]
      return Effect.succeed(this.parts[0]!)
    })
  }

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.map(this.bytes, (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"))
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({ try: (): unknown => (text === "" ? null : JSON.parse(text)), catch: (cause) => this.decodeError(cause) }))
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({ try: () => UrlParams.fromInput(new URLSearchParams(text)), catch: (cause) => this.decodeError(cause) }))
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.map(this.bytes, (bytes) => bytes.slice().buffer)
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.flatMap(this.arrayBuffer, (buffer) =>
      Effect.tryPromise({
        try: () => new Response(buffer, { headers: this.headers }).formData(),
        catch: (cause) => this.decodeError(cause)
      }))
  }

  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    const pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<HttpClientError.ResponseError>> = Effect.suspend(() => {
      const chunks = this.body.take()
      if (chunks.length > 0) return Effect.succeed(Chunk.unsafeFromArray(chunks))
      if (this.body.ended) {
        return this.body.failure === undefined ? Effect.fail(Option.none()) : Effect.fail(Option.some(this.decodeError(this.body.failure)))
      }
      return Effect.zipRight(this.body.changed, pull)
    })
    // A reader that stops early frees the connection instead of leaving the answer paused on it.
    return Stream.ensuring(Stream.repeatEffectChunkOption(pull), Effect.sync(() => this.body.abort()))
  }

  toJSON(): unknown {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

type DispatchBody = Exclude<Dispatcher.DispatchOptions["body"], undefined>

/** As the platform's client sends them: a raw or form body is handed to undici as it is. */
const requestBody = (
  body: HttpClientRequest.HttpClientRequest["body"]
): Effect.Effect<DispatchBody, HttpClientError.RequestError> => {
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(null)
    case "Uint8Array":
      return Effect.succeed(body.body)
    case "Raw":
      return Effect.succeed(body.body as DispatchBody)
    case "FormData":
      return Effect.succeed(body.formData as unknown as DispatchBody)
    case "Stream":
      return NodeStream.toReadable(body.stream)
  }
}

/**
 * The client over `dispatcher` (an `Agent`, an `EnvHttpProxyAgent`).
 *
 * @internal
 */
export const make = (dispatcher: Dispatcher): HttpClient.HttpClient =>
  HttpClient.make((request, url, signal) => send(dispatcher, request, url, signal))

const send = (dispatcher: Dispatcher, request: HttpClientRequest.HttpClientRequest, url: URL, signal: AbortSignal) =>
    Effect.flatMap(requestBody(request.body), (body) =>
      Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>((resume) => {
        let controller: Controller | undefined
        let interrupted = false
        let answer: Body | undefined
        const handler: Dispatcher.DispatchHandler = {
          onRequestStart: (c) => {
            controller = c
            // Interrupted while queued for a connection: never sent.
            if (interrupted) c.abort(new Error("the request was interrupted"))
          },
          onResponseStart: (c, statusCode, headers) => {
            answer = new Body(c)
            // The response is aborted by `HttpClient.make` when its reader is interrupted.
            signal.addEventListener("abort", () => answer?.abort(), { once: true })
            resume(Effect.succeed(new UndiciResponse(request, statusCode, headers as RawHeaders, answer)))
          },
          onResponseData: (_, chunk) => answer?.push(chunk),
          onResponseEnd: () => answer?.end(),
          onResponseError: (_, error) => {
            if (answer !== undefined) return answer.end(error)
            resume(Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause: error })))
          }
        }
        dispatcher.dispatch({
          origin: url.origin,
          path: url.pathname + url.search + url.hash,
          method: request.method,
          headers: request.headers,
          body,
          // Timeouts are the caller's (`Timeout`, the first-byte timeout of the providers).
          headersTimeout: 60 * 60 * 1000,
          bodyTimeout: 0
        }, handler)
        return Effect.sync(() => {
          interrupted = true
          controller?.abort(new Error("the request was interrupted"))
        })
      }))
