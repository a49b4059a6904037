/**
 * What the gateway tells about its deployments: `/status`, `/health/ready`
 * and the Retry-After of "all fallbacks exhausted".
 *
 * Rules:
 * - A deployment **can serve now** when its breaker admits calls (closed,
 *   half-open, forced-closed or disabled, or open with its `retryAt` passed:
 *   the next call is the trial, rule 8) and, when it has keys, at least one
 *   key is healthy or comes back by now.
 * - **Ready** while at least one deployment can serve now.
 * - The gateway's **Retry-After** for a model is the earliest moment one of
 *   its cascade's deployments can serve again (the breaker's `retryAt`, the
 *   key pool's `availableAt`), at least 1 s, at most 60 s; 1 s when one can
 *   serve now (it just failed for another reason) or nothing says when.
 * - `/status` carries names, states, counts and times only: a key is shown
 *   by its name, never its value (`KeyPool.Status` holds no key).
 *
 * @since 0.1.0
 */
import type { AdaptiveLimit, Bulkhead, CircuitBreaker, KeyPool, Policy, RateLimiter, RetryBudget } from "@resilient-ai/core"
import type * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/**
 * @since 0.1.0
 * @category models
 */
export interface DeploymentState {
  readonly name: string
  /** Epoch ms from which it can serve; `now` or earlier when it can serve now. */
  readonly servesFrom: number
  readonly status: Policy.Status
}

const breakerFrom = (breaker: CircuitBreaker.Status | undefined, now: number): number => {
  if (breaker === undefined) return now
  switch (breaker.state) {
    case "open":
      return breaker.retryAt ?? now
    case "forced-open":
      return Number.POSITIVE_INFINITY
    default:
      return now
  }
}

const keysFrom = (pool: KeyPool.Status | undefined, now: number): number => {
  if (pool === undefined || pool.healthy > 0) return now
  return pool.availableAt ?? Number.POSITIVE_INFINITY
}

/**
 * When a deployment can serve, from its policy's status at `now`.
 *
 * @since 0.1.0
 * @category health
 */
export const servesFrom = (status: Policy.Status, now: number): number =>
  Math.max(breakerFrom(status.circuitBreaker, now), keysFrom(status.keyPool, now))

/**
 * Reads the state of deployments (each once, by name: clients built from one
 * config share them through the `StateStore`).
 *
 * @since 0.1.0
 * @category health
 */
export const read = (
  handles: ReadonlyArray<ResilientClient.DeploymentHandle>,
  now: number
): Effect.Effect<ReadonlyArray<DeploymentState>> =>
  Effect.forEach(handles, (h) =>
    Effect.map(h.policy.status, (status): DeploymentState => ({
      name: h.config.name,
      servesFrom: servesFrom(status, now),
      status
    })))

/**
 * @since 0.1.0
 * @category health
 */
export const isReady = (states: ReadonlyArray<DeploymentState>, now: number): boolean =>
  states.some((s) => s.servesFrom <= now)

/**
 * The gateway's Retry-After for a cascade, in ms (see the module's rules).
 *
 * @since 0.1.0
 * @category health
 */
export const retryAfterMs = (states: ReadonlyArray<DeploymentState>, cascade: ReadonlyArray<string>, now: number): number => {
  const earliest = Math.min(...states.filter((s) => cascade.includes(s.name)).map((s) => s.servesFrom))
  if (!Number.isFinite(earliest) || earliest <= now) return 1_000
  return Math.min(60_000, Math.max(1_000, earliest - now))
}

const iso = (epochMs: number | undefined): string | null =>
  epochMs === undefined || !Number.isFinite(epochMs) ? null : new Date(epochMs).toISOString()

/**
 * A rate limiter as `/status` shows it.
 *
 * @since 0.1.0
 * @category status
 */
export interface LimiterJson {
  readonly requests: RateLimiter.BucketStatus | null
  readonly tokens: RateLimiter.BucketStatus | null
  readonly pausedUntil: string | null
}

/**
 * One deployment as `/status` shows it: plain JSON, names and numbers only.
 * Times are ISO 8601 strings, `null` when not set.
 *
 * @since 0.1.0
 * @category status
 */
export interface DeploymentJson {
  readonly name: string
  readonly provider: "openai" | "anthropic"
  readonly model: string
  readonly canServe: boolean
  readonly servesFrom: string | null
  readonly circuitBreaker: {
    readonly state: CircuitBreaker.State
    readonly calls: number
    readonly failures: number
    readonly slowCalls: number
    readonly failureRate: number
    readonly consecutiveFailures: number
    readonly notPermitted: number
    readonly openings: number
    readonly retryAt: string | null
  } | null
  readonly keys: {
    readonly pool: string
    readonly healthy: number
    readonly availableAt: string | null
    readonly keys: ReadonlyArray<{
      readonly name: string
      readonly state: KeyPool.KeyState
      readonly cooldownUntil: string | null
      readonly consecutiveFailures: number
      readonly lastError: string | null
      readonly picks: number
    }>
  } | null
  readonly rateLimiter: LimiterJson | null
  readonly keyRateLimiters: Readonly<Record<string, LimiterJson>> | null
  readonly bulkhead: Bulkhead.Status | null
  readonly adaptiveLimit: AdaptiveLimit.Status | null
  readonly retryBudget: RetryBudget.Status | null
}

/**
 * One deployment as `/status` shows it.
 *
 * @since 0.1.0
 * @category status
 */
export const toJson = (handle: ResilientClient.DeploymentHandle, state: DeploymentState, now: number): DeploymentJson => {
  const { circuitBreaker: breaker, keyPool: pool, rateLimiter, keyRateLimiters, bulkhead, adaptiveLimit, retryBudget } =
    state.status
  const limiter = (s: RateLimiter.Status): LimiterJson => ({
    requests: s.requests ?? null,
    tokens: s.tokens ?? null,
    pausedUntil: iso(Option.getOrUndefined(s.pausedUntil))
  })
  return {
    name: state.name,
    provider: handle.config.provider,
    model: handle.config.model,
    canServe: state.servesFrom <= now,
    servesFrom: state.servesFrom <= now ? null : iso(state.servesFrom),
    circuitBreaker: breaker === undefined ? null : {
      state: breaker.state,
      calls: breaker.calls,
      failures: breaker.failures,
      slowCalls: breaker.slowCalls,
      failureRate: breaker.failureRate,
      consecutiveFailures: breaker.consecutiveFailures,
      notPermitted: breaker.notPermitted,
      openings: breaker.openings,
      retryAt: iso(breaker.retryAt)
    },
    keys: pool === undefined ? null : {
      pool: pool.pool,
      healthy: pool.healthy,
      availableAt: iso(pool.availableAt),
      keys: pool.keys.map((k) => ({
        name: k.name,
        state: k.state,
        cooldownUntil: iso(k.until),
        consecutiveFailures: k.consecutiveFailures,
        lastError: k.lastError ?? null,
        picks: k.picks
      }))
    },
    rateLimiter: rateLimiter === undefined ? null : limiter(rateLimiter),
    keyRateLimiters: keyRateLimiters === undefined
      ? null
      : Object.fromEntries(Object.entries(keyRateLimiters).map(([name, s]) => [name, limiter(s)])),
    bulkhead: bulkhead ?? null,
    adaptiveLimit: adaptiveLimit ?? null,
    retryBudget: retryBudget ?? null
  }
}
