/**
 * The nine drill scenarios, each with the `ClientConfig` an operator would
 * choose for it. The configurations are the documentation of how to use the
 * library against each kind of incident: read them next to the report.
 *
 * Every duration and rate can be shrunk with `scale` (the run and its
 * incident windows) and `rateScale` (traffic), so tests run each scenario in
 * miniature. Scaling shortens a scenario, never the shape of its fault: a
 * flap lasts as long, a Retry-After is as long, at any scale. (The one
 * setting scaled with the run is cold-fallback's probe period, which must
 * fit between the key's revocation and the outage.)
 *
 * @since 0.1.0
 */
import type * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import type * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import type * as Drill from "./Drill.js"
import * as FaultScript from "./FaultScript.js"
import type * as SimulatedProviders from "./SimulatedProviders.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Multiplies the length of every run and the times of its incident windows (not the shape of a fault). Default 1. */
  readonly scale?: number
  /** Multiplies every traffic rate. Default 1. */
  readonly rateScale?: number
}

/**
 * The scenario names, in drill order.
 *
 * @since 0.1.0
 * @category models
 */
export const names = [
  "provider-outage",
  "flash-sale",
  "rate-limit-storm",
  "key-revoked",
  "flapping",
  "all-down",
  "stream-faults",
  "primary-hang",
  "cold-fallback"
] as const

/**
 * @since 0.1.0
 * @category models
 */
export type Name = typeof names[number]

const PRIMARY = "gpt-4o"
const SECONDARY = "claude-sonnet"
const TERTIARY = "deepseek"

const keys = (prefix: string, n: number): ClientConfig.Deployment["keys"] =>
  Array.from({ length: n }, (_, i) => ({ name: `${prefix}-${i + 1}`, env: `SIM_${prefix.toUpperCase()}_KEY_${i + 1}` }))

type Policy = NonNullable<ClientConfig.Deployment["policy"]>

/**
 * The three deployments of every scenario; only the primary's policy
 * changes between scenarios. The fallbacks keep a plain policy: one retry,
 * a consecutive-failure breaker, a timeout well above their p99.
 */
const deployments = (primaryPolicy: Policy, fallbackProbe?: ClientConfig.Deployment["probe"]): ClientConfig.ClientConfig["deployments"] => [
  {
    name: PRIMARY,
    provider: "openai",
    model: "gpt-4o",
    keys: keys("primary", 3),
    contextWindow: 128_000,
    price: { inputPerMillion: 2.5, outputPerMillion: 10 },
    policy: primaryPolicy
  },
  {
    name: SECONDARY,
    provider: "anthropic",
    model: "claude-sonnet-4",
    keys: keys("secondary", 2),
    contextWindow: 200_000,
    price: { inputPerMillion: 3, outputPerMillion: 15 },
    policy: {
      attemptTimeout: "10 seconds",
      retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
      circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
    },
    ...(fallbackProbe === undefined ? {} : { probe: fallbackProbe })
  },
  {
    name: TERTIARY,
    provider: "openai",
    baseUrl: "https://api.deepseek.com/v1",
    model: "deepseek-chat",
    keys: keys("tertiary", 1),
    contextWindow: 64_000,
    price: { inputPerMillion: 0.27, outputPerMillion: 1.1 },
    policy: {
      attemptTimeout: "15 seconds",
      retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
      circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
    },
    ...(fallbackProbe === undefined ? {} : { probe: fallbackProbe })
  }
]

const clientConfig = (primaryPolicy: Policy, fallbackProbe?: ClientConfig.Deployment["probe"]): ClientConfig.ClientConfig => ({
  deployments: deployments(primaryPolicy, fallbackProbe),
  cascade: [PRIMARY, SECONDARY, TERTIARY],
  // One request never makes more than 4 provider calls, nor waits more than 30 s.
  maxAttemptsPerRequest: 4,
  deadline: "30 seconds",
  // A request answered degraded (static reply, stale cache) is answered again by a model once one is back
  // (rule 32): room for a few minutes of traffic, 16 at once, trying for about 4 minutes each.
  completeLater: { capacity: 10_000, concurrency: 16 }
})

/** The primary's breaker where it fails outright: 5 failures in a row open it; two trials every 30 s. */
const outageBreaker: NonNullable<Policy["circuitBreaker"]> = {
  trigger: { kind: "consecutive", failures: 5 },
  openDuration: "30 seconds",
  permittedCallsInHalfOpen: 2
}

