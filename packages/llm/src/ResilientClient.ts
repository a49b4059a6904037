/**
 * The resilient LLM client: what an Effect application imports to call LLMs
 * safely.
 *
 * Configured with deployments (provider, model, keys, policies, price) and a
 * cascade order, it answers a chat request through, outermost first:
 *
 * ```
 * response cache (fresh hit, single-flight, stale-if-error)
 *   → fallback chain over the cascade (each step: that deployment's Policy)
 *     → context-window fallback (a ContextLengthError goes to a larger window only)
 * ```
 *
 * Before a deployment is tried the request is checked against its
 * capabilities (tools, vision, context window) and the request's price
 * ceiling; an incompatible deployment is skipped with a reason, not called.
 * The request is then transformed for the target (its model; another
 * provider's fields stripped). The whole request draws from one budget
 * (attempts, deadline, money).
 *
 * The cascade is data, so its steps are built per request from the config
 * with `Fallback`'s combinators: a config-driven chain cannot have the
 * static per-step error types of a chain written in code, so its error type
 * is the whole taxonomy; `chatOrStatic` closes it with a static reply.
 * With `completeLater`, a degraded answer (static, stale cache) is queued
 * and completed later by a model (`CompleteLater`, rule 32).
 *
 * @since 0.1.0
 */
import {
  AttemptEvents,
  Deadline,
  Errors,
  Fallback,
  type HealthProbe,
  KeyPool,
  Policy,
  RequestBudget,
  ResponseCache,
  Retry,
  StateStore,
  StaticReply,
  TaggedMetric
} from "@resilient-ai/core"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Chunk from "effect/Chunk"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Chat from "./Chat.js"
import * as Chunks from "./Chunks.js"
import * as ClientConfig from "./ClientConfig.js"
import * as CompleteLater from "./CompleteLater.js"
import * as DeploymentPolicies from "./DeploymentPolicies.js"
import * as DeploymentProbe from "./DeploymentProbe.js"
import { firstProblem } from "./internal/requestProblems.js"
import { scopedStream } from "./internal/scopedStream.js"
import * as Provider from "./Provider.js"
import * as StreamGuard from "./StreamGuard.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatOptions {
  /** A session or prompt-prefix hash: keeps the call on one healthy key (the provider's prompt cache). */
  readonly affinity?: string
  /**
   * Default true. A request marked `false` is not retried on the same
   * deployment once the upstream may have started work on it (a timeout
   * after sending, a connection lost mid-request), so that deployment is
   * never paid twice; refused connections, 429s and 5xx answers are still
   * retried. The fallback chain still takes such an error to the next
   * deployment, so the request may be paid once by each provider it
   * reached: add `fallbackAfterTimeout: false` to stop there
   * (docs/semantics.md rule 31).
   */
  readonly idempotent?: boolean
  /**
   * Default true (or the config's `fallbackAfterTimeout`). `false`: after an
   * error that may have left the upstream working on the request (a
   * timeout, a connection lost after sending) the chain does not go on to
   * the next deployment; the request fails with that error (`chatOrStatic`
   * answers with a static reply). With `idempotent: false` the request is
   * never paid twice.
   */
  readonly fallbackAfterTimeout?: boolean
  /**
   * The deployments to try for this request (rule 35), in order, in place of the
   * config's `cascade` (names of configured deployments): one client then
   * serves several public models, each with a cascade of its own, over one
   * set of breakers, key pools and bulkheads. The response cache keys on the
   * request, whose `model` is among its fields: give each cascade its own
   * `model` name (the gateway sends the public model name) so that answers
   * of one cascade do not answer another's requests.
   */
  readonly cascade?: ReadonlyArray<string>
}

/**
 * A deployment that was not called for a request, and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface Skipped {
  readonly deployment: string
  readonly reason: string
}

/**
 * The answer and how it came about.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChatResult {
  readonly response: Chat.ChatResponse
  readonly source: Fallback.Source
  readonly deployment: string | undefined
  readonly keyName: string | undefined
  /** Calls that reached a provider, across retries, keys and fallbacks. */
  readonly attempts: number
  readonly latencyMs: number
  readonly usage: Chat.Usage | undefined
  readonly costUsd: number
  readonly fallbacks: ReadonlyArray<Fallback.FallbackTaken>
  readonly errors: ReadonlyArray<RequestBudget.MetError>
  readonly skipped: ReadonlyArray<Skipped>
  /** For an answer from the cache: milliseconds since it was stored. */
  readonly ageMs: number | undefined
  /** A degraded answer (static, stale cache) with `completeLater` on: its completion's request id, and whether it was queued. */
  readonly completion?: CompleteLater.Ticket
}

/**
 * Who is answering a stream, known when its first chunk reaches the caller
 * (before the stream ends, so a server can send it as headers).
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamStart {
  readonly source: Fallback.Source
  readonly deployment: string | undefined
  readonly keyName: string | undefined
  /** Calls that reached a provider up to the first chunk, across retries, keys and fallbacks. */
  readonly attempts: number
  /** The fallbacks taken up to the first chunk. */
  readonly fallbacks: ReadonlyArray<Fallback.FallbackTaken>
}

/**
 * A stream that has started: who answers, and its chunks from the first on.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartedStream {
  readonly start: StreamStart
  readonly chunks: Stream.Stream<Chat.ChatChunk, Errors.ResilienceError>
  /**
   * The request's result (usage, cost, attempts) once the stream has ended;
   * its failure if it broke. With `continue-with-prefix`, a stream cut and
   * continued elsewhere has the continuation's result: the usage and cost of
   * the request that finished the answer (the cut part's are not known).
   */
  readonly result: Effect.Effect<ChatResult, Errors.ResilienceError>
}

