/**
 * The outage drill: a scenario's traffic, run in virtual time against
 * simulated providers, through one of three stacks:
 *
 * - `protected`: the real `ResilientClient` built from the scenario's
 *   `ClientConfig` (cascade, breakers, key pools, retries with budget,
 *   timeouts, cache, static replies, degraded answers completed later) over
 *   a `StateStore.layerMemory`;
 * - `none`: one direct call to the primary deployment, no protection (keys
 *   taken in turn, no timeout);
 * - `naive-retry`: the same call retried 3 times, 1 s apart, whatever the error.
 *
 * Each run is deterministic: arrivals, the providers' faults and the
 * client's jitter each draw from a `Random` seeded from the run's seed, and
 * time is `VirtualTime`'s. Statistics are accumulated incrementally
 * (histograms, counters), so hours of traffic at tens of requests a second
 * cost memory only for the timeline.
 *
 * @since 0.1.0
 */
import { type AdaptiveLimit, type CircuitBreaker, type DeferredCompletion, type Errors, type KeyPool, StateStore } from "@resilient-ai/core"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import * as Provider from "@resilient-ai/llm/Provider"
import * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Hash from "effect/Hash"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { PCGRandom } from "effect/Utils"
import { Histogram, Timeline } from "./internal/stats.js"
import { StreamStats, StreamWatch } from "./internal/streamStats.js"
import * as SimulatedProviders from "./SimulatedProviders.js"
import * as VirtualTime from "./VirtualTime.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Stack = "protected" | "protected-no-probes" | "none" | "naive-retry"

/**
 * The stacks a scenario runs through unless it names its own.
 *
 * @since 0.1.0
 * @category models
 */
export const stacks: ReadonlyArray<Stack> = ["protected", "none", "naive-retry"]

/**
 * The stacks of a scenario, in report order.
 *
 * @since 0.1.0
 * @category models
 */
export const stacksOf = (scenario: Scenario): ReadonlyArray<Stack> => scenario.stacks ?? stacks

/**
 * The arrival process. Times are virtual milliseconds since the start.
 *
 * @since 0.1.0
 * @category models
 */
export interface Traffic {
  readonly ratePerSecond: number
  /** Windows where the rate is multiplied by `factor`. */
  readonly surges?: ReadonlyArray<{ readonly from: number; readonly to: number; readonly factor: number }>
  /** Share of requests that repeat one of `popularPrompts` prompts (cache hits). Default 0. */
  readonly repeatShare?: number
  /** Default 100. */
  readonly popularPrompts?: number
  /** `poisson` (default): exponential gaps; `fixed`: even spacing. */
  readonly arrivals?: "poisson" | "fixed"
  /** Share of requests that stream (`client.stream`); each asks a question of its own (no cache hit). Default 0. */
  readonly streamShare?: number
}

/**
 * The fault the scenario is about: which deployment, and when it starts and
 * ends (`to` = the end of the run when it does not end). It splits the
 * latencies into before / during / after, and it is what fail-over and
 * recovery times are measured from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Incident {
  readonly deployment: string
  readonly from: number
  readonly to: number
  readonly description: string
}

/**
 * One drill scenario: traffic, simulated deployments with their fault
 * scripts, and the configuration of the protected stack.
 *
 * @since 0.1.0
 * @category models
 */
