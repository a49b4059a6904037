/**
 * The resilient client's configuration as data: deployments (provider, base
 * URL, model, keys, limits, price, policies) and the cascade order.
 *
 * It decodes from JSON (a file) or from effect `Config`, and a bad value
 * fails at start with `InvalidConfigError` naming the field
 * (`deployments.1.policy.circuitBreaker.trigger.threshold`). Keys are never in
 * the file: each key names the environment variable that holds it, read as
 * `Redacted` through effect's `ConfigProvider`.
 *
 * @since 0.1.0
 */
import { Errors, StaticReply } from "@resilient-ai/core"
import type { KeyPool, Policy } from "@resilient-ai/core"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Secrets from "./internal/secrets.js"
import * as Schema from "effect/Schema"
import { readFile } from "node:fs/promises"
import type * as HttpProviders from "./HttpProviders.js"
import type * as HttpTransport from "./HttpTransport.js"

/** A duration as `Duration.DurationInput` data: milliseconds, or a string such as `"30 seconds"`. */
const DurationData = Schema.declare(
  (u: unknown): u is Duration.DurationInput =>
    (typeof u === "number" && u >= 0 && Number.isFinite(u)) ||
    (typeof u === "string" && Option.isSome(Duration.decodeUnknown(u))),
  { identifier: "Duration", message: () => `expected a duration such as "30 seconds" or a number of milliseconds` }
)

/** A time limit that must let something happen: `0` or `"-5 seconds"` would fail every call. */
const PositiveDurationData = DurationData.pipe(
  Schema.filter((d) => Duration.toMillis(Duration.decode(d)) > 0 || "expected a duration above zero")
)

const noLimit = (u: unknown): u is "infinity" | "Infinity" => u === "infinity" || u === "Infinity"
const isDurationData = Schema.is(DurationData)
const limitMessage = `expected a duration such as "30 seconds", a number of milliseconds, or "infinity" for no limit`

/**
 * A limit that may be off: a duration, or no limit as `"infinity"` (JSON has
 * no `Infinity`; effect's `Duration.format` writes it `"Infinity"`, also
 * accepted) or the number `Infinity` from code, as `Duration.decode` takes
 * it. Decoded to `Infinity` milliseconds, and encoded back to `"infinity"`,
 * so a config survives JSON both ways.
 */
const LimitData = Schema.transform(
  Schema.declare(
    (u: unknown): u is Duration.DurationInput | "infinity" | "Infinity" =>
      isDurationData(u) || noLimit(u) || u === Number.POSITIVE_INFINITY,
    { identifier: "Limit", message: () => limitMessage }
  ),
  Schema.declare(
    (u: unknown): u is Duration.DurationInput => isDurationData(u) || u === Number.POSITIVE_INFINITY,
    { identifier: "Limit", message: () => limitMessage }
  ),
  {
    strict: true,
    decode: (input) => (noLimit(input) ? Number.POSITIVE_INFINITY : input),
    encode: (limit) => (limit === Number.POSITIVE_INFINITY ? "infinity" as const : limit)
  }
)

const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, {
    message: () => "expected a name of letters, digits and . _ : / - (it appears in metrics and logs)"
  })
)
const NonNegative = Schema.Number.pipe(Schema.nonNegative({ message: () => "expected a number of 0 or more" }))
const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "expected an integer above zero" }))
const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

/** An open duration that grows: `initial · factor^(n−1)` for the n-th consecutive opening, at most `max`. */
const GrowingDuration = Schema.Struct({
  initial: DurationData,
  factor: opt(Schema.Number.pipe(Schema.greaterThanOrEqualTo(1, { message: () => "expected a factor of 1 or more" }))),
  max: DurationData
})

const RetryData = Schema.Struct({
  maxRetries: opt(Schema.Number),
  baseDelay: opt(DurationData),
  factor: opt(Schema.Number),
  maxDelay: opt(LimitData),
  jitter: opt(
    Schema.Union(
      Schema.Literal("none", "full", "equal", "decorrelated"),
      Schema.Struct({ kind: Schema.Literal("proportional"), min: Schema.Number, max: Schema.Number })
    )
  ),
  maxRetryAfter: opt(LimitData)
})

