/**
 * The gateway's configuration file: a `ClientConfig` (deployments, keys by
 * environment variable, policies, the cascade) plus a `gateway` section, in
 * JSON or YAML.
 *
 * ```yaml
 * deployments:
 *   - { name: primary, provider: openai, model: gpt-4o, keys: [{ name: main, env: OPENAI_API_KEY }] }
 *   - { name: backup, provider: anthropic, model: claude-sonnet-4-5, keys: [{ name: main, env: ANTHROPIC_API_KEY }] }
 * cascade: [primary, backup]
 * gateway:
 *   port: 8080
 *   gatewayKeys: [{ name: team-a, env: GATEWAY_KEY_TEAM_A }]
 *   aliases: { gpt-4o: primary }
 * ```
 *
 * Rules:
 * - The client part is decoded by `ClientConfig`'s own Schema, unchanged; the
 *   `gateway` section by {@link GatewaySection}. A bad file fails at start
 *   with one `InvalidConfigError` listing every bad field of both parts, by
 *   path (`deployments.0.model`, `gateway.port`).
 * - **Models.** Each public model name is a cascade of deployments. By
 *   default every deployment is a model: the main `cascade` from that
 *   deployment on (so `primary` falls back to `backup`), or the deployment
 *   alone when it is not in the cascade. `gateway.models` replaces that list.
 * - **Aliases** map another name (`gpt-4o`) to a model; an alias to an
 *   unknown model is a config error.
 * - **Gateway keys** are read like provider keys: each names the environment
 *   variable holding it, read as `Redacted` (see `GatewayAuth`). None: no
 *   client authentication.
 *
 * @since 0.1.0
 */
import { Errors } from "@resilient-ai/core"
import * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { readFile } from "node:fs/promises"
import * as Yaml from "yaml"

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

// `ClientConfig` keeps its duration schema private; this is the same rule (milliseconds or "30 seconds").
const DurationData = Schema.declare(
  (u: unknown): u is Duration.DurationInput =>
    (typeof u === "number" && u >= 0 && Number.isFinite(u)) ||
    (typeof u === "string" && Option.isSome(Duration.decodeUnknown(u))),
  { identifier: "Duration", message: () => `expected a duration such as "30 seconds" or a number of milliseconds` }
)

const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, {
    message: () => "expected a name of letters, digits and . _ : / - (it appears in logs and /status)"
  })
)

const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "expected an integer above zero" }))

/**
 * The `gateway` section.
 *
 * @since 0.1.0
 * @category schemas
 */