export interface Scenario {
  readonly name: string
  readonly description: string
  readonly durationMs: number
  readonly traffic: Traffic
  readonly providers: ReadonlyArray<SimulatedProviders.Deployment>
  readonly incident: Incident
  /** The protected stack; `cascade[0]` is the primary the baselines call. */
  readonly client: ClientConfig.ClientConfig
  readonly extras?: ResilientClient.Extras
  /** Timeline resolution. Default 1 s. */
  readonly timelineBucketMs?: number
  /**
   * Default {@link stacks}. `protected-no-probes` is the protected stack
   * with every health probe off (`probe: false`), to compare with it.
   */
  readonly stacks?: ReadonlyArray<Stack>
  /** A fallback deployment the script has dead before the incident: its calls during the incident are counted. */
  readonly deadFallback?: string
  /** The protected stack is judged on shedding the incident's deployment (issue 17: calls per request, p99, first fallback answer). */
  readonly sheddingTargets?: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Percentiles {
  readonly p50: number
  readonly p95: number
  readonly p99: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BreakerTransition {
  readonly at: number
  readonly breaker: string
  readonly from: string
  readonly to: string
  readonly reason: string
}

/**
 * A key of a pool leaving or rejoining rotation (cooling after a 429,
 * disabled after a 401, back after its cooldown).
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyTransition {
  readonly at: number
  readonly pool: string
  readonly key: string
  readonly from: string
  readonly to: string
  readonly reason: string
}

/**
 * The streamed requests of one stack.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamReport {
  /** Requests that asked for a stream. */
  readonly requests: number
  /** Ended with the whole answer. */
  readonly completed: number
  /** Completed by a deployment other than the primary: the primary failed, stalled or was skipped before any content. */
  readonly fellBackBeforeFirstToken: number
  /** Failed after content reached the caller (the protected stack: its mid-stream policy's `StreamInterruptedError`). */
  readonly endedMidStream: number
  /** Failed before any content reached the caller. */
  readonly failedBeforeFirstToken: number
  /** Content from more than one answer reached the caller. Must be 0. */
  readonly mixedAnswers: number
  /** From arrival to the first content chunk, of the streams that had one. */
  readonly timeToFirstTokenMs: { readonly p50: number; readonly p99: number }
}

/**
 * What one stack did in one scenario. Times are virtual milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface StackReport {
  readonly name: string
  readonly seed: number
  readonly stack: Stack
  readonly requests: number
  /** Answered by a deployment (primary, another key, a fallback deployment). */
  readonly answeredByModel: number
  /** A fresh cache entry (within its time to live). */
  readonly answeredByCache: number
  /** An expired cache entry served because every deployment failed (stale-if-error): a degraded answer. */
  readonly answeredByStaleCache: number
  readonly answeredByStatic: number
  /** The caller got an error. */
  readonly failed: number
  /** (model + fresh cache + stale cache) / requests: a static reply is a degraded answer, not availability. */
  readonly availability: number
  /** (model + fresh cache) / requests: answers a model gave, now or within the cache's time to live. */
  readonly availabilityByModel: number
  /** From arrival to answer or error. */
  readonly latencyMs: Percentiles
  /** By arrival: before the incident, during it, after it. */
  readonly latencyByPhaseMs: { readonly before: Percentiles; readonly during: Percentiles; readonly after: Percentiles }
  /** Calls that reached a provider, per request. */
  readonly attemptsPerRequest: number
  /** Calls sent while the script had their deployment or key down (outage, flap, revoked key, spent quota). */
  readonly callsToDownProvider: number
  /**
   * From the incident's start to the first reaction: the breaker of its
   * deployment opened, a key left rotation, or its adaptive limit came down.
   */
  readonly failoverMs: number | null
  /**
   * Calls sent while the incident lasted: to its deployment, and to every
   * deployment per request that arrived meanwhile and was not answered by
   * the cache (1 when each such request made one call).
   */
  readonly callsDuringIncident: { readonly toDeployment: number; readonly perRequest: number }
  /** From the incident's start to the first answer by another deployment, to a request that arrived during it. */
  readonly firstFallbackAnswerMs: number | null
  /** Decreases of the adaptive limit of the incident's deployment (protected stack). */
  readonly limitDecreases: number
  /** From the incident's end to the first successful call to its deployment sent after it. */
  readonly recoveryMs: number | null
  readonly breakerTransitions: ReadonlyArray<BreakerTransition>
  readonly keyTransitions: ReadonlyArray<KeyTransition>
  /** Answers by deployment name. */
  readonly answeredBy: Readonly<Record<string, number>>
  /** Answers by deployment name, of the requests that arrived during the incident. */
  readonly answeredByDuringIncident: Readonly<Record<string, number>>
  /** Failed requests by error tag. */
  readonly errors: Readonly<Record<string, number>>
  /** Calls by deployment. */
  readonly calls: Readonly<Record<string, number>>
  readonly tokens: { readonly input: number; readonly output: number }
  /** What the providers bill for the answers they delivered, at the configured prices. */
  readonly costUsd: number
  /** The streamed requests; null in a scenario without streaming traffic. */
  readonly streams: StreamReport | null
  /** Degraded answers completed later by a model (rule 32); null for a stack without `completeLater`. */
  readonly completions: Completions | null
  /** With a scenario's `deadFallback`: whether the stack ran health probes (rule 30). */
  readonly probes?: boolean
  /** With a scenario's `deadFallback`: calls it was sent while the incident lasted. */
  readonly callsToDeadFallback?: number
  /** With a scenario's `deadFallback`: the p99 latency of the requests of the incident's first minute, and of the rest of it. */
  readonly outageFirstMinuteP99Ms?: number
  readonly outageRestP99Ms?: number
}

/**
 * What became of the degraded answers (static replies, stale cache entries)
 * of a run: how many were queued, and how many a model completed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Completions {
  /** Degraded answers whose request was queued. */
  readonly queued: number
  /** Degraded answers to a request already queued: its completion serves them too. */
  readonly duplicates: number
  /** Degraded answers whose request did not fit in the queue. */
  readonly refused: number
  /** Queued requests a model answered later. */
  readonly completed: number
  /** Queued requests given up after their attempts. */
  readonly failed: number
  /** Still queued or in progress when the traffic ended (dropped with the client). */
  readonly leftAtEnd: number
}

