/**
 * One provider client for a whole key pool, through the `transformClient`
 * seam of `OpenAiClient.layer` / `AnthropicClient.layer`.
 *
 * The client is built without `apiKey`; {@link transformClient} sets the
 * credential on each request from the key the `Policy` picked for the
 * attempt the request belongs to (`Policy.CurrentAttempt`, or
 * `KeyPool.CurrentKey` when a pool is used on its own), and tells the pool
 * what the answer's rate-limit headers say, so traffic moves to another key
 * before the provider answers 429 (docs/semantics.md rule 23).
 *
 * The key is read from the request's fiber context, not captured when the
 * client is built: the one client serves every key, and a retry on another
 * key sends another header on the same client.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { KeyPool, Policy } from "@resilient-ai/core"
import { ErrorMapping, RateLimitHeaders } from "@resilient-ai/llm"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"

/**
 * The header a provider reads its key from: `Authorization: Bearer <key>`
 * (OpenAI and compatible), `x-api-key: <key>` (Anthropic).
 *
 * @since 0.1.0
 * @category auth
 */
export const authorize = (
  kind: ErrorMapping.ProviderKind,
  key: Redacted.Redacted<string>
) =>
(request: HttpClientRequest.HttpClientRequest): HttpClientRequest.HttpClientRequest =>
  kind === "openai"
    ? HttpClientRequest.bearerToken(request, key)
    : HttpClientRequest.setHeader(request, "x-api-key", Redacted.value(key))

/** The key of the attempt running in this fiber, if any. */
const currentKey: Effect.Effect<KeyPool.PickedKey | undefined> = Effect.flatMap(
  Effect.serviceOption(Policy.CurrentAttempt),
  (attempt) =>
    Option.isSome(attempt)
      ? Effect.succeed(attempt.value.key)
      : Effect.map(Effect.serviceOption(KeyPool.CurrentKey), Option.getOrUndefined)
)

/**
 * The `transformClient` of a provider client that serves `pool`: each
 * request carries the key of its attempt, and each answer's rate-limit
 * headers reach the pool. A request made outside an attempt (no key in its
 * context) is sent as it is.
 *
 * @since 0.1.0
 * @category auth
 */
export const transformClient = (
  kind: ErrorMapping.ProviderKind,
  pool: KeyPool.Service | undefined
) =>
(client: HttpClient.HttpClient): HttpClient.HttpClient => {
  if (pool === undefined) return client
  const keyed = HttpClient.mapRequestEffect(client, (request) =>
    Effect.map(currentKey, (key) => (key === undefined ? request : authorize(kind, key.key)(request))))
  return HttpClient.tap(keyed, (response) =>
    Effect.flatMap(currentKey, (key) => {
      if (key === undefined) return Effect.void
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const info = RateLimitHeaders.parse(response.headers, now)
        return Object.keys(info).length === 0 ? Effect.void : pool.feedback(key.name, info)
      })
    }))
}
