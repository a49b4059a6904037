/**
 * A provider deployment as a service: what the resilient client calls.
 *
 * The HTTP clients (`OpenAiCompatible`, `Anthropic`) implement it over
 * `@effect/platform`'s HttpClient; the testkit implements it with simulated
 * providers driven by fault scripts in virtual time. The resilient client
 * only sees this interface, so the same policies run against both.
 *
 * @since 0.1.0
 */
import type { Errors } from "@resilient-ai/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type * as Chat from "./Chat.js"

/**
 * The wire format a deployment speaks.
 *
 * @since 0.1.0
 * @category models
 */
export type Kind = "openai" | "anthropic"

/**
 * What one call needs besides the request: which deployment and model, and
 * the key to send (named, for errors and metrics).
 *
 * @since 0.1.0
 * @category models
 */
export interface CallContext {
  readonly deployment: string
  /** The model to ask for; replaces `request.model`. */
  readonly model: string
  readonly key: Redacted.Redacted<string> | undefined
  readonly keyName: string | undefined
}

/**
 * The rate-limit budget a provider reported with its answer (from headers),
 * so traffic can move to another key before a 429.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimitInfo {
  readonly remainingRequests?: number
  readonly remainingTokens?: number
  /** Epoch milliseconds when the exhausted (or first) budget resets. */
  readonly resetAt?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ProviderAnswer {
  readonly response: Chat.ChatResponse
  readonly rateLimit: RateLimitInfo | undefined
}

/**
 * A stream whose answer has begun: the provider accepted it (its status and
 * headers arrived), the chunks are still to be read.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamAnswer {
  /**
   * Fails with a typed error: before its first chunk with the error's own
   * tag, after it with `StreamInterruptedError`.
   */
  readonly chunks: Stream.Stream<Chat.ChatChunk, Errors.ResilienceError>
  /** From the response headers: the key pool hears it before the first chunk is handed on. */
  readonly rateLimit: RateLimitInfo | undefined
}

/**
 * A provider's stream as one `Stream`, opened when it is run (the headers
 * are dropped).
 *
 * @since 0.1.0
 * @category combinators
 */
export const chunksOf = (
  opened: Effect.Effect<StreamAnswer, Errors.ResilienceError>
): Stream.Stream<Chat.ChatChunk, Errors.ResilienceError> => Stream.unwrap(Effect.map(opened, (answer) => answer.chunks))

/**
 * @since 0.1.0
 * @category models
 */
export interface Provider {
  readonly kind: Kind
  /** One non-streamed call. Every failure is a typed error of the taxonomy. */
  readonly chat: (request: Chat.ChatRequest, context: CallContext) => Effect.Effect<ProviderAnswer, Errors.ResilienceError>
  /**
   * One streamed call, opened: succeeds when the provider has accepted it,
   * fails with a typed error when it refused (a status, a connection error).
   */
  readonly stream: (request: Chat.ChatRequest, context: CallContext) => Effect.Effect<StreamAnswer, Errors.ResilienceError>
  /**
   * A health probe's cheap question (the model list). Without it, a probe
   * asks for a 1-token completion.
   */
  readonly probe?: (context: CallContext) => Effect.Effect<void, Errors.ResilienceError>
}

/**
 * The deployment description a provider is built from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly name: string
  readonly kind: Kind
  readonly baseUrl: string | undefined
  readonly model: string
  /**
   * Send the caller's trace context (`traceparent`, `b3`) to the provider.
   * Default false: a trace id says which user and request a call belongs
   * to, and a third party has no need of it.
   */
  readonly propagateTrace?: boolean | undefined
  /**
   * Headers of this deployment's requests (a relay's own header, an
   * organisation id), over the provider layer's. Never logged.
   */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * Finds the provider for a deployment. The HTTP layer builds one per
 * deployment from its kind and base URL; a simulation maps names to
 * simulated providers.
 *
 * @since 0.1.0
 * @category tags
 */
export class Providers extends Context.Tag("@resilient-ai/llm/Providers")<Providers, {
  readonly forTarget: (target: Target) => Provider
}>() {}
