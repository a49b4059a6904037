/**
 * `AiError` of @effect/ai onto the taxonomy of `@resilient-ai/core`, and back.
 *
 * Inside the resilient `LanguageModel` every failure of a provider model is
 * read as one of our tags, so the same retry, breaker, key-pool and fallback
 * rules apply as to `@resilient-ai/llm`'s own client:
 *
 * | `AiError` | becomes |
 * | --- | --- |
 * | `HttpResponseError`, reason `StatusCode` | `ErrorMapping.fromResponse` of its status, headers (`retry-after-ms`, `retry-after`, the rate-limit headers, `x-should-retry`) and body: `RateLimitError`, `QuotaExhaustedError`, `AuthError`, `ContextLengthError`, `ContentFilterError`, `BadRequestError`, `ProviderUnavailableError` |
 * | `HttpResponseError`, reason `Decode` / `EmptyBody` | `MalformedResponseError` |
 * | `HttpRequestError`, reason `Transport` | `ConnectionError` |
 * | `HttpRequestError`, reason `Encode` / `InvalidUrl`; `MalformedInput` | `BadRequestError` (the request never reached a provider; nothing else would take it) |
 * | `MalformedOutput` | `MalformedResponseError` (retried, then fallen back from) |
 * | `UnknownError` | `BadRequestError`: @effect/ai raises it only from tokenizers, never for an answer; we do not guess that it is transient |
 *
 * The table itself lives in `@resilient-ai/llm`'s `ErrorMapping`, reused
 * here, not copied: an @effect/ai program and our own client classify one
 * answer the same way.
 *
 * At the program's edge the error goes back to an `AiError`
 * ({@link toAiError}): the very `AiError` the provider raised when there was
 * one, else an `UnknownError` whose `cause` is our error (a breaker that was
 * open, a bulkhead that was full, a spent budget). {@link resilienceErrorOf}
 * reads our error back from either, so a program may narrow on our tags
 * without its error type changing.
 *
 * @since 0.1.0
 */
import * as AiError from "@effect/ai/AiError"
import { Errors } from "@resilient-ai/core"
import { ErrorMapping } from "@resilient-ai/llm"
import { globalValue } from "effect/GlobalValue"
import * as Option from "effect/Option"

/**
 * Where an answer came from (copied into our error) and the time to read
 * HTTP dates and reset timestamps against (epoch milliseconds).
 *
 * @since 0.1.0
 * @category models
 */
export interface MapOptions extends ErrorMapping.Origin {
  readonly now: number
}

// Both directions are remembered by identity: our error carries no field for a foreign error
// (it must encode to JSON), and an `AiError` has none for ours. Global so that two copies of
// this module (a bundler, a test runner) agree.
const aiErrorOf = globalValue(
  Symbol.for("@resilient-ai/effect-ai/AiErrors/aiErrorOf"),
  () => new WeakMap<Errors.ResilienceError, AiError.AiError>()
)
const ourErrorOf = globalValue(
  Symbol.for("@resilient-ai/effect-ai/AiErrors/ourErrorOf"),
  () => new WeakMap<AiError.AiError, Errors.ResilienceError>()
)

const linked = (aiError: AiError.AiError, ours: Errors.ResilienceError): Errors.ResilienceError => {
  aiErrorOf.set(ours, aiError)
  ourErrorOf.set(aiError, ours)
  return ours
}

const describe = (error: { readonly description?: string | undefined; readonly cause?: unknown }): unknown =>
  error.description ?? error.cause ?? undefined

/**
 * Our error for an `AiError`, by the table of the module header.
 *
 * @since 0.1.0
 * @category mapping
 */
export const toResilienceError = (error: AiError.AiError, options: MapOptions): Errors.ResilienceError => {
  const { now, ...where } = options
  switch (error._tag) {
    case "HttpResponseError": {
      const status = error.response.status
      if (error.reason !== "StatusCode") {
        return linked(error, ErrorMapping.malformed(error.description ?? error.reason, { ...where, status }))
      }
      return linked(
        error,
        ErrorMapping.fromResponse({ status, headers: error.response.headers, body: error.body ?? "" }, { ...where, now })
      )
    }
    case "HttpRequestError":
      return linked(
        error,
        error.reason === "Transport"
          ? ErrorMapping.connectionError(error.cause ?? error.description, where)
          : new Errors.BadRequestError({ ...where, ...detail(`${error.reason}: ${error.description ?? "request not sent"}`) })
      )
    case "MalformedOutput":
      return linked(error, ErrorMapping.malformed(describe(error) ?? "the model's output did not decode", where))
    case "MalformedInput":
    case "UnknownError":
      return linked(error, new Errors.BadRequestError({ ...where, ...detail(`${error._tag}: ${error.description ?? ""}`) }))
  }
}

const detail = (text: string): { readonly detail?: string } => {
  const clean = ErrorMapping.sanitize(text)
  return clean === undefined ? {} : { detail: clean }
}

/**
 * The `AiError` a program sees for our error: the provider's own `AiError`
 * when ours was made from one, else an `UnknownError` of module
 * `"ResilientLanguageModel"` whose `cause` is our error and whose
 * `description` its message.
 *
 * @since 0.1.0
 * @category mapping
 */
export const toAiError = (error: Errors.ResilienceError, method: string): AiError.AiError => {
  const original = aiErrorOf.get(error)
  if (original !== undefined) return original
  const made = new AiError.UnknownError({
    module: "ResilientLanguageModel",
    method,
    description: `${error._tag}: ${error.message}`,
    cause: error
  })
  ourErrorOf.set(made, error)
  return made
}

/**
 * Our error behind an `AiError` the resilient `LanguageModel` failed with:
 * what the retry, breaker and fallback saw. `None` for an `AiError` that
 * did not come through it.
 *
 * @since 0.1.0
 * @category mapping
 */
export const resilienceErrorOf = (error: AiError.AiError): Option.Option<Errors.ResilienceError> =>
  Option.fromNullable(ourErrorOf.get(error))

/**
 * A stream's `error` part (an error event inside a 200 stream: OpenAI's
 * `error`, Anthropic's `event: error`) as our error, by the event's type.
 *
 * @since 0.1.0
 * @category mapping
 */
export const fromStreamErrorPart = (
  kind: ErrorMapping.ProviderKind,
  payload: unknown,
  options: MapOptions
): Errors.ResilienceError =>
  ErrorMapping.fromStreamError(kind, typeof payload === "string" ? payload : JSON.stringify(payload) ?? "", options)
