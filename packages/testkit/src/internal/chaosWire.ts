/**
 * The chaos upstream's wire rendering: what OpenAI and Anthropic really send
 * for each outcome of a fault script (status, headers, body), and the SSE
 * frames of a streamed answer in each format. Pure, apart from the
 * `Translate` calls that read `created` from the `Clock`.
 */
import type * as Chat from "@resilient-ai/llm/Chat"
import * as Sse from "@resilient-ai/llm/Sse"
import * as Translate from "@resilient-ai/llm/Translate"
import * as Effect from "effect/Effect"
import type * as FaultScript from "../FaultScript.js"

/** The wire format of a route. */
export type Wire = "openai" | "anthropic"

/** A complete non-streamed HTTP answer. */
export interface Rendered {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  /** JSON text (or, for `malformed`, text that is not JSON). */
  readonly body: string
}

const encoder = new TextEncoder()

/** A Go duration, as OpenAI writes `x-ratelimit-reset-*` (`"250ms"`, `"1.5s"`, `"1m30s"`). */
export const goDuration = (ms: number): string => {
  const whole = Math.max(0, Math.ceil(ms))
  if (whole < 1000) return `${whole}ms`
  const minutes = Math.floor(whole / 60_000)
  const seconds = (whole % 60_000) / 1000
  const s = `${Number(seconds.toFixed(3))}s`
  return minutes === 0 ? s : `${minutes}m${s}`
}

const iso = (epochMs: number): string => new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, "Z")

/** `"2025-07-01 at 00:00 UTC"`, Anthropic's way of saying when usage limits lift. */
const regainAccess = (epochMs: number): string => {
  const t = new Date(epochMs).toISOString()
  return `${t.slice(0, 10)} at ${t.slice(11, 16)} UTC`
}

const openAiError = (message: string, type: string, code: string | null, param: string | null = null) =>
  JSON.stringify({ error: { message, type, param, code } })

const anthropicError = (type: string, message: string, requestId: string) =>
  JSON.stringify({ type: "error", error: { type, message }, request_id: requestId })

const json = (wire: Wire, requestId: string, extra: Readonly<Record<string, string>> = {}): Record<string, string> => ({
  "content-type": "application/json",
  [wire === "openai" ? "x-request-id" : "request-id"]: requestId,
  ...extra
})

/** A client error of the route itself (bad body, unknown deployment, unknown key). */
export const clientError = (
  wire: Wire,
  status: 400 | 401 | 404,
  message: string,
  requestId: string
): Rendered => {
  const type = status === 401
    ? (wire === "openai" ? "invalid_request_error" : "authentication_error")
    : status === 404
    ? (wire === "openai" ? "invalid_request_error" : "not_found_error")
    : "invalid_request_error"
  const code = status === 401 ? "invalid_api_key" : status === 404 ? "model_not_found" : null
  return {
    status,
    headers: json(wire, requestId),
    body: wire === "openai" ? openAiError(message, type, code) : anthropicError(type, message, requestId)
  }
}

/** Where the clock stands, for reset headers and messages. */
export interface When {
  /** Wall-clock epoch milliseconds now. */
  readonly nowEpochMs: number
  /** Wall-clock epoch milliseconds of the upstream's start (script time 0). */
  readonly startEpochMs: number
}

/**
 * A scripted failure that is an HTTP answer (`connection` and `hang` are
 * not: the caller handles those at the socket).
 */
