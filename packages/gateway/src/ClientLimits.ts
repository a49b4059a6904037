/**
 * What each gateway key may use: requests per minute and money per window
 * (docs/semantics.md rule 36).
 *
 * Rules:
 * - `requestsPerMinute`: one request from the key's token bucket, at once or
 *   not at all; past it a 429 with the exact Retry-After.
 * - `spendLimit: { usd, per }`: the key may spend `usd` every `per` (windows
 *   counted from the gateway's start). A request is let in while the key's
 *   balance is above zero; its cost, the client's `costUsd` of the answer
 *   (every attempt's real cost, retries and fallbacks included), is charged
 *   when the answer (or the stream) is done. A request may take the balance
 *   below zero; the next window starts that much lower, so an overspend is
 *   paid back, not forgiven. Past it: a 429 in OpenAI's `insufficient_quota`
 *   shape (Anthropic's `rate_limit_error` on `/v1/messages`) whose
 *   Retry-After is the refill that brings the balance above zero again.
 *   Money is checked first: a request refused for it takes nothing from the
 *   key's requests per minute.
 * - Both are token buckets of `RateLimiter` in the `StateStore` (the spend in
 *   micro-dollars, refilled with `usd` every `per`): gateways on one Redis
 *   share each key's limits.
 *
 * @since 0.1.0
 */
import { Errors, RateLimiter } from "@resilient-ai/core"
import type { StateStore } from "@resilient-ai/core"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as OpenAiErrors from "./OpenAiErrors.js"

/**
 * The limits of one gateway key.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyLimits {
  readonly name: string
  readonly requestsPerMinute?: number | undefined
  readonly spendLimit?: { readonly usd: number; readonly per: Duration.DurationInput } | undefined
}

/**
 * Charges what a request cost to the key that sent it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Charge {
  readonly charge: (costUsd: number) => Effect.Effect<void>
}

/**
 * The charge of the request being answered: nothing unless the key has a
 * spend limit (the handler provides it for such a key's requests).
 *
 * @since 0.1.0
 * @category references
 */
export class Spend extends Context.Reference<Spend>()("@resilient-ai/gateway/ClientLimits/Spend", {
  defaultValue: (): Charge => free
}) {}

const free: Charge = { charge: () => Effect.void }

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Lets a request of key `name` in, with what its answer will be charged, or refuses it. */
  readonly admit: (name: string) => Effect.Effect<Charge, OpenAiErrors.ErrorReply>
}

interface Limiters {
  readonly requests: RateLimiter.Service | undefined
  readonly spend: { readonly limiter: RateLimiter.Service; readonly usd: number; readonly per: string } | undefined
}

/** Spend is counted in whole micro-dollars: the buckets count whole units. */
const micros = (usd: number): number => Math.ceil(usd * 1_000_000)

const retryAfterMs = (e: Errors.RateLimitError): number =>
  e.retryAfter === undefined ? 1_000 : Duration.toMillis(e.retryAfter)

const admitSpend = (
  name: string,
  spend: NonNullable<Limiters["spend"]>
): Effect.Effect<RateLimiter.Permit, OpenAiErrors.ErrorReply> =>
  Effect.mapError(spend.limiter.acquire({ tokens: 1 }), (e) =>
    OpenAiErrors.reply(
      429,
      `Spend limit reached for gateway key "${name}": ${spend.usd} USD per ${spend.per}.`,
      "insufficient_quota",
      "insufficient_quota",
      { retryAfterMs: retryAfterMs(e) }
    ))

const admitRequest = (name: string, requests: RateLimiter.Service): Effect.Effect<void, OpenAiErrors.ErrorReply> =>
  Effect.mapError(requests.acquire(), (e) =>
    OpenAiErrors.reply(429, `Rate limit reached for gateway key "${name}".`, "rate_limit_error", "rate_limit_exceeded", {
      retryAfterMs: retryAfterMs(e)
    }))

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  keys: ReadonlyArray<KeyLimits>
): Effect.Effect<Service, Errors.InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const byName = new Map<string, Limiters>()
    for (const [i, key] of keys.entries()) {
      const invalid = (field: string) => (e: Errors.InvalidConfigError) =>
        Errors.withConfigPaths(e, () => `gateway.gatewayKeys.${i}.${field}`, "Gateway")
      const requests = key.requestsPerMinute === undefined ? undefined : yield* Effect.mapError(
        RateLimiter.make({ name: `gateway-key/${key.name}`, requestsPerMinute: key.requestsPerMinute, maxWait: 0 }),
        invalid("requestsPerMinute")
      )
      const spendLimit = key.spendLimit
      const spend = spendLimit === undefined ? undefined : {
        limiter: yield* Effect.mapError(
          RateLimiter.make({
            name: `gateway-spend/${key.name}`,
            buckets: { tokens: { capacity: micros(spendLimit.usd), refillInterval: spendLimit.per } },
            maxWait: 0
          }),
          invalid("spendLimit")
        ),
        usd: spendLimit.usd,
        per: Duration.format(Duration.decode(spendLimit.per))
      }
      if (requests !== undefined || spend !== undefined) byName.set(key.name, { requests, spend })
    }
    return {
      admit: (name) => {
        const limits = byName.get(name)
        if (limits === undefined) return Effect.succeed(free)
        const { requests, spend } = limits
        const requested = requests === undefined ? Effect.void : admitRequest(name, requests)
        if (spend === undefined) return Effect.as(requested, free)
        // Money first: a request its key cannot pay for takes nothing from the key's requests per minute
        // (and is told it is out of money, not that it sends too fast); one refused for its rate gives
        // back the spend it was let in with.
        return Effect.flatMap(admitSpend(name, spend), (permit) =>
          Effect.matchEffect(requested, {
            onFailure: (e) => Effect.zipRight(permit.settle(0), Effect.fail(e)),
            onSuccess: () => Effect.succeed<Charge>({ charge: (costUsd) => permit.settle(micros(costUsd)) })
          }))
      }
    }
  })