/**
 * A run's report and its timeline (requests by who answered, per bucket of
 * arrival time).
 *
 * @since 0.1.0
 * @category models
 */
export interface RunResult {
  readonly report: StackReport
  /** The first request that died of a defect, pretty-printed: the simulation found a bug. */
  readonly firstDefect: string | undefined
  readonly timeline: { readonly bucketMs: number; readonly series: Readonly<Record<string, Uint32Array>> }
}

/**
 * @since 0.1.0
 * @category options
 */
export interface RunOptions {
  readonly seed: number
  /**
   * Called every 100 arrivals, and at the end, with the share of virtual
   * time done (0–1) and the requests sent so far. Throttle it by wall time
   * in the callback: it is called from inside the simulation.
   */
  readonly onProgress?: (done: number, requests: number) => void
}

type Kind = "model" | "cache" | "stale" | "static" | "failed"

/** One request of the traffic, when it arrived, and whether it asks for a stream. */
interface Arrival {
  readonly request: Chat.ChatRequest
  readonly at: number
  readonly streamed: boolean
}

/** Handles one request of the traffic. */
type Handler = (arrival: Arrival) => Effect.Effect<void>

/** Reads a stream to its end, each chunk into `watch`. */
const readInto = (
  chunks: Stream.Stream<Chat.ChatChunk, Errors.ResilienceError>,
  watch: StreamWatch
): Effect.Effect<void, Errors.ResilienceError> =>
  // Pulled in the request's own fiber, by the chunk of chunks: `Stream.runForEachChunk` runs the stream in a fiber
  // of its own with a scope and two `Deferred`s (about 500 Effect ops a stream), and `runForEach` an
  // `Effect.forEach` for each chunk.
  Effect.scoped(Effect.flatMap(Stream.toPull(chunks), (pull) => {
    const loop: Effect.Effect<void, Errors.ResilienceError> = Effect.matchEffect(pull, {
      onSuccess: (batch) => {
        for (const chunk of batch) watch.onChunk(chunk)
        return loop
      },
      onFailure: (end) => (end._tag === "None" ? Effect.void : Effect.fail(end.value))
    })
    return loop
  }))

/** Runs a streamed request's `read` and records how it ended. */
const streamedRequest = (
  recorder: Recorder,
  arrivedAt: number,
  watch: StreamWatch,
  read: Effect.Effect<void, Errors.ResilienceError>,
  deploymentOf: (model: string) => string
): Effect.Effect<void> =>
  Effect.matchCauseEffect(read, {
    onFailure: (cause) => {
      const failure = Cause.failureOption(cause)
      if (failure._tag === "None") return recorder.died(arrivedAt)(cause)
      recorder.streamed(watch, arrivedAt, failure.value, deploymentOf)
      return Effect.void
    },
    onSuccess: () => {
      recorder.streamed(watch, arrivedAt, undefined, deploymentOf)
      return Effect.void
    }
  })

/** The deployment of a streamed answer, by the model its chunks name. */
const deploymentsByModel = (scenario: Scenario) => {
  const byModel = new Map(scenario.client.deployments.map((d) => [d.model, d.name]))
  return (model: string): string => byModel.get(model) ?? model
}

/** Counts and histograms of one run, updated per request. */
class Recorder {
  requests = 0
  readonly byKind = { model: 0, cache: 0, stale: 0, static: 0, failed: 0 }
  /** The tickets of degraded answers (rule 32). */
  readonly tickets = { queued: 0, duplicate: 0, refused: 0 }
  readonly answeredBy: Record<string, number> = {}
  readonly answeredByDuring: Record<string, number> = {}
  readonly errors: Record<string, number> = {}
  readonly all = new Histogram()
  readonly phases = [new Histogram(), new Histogram(), new Histogram()] as const
  /** The incident's requests answered by the cache (fresh or stale), which call no provider. */
  incidentFromCache = 0
  /** The incident's requests: of its first minute, and of the rest. */
  readonly incidentMinutes = [new Histogram(), new Histogram()] as const
  /** When the first answer by another deployment than the incident's reached a request of the incident. */
  firstFallbackAnswerAt: number | undefined
  readonly timeline: Timeline

  /** Streamed requests; undefined when the scenario streams none. */
  readonly streams: StreamStats | undefined

  constructor(readonly incident: Incident, durationMs: number, bucketMs: number, streamsOf: string | undefined) {
    this.timeline = new Timeline(durationMs, bucketMs)
    this.streams = streamsOf === undefined ? undefined : new StreamStats(streamsOf)
  }