export const failure = (wire: Wire, f: FaultScript.Failure, when: When, requestId: string): Rendered => {
  const fault = f._tag === "kind" ? f.kind : f._tag
  const headers = (extra: Readonly<Record<string, string>> = {}) => json(wire, requestId, { "x-chaos-fault": fault, ...extra })
  switch (f._tag) {
    case "rate-limit": {
      const ms = Math.max(0, Math.ceil(f.retryAfterMs))
      const seconds = String(Math.ceil(ms / 1000))
      return wire === "openai"
        ? {
          status: 429,
          headers: headers({
            "retry-after": seconds,
            "retry-after-ms": String(ms),
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": goDuration(ms)
          }),
          body: openAiError(
            `Rate limit reached for requests in organization org-chaos on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in ${
              goDuration(ms)
            }.`,
            "requests",
            "rate_limit_exceeded"
          )
        }
        : {
          status: 429,
          headers: headers({
            "retry-after": seconds,
            "anthropic-ratelimit-requests-limit": "60",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": iso(when.nowEpochMs + ms)
          }),
          body: anthropicError(
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 60 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
            requestId
          )
        }
    }
    case "auth":
      return wire === "openai"
        ? {
          status: 401,
          headers: headers(),
          body: openAiError(
            "Incorrect API key provided: sk-***. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key"
          )
        }
        : { status: 401, headers: headers(), body: anthropicError("authentication_error", "invalid x-api-key", requestId) }
    case "quota": {
      const reset = f.resetAt === undefined ? "" : ` You will regain access on ${regainAccess(when.startEpochMs + f.resetAt)}.`
      if (wire === "openai") {
        return {
          status: 429,
          headers: headers(),
          body: openAiError(
            `You exceeded your current quota, please check your plan and billing details.${reset}`,
            "insufficient_quota",
            "insufficient_quota"
          )
        }
      }
      // Anthropic: usage limits with a date are a 400; an empty balance is a 402 billing_error.
      return f.resetAt === undefined
        ? {
          status: 402,
          headers: headers(),
          body: anthropicError(
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            requestId
          )
        }
        : {
          status: 400,
          headers: headers(),
          body: anthropicError("invalid_request_error", `You have reached your specified API usage limits.${reset}`, requestId)
        }
    }
    case "kind":
      switch (f.kind) {
        case "unavailable":
          return wire === "openai"
            ? { status: 503, headers: headers(), body: openAiError("Service Unavailable.", "server_error", null) }
            : { status: 503, headers: headers(), body: anthropicError("api_error", "Service Unavailable", requestId) }
        case "internal-error":
          return wire === "openai"
            ? {
              status: 500,
              headers: headers(),
              body: openAiError("The server had an error while processing your request. Sorry about that!", "server_error", null)
            }
            : { status: 500, headers: headers(), body: anthropicError("api_error", "Internal server error", requestId) }
        case "bad-gateway":
          // The CDN in front of either API answers, not the API: an HTML page, whatever the wire.
          return {
            status: 502,
            headers: { ...headers(), "content-type": "text/html" },
            body: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
          }
        case "overloaded":
          // The script's status (529) on both wires; OpenAI-compatible relays pass Anthropic's 529 through.
          return wire === "openai"
            ? {
              status: 529,
              headers: headers(),
              body: openAiError("The engine is currently overloaded, please try again later.", "server_error", "overloaded")
            }
            : { status: 529, headers: headers(), body: anthropicError("overloaded_error", "Overloaded", requestId) }
        case "gateway-timeout":
          return wire === "openai"
            ? { status: 504, headers: headers(), body: openAiError("Gateway timeout.", "server_error", null) }
            : { status: 504, headers: headers(), body: anthropicError("timeout_error", "Request timed out", requestId) }
        case "malformed":
        case "connection":
        case "hang":
          return malformed(wire, requestId)
      }
  }
}

/** A 200 whose JSON body is cut in the middle. */
export const malformed = (wire: Wire, requestId: string): Rendered => ({
  status: 200,
  headers: json(wire, requestId, { "x-chaos-fault": "malformed" }),
  body: wire === "openai"
    ? `{"id":"${requestId}","object":"chat.completion","choices":[{"index":0,"message":{"role":"assist`
    : `{"id":"${requestId}","type":"message","role":"assistant","content":[{"type":"te`
})

