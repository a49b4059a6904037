/**
 * The gateway server: OpenAI-compatible routes over the resilient client,
 * on `@effect/platform`'s `HttpRouter` and `NodeHttpServer`.
 *
 * | route | auth | what |
 * | --- | --- | --- |
 * | `POST /v1/chat/completions` | yes | see `ChatCompletions` |
 * | `POST /v1/messages` | yes | the same in Anthropic's Messages format, see `Messages` |
 * | `GET /v1/models` | yes | the public models and aliases, OpenAI's list shape |
 * | `GET /status` | yes | deployments: breaker state and window counts, keys by name with health and cooldown end, limiters, bulkheads; the cache's size and counters |
 * | `GET /status/stream` | yes | the same, live, as server-sent events (see `StatusStream`) |
 * | `GET /dashboard` | no | a live page over `/status/stream` (see `Dashboard`); it holds no data itself |
 * | `GET /metrics` | yes | effect's metrics in the Prometheus text format |
 * | `GET /health` | no | liveness: 200 while the process serves |
 * | `GET /health/ready` | no | 200 while at least one deployment can serve, else 503 |
 *
 * "auth" applies only when gateway keys are configured (`GatewayAuth`);
 * health checks stay open for load balancers. A key may have a rate limit
 * and a spend limit (`ClientLimits`): past either, a 429 with Retry-After.
 *
 * **Shutdown.** When the gateway's scope closes (the CLI closes it on
 * SIGTERM or SIGINT), it stops accepting connections, lets the requests and
 * streams in flight finish for up to `gateway.shutdownTimeout`, then closes
 * the connections left, which interrupts their handlers and so their
 * upstream calls. The clients are closed after the server.
 *
 * @since 0.1.0
 */
import { AttemptEvents, Errors, StateStore, TaggedMetric } from "@resilient-ai/core"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpProviders from "@resilient-ai/llm/HttpProviders"
import * as HttpTransport from "@resilient-ai/llm/HttpTransport"
import type * as Provider from "@resilient-ai/llm/Provider"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as ChatCompletions from "./ChatCompletions.js"
import * as ClientLimits from "./ClientLimits.js"
import * as Dashboard from "./Dashboard.js"
import * as GatewayAuth from "./GatewayAuth.js"
import * as GatewayConfig from "./GatewayConfig.js"
import * as Health from "./Health.js"
import * as drain from "./internal/drain.js"
import * as Messages from "./Messages.js"
import * as ModelRoutes from "./ModelRoutes.js"
import * as OpenAiErrors from "./OpenAiErrors.js"
import * as Prometheus from "./Prometheus.js"
import * as StatusStream from "./StatusStream.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  readonly config: GatewayConfig.GatewayConfig
  /** Overrides `gateway.port` (the CLI's `--port`). */
  readonly port?: number
  /** Routes of the caller's own (the demo's `/admin/outage`), served beside the gateway's, without auth. */
  readonly extraRoutes?: HttpRouter.HttpRouter
  /** Buttons on `/dashboard` for the demo's `/admin/outage`. Default false. */
  readonly dashboardControls?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** `http://HOST:PORT`. */
  readonly url: string
  readonly port: number
  readonly models: ModelRoutes.Service
  /** Requests (and streams) being answered now. */
  readonly inFlight: () => number
  /** The feed of `/status/stream`. */
  readonly statusStream: StatusStream.Service
}

const requestsTotal = Metric.counter("resilient_ai_gateway_requests_total", {
  description: "HTTP requests answered by the gateway, by route and status",
  incremental: true
})

const requestsBy = TaggedMetric.taggedBy(requestsTotal, ["route", "status"])

