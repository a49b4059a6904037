/**
 * Every error the gateway answers, in OpenAI's error body
 * (`{"error":{"message","type","param","code"}}`) with its HTTP status, so
 * an OpenAI SDK raises the right exception class.
 *
 * The table for the client's failures (`ResilientClient.chat` failed), one
 * row per tag, first principle first:
 *
 * | tag | status | why |
 * | --- | --- | --- |
 * | BadRequestError | the upstream's 4xx, else 400 | the request itself is wrong: passed through, sanitized |
 * | ContextLengthError | 400 `context_length_exceeded` | as OpenAI answers it |
 * | ContentFilterError | the upstream's 4xx, else 400 `content_filter` | the provider refused the content |
 * | NoKeyAvailableError | 429, `Retry-After` until the first key is back | "no key until T" |
 * | RateLimitError | 429, `Retry-After` from the error | every step was throttled: the client should slow down |
 * | TimeoutError (phase `total`), BudgetExhaustedError (`deadline`) | 504 | the request's own deadline ran out |
 * | BulkheadFullError | 503 `all_fallbacks_exhausted`, the gateway's `Retry-After` | the last step was at its concurrency limit (a bulkhead, the adaptive limit): said so, not that it failed |
 * | any other fallbackable tag, BudgetExhaustedError | 503 `all_fallbacks_exhausted`, the gateway's `Retry-After` | every step failed; our keys' troubles (401, quota) are not the caller's, so they are not passed as 401/402 |
 * | StreamInterruptedError | 502 | an upstream broke its answer |
 *
 * Messages go through `ErrorMapping.sanitize` (keys and tokens masked, cut
 * to 300 characters): a provider's text never carries a secret out.
 *
 * @since 0.1.0
 */
import type { Errors } from "@resilient-ai/core"
import * as Duration from "effect/Duration"
import * as ErrorMapping from "@resilient-ai/llm/ErrorMapping"

/**
 * @since 0.1.0
 * @category models
 */
export interface ErrorBody {
  readonly error: {
    readonly message: string
    readonly type: string
    readonly param: string | null
    readonly code: string | null
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ErrorReply {
  readonly status: number
  readonly body: ErrorBody
  /** Extra response headers (`retry-after`). */
  readonly headers: Readonly<Record<string, string>>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const reply = (
  status: number,
  message: string,
  type: string,
  code: string | null,
  options: { readonly param?: string | null; readonly retryAfterMs?: number | undefined } = {}
): ErrorReply => ({
  status,
  body: { error: { message, type, param: options.param ?? null, code } },
  headers: options.retryAfterMs === undefined ? {} : { "retry-after": String(retryAfterSeconds(options.retryAfterMs)) }
})

/**
 * Retry-After in whole seconds, rounded up, at least 1: `0` would invite an
 * immediate retry that meets the same refusal.
 *
 * @since 0.1.0
 * @category headers
 */
export const retryAfterSeconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000))

/**
 * @since 0.1.0
 * @category constructors
 */
export const invalidJson = (): ErrorReply =>
  reply(
    400,
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
    "invalid_request_error",
    null
  )

/**
 * A body that is JSON but not a valid request: the first bad field, named in
 * `param` and in the message.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidField = (path: string, detail: string): ErrorReply =>
  reply(400, path === "" ? `Invalid request: ${detail}` : `Invalid value for '${path}': ${detail}`, "invalid_request_error", "invalid_value", {
    param: path === "" ? null : path
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const unknownModel = (model: string): ErrorReply =>
  reply(404, `The model \`${ErrorMapping.truncate(model, 100)}\` does not exist or you do not have access to it.`, "invalid_request_error", "model_not_found", {
    param: "model"
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const tooLarge = (maxBytes: number): ErrorReply =>
  reply(413, `Request body too large: the limit is ${maxBytes} bytes.`, "invalid_request_error", "request_too_large")

/**
 * @since 0.1.0
 * @category constructors
 */
export const unauthorized = (presented: boolean): ErrorReply =>
  reply(
    401,
    presented
      ? "Incorrect API key provided. Check the gateway key you sent."
      : "You didn't provide an API key. You need to provide your gateway key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    "invalid_request_error",
    "invalid_api_key"
  )

/**
 * @since 0.1.0
 * @category constructors
 */
export const notFound = (method: string, path: string): ErrorReply =>
  reply(404, `Unknown request URL: ${method} ${ErrorMapping.truncate(path, 200)}.`, "invalid_request_error", "unknown_url")

/**
 * What the gateway knows of when a deployment could serve again, for the
 * 503's Retry-After.
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorContext {
  /** Epoch ms now (effect's `Clock`). */
  readonly now: number
  /** The gateway's own Retry-After for "all fallbacks exhausted" (see `Health.retryAfterMs`). */
  readonly retryAfterMs: number
  /** The public model the request asked for. */
  readonly model: string
}

const clean = (text: string): string => ErrorMapping.sanitize(text) ?? "upstream error"

const upstream4xx = (status: number | undefined): number | undefined =>
  status !== undefined && status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 429 ? status : undefined

/**
 * The reply to a failed request (see the module's table).
 *
 * @since 0.1.0
 * @category mapping
 */
export const fromError = (error: Errors.ResilienceError, context: ErrorContext): ErrorReply => {
  switch (error._tag) {
    case "BadRequestError":
      return reply(upstream4xx(error.status) ?? 400, clean(error.message), "invalid_request_error", null)
    case "ContextLengthError":
      return reply(400, clean(error.message), "invalid_request_error", "context_length_exceeded", { param: "messages" })
    case "ContentFilterError":
      return reply(upstream4xx(error.status) ?? 400, clean(error.message), "invalid_request_error", "content_filter")
    case "NoKeyAvailableError": {
      const until = error.availableAt
      return reply(
        429,
        until === undefined
          ? `No API key is available for model ${context.model}.`
          : `No API key is available for model ${context.model} until ${new Date(until).toISOString()}.`,
        "rate_limit_error",
        "no_key_available",
        { retryAfterMs: until === undefined ? context.retryAfterMs : until - context.now }
      )
    }
    case "RateLimitError":
      return reply(429, clean(error.message), "rate_limit_error", "rate_limit_exceeded", {
        retryAfterMs: error.retryAfter === undefined ? context.retryAfterMs : Duration.toMillis(error.retryAfter)
      })
    case "TimeoutError":
      if (error.phase === "total") return reply(504, clean(error.message), "timeout_error", "timeout")
      return exhausted(error, context)
    case "BudgetExhaustedError":
      if (error.budget === "deadline") return reply(504, clean(error.message), "timeout_error", "timeout")
      return exhausted(error, context)
    case "StreamInterruptedError":
      return reply(502, clean(error.message), "server_error", "stream_interrupted")
    case "BulkheadFullError":
      // Nothing upstream need have failed: the gateway itself had no room for the request.
      return exhausted(error, context, `No deployment for model ${context.model} can take the request now`)
    default:
      return exhausted(error, context)
  }
}

const exhausted = (
  error: Errors.ResilienceError,
  context: ErrorContext,
  what = `All deployments for model ${context.model} failed`
): ErrorReply =>
  reply(
    503,
    `${what}; try again later. Last error: ${clean(error.message)}`,
    "server_error",
    "all_fallbacks_exhausted",
    { retryAfterMs: context.retryAfterMs }
  )