export const GatewaySection = Schema.Struct({
  /** Default 8080; 0 takes a free port. */
  port: opt(Schema.Int.pipe(Schema.between(0, 65535, { message: () => "expected a port from 0 to 65535" }))),
  /** Default "127.0.0.1". */
  host: opt(Schema.NonEmptyTrimmedString),
  /** A request body above this many bytes is refused with 413. Default 4 MiB. */
  maxBodyBytes: opt(PositiveInt),
  /**
   * Client keys, each read from its environment variable; `requestsPerMinute`
   * limits the requests of that key, `spendLimit` the money its requests may
   * spend per window (`{ usd: 5, per: "1 day" }`): a 429 with Retry-After
   * past either (see `ClientLimits`). None: no client authentication.
   */
  gatewayKeys: opt(Schema.Array(Schema.Struct({
    name: Name,
    env: Schema.NonEmptyTrimmedString,
    requestsPerMinute: opt(PositiveInt),
    spendLimit: opt(Schema.Struct({
      usd: Schema.Number.pipe(Schema.positive({ message: () => "expected an amount of USD above zero" })),
      per: DurationData
    }))
  }))),
  /** Public model name → its cascade (deployment names, in order). Default: see the module notes. */
  models: opt(Schema.Record({ key: Name, value: Schema.NonEmptyArray(Schema.String) })),
  /** Another name → a public model name. */
  aliases: opt(Schema.Record({ key: Schema.String, value: Schema.String })),
  /** Cache answers (fresh hits, single-flight, stale-if-error). Off unless set. */
  cache: opt(Schema.Struct({ timeToLive: opt(DurationData), maxEntries: opt(PositiveInt), maxStale: opt(DurationData) })),
  /** When set, a request every deployment failed is answered with the matching static reply instead of an error. */
  staticReplies: opt(Schema.Struct({
    intents: Schema.Array(Schema.Struct({
      name: Schema.String,
      keywords: opt(Schema.Array(Schema.String)),
      patterns: opt(Schema.Array(Schema.String)),
      reply: Schema.String
    })),
    defaultIntent: Schema.String
  })),
  /**
   * A client has this long to send its whole request (headers and body);
   * then it gets a 408 and its connection is closed, so a slow-loris client
   * cannot hold a socket. Answers and streams are not bound by it. Default 30 seconds.
   */
  requestTimeout: opt(DurationData),
  /**
   * Keep the state of breakers, limiters, key health, retry budgets and the
   * gateway keys' limits on this Redis (`@resilient-ai/redis`'s `RedisStore`):
   * gateways on one Redis (and one `redisPrefix`) open one breaker together
   * and share one rate and spend budget. Redis trouble degrades to local
   * state. Unset: in memory, this process only.
   */
  redisUrl: opt(Schema.String.pipe(Schema.pattern(/^rediss?:\/\/\S+$/, { message: () => "expected a redis:// or rediss:// URL" }))),
  /** Prepended to every Redis key; gateways that share state use the same one. Default "resilient-ai:". */
  redisPrefix: opt(Schema.NonEmptyTrimmedString),
  /** How long a state operation waits for Redis before it proceeds on local state. Default 50 millis. */
  redisOperationTimeout: opt(DurationData),
  /** In-flight requests and streams may finish for this long after SIGTERM. Default 10 seconds. */
  shutdownTimeout: opt(DurationData)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface GatewaySection extends Schema.Schema.Type<typeof GatewaySection> {}

/**
 * A decoded file: the client's configuration, the gateway section, and the
 * public models resolved to their cascades.
 *
 * @since 0.1.0
 * @category models
 */
export interface GatewayConfig {
  readonly client: ClientConfig.ClientConfig
  readonly gateway: GatewaySection
  /** Public model name → cascade, in the order `/v1/models` lists them. */
  readonly models: ReadonlyArray<readonly [string, ReadonlyArray<string>]>
  /** Alias → public model name. */
  readonly aliases: Readonly<Record<string, string>>
}

/**
 * @since 0.1.0
 * @category defaults
 */
export const defaults = {
  port: 8080,
  host: "127.0.0.1",
  maxBodyBytes: 4 * 1024 * 1024,
  shutdownTimeout: "10 seconds",
  requestTimeout: "30 seconds"
} as const

type Problem = { readonly path: string; readonly detail: string }

const problemsOf = (e: Errors.InvalidConfigError, prefix: string): ReadonlyArray<Problem> =>
  (e.problems ?? [{ path: e.path, detail: e.detail }]).map((p) => ({
    path: prefix === "" ? p.path : p.path === "" ? prefix : `${prefix}.${p.path}`,
    detail: p.detail
  }))

const invalid = (problems: ReadonlyArray<Problem>): Errors.InvalidConfigError => {
  const first = problems[0] ?? { path: "", detail: "invalid configuration" }
  return new Errors.InvalidConfigError({
    component: "Gateway",
    path: first.path,
    detail: first.detail,
    ...(problems.length > 1 ? { problems } : {})
  })
}

/** The default public models: each deployment, with the rest of the cascade after it. */
const defaultModels = (client: ClientConfig.ClientConfig): ReadonlyArray<readonly [string, ReadonlyArray<string>]> =>
  client.deployments.map((d) => {
    const at = client.cascade.indexOf(d.name)
    return [d.name, at < 0 ? [d.name] : client.cascade.slice(at)] as const
  })

/** Names the models and aliases refer to must exist. */
const crossCheck = (client: ClientConfig.ClientConfig, gateway: GatewaySection): ReadonlyArray<Problem> => {
  const deployments = new Set(client.deployments.map((d) => d.name))
  const problems: Array<Problem> = []
  for (const [model, cascade] of Object.entries(gateway.models ?? {})) {
    for (const [i, name] of cascade.entries()) {
      if (!deployments.has(name)) problems.push({ path: `gateway.models.${model}.${i}`, detail: `no deployment is named "${name}"` })
    }
  }
  const models = new Set(gateway.models === undefined ? deployments : Object.keys(gateway.models))
  for (const [alias, target] of Object.entries(gateway.aliases ?? {})) {
    if (!models.has(target)) problems.push({ path: `gateway.aliases.${alias}`, detail: `no model is named "${target}"` })
  }
  return problems
}

/**
 * Decodes a parsed file (an object with the `ClientConfig` fields and an
 * optional `gateway` section). Every bad field of both parts is reported.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (input: unknown): Effect.Effect<GatewayConfig, Errors.InvalidConfigError> =>
  Effect.gen(function*() {
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      return yield* Effect.fail(invalid([{ path: "", detail: "expected an object with deployments, cascade and gateway" }]))
    }
    const { gateway: section, ...rest } = input as Record<string, unknown>
    const client = yield* Effect.either(ClientConfig.decode(rest))
    const gateway = Schema.decodeUnknownEither(GatewaySection, { errors: "all", onExcessProperty: "error" })(section ?? {})
    const problems: Array<Problem> = []
    if (Either.isLeft(client)) problems.push(...problemsOf(client.left, ""))
    if (Either.isLeft(gateway)) problems.push(...problemsOf(Errors.invalidConfig("Gateway", gateway.left), "gateway"))
    if (Either.isRight(client) && Either.isRight(gateway)) problems.push(...crossCheck(client.right, gateway.right))
    if (problems.length > 0 || Either.isLeft(client) || Either.isLeft(gateway)) return yield* Effect.fail(invalid(problems))
    const models = gateway.right.models === undefined
      ? defaultModels(client.right)
      : Object.entries(gateway.right.models).map(([name, cascade]) => [name, cascade] as const)
    return { client: client.right, gateway: gateway.right, models, aliases: gateway.right.aliases ?? {} }
  })

/**
 * Parses a JSON or YAML text (YAML is a superset of JSON; a file named
 * `.json` is read as strict JSON), then {@link decode}s it.
 *
 * @since 0.1.0
 * @category decoding
 */
export const parse = (text: string, format: "json" | "yaml" = "yaml"): Effect.Effect<GatewayConfig, Errors.InvalidConfigError> =>
  Effect.flatMap(
    Effect.try({
      try: (): unknown => (format === "json" ? JSON.parse(text) : Yaml.parse(text)),
      catch: (e) => invalid([{ path: "", detail: `not valid ${format === "json" ? "JSON" : "YAML"}: ${e instanceof Error ? e.message : String(e)}` }])
    }),
    decode
  )

/**
 * Reads and decodes a config file; `.json` files as JSON, any other as YAML.
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromFile = (path: string): Effect.Effect<GatewayConfig, Errors.InvalidConfigError> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (e) => invalid([{ path: "", detail: `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}` }])
    }),
    (text) => parse(text, path.endsWith(".json") ? "json" : "yaml")
  )

/**
 * The public model a request's `model` names, through an alias if it is one.
 *
 * @since 0.1.0
 * @category routing
 */
export const resolveModel = (config: GatewayConfig, model: string): string | undefined => {
  const target = config.aliases[model] ?? model
  return config.models.some(([name]) => name === target) ? target : undefined
}

/**
 * The `Extras` of every `ResilientClient` the gateway builds.
 *
 * @since 0.1.0
 * @category decoding
 */
export const clientExtras = (gateway: GatewaySection) => ({
  ...(gateway.cache === undefined ? {} : { cache: gateway.cache }),
  ...(gateway.staticReplies === undefined ? {} : { staticReplies: gateway.staticReplies })
})