  /** A streamed request that ended: counted as a request, and as a stream. */
  streamed(watch: StreamWatch, arrivedAt: number, error: Errors.ResilienceError | undefined, deploymentOf: (model: string) => string): void {
    const end = watch.clock.unsafeCurrentTimeMillis()
    if (error === undefined) {
      const who = deploymentOf(watch.model ?? "")
      this.streams?.ended(watch, arrivedAt, { completed: true, answeredBy: who })
      this.record(arrivedAt, end, "model", who)
    } else {
      this.streams?.ended(watch, arrivedAt, { completed: false })
      this.record(arrivedAt, end, "failed", error._tag)
    }
  }

  /** The first defect or unexpected interruption of a request, shown to the operator. */
  firstDefect: string | undefined

  /** A request that died instead of answering: a bug, counted as a failure with tag `defect`. */
  readonly died = (arrivedAt: number) => (cause: Cause.Cause<unknown>): Effect.Effect<void> =>
    atNow((end) => {
      this.firstDefect ??= Cause.pretty(cause)
      this.record(arrivedAt, end, "failed", Cause.isInterruptedOnly(cause) ? "interrupted" : "defect")
    })

  record(arrivedAt: number, endedAt: number, kind: Kind, who: string): void {
    this.requests += 1
    this.byKind[kind] += 1
    if (kind === "model") this.answeredBy[who] = (this.answeredBy[who] ?? 0) + 1
    if (kind === "failed") this.errors[who] = (this.errors[who] ?? 0) + 1
    const latency = endedAt - arrivedAt
    this.all.add(latency)
    const phase = arrivedAt < this.incident.from ? 0 : arrivedAt < this.incident.to ? 1 : 2
    this.phases[phase].add(latency)
    if (phase === 1) {
      this.incidentMinutes[arrivedAt < this.incident.from + 60_000 ? 0 : 1].add(latency)
      if (kind === "cache" || kind === "stale") this.incidentFromCache += 1
      if (kind === "model") {
        this.answeredByDuring[who] = (this.answeredByDuring[who] ?? 0) + 1
        if (who !== this.incident.deployment && (this.firstFallbackAnswerAt === undefined || endedAt < this.firstFallbackAnswerAt)) {
          this.firstFallbackAnswerAt = endedAt
        }
      }
    }
    this.timeline.add(kind === "model" ? who : kind, arrivedAt)
  }
}

/** `Effect.map(Clock.currentTimeMillis, f)` in one op instead of four. */
const atNow = (f: (now: number) => void): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    f(Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis())
    return Effect.void
  })

const percentiles = (h: Histogram): Percentiles => ({ p50: h.quantile(0.5), p95: h.quantile(0.95), p99: h.quantile(0.99) })

const round = (x: number, digits: number): number => {
  const f = Math.pow(10, digits)
  return Math.round(x * f) / f
}

/** Requests of the run: a few popular prompts repeat (cache hits), the rest are unique. */
const requestsOf = (traffic: Traffic) => {
  const popular: ReadonlyArray<Chat.ChatRequest> = Array.from({ length: traffic.popularPrompts ?? 100 }, (_, i) => ({
    model: "default",
    messages: [{ role: "user", content: `Popular question number ${i}: what are your opening hours?` }],
    maxTokens: 400
  }))
  const repeatShare = traffic.repeatShare ?? 0
  return (i: number, u: number, unique: boolean): Chat.ChatRequest => {
    if (!unique && u < repeatShare && popular.length > 0) {
      const p = popular[Math.floor((u / repeatShare) * popular.length)]
      if (p !== undefined) return p
    }
    return { model: "default", messages: [{ role: "user", content: `Question ${i}: summarise order ${i * 7919 % 100_003}` }], maxTokens: 400 }
  }
}

/**
 * Sends the scenario's traffic, each request on a fiber of its own, and
 * waits until the last one is answered. Returns the number of requests.
 *
 * The arrivals are a chain of timers on the virtual clock rather than a loop
 * of `Effect.sleep` and `Effect.forkDaemon` in a fiber: each timer forks its
 * request the way `forkDaemon` does (from this fiber's runtime, started by the
 * scheduler, not on this stack) and sets the next timer, so events keep their
 * order and times, without a fiber resumed and three ops run per arrival.
 */