const TriggerData = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("consecutive"), failures: Schema.Number }),
  Schema.Struct({
    kind: Schema.Literal("failure-rate"),
    window: Schema.Union(
      Schema.Struct({ kind: Schema.Literal("count"), size: Schema.Number }),
      Schema.Struct({ kind: Schema.Literal("time"), duration: DurationData, buckets: opt(Schema.Number) })
    ),
    threshold: Schema.Number,
    minimumCalls: opt(Schema.Number),
    slowCallRateThreshold: opt(Schema.Number)
  })
)

const PolicyData = Schema.Struct({
  totalTimeout: opt(DurationData),
  attemptTimeout: opt(DurationData),
  retry: opt(Schema.Union(Schema.Literal(false), RetryData)),
  retryBudget: opt(
    Schema.Union(
      Schema.Literal(false),
      Schema.Struct({ ratio: opt(Schema.Number), minRetriesPerSecond: opt(Schema.Number), window: opt(DurationData) })
    )
  ),
  circuitBreaker: opt(
    Schema.Union(
      Schema.Literal(false),
      Schema.Struct({
        trigger: opt(TriggerData),
        /** A duration, or one that grows with each consecutive opening: `{ initial, factor?, max }`. */
        openDuration: opt(Schema.Union(DurationData, GrowingDuration)),
        permittedCallsInHalfOpen: opt(Schema.Number),
        maxHalfOpenDuration: opt(LimitData),
        slowCallDuration: opt(DurationData),
        countUpstreamRateLimit: opt(Schema.Boolean)
      })
    )
  ),
  rateLimiter: opt(
    Schema.Struct({ requestsPerMinute: opt(Schema.Number), tokensPerMinute: opt(Schema.Number), maxWait: opt(LimitData) })
  ),
  /**
   * Default `{ adaptive: {} }`: a limit that learns what the provider keeps
   * up with (rule 29). A fixed limit instead, or `false` for none.
   */
  bulkhead: opt(
    Schema.Union(
      Schema.Literal(false),
      Schema.Struct({ maxConcurrent: Schema.Number, maxQueue: opt(Schema.Number), maxQueueWait: opt(LimitData) }),
      Schema.Struct({
        adaptive: Schema.Struct({
          initialLimit: opt(Schema.Number),
          minLimit: opt(Schema.Number),
          maxLimit: opt(Schema.Number),
          window: opt(DurationData),
          slowFactor: opt(Schema.Number),
          backoff: opt(Schema.Number),
          saturation: opt(Schema.Number),
          workBase: opt(Schema.Number),
          initialHangAfter: opt(DurationData),
          /** Default 100 ms: no latency shorter is judged a hang or a slow window (a process's stall is not congestion). */
          minJudgedLatency: opt(DurationData),
          /**
           * How long a call over the limit waits for a slot on the cascade's last deployment (earlier ones refuse it
           * at once, so the next deployment takes it). Default: as long as a call may run before it counts as hung.
           */
          maxQueueWait: opt(LimitData)
        })
      })
    )
  )
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const KeyRef = Schema.Struct({
  /** Shown in logs, errors, metrics and /status instead of the key. */
  name: Name,
  /** The environment variable holding the key. */
  env: Schema.NonEmptyTrimmedString,
  weight: opt(PositiveInt),
  /** The account or project whose quota the key shares. */
  group: opt(Schema.String),
  /** The rate limit the key shares (one organisation, one relay): a 429 cools the whole group. */
  rateLimitGroup: opt(Name)
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const Deployment = Schema.Struct({
  name: Name,
  provider: Schema.Literal("openai", "anthropic"),
  /** Default: the provider's public API. OpenAI-compatible relays, DeepSeek, OpenRouter, vLLM set theirs. */
  baseUrl: opt(Schema.String.pipe(Schema.pattern(/^https?:\/\/[^\s]+$/, { message: () => "expected an http(s) URL" }))),
  /** Send the caller's trace context (`traceparent`, `b3`) to this provider. Default false. */
  propagateTrace: opt(Schema.Boolean),
  /** Headers of this deployment's requests (a relay's own header, an organisation id). Never logged. */
  headers: opt(Schema.Record({ key: Schema.String, value: Schema.String })),
  model: Schema.NonEmptyTrimmedString,
  keys: Schema.Array(KeyRef),
  keyStrategy: opt(Schema.Literal("round-robin", "weighted")),
  /** Share one key pool (and its health) between deployments of one account. Default: the deployment's name. */
  keyPool: opt(Name),
  /** How the key pool learns (see `KeyPool.Options`): cooldowns, parking, the wait for a key. */
  keyHealth: opt(Schema.Struct({
    rateLimitCooldown: opt(DurationData),
    failuresBeforeCooldown: opt(Schema.Number),
    failureCooldown: opt(DurationData),
    quotaResetAfter: opt(DurationData),
    waitForKey: opt(LimitData)
  })),
  /** Prompt plus answer tokens the model accepts. */
  contextWindow: opt(PositiveInt),
  capabilities: opt(
    Schema.Struct({ tools: opt(Schema.Boolean), vision: opt(Schema.Boolean), streaming: opt(Schema.Boolean) })
  ),
  /** USD per million tokens. */
  price: opt(Schema.Struct({ inputPerMillion: NonNegative, outputPerMillion: NonNegative })),
  policy: opt(PolicyData),
  /**
   * Health probes while the deployment is idle (rule 30): `false` for none.
   * Default: on for every deployment of the cascade but its first.
   * `kind`: `models` asks for the model list (default), `completion` for a
   * 1-token answer.
   */
  probe: opt(Schema.Union(
    Schema.Literal(false),
    Schema.Struct({
      every: opt(DurationData),
      idleFor: opt(DurationData),
      maxPerMinute: opt(PositiveInt),
      kind: opt(Schema.Literal("models", "completion"))
    })
  ))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Deployment extends Schema.Schema.Type<typeof Deployment> {}

/**
 * USD for `inputTokens` in and `outputTokens` out at a deployment's price
 * (0 without a price): estimates before a call and costs after it.
 *
 * @since 0.1.0
 * @category pricing
 */
export const costUsd = (
  price: Deployment["price"],
  inputTokens: number,
  outputTokens: number
): number =>
  price === undefined ? 0 : (inputTokens * price.inputPerMillion + outputTokens * price.outputPerMillion) / 1_000_000

/**
 * How a stream that fails after its first chunk is handled.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MidStreamPolicy = Schema.Literal("terminate", "restart-if-no-output", "continue-with-prefix")

/**
 * The HTTP transport's time limits (`HttpTransport.Options`,
 * `HttpProviders.Options`), for every deployment.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Transport = Schema.Struct({
  /** Establishing the TCP/TLS connection. Default 10 s. */
  connectTimeout: opt(PositiveDurationData),
  /** Until the response headers arrive (the model's thinking time included). Default 60 s. */
  firstByteTimeout: opt(PositiveDurationData),
  /** A stream's first content chunk, from the response headers. Default 30 s. */
  firstTokenTimeout: opt(PositiveDurationData),
  /** The longest gap between two stream chunks. Default 30 s. */
  stallTimeout: opt(PositiveDurationData)
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const ClientConfig = Schema.Struct({
  deployments: Schema.NonEmptyArray(Deployment),
  /** Deployment names, tried in this order (the cost cascade: expensive first, cheaper after). */
  cascade: Schema.NonEmptyArray(Schema.String),
  /**
   * Deployments that take over a `ContextLengthError`, tried in order, each
   * only if its context window is larger than the one that refused. Default:
   * every deployment with a larger window, smallest first.
   */
  contextFallback: opt(Schema.Array(Schema.String)),
  /** The request's money ceiling: no attempt (first try, retry or fallback) may pass it. */
  maxCostUsdPerRequest: opt(NonNegative),
  /** Calls to providers one request may make, across retries, keys and fallbacks. */
  maxAttemptsPerRequest: opt(PositiveInt),
  /** The request's deadline across everything. */
  deadline: opt(DurationData),
  midStreamPolicy: opt(MidStreamPolicy),
  /**
   * A step of the cascade with a later step to go to gives up on a
   * Retry-After or a wait for a key longer than this, and the next step
   * answers now (rule 25). Default 1 second; "infinity": always wait.
   */
  maxWaitBeforeFallback: opt(LimitData),
  /** Answer tokens assumed for a cost estimate when the request sets no max. Default 1024. */
  defaultMaxOutputTokens: opt(PositiveInt),
  /**
   * Default true: a timeout or a connection lost after sending falls back to
   * the next deployment, so a request may be paid once by each provider it
   * reached. `false`: it fails there instead (rule 31). A request's
   * `ChatOptions.fallbackAfterTimeout` wins.
   */
  fallbackAfterTimeout: opt(Schema.Boolean),
  /**
   * Queue each request answered degraded (static reply, stale cache) and
   * complete it later with a real model (rule 32). Present, even empty:
   * on. Callbacks and a schedule of your own go in the client's `Extras`.
   */
  completeLater: opt(Schema.Struct({
    /** Requests the queue holds. Default 1 000. */
    capacity: opt(PositiveInt),
    /** Attempts per request, the first included. Default 10. */
    maxAttempts: opt(PositiveInt),
    /** Requests completed at once. Default 1. */
    concurrency: opt(PositiveInt),
    /** The first wait between attempts; it doubles each time. Default 1 s. */
    baseDelay: opt(DurationData),
    /** The longest wait between attempts. Default 1 minute. */
    maxDelay: opt(DurationData)
  })),
  /** Time limits of the HTTP transport (used by `ResilientHttp`'s layers). */
  transport: opt(Transport),
  /**
   * The intents and replies of `chatOrStatic` and `streamOrStatic` (see
   * `StaticReply.Options`). Default: `StaticReply.defaults`.
   */
  staticReplies: opt(StaticReply.OptionsSchema)
}).pipe(
  Schema.filter((c) => {
    const names = new Set<string>()
    for (const [i, d] of c.deployments.entries()) {
      if (names.has(d.name)) {
        return { path: ["deployments", i, "name"], message: `deployment "${d.name}" is defined twice` }
      }
      names.add(d.name)
    }
    for (const [i, n] of c.cascade.entries()) {
      if (!names.has(n)) return { path: ["cascade", i], message: `no deployment is named "${n}"` }
    }
    for (const [i, n] of (c.contextFallback ?? []).entries()) {
      if (!names.has(n)) return { path: ["contextFallback", i], message: `no deployment is named "${n}"` }
    }
    return true
  })
)

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientConfig extends Schema.Schema.Type<typeof ClientConfig> {}

const configError = (error: ParseResult.ParseError): Errors.InvalidConfigError =>
  Errors.invalidConfig("ResilientClient", error)

/**
 * Decodes a configuration object; a bad value names its field.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (input: unknown): Effect.Effect<ClientConfig, Errors.InvalidConfigError> =>
  Effect.mapError(Schema.decodeUnknown(ClientConfig, { errors: "all", onExcessProperty: "error" })(input), configError)

/**
 * Decodes a JSON text.
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromJson = (text: string): Effect.Effect<ClientConfig, Errors.InvalidConfigError> =>
  Effect.flatMap(
    Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: (e) =>
        new Errors.InvalidConfigError({
          component: "ResilientClient",
          path: "",
          detail: `not valid JSON: ${e instanceof Error ? e.message : String(e)}`
        })
    }),
    decode
  )

/**
 * Reads and decodes a JSON file.
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromFile = (path: string): Effect.Effect<ClientConfig, Errors.InvalidConfigError> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (e) =>
        new Errors.InvalidConfigError({
          component: "ResilientClient",
          path: "",
          detail: `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`
        })
    }),
    fromJson
  )

/**
 * Reads the JSON configuration from effect `Config` (by default the
 * `RESILIENT_AI_CONFIG` environment variable).
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromConfig = (
  config: Config.Config<string> = Config.string("RESILIENT_AI_CONFIG")
): Effect.Effect<ClientConfig, Errors.InvalidConfigError> =>
  Effect.flatMap(
    Effect.mapError(config, (e) =>
      new Errors.InvalidConfigError({ component: "ResilientClient", path: "", detail: `configuration not found: ${e.message}` })),
    fromJson
  )

/**
 * Reads the keys of a deployment from their environment variables (through
 * the current `ConfigProvider`), as `Redacted`.
 *
 * @since 0.1.0
 * @category keys
 */
export const resolveKeys = (
  deployment: Deployment,
  index: number
): Effect.Effect<ReadonlyArray<KeyPool.Key>, Errors.InvalidConfigError> =>
  Effect.forEach(deployment.keys, (ref, k) => {
    const refused = (why: string) =>
      new Errors.InvalidConfigError({
        component: "ResilientClient",
        path: `deployments.${index}.keys.${k}.env`,
        detail: `environment variable ${ref.env} (key "${ref.name}" of deployment "${deployment.name}") ${why}`
      })
    return Effect.flatMap(
      Effect.mapError(Config.redacted(ref.env), () => refused("is not set")),
      (key): Effect.Effect<KeyPool.Key, Errors.InvalidConfigError> =>
        // A variable set to nothing would send `Authorization: Bearer ` on every call: refused at start.
        Redacted.value(key).trim() === ""
          ? Effect.fail(refused("is set but empty"))
          : Effect.succeed(registered(key, {
            name: ref.name,
            key,
            ...(ref.weight === undefined ? {} : { weight: ref.weight }),
            ...(ref.group === undefined ? {} : { group: ref.group }),
            ...(ref.rateLimitGroup === undefined ? {} : { rateLimitGroup: ref.rateLimitGroup })
          }))
    )
  })

/** A key, once its value is known to the masking of provider texts (see internal/secrets.ts). */
const registered = <A>(key: Redacted.Redacted<string>, value: A): A => {
  Secrets.registerKey(key)
  return value
}

/**
 * The key pool options of a deployment, for `KeyPool.make`: its keys
 * (resolved with {@link resolveKeys}), named after the pool it may share.
 *
 * @since 0.1.0
 * @category policies
 */
export const keyPoolOptions = (deployment: Deployment, keys: KeyPool.Options["keys"]): KeyPool.Options => ({
  name: deployment.keyPool ?? deployment.name,
  keys,
  provider: deployment.provider,
  ...(deployment.keyStrategy === undefined ? {} : { strategy: deployment.keyStrategy }),
  ...deployment.keyHealth
})

/**
 * The policy options of a deployment, for `Policy.make`.
 *
 * @since 0.1.0
 * @category policies
 */
export const policyOptions = (deployment: Deployment): Omit<Policy.Options, "deployment"> => {
  const { bulkhead, circuitBreaker, ...policy } = deployment.policy ?? {}
  const base = {
    provider: deployment.provider,
    ...policy,
    ...(bulkhead === false ? {} : { bulkhead: bulkhead ?? { adaptive: {} } })
  }
  if (circuitBreaker === undefined) return base
  if (circuitBreaker === false) return { ...base, circuitBreaker: false }
  const { openDuration, ...breaker } = circuitBreaker
  if (openDuration === undefined) return { ...base, circuitBreaker: breaker }
  if (typeof openDuration !== "object" || !("initial" in openDuration)) {
    return { ...base, circuitBreaker: { ...breaker, openDuration } }
  }
  const initial = Duration.toMillis(Duration.decode(openDuration.initial))
  const max = Duration.toMillis(Duration.decode(openDuration.max))
  const factor = openDuration.factor ?? 2
  return {
    ...base,
    circuitBreaker: {
      ...breaker,
      openDuration: (opening: number) => Duration.millis(Math.min(max, initial * factor ** Math.max(0, opening - 1)))
    }
  }
}

/**
 * The options of `HttpTransport.layer` a configuration sets.
 *
 * @since 0.1.0
 * @category transport
 */
export const transportOptions = (config: ClientConfig): HttpTransport.Options =>
  config.transport?.connectTimeout === undefined ? {} : { connectTimeout: config.transport.connectTimeout }

/**
 * The options of `HttpProviders.layer` a configuration sets.
 *
 * @since 0.1.0
 * @category transport
 */
export const providerOptions = (config: ClientConfig): HttpProviders.Options => {
  const { connectTimeout: _, ...timeouts } = config.transport ?? {}
  return timeouts
}

/**
 * The deployments that take over a `ContextLengthError`, in the order they
 * are tried: `contextFallback` when it is set, else every deployment with a
 * `contextWindow`, smallest window first. Each one is tried only when its
 * window is larger than the one that refused ({@link takesOverContextLength}).
 *
 * @since 0.1.0
 * @category context window
 */
export const contextFallbackOrder = (config: ClientConfig): ReadonlyArray<Deployment> =>
  config.contextFallback !== undefined && config.contextFallback.length > 0
    ? config.contextFallback.flatMap((n) => config.deployments.filter((d) => d.name === n))
    : config.deployments
      .filter((d) => d.contextWindow !== undefined)
      .sort((a, b) => (a.contextWindow ?? 0) - (b.contextWindow ?? 0))

/**
 * Whether `deployment` takes over `error`: a `ContextLengthError` from a
 * deployment whose window (0 when unknown) is smaller than its own.
 *
 * @since 0.1.0
 * @category context window
 */
export const takesOverContextLength = (config: ClientConfig, deployment: Deployment) =>
(error: Errors.ResilienceError): boolean => {
  if (error._tag !== "ContextLengthError") return false
  const refused = config.deployments.find((d) => d.name === error.deployment)?.contextWindow ?? 0
  return (deployment.contextWindow ?? 0) > refused
}