const counted = (route: string) =>
<E, R>(self: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.tap(self, (response) => Metric.increment(requestsBy(route, String(response.status))))

/** The routes of the gateway. */
const router = (
  options: ChatCompletions.Options,
  auth: GatewayAuth.Service,
  limits: ClientLimits.Service,
  extra: HttpRouter.HttpRouter | undefined,
  live: { readonly stream: StatusStream.Service; readonly dashboard: HttpServerResponse.HttpServerResponse }
) => {
  const guarded = <E, R>(
    self: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
    refuse: (reply: OpenAiErrors.ErrorReply) => HttpServerResponse.HttpServerResponse = ChatCompletions.errorResponse
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest> =>
    !auth.enabled ? self : Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const name = auth.authenticate(request.headers)
      if (name === undefined) {
        const presented = GatewayAuth.presentedKey(request.headers) !== undefined
        return Effect.succeed(refuse(OpenAiErrors.unauthorized(presented)))
      }
      return Effect.matchEffect(limits.admit(name), {
        onFailure: (reply) => Effect.succeed(refuse(reply)),
        onSuccess: (charge) => Effect.provideService(self, ClientLimits.Spend, charge)
      })
    })

  const states = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.map(Health.read(options.models.deployments, now), (states) => ({ now, states })))

  const models = Effect.map(Clock.currentTimeMillis, (now) =>
    HttpServerResponse.unsafeJson({
      object: "list",
      data: options.models.names.map((id) => ({ id, object: "model", created: Math.floor(now / 1000), owned_by: "resilient-ai" }))
    }))

  const cacheStatus = options.models.client.cacheStatus ?? Effect.succeed(null)
  const status = Effect.zipWith(states, cacheStatus, ({ now, states }, cache) =>
    HttpServerResponse.unsafeJson({
      ready: Health.isReady(states, now),
      at: new Date(now).toISOString(),
      models: options.models.routes.map((r) => ({ model: r.model, cascade: r.cascade })),
      deployments: options.models.deployments.flatMap((h) => {
        const state = states.find((s) => s.name === h.config.name)
        return state === undefined ? [] : [Health.toJson(h, state, now)]
      }),
      // Null when no cache is configured.
      cache
    }))

  const ready = Effect.map(states, ({ now, states }) => {
    const ok = Health.isReady(states, now)
    return HttpServerResponse.unsafeJson(
      { status: ok ? "ready" : "unavailable", canServe: states.filter((s) => s.servesFrom <= now).map((s) => s.name) },
      { status: ok ? 200 : 503 }
    )
  })

  const metrics = Effect.map(Prometheus.scrape, (text) =>
    HttpServerResponse.text(text, { contentType: Prometheus.contentType }))

  const routes = HttpRouter.empty.pipe(
    HttpRouter.post("/v1/chat/completions", counted("/v1/chat/completions")(guarded(ChatCompletions.handler(options)))),
    HttpRouter.post("/v1/messages", counted("/v1/messages")(guarded(Messages.handler(options), Messages.errorResponse))),
    HttpRouter.get("/v1/models", counted("/v1/models")(guarded(models))),
    HttpRouter.get("/status", guarded(status)),
    HttpRouter.get("/status/stream", guarded(Effect.succeed(live.stream.response))),
    HttpRouter.get("/dashboard", Effect.succeed(live.dashboard)),
    HttpRouter.get("/metrics", guarded(metrics)),
    HttpRouter.get("/health", Effect.succeed(HttpServerResponse.unsafeJson({ status: "ok" }))),
    HttpRouter.get("/health/ready", ready)
  )
  return (extra === undefined ? routes : HttpRouter.concat(routes, extra)).pipe(
    Effect.catchTag("RouteNotFound", (e) =>
      Effect.succeed(
        (e.request.url.startsWith("/v1/messages") ? Messages.errorResponse : ChatCompletions.errorResponse)(
          OpenAiErrors.notFound(e.request.method, e.request.url)
        )
      ))
  )
}

