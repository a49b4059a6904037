/**
 * `POST /v1/messages`: an Anthropic Messages request answered through the
 * same models and deployments as `/v1/chat/completions`, so an Anthropic
 * SDK client can fall back to an OpenAI deployment and the reverse.
 *
 * The steps are `Endpoint`'s; this module gives them Anthropic's wire
 * format:
 * - the request is `AnthropicWire.MessagesRequest` (a bad field is a 400
 *   naming it), translated with `Translate.fromAnthropicRequest`;
 * - the answer is an Anthropic `message`; a stream is Anthropic's events
 *   (`message_start`, content blocks, `message_delta`, `message_stop`) as
 *   `event:`/`data:` SSE; a failure after the first event is an
 *   `event: error` (what Anthropic sends, and what its SDK raises);
 * - errors are Anthropic's body (`{"type":"error","error":{"type","message"}}`)
 *   with the status of `OpenAiErrors`' table; the error type follows the
 *   status, as Anthropic's does.
 *
 * @since 0.1.0
 */
import type { Errors } from "@resilient-ai/core"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as AnthropicWire from "@resilient-ai/llm/AnthropicWire"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as Translate from "@resilient-ai/llm/Translate"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Endpoint from "./Endpoint.js"
import * as OpenAiErrors from "./OpenAiErrors.js"

/**
 * Anthropic's error type for an HTTP status.
 *
 * @since 0.1.0
 * @category errors
 */
export const errorType = (status: number): string => {
  switch (status) {
    case 400:
      return "invalid_request_error"
    case 401:
      return "authentication_error"
    case 403:
      return "permission_error"
    case 404:
      return "not_found_error"
    case 413:
      return "request_too_large"
    case 429:
      return "rate_limit_error"
    case 503:
    case 529:
      return "overloaded_error"
    case 504:
      return "timeout_error"
    default:
      return status >= 500 ? "api_error" : "invalid_request_error"
  }
}

/**
 * An error body in Anthropic's format.
 *
 * @since 0.1.0
 * @category errors
 */
export const errorBody = (reply: OpenAiErrors.ErrorReply) => ({
  type: "error" as const,
  error: { type: errorType(reply.status), message: reply.body.error.message }
})

/**
 * An error reply as an HTTP response with Anthropic's error body.
 *
 * @since 0.1.0
 * @category responses
 */
export const errorResponse = (reply: OpenAiErrors.ErrorReply): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(errorBody(reply), { status: reply.status, headers: reply.headers })

const encoder = new TextEncoder()
const event = (type: string, data: unknown): Uint8Array => encoder.encode(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`)

const sse = (model: string, now: number): Endpoint.StreamWriter<Chat.ChatChunk, Errors.ResilienceError> => {
  const encoder = Translate.makeAnthropicStreamEncoder()
  const bytes = (events: ReadonlyArray<AnthropicWire.StreamEvent>) => Chunk.map(Chunk.unsafeFromArray(events), (e) => event(e.type, e))
  return {
    write: (batch) => Chunk.flatMap(batch, (chunk) => bytes(encoder.step(chunk))),
    end: () => bytes(encoder.end()),
    failed: (error) => Chunk.of(event("error", errorBody(OpenAiErrors.fromError(error, { now, model, retryAfterMs: 1_000 }))))
  }
}

/**
 * Anthropic's Messages wire format for the endpoint.
 *
 * @since 0.1.0
 * @category wire
 */
export const wire: Endpoint.Wire<AnthropicWire.MessagesRequest> = {
  decode: AnthropicWire.decodeRequest,
  model: (request) => request.model,
  toChat: Translate.fromAnthropicRequest,
  streams: (request) => request.stream === true,
  response: Translate.toAnthropicResponse,
  stream: (_request, route, nowMs) => sse(route.model, nowMs),
  error: errorResponse
}

/**
 * The route's handler.
 *
 * @since 0.1.0
 * @category handlers
 */
export const handler = (
  options: Endpoint.Options
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope> =>
  Endpoint.handler(wire, options)
