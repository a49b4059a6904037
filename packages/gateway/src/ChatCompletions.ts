/**
 * `POST /v1/chat/completions`: an OpenAI chat completions request answered
 * through the resilient client of the model it names.
 *
 * Steps, each with its own refusal:
 * 1. The body, at most `maxBodyBytes` (413 over it).
 * 2. JSON (400), then `OpenAiWire.ChatCompletionRequest` (400 naming the
 *    field in `param`, `messages[0].role`), then the model (404), then the
 *    translation to the neutral request (400 naming the field).
 * 3. Not streaming: `chat` (or `chatOrStatic` when static replies are
 *    configured), the answer as a `chat.completion` with headers that say
 *    who answered (`x-resilient-source`, `-deployment`, `-key-name`,
 *    `-attempts`, `-fallbacks`); a failure through `OpenAiErrors.fromError`.
 * 4. Streaming: the stream is read up to its first chunk before anything is
 *    sent, so a request that fails before any output (every fallback down,
 *    no key) gets its real status and error body, not a 200 with an error
 *    inside. Then `text/event-stream`: `chat.completion.chunk` events, the
 *    usage in a closing chunk of its own (`choices: []`) only when
 *    `stream_options.include_usage` asks for it, and `data: [DONE]`. A
 *    failure after the first chunk is an `{"error":{...}}` event (what
 *    OpenAI sends, and what its SDK raises), and no `[DONE]`.
 *
 * A client that goes away interrupts the handler's fiber (the Node server
 * does it when the response closes early), and with it the client call or
 * the stream's scope: the upstream request is aborted, nothing is orphaned.
 *
 * @since 0.1.0
 */
import { Errors } from "@resilient-ai/core"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as OpenAiWire from "@resilient-ai/llm/OpenAiWire"
import type * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Translate from "@resilient-ai/llm/Translate"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Health from "./Health.js"
import * as body from "./internal/body.js"
import type * as ModelRoutes from "./ModelRoutes.js"
import * as OpenAiErrors from "./OpenAiErrors.js"

/**
 * What the handler needs of the gateway.
 *
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
 * An error reply as an HTTP response.
 *
 * @since 0.1.0
 * @category responses
 */
export const errorResponse = (reply: OpenAiErrors.ErrorReply): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(reply.body, { status: reply.status, headers: reply.headers })

/** `messages.0.content` → `messages[0].content`, as OpenAI names a `param`. */
const paramOf = (path: string): string => path.replace(/\.(\d+)(?=\.|$)/g, "[$1]")

const encoder = new TextEncoder()
const event = (data: unknown): Uint8Array => encoder.encode(`data: ${JSON.stringify(data)}\n\n`)
const done = encoder.encode("data: [DONE]\n\n")

/** Who answered, as response headers. */
const answeredBy = (result: ResilientClient.ChatResult): Record<string, string> => ({
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
      errorResponse(OpenAiErrors.fromError(error, {
        now,
        model: route.model,
        retryAfterMs: Health.retryAfterMs(states, route.cascade, now)
      }))))

/**
 * The neutral chunks as OpenAI stream events: the usage held back to a
 * closing chunk of its own (sent only on request), `[DONE]` at the end, a
 * failure as an error event.
 */