const traffic = (
  scenario: Scenario,
  seed: number,
  handle: Handler,
  onProgress: ((done: number, requests: number) => void) | undefined
): Effect.Effect<number> =>
  Effect.withFiberRuntime<number>((fiber, status) => {
    const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
    if (!(clock instanceof VirtualTime.VirtualClock)) return Effect.dieMessage("the drill runs in VirtualTime")
    // What `Effect.forkDaemon` forks from: this fiber's context, fiber refs and flags.
    const fork = Runtime.runFork(
      Runtime.make({ context: fiber.currentContext, fiberRefs: fiber.getFiberRefs(), runtimeFlags: status.runtimeFlags })
    )
    return Effect.async<number>((resume) => {
      // The generator of `Random.make(\`${seed}/${scenario.name}/arrivals\`)` (same draws), read in place.
      const rng = new PCGRandom(Hash.hash(`${seed}/${scenario.name}/arrivals`))
      const t = scenario.traffic
      const poisson = (t.arrivals ?? "poisson") === "poisson"
      const surges = t.surges ?? []
      const requestFor = requestsOf(t)
      // Which requests stream: a generator of its own, so a scenario without streams draws as before.
      const streamShare = t.streamShare ?? 0
      const streamRng = streamShare > 0 ? new PCGRandom(Hash.hash(`${seed}/${scenario.name}/streams`)) : undefined
      const rateAt = (now: number): number => {
        let rate = t.ratePerSecond
        for (const s of surges) if (now >= s.from && now < s.to) rate *= s.factor
        return rate / 1000
      }
      let inflight = 0
      let generating = true
      let stopped = false
      let now = 0
      let sent = 0
      const end = () => {
        close()
        onProgress?.(1, sent)
        resume(Effect.succeed(sent))
      }
      const finished = (): void => {
        inflight -= 1
        if (!generating && inflight === 0) end()
      }
      /** The wake-ups of the fibers waiting for an arrival; `undefined` ends the fiber. */
      const idle: Array<(arrival: Arrival | undefined) => void> = []
      let closed = false
      const close = (): void => {
        closed = true
        for (const wake of idle.splice(0)) wake(undefined)
      }
      /** A fiber for `first` that, once its request has ended, serves the next arrival, until the traffic ends. */
      const start = (first: Arrival): void => {
        let busy = true
        const serveNext: Effect.Effect<void> = Effect.async<void>((resume) => {
          idle.push((arrival) => {
            busy = arrival !== undefined
            resume(arrival === undefined ? Effect.void : serve(arrival))
          })
        })
        const serve = (arrival: Arrival): Effect.Effect<void> =>
          Effect.flatMap(handle(arrival), () => {
            busy = false
            finished()
            return closed ? Effect.void : serveNext
          })
        // A fiber observer rather than `Effect.ensuring` (a mask and four ops): however the fiber ends, a
        // request it was running has ended.
        fork(serve(first), { immediate: false }).addObserver(() => {
          if (busy) finished()
        })
      }
      let gap = 0
      /** Draws the next gap; false when it falls after the end. */
      const next = (): boolean => {
        const u = rng.number()
        gap = poisson ? -Math.log(1 - u) / rateAt(now) : 1 / rateAt(now)
        return now + gap < scenario.durationMs
      }
      const arrive = (): void => {
        if (stopped) return
        now += gap
        const streamed = streamRng !== undefined && streamRng.number() < streamShare
        const request = requestFor(sent, rng.number(), streamed)
        inflight += 1
        const arrival: Arrival = { request, at: now, streamed }
        const wake = idle.pop()
        if (wake === undefined) start(arrival)
        else wake(arrival)
        sent += 1
        if (onProgress !== undefined && sent % 100 === 0) onProgress(now / scenario.durationMs, sent)
        schedule()
      }
      const schedule = (): void => {
        if (next()) {
          clock.schedule(arrive, VirtualTime.sleepMillis(gap))
          return
        }
        generating = false
        if (inflight === 0) end()
      }
      schedule()
      return Effect.sync(() => {
        stopped = true
        close()
      })
    })
  })

const keyEnv = (scenario: Scenario): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromMap(
    new Map(scenario.client.deployments.flatMap((d) => d.keys.map((k) => [k.env, `sk-sim-${k.name}`] as const)))
  )

/** What the protected stack's policies went through, read at the end of a run. */
interface Transitions {
  readonly breakers: ReadonlyArray<CircuitBreaker.Transition>
  readonly keys: ReadonlyArray<KeyPool.Transition>
  readonly limits: ReadonlyArray<AdaptiveLimit.Change>
}

/** The handler of the protected stack, and how to read its transitions at the end. */
const protectedStack = (
  scenario: Scenario,
  recorder: Recorder,
  probes: boolean
): Effect.Effect<
  {
    readonly handle: Handler
    readonly transitions: Effect.Effect<Transitions>
    /** The completion queue's counters now; undefined without `completeLater`. */
    readonly completionStatus: Effect.Effect<DeferredCompletion.Status | undefined>
  },
  Errors.InvalidConfigError,
  Provider.Providers | StateStore.StateStore | Scope.Scope
