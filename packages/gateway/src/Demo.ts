/**
 * The demo: the gateway in front of chaos upstreams on loopback, so a
 * newcomer can watch a fallback with `curl` and no provider account.
 *
 * - Two simulated providers from the testkit's `ChaosUpstream`, on
 *   127.0.0.1: `primary`, spoken to in OpenAI's format, and `backup`, in
 *   Anthropic's (a fallback crosses providers, and the answer still comes
 *   back in OpenAI's format). Each has one key, known to the demo only.
 * - Models `primary` (falls back to `backup`) and `backup`; aliases
 *   `gpt-4o-mini` → `primary`, `claude-haiku` → `backup`.
 * - No client authentication.
 * - `POST /admin/outage` makes a deployment fail (`{"deployment":"primary",
 *   "seconds":60,"kind":"unavailable"}`, every field optional, those are the
 *   defaults; `kind` is a `FaultScript.FailureKind`, or `rate-limit`: a 429
 *   storm, every call refused with `Retry-After: 5`); `DELETE /admin/outage`
 *   ends every outage. The primary's breaker opens after 3 failures in a
 *   row and tries again after 10 s.
 * - `/dashboard` has buttons for those, and with `traffic` the demo asks its
 *   own gateway that many questions a second (the CLI: 5), so the page has
 *   something to show.
 *
 * @since 0.1.0
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { Errors } from "@resilient-ai/core"
import * as ChaosUpstream from "@resilient-ai/testkit/ChaosUpstream"
import * as FaultScript from "@resilient-ai/testkit/FaultScript"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Gateway from "./Gateway.js"
import * as GatewayConfig from "./GatewayConfig.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Demo {
  readonly gateway: Gateway.Service
  readonly chaos: ChaosUpstream.Service
}

/** The demo's provider keys: the chaos upstream checks them; they exist nowhere else. */
const demoKeys = new Map([["DEMO_PRIMARY_KEY", "sk-demo-primary"], ["DEMO_BACKUP_KEY", "sk-demo-backup"]])

const OutageRequest = Schema.Struct({
  deployment: Schema.optionalWith(Schema.Literal("primary", "backup"), { default: () => "primary" as const }),
  seconds: Schema.optionalWith(Schema.Number.pipe(Schema.positive()), { default: () => 60 }),
  kind: Schema.optionalWith(
    Schema.Literal("unavailable", "overloaded", "gateway-timeout", "connection", "hang", "malformed", "rate-limit"),
    { default: () => "unavailable" as const }
  )
})

const adminRoutes = (chaos: ChaosUpstream.Service): HttpRouter.HttpRouter =>
  HttpRouter.empty.pipe(
    HttpRouter.post(
      "/admin/outage",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const text = yield* Effect.orElseSucceed(request.text, () => "")
        const json = yield* Effect.try((): unknown => (text.trim() === "" ? {} : JSON.parse(text))).pipe(Effect.option)
        const outage = json._tag === "None" ? undefined : Schema.decodeUnknownOption(OutageRequest)(json.value)
        if (outage === undefined || outage._tag === "None") {
          return HttpServerResponse.unsafeJson(
            { error: "expected {\"deployment\":\"primary\"|\"backup\",\"seconds\":N,\"kind\":\"unavailable\"|...}" },
            { status: 400 }
          )
        }
        const { deployment, seconds, kind } = outage.value
        const fault: FaultScript.Fault = kind === "rate-limit"
          ? { _tag: "RateLimitStorm", from: 0, to: seconds * 1000, rate: 1, retryAfterMs: 5_000 }
          : { _tag: "Outage", from: 0, to: seconds * 1000, error: kind }
        yield* Effect.orDie(chaos.setScript(deployment, [fault], { from: "now" }))
        return HttpServerResponse.unsafeJson({ outage: { deployment, seconds, kind } })
      })
    ),
    HttpRouter.del(
      "/admin/outage",
      Effect.as(
        Effect.orDie(Effect.all([chaos.setScript("primary", []), chaos.setScript("backup", [])])),
        HttpServerResponse.unsafeJson({ outage: null })
      )
    )
  )