/**
 * One configured deployment, for status pages.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeploymentHandle {
  readonly config: ClientConfig.Deployment
  readonly policy: Policy.Service
  /** None for a keyless deployment (self-hosted vLLM or Ollama, a relay with its own auth). */
  readonly keyPool: KeyPool.Service | undefined
  readonly provider: Provider.Provider
  /** Its health probe, when it has one (rule 30). */
  readonly probe: HealthProbe.Service | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly chat: (request: Chat.ChatRequest, options?: ChatOptions) => Effect.Effect<ChatResult, Errors.ResilienceError>
  /** `chat`, answered with a static reply (by intent) when everything else failed. */
  readonly chatOrStatic: (request: Chat.ChatRequest, options?: ChatOptions) => Effect.Effect<ChatResult>
  /**
   * A streamed answer through the same cascade. Until the first content
   * chunk an attempt is an ordinary attempt (retried, counted by the breaker,
   * fallen back from); after it the configured mid-stream policy decides
   * (`midStreamPolicy`): `terminate` and `restart-if-no-output` fail with
   * `StreamInterruptedError`, `continue-with-prefix` asks the next deployment
   * to continue the partial answer. Never a silently truncated or mixed answer.
   */
  readonly stream: (request: Chat.ChatRequest, options?: ChatOptions) => Stream.Stream<Chat.ChatChunk, Errors.ResilienceError>
  /**
   * `stream`, waited on up to its first chunk: succeeds with who answers and
   * the chunks (the first among them) or fails with what ended the request
   * before any chunk. The stream lives in the scope.
   */
  readonly streamStarted: (
    request: Chat.ChatRequest,
    options?: ChatOptions
  ) => Effect.Effect<StartedStream, Errors.ResilienceError, Scope.Scope>
  /**
   * `stream`, answered with the static reply (by intent) as a stream when it
   * fails before any chunk reached the caller. After a chunk it fails as
   * `stream` does: a static reply appended to a partial answer would be a
   * mixed answer.
   */
  readonly streamOrStatic: (
    request: Chat.ChatRequest,
    options?: ChatOptions
  ) => Stream.Stream<Chat.ChatChunk, Errors.ResilienceError>
  readonly deployments: ReadonlyArray<DeploymentHandle>
  readonly config: ClientConfig.ClientConfig
  /** The response cache's counters and size, when the client caches. */
  readonly cacheStatus: Effect.Effect<ResponseCache.Status> | undefined
  /** The completions of degraded answers (rule 32), with `completeLater` in the config or the extras. */
  readonly completeLater: CompleteLater.Service | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ResilientClient extends Context.Tag("@resilient-ai/llm/ResilientClient")<ResilientClient, Service>() {}

/**
 * What the client adds to the configuration in code.
 *
 * @since 0.1.0
 * @category options
 */
export interface Extras {
  /** Cache answers (fresh hits, single-flight, stale-if-error). Off unless set. */
  readonly cache?: {
    readonly timeToLive?: Duration.DurationInput
    readonly maxEntries?: number
    readonly maxStale?: Duration.DurationInput
  }
  /** Intents and replies for `chatOrStatic` and `streamOrStatic`, over the config's `staticReplies`. Default: `StaticReply.defaults`. */
  readonly staticReplies?: StaticReply.Options
  /** Complete degraded answers later (rule 32); over the config file's `completeLater`. Off unless one is set. */
  readonly completeLater?: CompleteLater.Options
}

const requests = Metric.counter("resilient_ai_requests_total", {
  description: "chat requests answered, by source (primary, backup-key, fallback-provider, cache, stale-cache, static, failed)",
  incremental: true
})
const requestLatency = Metric.histogram(
  "resilient_ai_request_latency_ms",
  MetricBoundaries.exponential({ start: 25, factor: 2, count: 14 }),
  "latency of chat requests in milliseconds"
)
const tokens = Metric.counter("resilient_ai_tokens_total", {
  description: "tokens used, by deployment and direction (input, output)",
  incremental: true
})
const cost = Metric.counter("resilient_ai_cost_usd_total", {
  description: "estimated money spent, USD, by deployment"
})

const requestsBySource = TaggedMetric.taggedBy(requests, ["source"])
const tokensBy = TaggedMetric.taggedBy(tokens, ["deployment", "direction"])
const costBy = TaggedMetric.taggedBy(cost, ["deployment"])

/** The clock of the running fiber, read without an op. */
const nowOf = (fiber: { readonly currentDefaultServices: Context.Context<Clock.Clock> }): number =>
  Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()

/** The cache key fields of a neutral chat request: everything that changes the answer. */
const cacheFields: ReadonlyArray<string> = [
  "model",
  "system",
  "messages",
  "tools",
  "toolChoice",
  "parallelToolCalls",
  "maxTokens",
  "temperature",
  "topP",
  "stop"
]

/**
 * A rough prompt size: ~4 characters a token, plus a little per message.
 * Used for limits and estimates only.
 *
 * @since 0.1.0
 * @category estimates
 */
export const estimatePromptTokens = (request: Chat.ChatRequest): number => {
  const text = (content: Chat.Content | undefined): number =>
    content === undefined
      ? 0
      : typeof content === "string"
      ? content.length
      : content.reduce((n, part) => n + (part._tag === "Text" ? part.text.length : 3000), 0)
  const system = request.system === undefined
    ? 0
    : typeof request.system === "string"
    ? request.system.length
    : request.system.reduce((n, p) => n + p.text.length, 0)
  const messages = request.messages.reduce(
    (n, m) =>
      n + 16 + (m.role === "assistant"
        ? (m.content === undefined ? 0 : text(m.content)) +
          (m.toolCalls === undefined ? 0 : m.toolCalls.reduce((k, c) => k + c.arguments.length + c.name.length, 0))
        : text(m.content)),
    0
  )
  const tools = request.tools === undefined || request.tools.length === 0 ? 2 : JSON.stringify(request.tools).length
  return Math.ceil((system + messages + tools) / 4)
}

const needsVision = (request: Chat.ChatRequest): boolean =>
  request.messages.some((m) =>
    m.role === "user" && typeof m.content !== "string" && m.content.some((p) => p._tag === "Image")
  )

