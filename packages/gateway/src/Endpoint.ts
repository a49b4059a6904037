/**
 * One completion endpoint, whatever its wire format: the steps every chat
 * route takes (body, JSON, schema, model, translation, answer or stream),
 * with the wire's own decoding, encoding and error body plugged in. Stated
 * once so `/v1/chat/completions` and `/v1/messages` cannot drift apart.
 *
 * @since 0.1.0
 */
import type { Errors } from "@resilient-ai/core"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Errors as CoreErrors } from "@resilient-ai/core"
import type * as Chat from "@resilient-ai/llm/Chat"
import type * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as ParseResult from "effect/ParseResult"
import type * as Scope from "effect/Scope"
import * as ClientLimits from "./ClientLimits.js"
import * as Health from "./Health.js"
import type * as ModelRoutes from "./ModelRoutes.js"
import * as OpenAiErrors from "./OpenAiErrors.js"
import * as body from "./internal/body.js"
import * as SseWriter from "./internal/sseWriter.js"

/**
 * How a stream of answer chunks is written as the bytes of an event stream,
 * for one response (a writer holds its state: the usage held back, the open
 * content block).
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamWriter<A, E> {
  /** The bytes of a batch of chunks. */
  readonly write: (batch: Chunk.Chunk<A>) => Chunk.Chunk<Uint8Array>
  /** The bytes after the last chunk (`[DONE]`, `message_stop`). */
  readonly end: () => Chunk.Chunk<Uint8Array>
  /** The bytes of a failure after the first chunk (an error event); nothing follows them. */
  readonly failed: (error: E) => Chunk.Chunk<Uint8Array>
}

/**
 * What a wire format brings to the endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Wire<Req> {
  readonly decode: (json: unknown) => Effect.Effect<Req, ParseResult.ParseError>
  readonly model: (request: Req) => string
  readonly toChat: (request: Req) => Effect.Effect<Chat.ChatRequest, Errors.BadRequestError>
  readonly streams: (request: Req) => boolean
  /** The whole answer as the wire's response body. */
  readonly response: (response: Chat.ChatResponse) => Effect.Effect<unknown, Errors.BadRequestError>
  /**
   * How the chunks are written as the wire's SSE bytes, a failure after the
   * first chunk as the wire's error event. `nowMs` is when the answer
   * started (the stream's `created`, an error's time).
   */
  readonly stream: (
    request: Req,
    route: ModelRoutes.Route,
    nowMs: number
  ) => StreamWriter<Chat.ChatChunk, Errors.ResilienceError>
  /** An error reply in the wire's error body. */
  readonly error: (reply: OpenAiErrors.ErrorReply) => HttpServerResponse.HttpServerResponse
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly models: ModelRoutes.Service
  readonly maxBodyBytes: number
  /** Answer with a static reply when every deployment failed (`chatOrStatic`). */
  readonly staticReplies: boolean
}

/**
 * `messages.0.content` → `messages[0].content`, as OpenAI names a `param`.
 *
 * @since 0.1.0
 * @category params
 */
export const paramOf = (path: string): string => path.replace(/\.(\d+)(?=\.|$)/g, "[$1]")

/**
 * Who answered, as response headers: of a whole answer, or of a stream as
 * its first chunk arrived.
 *
 * @since 0.1.0
 * @category headers
 */
export const answeredBy = (result: ResilientClient.StreamStart): Record<string, string> => ({
  "x-resilient-source": result.source,
  ...(result.deployment === undefined ? {} : { "x-resilient-deployment": result.deployment }),
  ...(result.keyName === undefined ? {} : { "x-resilient-key-name": result.keyName }),
  "x-resilient-attempts": String(result.attempts),
  "x-resilient-fallbacks": String(result.fallbacks.length)
})

/** The reply to a failed request, with the gateway's own Retry-After for its model. */
const failure = (models: ModelRoutes.Service, route: ModelRoutes.Route, error: Errors.ResilienceError) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.map(Health.read(models.deployments, now), (states) =>
      OpenAiErrors.fromError(error, { now, model: route.model, retryAfterMs: Health.retryAfterMs(states, route.cascade, now) })))