> =>
  Effect.gen(function*() {
    // Decoded like a config file would be: a mistake in a scenario fails with the field named.
    const config = yield* ClientConfig.decode(
      probes ? scenario.client : { ...scenario.client, deployments: scenario.client.deployments.map((d) => ({ ...d, probe: false })) }
    )
    const client = yield* ResilientClient.make(config, scenario.extras)
    const breakerQueues: Array<Queue.Dequeue<CircuitBreaker.Transition>> = []
    const keyQueues: Array<Queue.Dequeue<KeyPool.Transition>> = []
    const limitQueues: Array<Queue.Dequeue<AdaptiveLimit.Change>> = []
    const pools = new Set<KeyPool.Service>()
    for (const h of client.deployments) {
      if (h.policy.circuitBreaker !== undefined) breakerQueues.push(yield* h.policy.circuitBreaker.subscribe)
      if (h.policy.adaptiveLimit !== undefined) limitQueues.push(yield* h.policy.adaptiveLimit.subscribe)
      if (h.keyPool !== undefined && !pools.has(h.keyPool)) {
        pools.add(h.keyPool)
        keyQueues.push(yield* h.keyPool.subscribe)
      }
    }
    // The run's clock, read in place when a request ends (the requests' fibers run on it).
    const clock = yield* Effect.clock
    const settled = (result: ResilientClient.ChatResult, arrivedAt: number): void => {
      const end = clock.unsafeCurrentTimeMillis()
      if (result.completion !== undefined) recorder.tickets[result.completion.status] += 1
      switch (result.source) {
        case "primary":
        case "backup-key":
        case "fallback-provider":
          return recorder.record(arrivedAt, end, "model", result.deployment ?? "unknown")
        case "cache":
          return recorder.record(arrivedAt, end, "cache", "cache")
        case "stale-cache":
          return recorder.record(arrivedAt, end, "stale", "stale")
        case "static":
          return recorder.record(arrivedAt, end, "static", "static")
      }
    }
    const deploymentOf = deploymentsByModel(scenario)
    const handle: Handler = ({ at: arrivedAt, request, streamed }) =>
      streamed
        ? Effect.suspend(() => {
          const watch = new StreamWatch(clock)
          return streamedRequest(recorder, arrivedAt, watch, readInto(client.stream(request), watch), deploymentOf)
        })
        : chatted(request, arrivedAt)
    const chatted = (request: Chat.ChatRequest, arrivedAt: number) =>
      Effect.matchCauseEffect(client.chatOrStatic(request), {
        onFailure: recorder.died(arrivedAt),
        onSuccess: (result) => {
          settled(result, arrivedAt)
          return Effect.void
        }
      })
    const transitions = Effect.gen(function*() {
      const breakers: Array<CircuitBreaker.Transition> = []
      const keys: Array<KeyPool.Transition> = []
      const limits: Array<AdaptiveLimit.Change> = []
      for (const q of breakerQueues) for (const t of yield* Queue.takeAll(q)) breakers.push(t)
      for (const q of keyQueues) for (const t of yield* Queue.takeAll(q)) keys.push(t)
      for (const q of limitQueues) for (const c of yield* Queue.takeAll(q)) limits.push(c)
      breakers.sort((a, b) => a.at - b.at)
      keys.sort((a, b) => a.at - b.at)
      limits.sort((a, b) => a.at - b.at)
      return { breakers, keys, limits }
    })
    const completionStatus = client.completeLater === undefined ? Effect.succeed(undefined) : client.completeLater.status
    return { handle, transitions, completionStatus }
  })

/**
 * `Effect.retry(self, { times: 3, schedule: Schedule.spaced("1 second") })`,
 * as a plain loop: the same sleeps (the schedule's `(now + 1000) - now`, to
 * the last bit of the virtual time), without the schedule driver's refs and
 * context per attempt, which cost more than the simulated call.
 */
const naiveRetry = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E> => {
  const attempt = (retries: number): Effect.Effect<A, E> =>
    Effect.catchAll(self, (e) =>
      retries >= 3
        ? Effect.fail(e)
        : Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.zipRight(Effect.sleep(Duration.millis(now + 1000 - now)), attempt(retries + 1))))
  return attempt(0)
}