/**
 * Questions to the gateway at `perSecond`, each on a fiber of its own so a
 * slow answer does not slow the next; answers and failures alike are
 * dropped (the dashboard shows them). The loop's children end with it.
 */
const traffic = (url: string, perSecond: number): Effect.Effect<never> => {
  const ask = HttpClientRequest.post(`${url}/v1/chat/completions`).pipe(
    HttpClientRequest.bodyUnsafeJson({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] })
  )
  const pause = Duration.millis(1000 / perSecond)
  return Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const once = Effect.ignore(Effect.scoped(Effect.flatMap(client.execute(ask), (response) => response.text)))
    return yield* Effect.forever(Effect.zipRight(Effect.fork(once), Effect.sleep(pause)))
  }).pipe(Effect.provide(FetchHttpClient.layer))
}

/**
 * The demo's configuration for chaos upstreams at these base URLs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const config = (chaos: ChaosUpstream.Service): Effect.Effect<GatewayConfig.GatewayConfig, Errors.InvalidConfigError> =>
  GatewayConfig.decode({
    deployments: [
      {
        name: "primary",
        provider: "openai",
        model: "demo-gpt",
        baseUrl: chaos.openAiBaseUrl("primary"),
        keys: [{ name: "primary-key", env: "DEMO_PRIMARY_KEY" }],
        probe: false,
        policy: {
          attemptTimeout: "5 seconds",
          retry: { maxRetries: 1, baseDelay: "100 millis" },
          circuitBreaker: { trigger: { kind: "consecutive", failures: 3 }, openDuration: "10 seconds" }
        }
      },
      {
        name: "backup",
        provider: "anthropic",
        model: "demo-claude",
        baseUrl: chaos.anthropicBaseUrl("backup"),
        keys: [{ name: "backup-key", env: "DEMO_BACKUP_KEY" }],
        policy: { attemptTimeout: "5 seconds", retry: { maxRetries: 1, baseDelay: "100 millis" } }
      }
    ],
    cascade: ["primary", "backup"],
    gateway: { aliases: { "gpt-4o-mini": "primary", "claude-haiku": "backup" }, shutdownTimeout: "5 seconds" }
  })

/**
 * Starts the chaos upstreams and the gateway in front of them; both stop
 * with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (
  options: {
    readonly port?: number
    /** Requests a second the demo sends to its own gateway (`gpt-4o-mini`, not streamed). Default 0. */
    readonly traffic?: number
  } = {}
): Effect.Effect<Demo, Errors.InvalidConfigError | HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const chaos = yield* ChaosUpstream.make({
      deployments: [
        {
          name: "primary",
          latency: FaultScript.uniform(150, 300),
          errorLatency: FaultScript.fixed(20),
          script: [],
          stream: { chunks: 12, interChunk: FaultScript.fixed(60) },
          keys: { "primary-key": "sk-demo-primary" }
        },
        {
          name: "backup",
          latency: FaultScript.uniform(250, 400),
          errorLatency: FaultScript.fixed(20),
          script: [],
          stream: { chunks: 12, interChunk: FaultScript.fixed(60) },
          keys: { "backup-key": "sk-demo-backup" }
        }
      ]
    })
    const gatewayConfig = yield* config(chaos)
    const gateway = yield* Gateway.start({
      config: gatewayConfig,
      ...(options.port === undefined ? {} : { port: options.port }),
      extraRoutes: adminRoutes(chaos),
      dashboardControls: true
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(demoKeys)))
    if (options.traffic !== undefined && options.traffic > 0) yield* Effect.forkScoped(traffic(gateway.url, options.traffic))
    return { gateway, chaos }
  })