const lastUserText = (request: Chat.ChatRequest): string => {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const m = request.messages[i]
    if (m?.role === "user") {
      return typeof m.content === "string"
        ? m.content
        : m.content.map((p) => (p._tag === "Text" ? p.text : "")).join(" ")
    }
  }
  return ""
}

/**
 * The request as the target deployment should see it: its model, and no
 * other provider's fields.
 *
 * @since 0.1.0
 * @category transformation
 */
export const transformFor = (request: Chat.ChatRequest, deployment: ClientConfig.Deployment): Chat.ChatRequest => {
  const keep = deployment.provider
  const strip = <T extends { readonly extra?: Chat.Extra | undefined }>(value: T): T => {
    if (value.extra === undefined) return value
    const own = value.extra[keep]
    const { extra: _, ...rest } = value
    return (own === undefined ? rest : { ...rest, extra: { [keep]: own } }) as T
  }
  const messages = request.messages.map((m) => {
    const message = strip(m)
    if (message.role === "assistant" || typeof message.content === "string") return message
    return { ...message, content: message.content.map((p) => strip(p)) }
  })
  return strip({ ...request, model: deployment.model, messages })
}

/**
 * How each attempt of a request makes its answer: `called` for `chat`, a
 * stream handed to its caller for `stream`. Everything else an attempt does
 * (policies, key feedback, budget, events, metrics) is the same code for both.
 */
interface Answering {
  readonly answer: (
    h: DeploymentHandle,
    target: Chat.ChatRequest,
    attempt: Policy.Attempt,
    taken: ReadonlyArray<Fallback.FallbackTaken>
  ) => Effect.Effect<Chat.ChatResponse, Errors.ResilienceError>
  /** A stream applies the attempt's time limit to its opening only (rule 28). */
  readonly streams: boolean
  /** Why `h` cannot answer this way, if it cannot. */
  readonly refuses: (h: DeploymentHandle) => string | undefined
}

/** Where a streamed request's attempts hand their chunks. */
interface Sink {
  readonly mailbox: Mailbox.Mailbox<Chat.ChatChunk, Errors.ResilienceError>
  /** Some chunk reached the caller: from then on the request is that stream's. */
  handedOn: boolean
  /** The stream that was handed on broke. */
  cut: Errors.StreamInterruptedError | undefined
  /** Who answers: set before the first chunk is offered. */
  start: StreamStart | undefined
  /** The key of each deployment's first attempt: an answer on another key is a backup key's. */
  readonly firstKeys: Map<string, string | undefined>
}

/** The rate-limit headers of an answer, told to the key pool before the answer is handed on. */
const feedback = (
  h: DeploymentHandle,
  key: KeyPool.PickedKey | undefined,
  rateLimit: Provider.RateLimitInfo | undefined
): Effect.Effect<void> =>
  rateLimit === undefined || key === undefined || h.keyPool === undefined ? Effect.void : h.keyPool.feedback(key.name, rateLimit)

const answersAll = (): undefined => undefined

/** The upstream may still be working on (and billing) the request: a timeout, a connection lost after sending. */
const mayHaveStartedWork = (e: Errors.ResilienceError): boolean =>
  (e._tag === "TimeoutError" || e._tag === "ConnectionError") && Retry.mayHaveStartedWork(e)

/** Which errors a step of the cascade hands to the next one (rule 31). */
const fallsBackAfterTimeout = (e: Errors.ResilienceError): e is Errors.ResilienceError => Errors.isFallbackable(e)
const fallsBackBeforeWork = (e: Errors.ResilienceError): e is Errors.ResilienceError =>
  Errors.isFallbackable(e) && !mayHaveStartedWork(e)
const fallsBackOn = (fallbackAfterTimeout: boolean) => fallbackAfterTimeout ? fallsBackAfterTimeout : fallsBackBeforeWork

const outputTokens = (response: Chat.ChatResponse): number | undefined => response.usage?.outputTokens
const totalTokens = (response: Chat.ChatResponse): number | undefined =>
  response.usage === undefined ? undefined : response.usage.inputTokens + response.usage.outputTokens

const called: Answering = {
  streams: false,
  refuses: answersAll,
  answer: (h, target, { key }) =>
    // One continuation for the key pool's feedback and the response (not a `tap` and a `map`).
    Effect.flatMap(
      h.provider.chat(target, { deployment: h.config.name, model: h.config.model, key: key?.key, keyName: key?.name }),
      (answer) => {
        const told = feedback(h, key, answer.rateLimit)
        return told === Effect.void ? Effect.succeed(answer.response) : Effect.as(told, answer.response)
      }
    )
}

const staticResponse = (reply: StaticReply.Reply): Chat.ChatResponse => ({
  id: `static-${reply.intent}`,
  model: "static",
  text: reply.text,
  toolCalls: [],
  finishReason: "stop"
})