/** The handler of a baseline: the primary called directly, keys in turn, optionally retried naively. */
const baselineStack = (scenario: Scenario, stack: "none" | "naive-retry", recorder: Recorder) =>
  Effect.gen(function*() {
    const providers = yield* Provider.Providers
    const primary = scenario.client.deployments.find((d) => d.name === scenario.client.cascade[0]) ??
      scenario.client.deployments[0]
    const provider = providers.forTarget({
      name: primary.name,
      kind: primary.provider,
      baseUrl: primary.baseUrl,
      model: primary.model
    })
    const keys = primary.keys.map((k) => ({ name: k.name, key: Redacted.make(`sk-sim-${k.name}`) }))
    let turn = 0
    // The run's clock, read in place when a request ends (the requests' fibers run on it).
    const clock = yield* Effect.clock
    const contextOf = (): Provider.CallContext => {
      const key = keys[turn++ % Math.max(1, keys.length)]
      return { deployment: primary.name, model: primary.model, key: key?.key, keyName: key?.name }
    }
    const handle: Handler = ({ at: arrivedAt, request, streamed }) => {
      if (streamed) {
        const watch = new StreamWatch(clock)
        // A naive retry reads the stream again from the start, whatever the caller already got.
        const once = Effect.suspend(() => readInto(Provider.chunksOf(provider.stream(request, contextOf())), watch))
        return streamedRequest(recorder, arrivedAt, watch, stack === "none" ? once : naiveRetry(once), () => primary.name)
      }
      const once = Effect.suspend(() => provider.chat(request, contextOf()))
      const call = stack === "none" ? once : naiveRetry(once)
      return Effect.matchCauseEffect(Effect.either(call), {
        onFailure: recorder.died(arrivedAt),
        onSuccess: (result) => {
          const end = clock.unsafeCurrentTimeMillis()
          if (result._tag === "Right") recorder.record(arrivedAt, end, "model", primary.name)
          else recorder.record(arrivedAt, end, "failed", result.left._tag)
          return Effect.void
        }
      })
    }
    return { handle }
  })