/**
 * A streamed answer: its first chunk (or failure) is awaited before the
 * status and the who-answered headers are chosen. The chunks are written on
 * the Node response by the handler itself (`SseWriter.writeTo`), in the
 * request's scope, which the server closes when the handler is done or the
 * client went away; after the last byte the request's cost goes to its
 * gateway key's spend (a stream that broke charges nothing more).
 */
const streamed = <Req>(
  wire: Wire<Req>,
  options: Options,
  route: ModelRoutes.Route,
  wireRequest: Req,
  request: Chat.ChatRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope> =>
  Effect.flatMap(ClientLimits.Spend, (spend) =>
    Effect.matchEffect(options.models.client.streamStarted(request, route.options), {
      onFailure: (error) => Effect.map(failure(options.models, route, error), wire.error),
      onSuccess: (started) =>
        Effect.gen(function*() {
          const nowMs = yield* Clock.currentTimeMillis
          const headers = { ...streamHeaders, ...answeredBy(started.start) }
          const response = NodeHttpServerRequest.toServerResponse(yield* HttpServerRequest.HttpServerRequest)
          const charged = Effect.ignore(Effect.flatMap(started.result, (r) => spend.charge(r.costUsd)))
          yield* SseWriter.writeTo(response, headers, started.chunks, wire.stream(wireRequest, route, nowMs), charged)
          return HttpServerResponse.empty({ status: 200, headers })
        })
    }))

const streamHeaders = { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" }

const untranslatable = (detail: string): OpenAiErrors.ErrorReply =>
  OpenAiErrors.reply(502, `The upstream answer cannot be written in this format: ${detail}`, "server_error", "untranslatable_response")

const answered = <Req>(
  wire: Wire<Req>,
  options: Options,
  route: ModelRoutes.Route,
  request: Chat.ChatRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.matchEffect(
    options.staticReplies
      ? options.models.client.chatOrStatic(request, route.options)
      : options.models.client.chat(request, route.options),
    {
    onFailure: (error) => Effect.map(failure(options.models, route, error), wire.error),
    onSuccess: (result) =>
      Effect.zipRight(
        Effect.flatMap(ClientLimits.Spend, (spend) => spend.charge(result.costUsd)),
        Effect.match(wire.response(result.response), {
          onFailure: (e) => wire.error(untranslatable(e.detail ?? e.message)),
          onSuccess: (answer) => HttpServerResponse.unsafeJson(answer, { headers: answeredBy(result) })
        })
      )
  })

const parseJson = (text: string): Either.Either<unknown, undefined> =>
  Either.try({ try: (): unknown => JSON.parse(text), catch: () => undefined })

/**
 * The handler of an endpoint speaking `wire`.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handler = <Req>(
  wire: Wire<Req>,
  options: Options
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const read = yield* body.read(NodeHttpServerRequest.toIncomingMessage(request), options.maxBodyBytes)
    if (read._tag === "TooLarge") {
      return HttpServerResponse.setHeader(wire.error(OpenAiErrors.tooLarge(options.maxBodyBytes)), "connection", "close")
    }
    if (read._tag === "Aborted") return HttpServerResponse.empty({ status: 400 })
    const json = parseJson(read.text)
    if (Either.isLeft(json)) return wire.error(OpenAiErrors.invalidJson())
    const decoded = yield* Effect.either(wire.decode(json.right))
    if (Either.isLeft(decoded)) {
      const problem = CoreErrors.invalidConfig("request", decoded.left)
      return wire.error(OpenAiErrors.invalidField(paramOf(problem.path), problem.detail))
    }
    const wireRequest = decoded.right
    const route = options.models.resolve(wire.model(wireRequest))
    if (route === undefined) return wire.error(OpenAiErrors.unknownModel(wire.model(wireRequest)))
    const chat = yield* Effect.either(wire.toChat(wireRequest))
    if (Either.isLeft(chat)) return wire.error(OpenAiErrors.invalidField("", chat.left.detail ?? chat.left.message))
    return wire.streams(wireRequest)
      ? yield* streamed(wire, options, route, wireRequest, chat.right)
      : yield* answered(wire, options, route, chat.right)
  })