const sse = (
  chunks: Stream.Stream<Chat.ChatChunk, Errors.ResilienceError>,
  includeUsage: boolean,
  model: string
): Stream.Stream<Uint8Array> =>
  Stream.unwrap(Effect.map(Clock.currentTimeMillis, (nowMs) => {
    const created = Math.floor(nowMs / 1000)
    let usage: Chat.Usage | undefined
    let last: { readonly id: string; readonly model: string } = { id: "chatcmpl-gateway", model }
    const body = Stream.mapEffect(
      Stream.filter(chunks, (chunk) => {
        if (chunk.usage !== undefined) usage = chunk.usage
        last = { id: chunk.id, model: chunk.model }
        const { usage: _, ...rest } = chunk
        // A chunk that carried only the usage has nothing left to send.
        return Object.keys(rest).some((k) => k !== "id" && k !== "model" && k !== "created")
      }),
      (chunk) => {
        const { usage: _, ...rest } = chunk
        return Effect.map(Translate.toOpenAiChunk(rest, { created }), event)
      }
    )
    const closing = Stream.suspend(() =>
      includeUsage && usage !== undefined
        ? Stream.fromEffect(Effect.map(Translate.toOpenAiChunk({ ...last, usage }, { created }), event))
        : Stream.empty
    )
    return Stream.concat(Stream.concat(body, closing), Stream.make(done)).pipe(
      Stream.catchAll((error) =>
        Stream.make(event(OpenAiErrors.fromError(error, { now: nowMs, model, retryAfterMs: 1_000 }).body))
      )
    )
  }))

/**
 * A streamed answer: its first chunk (or failure) is awaited before the
 * status is chosen. The pull lives in the request's scope, which the server
 * closes when the response has been written or the client went away.
 */
const streamed = (
  options: Options,
  route: ModelRoutes.Route,
  request: Chat.ChatRequest,
  includeUsage: boolean
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pull = yield* Stream.toPull(route.client.stream(request))
    const first = yield* Effect.either(pull)
    if (Either.isLeft(first) && Option.isSome(first.left)) return yield* failure(options.models, route, first.left.value)
    const head = Either.isRight(first) ? first.right : Chunk.empty<Chat.ChatChunk>()
    const rest = Either.isRight(first) ? Stream.repeatEffectChunkOption(pull) : Stream.empty
    return HttpServerResponse.stream(sse(Stream.concat(Stream.fromChunk(head), rest), includeUsage, route.model), {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
    })
  })

const answered = (
  options: Options,
  route: ModelRoutes.Route,
  request: Chat.ChatRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.matchEffect(options.staticReplies ? route.client.chatOrStatic(request) : route.client.chat(request), {
    onFailure: (error) => failure(options.models, route, error),
    onSuccess: (result) =>
      Effect.map(Translate.toOpenAiResponse(result.response), (completion) =>
        HttpServerResponse.unsafeJson(completion, { headers: answeredBy(result) }))
  })

const parseJson = (text: string): Either.Either<unknown, undefined> =>
  Either.try({ try: (): unknown => JSON.parse(text), catch: () => undefined })

/**
 * The route's handler.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handler = (
  options: Options
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const read = yield* body.read(NodeHttpServerRequest.toIncomingMessage(request), options.maxBodyBytes)
    if (read._tag === "TooLarge") {
      return HttpServerResponse.setHeader(errorResponse(OpenAiErrors.tooLarge(options.maxBodyBytes)), "connection", "close")
    }
    if (read._tag === "Aborted") return HttpServerResponse.empty({ status: 400 })
    const json = parseJson(read.text)
    if (Either.isLeft(json)) return errorResponse(OpenAiErrors.invalidJson())
    const decoded = yield* Effect.either(OpenAiWire.decodeRequest(json.right))
    if (Either.isLeft(decoded)) {
      const problem = Errors.invalidConfig("request", decoded.left)
      return errorResponse(OpenAiErrors.invalidField(paramOf(problem.path), problem.detail))
    }
    const wire = decoded.right
    const route = options.models.resolve(wire.model)
    if (route === undefined) return errorResponse(OpenAiErrors.unknownModel(wire.model))
    const chat = yield* Effect.either(Translate.fromOpenAiRequest(wire))
    if (Either.isLeft(chat)) return errorResponse(OpenAiErrors.invalidField("", chat.left.detail ?? chat.left.message))
    return wire.stream === true
      ? yield* streamed(options, route, chat.right, wire.stream_options?.include_usage === true)
      : yield* answered(options, route, chat.right)
  })