/**
 * Runs one scenario through one stack, in virtual time.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  scenario: Scenario,
  stack: Stack,
  options: RunOptions
): Effect.Effect<RunResult, Errors.InvalidConfigError | VirtualTime.SimulationStalledError> =>
  Effect.suspend(() => {
    const seed = options.seed
    const incident = scenario.incident
    const recorder = new Recorder(
      incident,
      scenario.durationMs,
      scenario.timelineBucketMs ?? 1000,
      (scenario.traffic.streamShare ?? 0) > 0 ? scenario.client.cascade[0] : undefined
    )
    let recoveredAt: number | undefined
    const during = { calls: 0, toDeployment: 0, toDeadFallback: 0 }
    const onOutcome = (o: SimulatedProviders.CallOutcome) => {
      if (
        recoveredAt === undefined && o.deployment === incident.deployment && o.outcome === "success" &&
        o.startedAt >= incident.to
      ) recoveredAt = o.endedAt
      if (o.startedAt >= incident.from && o.startedAt < incident.to) {
        during.calls += 1
        if (o.deployment === incident.deployment) during.toDeployment += 1
        if (o.deployment === scenario.deadFallback) during.toDeadFallback += 1
      }
    }
    const program = Effect.gen(function*() {
      const sim = yield* SimulatedProviders.make({ deployments: scenario.providers, seed: `${seed}/${scenario.name}`, onOutcome })
      const body = Effect.gen(function*() {
        if (stack === "protected" || stack === "protected-no-probes") {
          const { completionStatus, handle, transitions } = yield* protectedStack(scenario, recorder, stack === "protected")
          yield* traffic(scenario, seed, handle, options.onProgress)
          // Read before the client's scope closes and drops what is left.
          return { ...yield* transitions, completions: yield* completionStatus }
        }
        const { handle } = yield* baselineStack(scenario, stack, recorder)
        yield* traffic(scenario, seed, handle, options.onProgress)
        return { breakers: [], keys: [], limits: [], completions: undefined }
      })
      const transitions = yield* Effect.provideService(body, Provider.Providers, sim)
      return { transitions, stats: yield* sim.stats }
    }).pipe(
      Effect.scoped,
      // What the client logs as warnings (a completion given up, the queue dropped at the end) the report
      // counts; an error (a completion that ended abnormally) still shows.
      Logger.withMinimumLogLevel(LogLevel.Error),
      Effect.provide(StateStore.layerMemory),
      Effect.withConfigProvider(keyEnv(scenario)),
      Effect.withRandom(Random.make(`${seed}/${scenario.name}/client`)),
      // Spans go nowhere in a simulation: not making them saves a good part of the per-request cost.
      Effect.withTracerEnabled(false)
    )
    return Effect.map(VirtualTime.run(program), ({ stats, transitions }): RunResult => {
      const poolOf = new Map(scenario.client.deployments.map((d) => [d.name, d.keyPool ?? d.name]))
      const limitDecreases = transitions.limits.filter((c) => c.name === incident.deployment && c.to < c.from && c.at >= incident.from)
      const reactions = [
        ...transitions.breakers.filter((t) => t.breaker === incident.deployment && t.to === "open" && t.at >= incident.from),
        ...transitions.keys.filter((t) =>
          t.pool === poolOf.get(incident.deployment) && t.from === "healthy" && t.at >= incident.from
        ),
        // The adaptive limit shedding the load is a reaction too (rule 29): it may do so before the breaker sees a failure.
        ...limitDecreases
      ].map((t) => t.at)
      const failoverAt = reactions.length === 0 ? undefined : Math.min(...reactions)
      const price = new Map(scenario.client.deployments.map((d) => [d.name, d.price]))
      let calls = 0
      let down = 0
      let input = 0
      let output = 0
      let cost = 0
      const callsBy: Record<string, number> = {}
      for (const [name, s] of Object.entries(stats)) {
        calls += s.calls
        down += s.callsWhileDown
        input += s.inputTokens
        output += s.outputTokens
        callsBy[name] = s.calls
        const p = price.get(name)
        cost += ClientConfig.costUsd(p, s.inputTokens, s.outputTokens)
      }
      const r = recorder
      const requests = r.requests
      const series: Record<string, Uint32Array> = {}
      for (const [name, s] of r.timeline.series) series[name] = s
      return {
        report: {
          name: scenario.name,
          seed,
          stack,
          requests,
          answeredByModel: r.byKind.model,
          answeredByCache: r.byKind.cache,
          answeredByStaleCache: r.byKind.stale,
          answeredByStatic: r.byKind.static,
          failed: r.byKind.failed,
          availability: requests === 0 ? 1 : round((r.byKind.model + r.byKind.cache + r.byKind.stale) / requests, 6),
          availabilityByModel: requests === 0 ? 1 : round((r.byKind.model + r.byKind.cache) / requests, 6),
          latencyMs: percentiles(r.all),
          latencyByPhaseMs: { before: percentiles(r.phases[0]), during: percentiles(r.phases[1]), after: percentiles(r.phases[2]) },
          attemptsPerRequest: requests === 0 ? 0 : round(calls / requests, 4),
          callsToDownProvider: down,
          failoverMs: failoverAt === undefined ? null : Math.round(failoverAt - incident.from),
          callsDuringIncident: {
            toDeployment: during.toDeployment,
            perRequest: r.phases[1].count <= r.incidentFromCache ? 0 : round(during.calls / (r.phases[1].count - r.incidentFromCache), 4)
          },
          firstFallbackAnswerMs: r.firstFallbackAnswerAt === undefined ? null : Math.round(r.firstFallbackAnswerAt - incident.from),
          limitDecreases: transitions.limits.filter((c) => c.name === incident.deployment && c.to < c.from).length,
          recoveryMs: recoveredAt === undefined || incident.to >= scenario.durationMs
            ? null
            : Math.round(recoveredAt - incident.to),
          breakerTransitions: transitions.breakers.map((t) => ({
            at: Math.round(t.at),
            breaker: t.breaker,
            from: t.from,
            to: t.to,
            reason: t.reason
          })),
          keyTransitions: transitions.keys.map((t) => ({
            at: Math.round(t.at),
            pool: t.pool,
            key: t.key,
            from: t.from,
            to: t.to,
            reason: t.reason
          })),
          answeredBy: { ...r.answeredBy },
          answeredByDuringIncident: { ...r.answeredByDuring },
          errors: { ...r.errors },
          calls: callsBy,
          tokens: { input, output },
          costUsd: round(cost, 4),
          completions: completionsOf(r, transitions.completions),
          streams: r.streams === undefined ? null : r.streams.report(),
          ...(scenario.deadFallback === undefined ? {} : {
            probes: stack === "protected",
            callsToDeadFallback: during.toDeadFallback,
            outageFirstMinuteP99Ms: r.incidentMinutes[0].quantile(0.99),
            outageRestP99Ms: r.incidentMinutes[1].quantile(0.99)
          })
        },
        timeline: { bucketMs: r.timeline.bucketMs, series },
        firstDefect: r.firstDefect
      }
    })
  })

const completionsOf = (r: Recorder, status: DeferredCompletion.Status | undefined): Completions | null =>
  status === undefined ? null : {
    queued: r.tickets.queued,
    duplicates: r.tickets.duplicate,
    refused: r.tickets.refused,
    completed: status.completed,
    failed: status.failed,
    leftAtEnd: status.queued + status.inProgress
  }

/**
 * One scenario's runs, one per stack.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScenarioResult {
  readonly scenario: Scenario
  readonly runs: ReadonlyArray<RunResult>
}

/**
 * Runs every scenario through every stack, one after the other, in this
 * thread (the CLI spreads the runs over worker threads instead).
 *
 * @since 0.1.0
 * @category running
 */
export const runAll = (
  scenarios: ReadonlyArray<Scenario>,
  options: RunOptions
): Effect.Effect<ReadonlyArray<ScenarioResult>, Errors.InvalidConfigError | VirtualTime.SimulationStalledError> =>
  Effect.forEach(scenarios, (scenario) =>
    Effect.map(Effect.forEach(stacksOf(scenario), (stack) => run(scenario, stack, options)), (runs) => ({ scenario, runs })))