/** Identical questions are answered from the cache; an expired entry still answers when every provider fails. */
const extras: ResilientClient.Extras = {
  cache: { timeToLive: "10 minutes", maxEntries: 1_000, maxStale: "1 hour" }
}

/** The simulated deployments: healthy latencies, then the scenario's script on the primary. */
const providers = (
  primaryScript: FaultScript.Script,
  primaryExtra: Partial<SimulatedProviders.Deployment> = {},
  fallbackScript: FaultScript.Script = [],
  secondaryScript: FaultScript.Script = fallbackScript
): ReadonlyArray<SimulatedProviders.Deployment> => [
  {
    name: PRIMARY,
    latency: FaultScript.lognormal(800, 2_400),
    // The provider's own gateway gives up after 30 s with a 504.
    serverTimeoutMs: 30_000,
    script: primaryScript,
    ...primaryExtra
  },
  { name: SECONDARY, latency: FaultScript.lognormal(900, 2_700), serverTimeoutMs: 30_000, script: secondaryScript },
  { name: TERTIARY, latency: FaultScript.lognormal(1_200, 3_600), serverTimeoutMs: 30_000, script: fallbackScript }
]

const clock = (ms: number): string => {
  const s = Math.round(ms / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
}

/**
 * Builds one scenario.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (name: Name, options: Options = {}): Drill.Scenario => {
  const scale = options.scale ?? 1
  const rateScale = options.rateScale ?? 1
  const min = (m: number) => m * 60_000 * scale
  const rate = (r: number) => r * rateScale
  switch (name) {
    case "provider-outage": {
      const duration = min(180)
      const outage = { from: min(30), to: min(150) }
      return {
        name,
        description: `3 providers, ${rate(50)} req/s for ${clock(duration)}; ${PRIMARY} fully down (503) ${clock(outage.from)}–${
          clock(outage.to)
        }`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(50), repeatShare: 0.05 },
        providers: providers([{ _tag: "Outage", ...outage, error: "unavailable" }]),
        incident: { deployment: PRIMARY, ...outage, description: "outage" },
        client: clientConfig({
          // Well above the p99 (2.4 s): a timeout only cuts calls that would not come back.
          attemptTimeout: "10 seconds",
          // One quick retry on another key; a second failure goes to the next deployment.
          retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
          // 5 failures in a row open it (0.1 s at 50 req/s); a trial every 30 s while the outage lasts.
          circuitBreaker: outageBreaker
        }),
        extras
      }
    }
    case "flash-sale": {
      const duration = min(60)
      const sale = { from: min(20), to: min(40) }
      return {
        name,
        description: `traffic ${rate(5)} → ${rate(75)} req/s (15x) ${clock(sale.from)}–${clock(sale.to)}; ${PRIMARY}'s median latency 0.8 s → 15 s, 504 after 30 s`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(5), surges: [{ ...sale, factor: 15 }], repeatShare: 0.05 },
        providers: providers([{ _tag: "Latency", ...sale, latency: FaultScript.lognormal(15_000, 60_000) }]),
        incident: { deployment: PRIMARY, ...sale, description: "slowdown under a traffic surge" },
        client: clientConfig({
          // The p99 is 2.4 s in normal times: a 4 s attempt is a failed attempt.
          attemptTimeout: "4 seconds",
          // Retrying a slow provider only adds load to it: fall back instead.
          retry: false,
          // Open on the failure or slow-call rate of the last 20 s, once 20 calls are in.
          circuitBreaker: {
            trigger: {
              kind: "failure-rate",
              window: { kind: "time", duration: "20 seconds", buckets: 10 },
              threshold: 0.5,
              minimumCalls: 20,
              slowCallRateThreshold: 0.5
            },
            slowCallDuration: "3 seconds",
            openDuration: "30 seconds",
            permittedCallsInHalfOpen: 5
          }
          // No bulkhead set: the adaptive limit (the default, rule 29) learns what the primary keeps up with,
          // and sheds the excess to the fallbacks as soon as the slowdown shows.
        }),
        extras,
        sheddingTargets: true
      }
    }
    case "rate-limit-storm": {
      const duration = min(30)
      const storm = { from: min(10), to: min(20) }
      return {
        name,
        description: `${rate(20)} req/s for ${clock(duration)}; ${PRIMARY} answers 429 (Retry-After 10 s) to 60 % of calls ${
          clock(storm.from)
        }–${clock(storm.to)}`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(20), repeatShare: 0.05 },
        providers: providers([{ _tag: "RateLimitStorm", ...storm, rate: 0.6, retryAfterMs: 10_000 }]),
        incident: { deployment: PRIMARY, ...storm, description: "429 storm" },
        client: clientConfig({
          attemptTimeout: "10 seconds",
          // A 429's Retry-After binds its key only: retry at once on another key; wait for none longer than 2 s.
          retry: { maxRetries: 2, baseDelay: "100 millis", maxDelay: "1 second", maxRetryAfter: "2 seconds" },
          // 429s are the key pool's business, not the breaker's (it ignores them).
          circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
        }),
        extras
      }
    }
    case "key-revoked": {
      const duration = min(30)
      const at = min(10)
      return {
        name,
        description: `${rate(20)} req/s for ${clock(duration)}; key primary-2 of ${PRIMARY} revoked (401) at ${clock(at)}`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(20), repeatShare: 0.05 },
        providers: providers([{ _tag: "KeyRevoked", keyName: "primary-2", at }]),
        incident: { deployment: PRIMARY, from: at, to: duration, description: "key revoked" },
        client: clientConfig({
          attemptTimeout: "10 seconds",
          // A 401 is not retried: the pool disables the key and the request falls back once.
          retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
          circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
        }),
        extras
      }
    }
    case "flapping": {
      const duration = min(40)
      const flaps = { from: min(5), to: min(35) }
      // The fault's shape is not scaled: a shorter run has fewer flaps, each as long as in the full run.
      const downMs = 20_000
      const upMs = 20_000
      return {
        name,
        description: `${rate(20)} req/s for ${clock(duration)}; ${PRIMARY} alternates ${downMs / 1000} s down, ${upMs / 1000} s up ${
          clock(flaps.from)
        }–${clock(flaps.to)}`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(20), repeatShare: 0.05 },
        providers: providers([{ _tag: "Flapping", ...flaps, downMs, upMs, error: "unavailable" }]),
        incident: { deployment: PRIMARY, ...flaps, description: "flapping" },
        client: clientConfig({
          attemptTimeout: "10 seconds",
          retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
          // The open period grows while trials keep failing, 50 s → 100 s → 2 min, and starts over at 50 s when
          // the breaker closes. 50 s is not a multiple of the 40 s flap, so trials fall in down phases more often
          // than not: the breaker closes on about one flap in four (a fixed 30 s closed and reopened on every flap,
          // a fixed 2 minutes is three flaps exactly and never let the primary serve until the flapping ended),
          // and the primary is back at most 2 minutes after the flapping ends.
          circuitBreaker: {
            trigger: { kind: "consecutive", failures: 5 },
            openDuration: { initial: "50 seconds", factor: 2, max: "2 minutes" },
            permittedCallsInHalfOpen: 3
          }
        }),
        extras
      }
    }
    case "all-down": {
      const duration = min(30)
      const outage = { from: min(10), to: min(15) }
      return {
        name,
        description: `${rate(20)} req/s for ${clock(duration)}; every provider down (503) ${clock(outage.from)}–${
          clock(outage.to)
        }: static replies and stale cache entries, completed later by a model`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(20), repeatShare: 0.05 },
        providers: providers(
          [{ _tag: "Outage", ...outage, error: "unavailable" }],
          {},
          [{ _tag: "Outage", ...outage, error: "unavailable" }]
        ),
        incident: { deployment: PRIMARY, ...outage, description: "outage of every provider" },
        client: clientConfig({
          attemptTimeout: "10 seconds",
          retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
          circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
        }),
        extras
      }
    }
    case "stream-faults": {
      const duration = min(20)
      const before = { from: min(4), to: min(8) }
      const mid = { from: min(8), to: min(12) }
      const cut = { from: min(12), to: min(16) }
      return {
        name,
        description: `${rate(10)} req/s for ${clock(duration)}, half of them streamed; 30 % of ${PRIMARY}'s streams stall before the first token ${
          clock(before.from)
        }–${clock(before.to)}, stall after 8 chunks ${clock(mid.from)}–${clock(mid.to)}, are cut after 6 chunks ${clock(cut.from)}–${
          clock(cut.to)
        }`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(10), repeatShare: 0.05, streamShare: 0.5 },
        providers: providers(
          [
            { _tag: "StreamStall", ...before, rate: 0.3, afterChunks: 1 },
            { _tag: "StreamStall", ...mid, rate: 0.3, afterChunks: 8 },
            { _tag: "StreamStall", ...cut, rate: 0.3, afterChunks: 6, as: "cut" }
          ],
          // The transport gives up on a silent stream after 10 s (HttpProviders' stallTimeout, set below its 30 s default).
          { stallTimeoutMs: 10_000 }
        ),
        incident: { deployment: PRIMARY, from: before.from, to: cut.to, description: "stream faults" },
        client: clientConfig({
          // Bounds a stream until its first content (rule 28): the p99 is 2.4 s, a silent 4 s is a failed attempt.
          attemptTimeout: "4 seconds",
          retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
          circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
        }),
        extras
      }
    }
    case "primary-hang": {
      const duration = min(4)
      const hang = { from: min(1), to: min(3) }
      // Issue 17's setup: an API that answers in 60 ms (p99 0.12 s), 50 req/s, a 2.5 s attempt timeout.
      const fast = FaultScript.lognormal(60, 120)
      return {
        name,
        description: `${rate(50)} req/s for ${clock(duration)}, every provider answering in 60 ms (p99 0.12 s); ${PRIMARY} hangs (no answer) ${
          clock(hang.from)
        }–${clock(hang.to)}`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(50), repeatShare: 0.05 },
        providers: providers([{ _tag: "Outage", ...hang, error: "hang" }]).map((p) => ({ ...p, latency: fast })),
        incident: { deployment: PRIMARY, ...hang, description: "hang" },
        client: clientConfig({
          // 20 times the p99: only a call that will not come back is cut.
          attemptTimeout: "2.5 seconds",
          retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
          // As in provider-outage: 5 timeouts in a row open it; two trials every 30 s.
          circuitBreaker: outageBreaker
          // No bulkhead set: the adaptive limit (the default, rule 29) is what keeps calls from piling up on the
          // hung primary before the breaker has seen 5 timeouts.
        }),
        extras,
        sheddingTargets: true
      }
    }
    case "cold-fallback": {
      const duration = min(5)
      const revokedAt = min(5 / 60)
      const outage = { from: min(0.5), to: min(4) }
      return {
        name,
        description: `${rate(20)} req/s for ${clock(duration)}; both keys of ${SECONDARY} revoked (401) at ${clock(revokedAt)}, ${PRIMARY} down (503) ${
          clock(outage.from)
        }–${clock(outage.to)}; with and without health probes`,
        durationMs: duration,
        traffic: { ratePerSecond: rate(20), repeatShare: 0.05 },
        providers: providers(
          [{ _tag: "Outage", ...outage, error: "unavailable" }],
          {},
          [],
          [{ _tag: "KeyRevoked", keyName: "secondary-1", at: revokedAt }, { _tag: "KeyRevoked", keyName: "secondary-2", at: revokedAt }]
        ),
        incident: { deployment: PRIMARY, ...outage, description: "outage" },
        client: clientConfig(
          {
            attemptTimeout: "10 seconds",
            retry: { maxRetries: 1, baseDelay: "100 millis", maxDelay: "1 second" },
            circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "30 seconds" }
          },
          // The fallbacks are asked for their model list every 10 s while idle (the default is every 30 s): a key
          // revoked at 0:05 is known before 0:30. Scaled with the run, so a shortened run still probes before its outage.
          { every: `${Math.max(100, Math.round(10_000 * scale))} millis` }
        ),
        extras,
        deadFallback: SECONDARY,
        stacks: ["protected", "protected-no-probes"]
      }
    }
  }
}

/**
 * Every scenario, in drill order.
 *
 * @since 0.1.0
 * @category constructors
 */
export const all = (options: Options = {}): ReadonlyArray<Drill.Scenario> => names.map((n) => make(n, options))

/**
 * @since 0.1.0
 * @category guards
 */
export const isName = (s: string): s is Name => (names as ReadonlyArray<string>).includes(s)