/**
 * Builds the client: one key pool and one `Policy` per deployment (pools can
 * be shared by name), providers from the `Providers` service.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: ClientConfig.ClientConfig,
  extras: Extras = {}
): Effect.Effect<Service, Errors.InvalidConfigError, Provider.Providers | StateStore.StateStore | Scope.Scope> =>
  Effect.gen(function*() {
    const providers = yield* Provider.Providers
    /** When real traffic last reached each probed deployment (epoch ms). */
    const lastUsed = new Map<string, number>()
    const noteUse = (name: string) => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => void lastUsed.set(name, now)))
    const handles: Array<DeploymentHandle> = []
    for (const { config: d, index, keyPool, policy } of yield* DeploymentPolicies.make(config)) {
      const provider = providers.forTarget({
        name: d.name,
        kind: d.provider,
        baseUrl: d.baseUrl,
        model: d.model,
        propagateTrace: d.propagateTrace,
        headers: d.headers
      })
      const probe = yield* DeploymentProbe.make(config, index, {
        circuitBreaker: policy.circuitBreaker,
        keyPool,
        lastUsed: Effect.sync(() => lastUsed.get(d.name)),
        provider
      })
      handles.push({ config: d, policy, keyPool, provider, probe })
    }
    const byName = new Map(handles.map((h) => [h.config.name, h]))
    const cascade = config.cascade.flatMap((n) => {
      const h = byName.get(n)
      return h === undefined ? [] : [h]
    })
    const largerWindows = ClientConfig.contextFallbackOrder(config).flatMap((d) => {
      const h = byName.get(d.name)
      return h === undefined ? [] : [h]
    })
    /** A cascade and the request limits of its providers (OpenAI takes at most 4 stop sequences). */
    interface Route {
      readonly _tag: "Route"
      readonly handles: ReadonlyArray<DeploymentHandle>
      readonly limits: { readonly maxStopSequences: number | undefined }
    }
    const routeOf = (handles: ReadonlyArray<DeploymentHandle>): Route => ({
      _tag: "Route",
      handles,
      limits: { maxStopSequences: handles.some((h) => h.config.provider === "openai") ? 4 : undefined }
    })
    const configured = routeOf(cascade)
    // By the caller's array: a caller (the gateway) names the same few cascades on every request.
    const routes = new WeakMap<ReadonlyArray<string>, Route | Errors.BadRequestError>()
    /** The route of a request: the config's cascade, or the one its options name. */
    const routeFor = (options: ChatOptions): Route | Errors.BadRequestError => {
      const names = options.cascade
      if (names === undefined) return configured
      let route = routes.get(names)
      if (route === undefined) {
        const unknown = names.filter((n) => !byName.has(n))
        route = unknown.length > 0
          ? new Errors.BadRequestError({ detail: `no deployment is named ${unknown.map((n) => `"${n}"`).join(", ")}` })
          : names.length === 0
          ? new Errors.BadRequestError({ detail: "the cascade names no deployment" })
          : routeOf(names.flatMap((n) => {
            const h = byName.get(n)
            return h === undefined ? [] : [h]
          }))
        routes.set(names, route)
      }
      return route
    }

    const cache = extras.cache === undefined ? undefined : yield* Effect.mapError(
      ResponseCache.make<Chat.ChatRequest, Chat.ChatResponse>({ name: "chat", fields: cacheFields, ...extras.cache }),
      (e) => Errors.withConfigPaths(e, Errors.configPathUnder("cache"))
    )
    const replies = yield* (extras.staticReplies !== undefined || config.staticReplies === undefined
      ? StaticReply.make(extras.staticReplies)
      : Effect.mapError(StaticReply.make(config.staticReplies), (e) => Errors.withConfigPaths(e, Errors.configPathUnder("staticReplies"))))
    const defaultMaxOutput = config.defaultMaxOutputTokens ?? 1024
    const maxWaitBeforeFallback = config.maxWaitBeforeFallback === undefined
      ? 1_000
      : Duration.toMillis(Duration.decode(config.maxWaitBeforeFallback))

    const estimateCost = (d: ClientConfig.Deployment, promptTokens: number, maxOutput: number): number =>
      ClientConfig.costUsd(d.price, promptTokens, maxOutput)
    const actualCost = (d: ClientConfig.Deployment, usage: Chat.Usage | undefined): number | undefined =>
      d.price === undefined || usage === undefined ? undefined : priceOf(d, usage)

    /** Why `h` cannot serve `request`, if it cannot. */
    const incompatibility = (h: DeploymentHandle, request: Chat.ChatRequest, promptTokens: number): string | undefined => {
      const d = h.config
      if ((request.tools?.length ?? 0) > 0 && d.capabilities?.tools === false) return "does not support tools"
      if (needsVision(request) && d.capabilities?.vision !== true) return "does not support images"
      const maxOutput = request.maxTokens ?? defaultMaxOutput
      if (d.contextWindow !== undefined && promptTokens + (request.maxTokens ?? 0) > d.contextWindow) {
        return `context window ${d.contextWindow} is below the estimated ${promptTokens + (request.maxTokens ?? 0)} tokens`
      }
      const estimate = estimateCost(d, promptTokens, maxOutput)
      if (config.maxCostUsdPerRequest !== undefined && estimate > config.maxCostUsdPerRequest) {
        return `estimated cost ${estimate.toFixed(4)} USD is above the ceiling of ${config.maxCostUsdPerRequest} USD`
      }
      return undefined
    }

    const limits: RequestBudget.Limits = {
      ...(config.maxAttemptsPerRequest === undefined ? {} : { maxAttempts: config.maxAttemptsPerRequest }),
      ...(config.maxCostUsdPerRequest === undefined ? {} : { maxCostUsd: config.maxCostUsdPerRequest }),
      ...(config.deadline === undefined ? {} : { deadline: config.deadline })
    }

    /**
     * Runs the cascade for `request` and hands its result to `then` (the one map the chain's
     * answer goes through). `tracing` is the caller's `currentTracerEnabled`, read once per
     * request: the attempts run in fibers that inherit it, and nothing on the way sets it.
     * `answering` makes each attempt's answer: a call, or a stream handed on as it comes.
     */
    const runChain = <B>(
      request: Chat.ChatRequest,
      options: ChatOptions,
      tracing: boolean,
      answering: Answering,
      then: (result: ChatResult) => B
    ) =>
      Effect.suspend(() => {
        const promptTokens = estimatePromptTokens(request)
        const skipped: Array<Skipped> = []
        const taken: Array<Fallback.FallbackTaken> = []
        const keyOf = new Map<string, string | undefined>()
        const skip = (h: DeploymentHandle, reason: string) => {
          if (!skipped.some((s) => s.deployment === h.config.name)) skipped.push({ deployment: h.config.name, reason })
        }
        const eligible = (hs: ReadonlyArray<DeploymentHandle>) => {
          const able = hs.filter((h) => {
            const reason = incompatibility(h, request, promptTokens) ?? answering.refuses(h)
            if (reason !== undefined) skip(h, reason)
            return reason === undefined
          })
          // Rule 30: what the probes say only skips a deployment while another can be tried.
          const fit = able.filter((h) => h.probe?.unfit() === undefined)
          if (fit.length === 0) return able
          for (const h of able) {
            const unfit = h.probe?.unfit()
            if (unfit !== undefined) skip(h, `its health probe says it cannot serve: ${unfit}`)
          }
          return fit
        }

        const step = (h: DeploymentHandle, isFirst: boolean): Effect.Effect<Fallback.StepAnswer<Chat.ChatResponse>, Errors.ResilienceError> => {
          const d = h.config
          const target = transformFor(request, d)
          const maxOutput = request.maxTokens ?? defaultMaxOutput
          const detailed = h.policy.executeDetailed(
            (attempt) => {
              const call = answering.answer(h, target, attempt, taken)
              return tracing
                ? Effect.withSpan(call, "ResilientClient.attempt", {
                  attributes: { deployment: d.name, attempt: attempt.attempt, key: attempt.key?.name ?? "none" },
                  captureStackTrace: false
                })
                : call
            },
            {
              tokens: promptTokens + maxOutput,
              usage: totalTokens,
              work: outputTokens,
              estimatedCostUsd: estimateCost(d, promptTokens, maxOutput),
              costUsd: (r) => actualCost(d, r.usage),
              ...(options.affinity === undefined ? {} : { affinity: options.affinity }),
              ...(answering.streams ? { appliesTimeLimit: true } : {})
            }
          )
          // A probed deployment is probed only while idle: real traffic is noted.
          return (h.probe === undefined ? detailed : Effect.zipRight(noteUse(d.name), detailed)).pipe(
            // `mapError` and `map` in one continuation; the failure side reads the cause as `mapError` does.
            Effect.matchCauseEffect({
              onFailure: (cause): Effect.Effect<Fallback.StepAnswer<Chat.ChatResponse>, Errors.ResilienceError> => {
                const failure = Cause.failureOrCause(cause)
                if (Either.isRight(failure)) return Effect.failCause(failure.right)
                const e = failure.left
                // `failSync` of a pure function is `fail` of its value, two ops sooner.
                return Effect.fail<Errors.ResilienceError>(
                  e._tag === "ContextLengthError" && e.deployment === undefined
                    ? new Errors.ContextLengthError({ ...e, deployment: d.name })
                    : e
                )
              },
              onSuccess: (detailed) => {
                keyOf.set(d.name, detailed.keyName)
                return Effect.succeed<Fallback.StepAnswer<Chat.ChatResponse>>({
                  value: detailed.value,
                  step: d.name,
                  source: isFirst ? (detailed.backupKey ? "backup-key" : "primary") : "fallback-provider",
                  deployment: d.name,
                  ageMs: undefined
                })
              }
            })
          )
        }

        const route = routeFor(options)
        if (route._tag === "BadRequestError") return Effect.fail(route)
        const steps = eligible(route.handles)
        const first = steps[0]
        if (first === undefined) {
          return Effect.fail(
            new Errors.BadRequestError({
              detail: `no deployment can serve this request: ${skipped.map((s) => `${s.deployment} ${s.reason}`).join("; ")}`
            })
          )
        }
        // Rule 25: a step with a later step to go to does not sit out a long Retry-After or key wait.
        const beforeFallback = (self: ReturnType<typeof step>, hasNext: boolean) =>
          hasNext && maxWaitBeforeFallback !== Infinity ? Deadline.maxWait(maxWaitBeforeFallback)(self) : self
        let chain: Fallback.Chain<Chat.ChatResponse, Errors.ResilienceError, never> = Fallback.primaryAnswer(
          first.config.name,
          beforeFallback(step(first, true), steps.length > 1)
        )
        const fallsBack = fallsBackOn(options.fallbackAfterTimeout ?? config.fallbackAfterTimeout ?? true)
        for (let i = 1; i < steps.length; i++) {
          const h = steps[i]
          if (h === undefined) continue
          const hasNext = i < steps.length - 1
          chain = Fallback.orElseWhen(chain, h.config.name, fallsBack, () => beforeFallback(step(h, false), hasNext))
        }
        for (const h of largerWindows) {
          if (incompatibility(h, request, promptTokens) !== undefined || answering.refuses(h) !== undefined) continue
          const takesOver = ClientConfig.takesOverContextLength(config, h.config)
          chain = Fallback.orElseWhen(
            chain,
            h.config.name,
            (e: Errors.ResilienceError): e is Errors.ResilienceError => takesOver(e),
            () => step(h, false)
          )
        }
        return Effect.map(Fallback.run(chain, limits, taken), (answer) => then({
          response: answer.value,
          source: answer.source,
          deployment: answer.deployment,
          keyName: answer.deployment === undefined ? undefined : keyOf.get(answer.deployment),
          attempts: answer.attempts,
          latencyMs: answer.latencyMs,
          usage: answer.value.usage,
          costUsd: answer.costUsd,
          fallbacks: answer.fallbacks,
          errors: answer.errors,
          skipped,
          ageMs: answer.ageMs
        }))
      })

    const identity = (result: ChatResult): ChatResult => result

    const record = (result: ChatResult): void => {
      requestsBySource(result.source).unsafeUpdate(1, [])
      requestLatency.unsafeUpdate(result.latencyMs, [])
      recordSpend(result)
    }

    /** Tokens and money: also spent by a completion (rule 32), which is not a request of its own. */
    const recordSpend = (result: ChatResult): void => {
      const deployment = result.deployment ?? result.source
      if (result.usage !== undefined) {
        tokensBy(deployment, "input").unsafeUpdate(result.usage.inputTokens, [])
        tokensBy(deployment, "output").unsafeUpdate(result.usage.outputTokens, [])
      }
      if (result.costUsd > 0) costBy(deployment).unsafeUpdate(result.costUsd, [])
    }

    const notPaidTwice = Retry.retryOnly((e) => !Retry.mayHaveStartedWork(e))

    /** The answer to `request`, unrecorded: the chain, through the cache when there is one. */
    const respond = (
      fiber: { readonly currentDefaultServices: Context.Context<Clock.Clock> },
      request: Chat.ChatRequest,
      options: ChatOptions,
      tracing: boolean,
      answering: Answering = called
    ): Effect.Effect<ChatResult, Errors.ResilienceError> => {
      if (options.idempotent === false) return notPaidTwice(runChain(request, options, tracing, answering, identity))
      if (cache === undefined) return runChain(request, options, tracing, answering, identity)
      const start = nowOf(fiber)
      let computed: ChatResult | undefined
      let ranHere = false
      const compute = Effect.suspend(() => {
        ranHere = true
        return runChain(request, options, tracing, answering, (r) => {
          computed = r
          return r.response
        })
      })
      return Effect.matchEffect(cache.get(request, compute), {
        // Rule 28: a flight cut after its chunks reached the caller that started it is that caller's cut. One that
        // joined it received none of them, so the cut is not its answer: it runs the chain for itself (and may
        // still fall back), past the cache, whose flight it was.
        onFailure: (e) =>
          !ranHere && e._tag === "StreamInterruptedError"
            ? runChain(request, options, tracing, answering, identity)
            : Effect.fail(e),
        onSuccess: (cached) =>
          Effect.succeed<ChatResult>(
            cached.source === "computed" && computed !== undefined ? computed : {
              response: cached.value,
              source: cached.source === "stale" ? "stale-cache" : "cache",
              deployment: undefined,
              keyName: undefined,
              attempts: 0,
              // The continuation runs on the caller's fiber: its clock is the one read at the start.
              latencyMs: nowOf(fiber) - start,
              usage: cached.value.usage,
              costUsd: 0,
              fallbacks: [],
              errors: [],
              skipped: [],
              ageMs: cached.ageMs
            }
          )
      })
    }

    /** `tapBoth` of the metrics: a success is recorded, a failure counted (not a defect or an interruption). */
    const recorded = (self: Effect.Effect<ChatResult, Errors.ResilienceError>): Effect.Effect<ChatResult, Errors.ResilienceError> =>
      Effect.matchCauseEffect(self, {
        onFailure: (cause) => {
          if (Option.isSome(Cause.failureOption(cause))) requestsBySource("failed").unsafeUpdate(1, [])
          return Effect.failCause(cause)
        },
        onSuccess: (result) => {
          record(result)
          return Effect.succeed(result)
        }
      })

    /** A request no deployment of its cascade can serve, refused before any attempt is spent on it. */
    const refusedLocally = (request: Chat.ChatRequest, options: ChatOptions): Errors.BadRequestError | undefined => {
      const route = routeFor(options)
      if (route._tag === "BadRequestError") return route
      const problem = firstProblem(request, route.limits)
      return problem === undefined ? undefined : new Errors.BadRequestError({ detail: `invalid request: ${problem}` })
    }

    // Rule 32: a degraded answer's request is queued and completed by the cascade, without the cache.
    const completeLaterOptions = CompleteLater.options(config.completeLater, extras.completeLater)
    const completions = completeLaterOptions === undefined ? undefined : yield* CompleteLater.make(
      completeLaterOptions,
      (request, options) =>
        Effect.withFiberRuntime((fiber) => {
          const tracing = fiber.getFiberRef(FiberRef.currentTracerEnabled)
          const self = Effect.tap(runChain(request, options, tracing, called, identity), (r) => Effect.sync(() => recordSpend(r)))
          return tracing ? Effect.withSpan(self, "ResilientClient.complete", { captureStackTrace: false }) : self
        }),
      (request, response) => (cache === undefined ? Effect.void : cache.set(request, response)),
      (request) => ResponseCache.hashRequest(request, cacheFields)
    )
    /** `self`, a degraded answer of it queued for completion. */
    const completing = <E>(request: Chat.ChatRequest, options: ChatOptions, self: Effect.Effect<ChatResult, E>) =>
      completions === undefined ? self : Effect.flatMap(self, (result) => completions.settle(request, options, result))

    const chat = (request: Chat.ChatRequest, options: ChatOptions = {}): Effect.Effect<ChatResult, Errors.ResilienceError> =>
      completing(request, options, answered(request, options))

    /** `chat` before rule 32. */
    const answered = (request: Chat.ChatRequest, options: ChatOptions): Effect.Effect<ChatResult, Errors.ResilienceError> =>
      Effect.withFiberRuntime((fiber) => {
        const tracing = fiber.getFiberRef(FiberRef.currentTracerEnabled)
        const refused = refusedLocally(request, options)
        const self = recorded(refused === undefined ? respond(fiber, request, options, tracing) : Effect.fail(refused))
        // `Effect.withSpan` only when tracing is on: with it off the span would be a no-op that
        // still costs a context copy, a finalizer and a stack trace.
        return tracing ? Effect.withSpan(self, "ResilientClient.chat", { captureStackTrace: false }) : self
      })

    const midStream = config.midStreamPolicy ?? "restart-if-no-output"
    const isContent = (chunk: Chat.ChatChunk): boolean =>
      midStream === "terminate" ||
      (chunk.text !== undefined && chunk.text !== "") ||
      (chunk.toolCalls !== undefined && chunk.toolCalls.length > 0) ||
      chunk.finishReason !== undefined

    /**
     * A streamed request through the same chain as `chat` (cache, fallbacks,
     * budget, idempotency, metrics), its attempts handing chunks to the
     * caller as they come (`streamedTo`), waited on up to its first chunk.
     * The chain runs in a fiber of the scope: a caller that stops reading
     * interrupts it. The stream ends when the chain does, so its outcome is
     * recorded at its end (rule 26).
     */
    const startThrough = (
      request: Chat.ChatRequest,
      options: ChatOptions,
      exclude: string | undefined
    ): Effect.Effect<StartedStream, Errors.ResilienceError, Scope.Scope> =>
      Effect.withFiberRuntime((fiber) =>
        Effect.gen(function*() {
          const sink: Sink = {
            mailbox: yield* Mailbox.make<Chat.ChatChunk, Errors.ResilienceError>(16),
            handedOn: false,
            cut: undefined,
            start: undefined,
            firstKeys: new Map()
          }
          // The chain may outlive this caller: with a cache, an identical request waits on the same flight. A caller
          // that stops reading shuts its buffer, so the flight's chunks no longer wait for room there (16 of them
          // would hold it, and the request waiting on it, for ever); they are still gathered into its answer.
          yield* Effect.addFinalizer(() => sink.mailbox.shutdown)
          const tracing = fiber.getFiberRef(FiberRef.currentTracerEnabled)
          const recordedAnswer = recorded(respond(fiber, request, options, tracing, streamedTo(sink, exclude)))
          const answered = tracing
            ? Effect.withSpan(recordedAnswer, "ResilientClient.stream", { captureStackTrace: false })
            : recordedAnswer
          const ended = yield* Deferred.make<ChatResult, Errors.ResilienceError>()
          yield* Effect.forkScoped(Effect.matchCauseEffect(Effect.onExit(answered, (exit) => Deferred.done(ended, exit)), {
            // Once chunks were handed on, a cut is the answer: nothing (a stale cache entry) may follow it.
            onFailure: (cause) => sink.mailbox.failCause(sink.cut === undefined ? cause : Cause.fail(sink.cut)),
            onSuccess: (result) => {
              if (sink.cut !== undefined) return sink.mailbox.fail(sink.cut)
              if (sink.handedOn) return sink.mailbox.end
              // Answered whole (the cache, another request's single flight): handed on as chunks.
              sink.start = {
                source: result.source,
                deployment: result.deployment,
                keyName: result.keyName,
                attempts: result.attempts,
                fallbacks: result.fallbacks
              }
              return Effect.zipRight(sink.mailbox.offerAll(Chunks.fromResponse(result.response)), sink.mailbox.end)
            }
          }))
          const [head, done] = yield* sink.mailbox.takeAll
          const start = sink.start
          if (start === undefined) return yield* Effect.dieMessage("a stream handed on chunks before saying who answers them")
          const rest = done ? Stream.empty : Mailbox.toStream(sink.mailbox)
          return {
            start,
            chunks: Chunk.isEmpty(head) ? rest : Stream.concat(Stream.fromChunk(head), rest),
            result: Deferred.await(ended)
          }
        })
      )

    /**
     * Each attempt opens a stream and reads it up to its first content chunk
     * under the attempt's time limit (buffering what came before), then hands
     * every chunk to the caller and ends, with the whole answer, when the
     * stream does. Until the first content chunk a failure is an ordinary
     * failure of the attempt; after it the stream's `StreamInterruptedError`.
     * Each attempt has its own scope, so a retried stream leaks no socket.
     */
    const streamedTo = (sink: Sink, exclude: string | undefined): Answering => ({
      streams: true,
      refuses: (h) =>
        h.config.name === exclude
          ? "was cut off and is not asked to continue itself"
          : h.config.capabilities?.streaming === false
          ? "does not stream"
          : undefined,
      answer: (h, target, attempt, taken) =>
        Effect.scoped(Effect.gen(function*() {
          const { key } = attempt
          if (!sink.firstKeys.has(h.config.name)) sink.firstKeys.set(h.config.name, key?.name)
          const opened = yield* attempt.timeLimit(Effect.gen(function*() {
            const answer = yield* h.provider.stream(target, {
              deployment: h.config.name,
              model: h.config.model,
              key: key?.key,
              keyName: key?.name
            })
            yield* feedback(h, key, answer.rateLimit)
            const pull = yield* Stream.toPull(answer.chunks)
            const buffered: Array<Chat.ChatChunk> = []
            for (;;) {
              const next = yield* Effect.either(pull)
              if (Either.isLeft(next)) {
                if (Option.isNone(next.left)) return { pull, buffered, ended: true }
                return yield* Effect.fail(next.left.value)
              }
              buffered.push(...Chunk.toReadonlyArray(next.right))
              if (buffered.some(isContent)) return { pull, buffered, ended: false }
            }
          }))
          const answer = Chunks.collector()
          let handed = 0
          const handOn = (chunks: ReadonlyArray<Chat.ChatChunk>) => {
            for (const chunk of chunks) answer.add(chunk)
            handed += chunks.length
            sink.handedOn = true
            return sink.mailbox.offerAll(chunks)
          }
          if (sink.start === undefined) {
            const spent = yield* RequestBudget.spent
            sink.start = {
              // As `Fallback` names the answer's source: a step after a fallback, else the first step's key.
              source: taken.length > 0
                ? "fallback-provider"
                : sink.firstKeys.get(h.config.name) !== key?.name
                ? "backup-key"
                : "primary",
              deployment: h.config.name,
              keyName: key?.name,
              attempts: Option.isSome(spent) ? spent.value.attempts : attempt.attempt,
              fallbacks: [...taken]
            }
          }
          yield* handOn(opened.buffered)
          if (!opened.ended) {
            for (;;) {
              const next = yield* Effect.either(opened.pull)
              if (Either.isRight(next)) {
                yield* handOn(Chunk.toReadonlyArray(next.right))
                continue
              }
              if (Option.isNone(next.left)) break
              const cut = StreamGuard.interrupted(next.left.value, handed, {
                deployment: h.config.name,
                ...(key === undefined ? {} : { keyName: key.name })
              })
              sink.cut = cut
              return yield* Effect.fail(cut)
            }
          }
          return answer.response()
        }))
    })

    const streamStarted = (
      request: Chat.ChatRequest,
      options: ChatOptions = {}
    ): Effect.Effect<StartedStream, Errors.ResilienceError, Scope.Scope> => {
      const refused = refusedLocally(request, options)
      if (refused !== undefined) return Effect.fail(refused)
      const started = startThrough(request, options, undefined)
      if (midStream !== "continue-with-prefix") return started
      return Effect.flatMap(started, (first) => continuedAfterCut(request, options, first))
    }

    /**
     * `continue-with-prefix`: a cut stream is continued by the next deployment, asked to go on from what was written.
     * The request's result is then the continuation's (what the cut part cost is not known: it charges nothing).
     */
    const continuedAfterCut = (
      request: Chat.ChatRequest,
      options: ChatOptions,
      first: StartedStream
    ): Effect.Effect<StartedStream, never, Scope.Scope> =>
      Effect.gen(function*() {
        const afterCut = yield* Deferred.make<ChatResult, Errors.ResilienceError>()
        // A caller that leaves before the cut is settled gets no result, as the first stream's does.
        yield* Effect.addFinalizer(() => Deferred.interrupt(afterCut))
        const chunks = Stream.suspend(() => {
          let written = ""
          const read = Stream.tap(first.chunks, (c) => Effect.sync(() => { written += c.text ?? "" }))
          return Stream.catchTag(read, "StreamInterruptedError", (interrupted) =>
            written === ""
              ? Stream.zipRight(Stream.fromEffect(Deferred.fail(afterCut, interrupted)), Stream.fail(interrupted))
              : scopedStream(Effect.matchCauseEffect(
                startThrough({
                  ...request,
                  messages: [
                    ...request.messages,
                    { role: "assistant", content: written },
                    { role: "user", content: StreamGuard.continuationInstruction }
                  ]
                  // The deployment that was cut is not asked again: the next one continues.
                }, options, interrupted.deployment),
                {
                  onFailure: (cause) => Effect.zipRight(Deferred.failCause(afterCut, cause), Effect.failCause(cause)),
                  onSuccess: (continued) => Effect.as(Deferred.completeWith(afterCut, continued.result), continued.chunks)
                }
              )))
        })
        return {
          start: first.start,
          chunks,
          result: Effect.catchTag(first.result, "StreamInterruptedError", () => Deferred.await(afterCut))
        }
      })

    const startedChunks = (request: Chat.ChatRequest, options: ChatOptions) =>
      Effect.map(streamStarted(request, options), (started) => started.chunks)

    const stream = (request: Chat.ChatRequest, options: ChatOptions = {}): Stream.Stream<Chat.ChatChunk, Errors.ResilienceError> =>
      scopedStream(startedChunks(request, options))

    const staticAnswer = (request: Chat.ChatRequest, error: Errors.ResilienceError, start: number): Effect.Effect<ChatResult> =>
      Effect.withFiberRuntime((inner) => {
        const end = nowOf(inner)
        return Effect.zipRight(
          AttemptEvents.emit({ _tag: "FallbackTaken", at: end, from: "chain", to: "static", errorTag: error._tag }),
          Effect.succeed<ChatResult>({
            response: staticResponse(replies.reply(lastUserText(request))),
            source: "static",
            deployment: undefined,
            keyName: undefined,
            attempts: 0,
            latencyMs: end - start,
            usage: undefined,
            costUsd: 0,
            fallbacks: [{ from: "chain", to: "static", tag: error._tag }],
            errors: [],
            skipped: [],
            ageMs: undefined
          })
        )
      })

    const chatOrStatic = (request: Chat.ChatRequest, options: ChatOptions = {}): Effect.Effect<ChatResult> =>
      completing(request, options, answeredOrStatic(request, options))

    /** `chatOrStatic` before rule 32. */
    const answeredOrStatic = (request: Chat.ChatRequest, options: ChatOptions): Effect.Effect<ChatResult> =>
      Effect.withFiberRuntime((fiber) => {
        const start = nowOf(fiber)
        if (fiber.getFiberRef(FiberRef.currentTracerEnabled)) {
          return Effect.catchAll(answered(request, options), (error) => staticAnswer(request, error, start))
        }
        // Untraced: `chat`'s metrics and the static reply in one continuation (`tapBoth`, then `catchAll`).
        return Effect.matchCauseEffect(respond(fiber, request, options, false), {
          onFailure: (cause) => {
            if (Option.isSome(Cause.failureOption(cause))) requestsBySource("failed").unsafeUpdate(1, [])
            // `catchAll`'s own reading of the cause (a defect wins over a failure).
            return Effect.catchAll(Effect.failCause(cause), (error) => staticAnswer(request, error, start))
          },
          onSuccess: (result) => {
            record(result)
            return Effect.succeed(result)
          }
        })
      })

    /**
     * A failure before any chunk reached the caller is answered by the static reply, streamed as an answer is.
     * Nothing reaches the caller before the stream started (its first chunk is in hand by then), and every
     * failure after it comes after that chunk: so the stream's start decides, with no check on every chunk.
     */
    const streamOrStatic = (request: Chat.ChatRequest, options: ChatOptions = {}): Stream.Stream<Chat.ChatChunk, Errors.ResilienceError> =>
      scopedStream(Effect.clockWith((clock) =>
        Effect.flatMap(clock.currentTimeMillis, (start) =>
          Effect.catchAll(startedChunks(request, options), (error) =>
            Effect.map(staticAnswer(request, error, start), (r) => Stream.fromIterable(Chunks.fromResponse(r.response)))))
      ))

    return {
      chat,
      chatOrStatic,
      stream,
      streamStarted,
      streamOrStatic,
      deployments: handles,
      config,
      cacheStatus: cache?.status,
      completeLater: completions
    }
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: ClientConfig.ClientConfig,
  extras?: Extras
): Layer.Layer<ResilientClient, Errors.InvalidConfigError, Provider.Providers | StateStore.StateStore> =>
  Layer.scoped(ResilientClient, make(config, extras))

/**
 * Decodes the configuration too, so a bad file fails the layer with the field named.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromJson = (
  json: string,
  extras?: Extras
): Layer.Layer<ResilientClient, Errors.InvalidConfigError, Provider.Providers | StateStore.StateStore> =>
  Layer.scoped(ResilientClient, Effect.flatMap(ClientConfig.fromJson(json), (config) => make(config, extras)))

/**
 * USD an answer cost on a deployment, from its usage and the deployment's price.
 *
 * @since 0.1.0
 * @category pricing
 */
export const priceOf = (deployment: ClientConfig.Deployment, usage: Chat.Usage): number =>
  ClientConfig.costUsd(deployment.price, usage.inputTokens, usage.outputTokens)