/**
 * Starts the gateway; it stops, gracefully, with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<
  Service,
  Errors.InvalidConfigError | HttpServerError.ServeError,
  Provider.Providers | StateStore.StateStore | Scope.Scope
> =>
  Effect.gen(function*() {
    const { config } = options
    const section = config.gateway
    const keys = yield* GatewayAuth.resolveKeys(section.gatewayKeys ?? [])
    const auth = GatewayAuth.make(keys)
    const limits = yield* ClientLimits.make(keys)
    // The policies publish their attempts and transitions here (the caller's feed if it gave one): the status stream reads them.
    const events = yield* Effect.flatMap(
      Effect.serviceOption(AttemptEvents.AttemptEvents),
      (given) => given._tag === "Some" ? Effect.succeed(given.value) : AttemptEvents.make()
    )
    const models = yield* Effect.provideService(ModelRoutes.make(config), AttemptEvents.AttemptEvents, events)
    const statusStream = yield* StatusStream.make({ deployments: models.deployments, events })
    const app = router(
      {
        models,
        maxBodyBytes: section.maxBodyBytes ?? GatewayConfig.defaults.maxBodyBytes,
        staticReplies: section.staticReplies !== undefined
      },
      auth,
      limits,
      options.extraRoutes,
      { stream: statusStream, dashboard: Dashboard.response({ controls: options.dashboardControls ?? false }) }
    )

    const requestTimeout = Duration.toMillis(Duration.decode(section.requestTimeout ?? GatewayConfig.defaults.requestTimeout))
    // Node checks these timeouts every `connectionsCheckingInterval` (30 s by default): as often as they need.
    const nodeServer = Http.createServer({
      requestTimeout,
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(requestTimeout / 4)))
    })
    // Counted before the platform's own handler sees the request (listeners run in order).
    const tracker = drain.track(nodeServer)
    const server = yield* NodeHttpServer.make(() => nodeServer, {
      port: options.port ?? section.port ?? GatewayConfig.defaults.port,
      host: section.host ?? GatewayConfig.defaults.host,
      // Node's default of 511 drops the connections of a burst beyond it (SYN retries: seconds of delay).
      backlog: 4096
    })
    // Untraced: the gateway exports no traces, so the spans of every request, attempt and upstream call would be made
    // only to be dropped.
    yield* Effect.provideService(server.serve(app), AttemptEvents.AttemptEvents, events).pipe(Effect.withTracerEnabled(false))
    // Added after `serve`, so it runs before `serve` unhooks the handler: requests in flight finish first.
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(
        tracker.drain(section.shutdownTimeout ?? GatewayConfig.defaults.shutdownTimeout),
        ({ cut }) => cut === 0 ? Effect.logInfo("gateway stopped") : Effect.logWarning(`gateway stopped; ${cut} requests cut at the deadline`)
      )
    )
    // Runs before the drain (finalizers run last first): an open status stream is not a request to wait for.
    yield* Effect.addFinalizer(() => statusStream.close)
    const address = server.address
    const port = address._tag === "TcpAddress" ? address.port : 0
    const host = address._tag === "TcpAddress" ? address.hostname : "127.0.0.1"
    return { url: `http://${host}:${port}`, port, models, inFlight: tracker.inFlight, statusStream }
  })

/**
 * The state store of a gateway section: `RedisStore` on its `redisUrl` (the
 * URL kept `Redacted`: it may hold a password), else the in-memory store.
 * `@resilient-ai/redis` is an optional peer, loaded only when `redisUrl` is
 * set: a gateway without Redis does not need ioredis installed. Without it,
 * the layer fails with a config error naming `gateway.redisUrl`.
 *
 * @since 0.1.0
 * @category layers
 */
export const stateStoreLayer = (
  section: GatewayConfig.GatewaySection
): Layer.Layer<StateStore.StateStore, Errors.InvalidConfigError> => {
  const url = section.redisUrl
  if (url === undefined) return StateStore.layerMemory
  return Layer.unwrapEffect(Effect.map(
    Effect.tryPromise({
      try: () => import("@resilient-ai/redis/RedisStore"),
      catch: (e) =>
        new Errors.InvalidConfigError({
          component: "Gateway",
          path: "gateway.redisUrl",
          detail: `needs @resilient-ai/redis installed beside the gateway: ${e instanceof Error ? e.message : String(e)}`
        })
    }),
    (RedisStore) =>
      RedisStore.layer({
        url: Redacted.make(url),
        ...(section.redisPrefix === undefined ? {} : { prefix: section.redisPrefix }),
        ...(section.redisOperationTimeout === undefined ? {} : { operationTimeout: section.redisOperationTimeout })
      }).pipe(Layer.mapError((e) => Errors.withConfigPaths(e, () => "gateway.redisUrl", "Gateway")))
  ))
}

/**
 * What {@link make} needs, for a gateway of its own: the HTTP providers over
 * undici (proxies from the environment), and the state store of the config
 * ({@link stateStoreLayer}).
 *
 * @since 0.1.0
 * @category layers
 */
export const defaultDependencies = (
  transport: HttpTransport.Options = {},
  section: GatewayConfig.GatewaySection = {}
): Layer.Layer<Provider.Providers | StateStore.StateStore, Errors.InvalidConfigError> =>
  Layer.merge(Layer.provide(HttpProviders.layer(), HttpTransport.layer(transport)), stateStoreLayer(section))

/**
 * {@link make} with {@link defaultDependencies}, built in the same scope: the
 * providers' connections (and Redis's) close after the server has drained.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (
  options: Options,
  transport: HttpTransport.Options = {}
): Effect.Effect<Service, Errors.InvalidConfigError | HttpServerError.ServeError, Scope.Scope> =>
  Effect.flatMap(
    Layer.build(defaultDependencies(transport, options.config.gateway)),
    (context) => Effect.provide(make(options), context)
  )
