/**
 * `POST /v1/chat/completions`: an OpenAI chat completions request answered
 * through the resilient client of the model it names.
 *
 * Steps, each with its own refusal (the steps are shared with
 * `/v1/messages`; this module gives them OpenAI's wire format):
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
import type { Errors } from "@resilient-ai/core"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as OpenAiWire from "@resilient-ai/llm/OpenAiWire"
import * as Translate from "@resilient-ai/llm/Translate"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Endpoint from "./Endpoint.js"
import * as OpenAiErrors from "./OpenAiErrors.js"

/**
 * What the handler needs of the gateway.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Endpoint.Options {}

/**
 * An error reply as an HTTP response with OpenAI's error body.
 *
 * @since 0.1.0
 * @category responses
 */
export const errorResponse = (reply: OpenAiErrors.ErrorReply): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(reply.body, { status: reply.status, headers: reply.headers })

const encoder = new TextEncoder()
const event = (data: unknown): Uint8Array => encoder.encode(`data: ${JSON.stringify(data)}\n\n`)
const done = encoder.encode("data: [DONE]\n\n")

/**
 * The neutral chunks as OpenAI stream events: the usage held back to a
 * closing chunk of its own (sent only on request), `[DONE]` at the end, a
 * failure as an error event.
 */
const sse = (
  includeUsage: boolean,
  model: string,
  nowMs: number
): Endpoint.StreamWriter<Chat.ChatChunk, Errors.ResilienceError> => {
  const created = Math.floor(nowMs / 1000)
  let usage: Chat.Usage | undefined
  let last: { readonly id: string; readonly model: string } = { id: "chatcmpl-gateway", model }
  return {
    write: (batch) =>
      Chunk.filterMap(batch, (chunk) => {
        if (chunk.usage !== undefined) usage = chunk.usage
        last = { id: chunk.id, model: chunk.model }
        const { usage: _, ...rest } = chunk
        // A chunk that carried only the usage has nothing left to send.
        return Object.keys(rest).some((k) => k !== "id" && k !== "model" && k !== "created")
          ? Option.some(event(Translate.toOpenAiChunkAt(rest, created)))
          : Option.none()
      }),
    end: () =>
      includeUsage && usage !== undefined
        ? Chunk.make(event(Translate.toOpenAiChunkAt({ ...last, usage }, created)), done)
        : Chunk.of(done),
    failed: (error) => Chunk.of(event(OpenAiErrors.fromError(error, { now: nowMs, model, retryAfterMs: 1_000 }).body))
  }
}

/**
 * OpenAI's chat completions wire format for the Endpoint.
 *
 * @since 0.1.0
 * @category wire
 */
export const wire: Endpoint.Wire<OpenAiWire.ChatCompletionRequest> = {
  decode: OpenAiWire.decodeRequest,
  model: (request) => request.model,
  toChat: Translate.fromOpenAiRequest,
  streams: (request) => request.stream === true,
  response: Translate.toOpenAiResponse,
  stream: (request, route, nowMs) => sse(request.stream_options?.include_usage === true, route.model, nowMs),
  error: errorResponse
}

/**
 * The route's handler.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handler = (
  options: Options
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope> =>
  Endpoint.handler(wire, options)