/** The answer of a non-streamed call. */
export const answer = (wire: Wire, response: Chat.ChatResponse, requestId: string): Effect.Effect<Rendered> =>
  wire === "openai"
    ? Effect.map(Translate.toOpenAiResponse(response), (body) => ({
      status: 200,
      headers: json(wire, requestId),
      body: JSON.stringify(body)
    }))
    : Effect.map(Effect.orDie(Translate.toAnthropicResponse(response)), (body) => ({
      status: 200,
      headers: json(wire, requestId),
      body: JSON.stringify(body)
    }))

/** Headers of a streamed 200. */
export const streamHeaders = (wire: Wire, requestId: string): Record<string, string> => ({
  "cache-control": "no-cache",
  [wire === "openai" ? "x-request-id" : "request-id"]: requestId
})

const frame = (data: unknown, event?: string): string =>
  Sse.encode(event === undefined ? { data: JSON.stringify(data) } : { event, data: JSON.stringify(data) })

/** What a stream is about: its id, model, usage and size. */
export interface StreamPlan {
  readonly id: string
  readonly model: string
  /** Text chunks between the opening and the closing frames. */
  readonly chunks: number
  readonly usage: Chat.Usage
  /** OpenAI: the client asked for `stream_options.include_usage`. */
  readonly includeUsage: boolean
  /** OpenAI `created`, epoch seconds. */
  readonly created: number
}

/** The text of chunk `i` (1-based). */
export const wordOf = (i: number): string => `${i === 1 ? "" : " "}word${i}`

/**
 * The SSE bytes of step `i` of a stream: 0 opens the message, 1…chunks are
 * text deltas, chunks + 1 closes it (finish reason, usage, terminator).
 */
export const streamStep = (wire: Wire, plan: StreamPlan, i: number): Effect.Effect<Uint8Array> => {
  if (wire === "anthropic") return Effect.succeed(encoder.encode(anthropicStep(plan, i)))
  const chunk = (c: Chat.ChatChunk) => Translate.toOpenAiChunk(c, { created: plan.created })
  const base = { id: plan.id, model: plan.model }
  const text = i === 0
    ? Effect.map(chunk({ ...base, role: "assistant", text: "" }), (c) => frame(c))
    : i <= plan.chunks
    ? Effect.map(chunk({ ...base, text: wordOf(i) }), (c) => frame(c))
    : Effect.map(
      Effect.all([chunk({ ...base, finishReason: "stop" }), chunk({ ...base, usage: plan.usage })]),
      ([finish, usage]) => frame(finish) + (plan.includeUsage ? frame(usage) : "") + "data: [DONE]\n\n"
    )
  return Effect.map(text, (t) => encoder.encode(t))
}

const anthropicStep = (plan: StreamPlan, i: number): string => {
  if (i === 0) {
    return frame({
      type: "message_start",
      message: {
        id: plan.id,
        type: "message",
        role: "assistant",
        model: plan.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: plan.usage.inputTokens, output_tokens: 1 }
      }
    }, "message_start") +
      frame({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }, "content_block_start") +
      frame({ type: "ping" }, "ping")
  }
  if (i <= plan.chunks) {
    return frame({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: wordOf(i) } }, "content_block_delta")
  }
  return frame({ type: "content_block_stop", index: 0 }, "content_block_stop") +
    frame({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { output_tokens: plan.usage.outputTokens }
    }, "message_delta") +
    frame({ type: "message_stop" }, "message_stop")
}

/** An error event inside a 200 stream, as each provider sends it (then the stream ends). */
export const streamError = (wire: Wire): Uint8Array =>
  encoder.encode(
    wire === "anthropic"
      ? frame({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, "error")
      : frame({ error: { message: "The server had an error while processing your request.", type: "server_error", param: null, code: null } })
  )

/** A stream whose data is not JSON (`malformed` on a streamed call). */
export const streamMalformed = (wire: Wire): Uint8Array =>
  encoder.encode(
    wire === "anthropic"
      ? "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\n\n"
      : "data: {\"id\":\"chatcmpl-chaos\",\"object\":\"chat.completion.chu\n\ndata: [DONE]\n\n"
  )
