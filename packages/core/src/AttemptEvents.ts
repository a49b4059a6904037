/**
 * What happened to a call, attempt by attempt.
 *
 * Every attempt emits a start and an end event (outcome tag, deployment, key
 * name, duration); every retry says which delay it chose and why (backoff,
 * Retry-After, or a value the call rejected); breaker and key transitions, fallbacks and hedges are events
 * too. They go to a subscribable stream and to effect `Metric`s. Events carry
 * names and tags only: never a key, never a prompt.
 *
 * Without the service in context nothing is emitted and nothing is paid.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { taggedBy } from "./TaggedMetric.js"

/**
 * @since 0.1.0
 * @category models
 */
export type AttemptEvent =
  | {
    readonly _tag: "AttemptStarted"
    readonly at: number
    readonly deployment: string
    readonly attempt: number
    readonly keyName: string | undefined
  }
  | {
    readonly _tag: "AttemptEnded"
    readonly at: number
    readonly deployment: string
    readonly attempt: number
    readonly keyName: string | undefined
    readonly durationMs: number
    /** `"success"`, the error's tag, `"interrupted"` or `"defect"`. */
    readonly outcome: string
  }
  | {
    readonly _tag: "RetryScheduled"
    readonly at: number
    readonly deployment: string
    readonly retry: number
    readonly delayMs: number
    /** `"result"`: a value the call rejected (`errorTag` is `"RejectedResult"`), retried after the backoff. */
    readonly reason: "backoff" | "retry-after" | "result"
    readonly errorTag: string
  }
  | {
    readonly _tag: "RetryStopped"
    readonly at: number
    readonly deployment: string
    readonly reason: string
    readonly retries: number
  }
  | {
    readonly _tag: "BreakerTransition"
    readonly at: number
    readonly breaker: string
    readonly from: string
    readonly to: string
    readonly reason: string
  }
  | {
    readonly _tag: "KeyTransition"
    readonly at: number
    readonly pool: string
    readonly keyName: string
    readonly from: string
    readonly to: string
    readonly reason: string
  }
  | {
    readonly _tag: "LimitChanged"
    readonly at: number
    readonly limit: string
    readonly from: number
    readonly to: number
    readonly reason: "drop" | "hang" | "slow" | "pressed"
  }
  | {
    readonly _tag: "ProbeRan"
    readonly at: number
    readonly deployment: string
    /** `ok`, or the tag of the error the probe met. */
    readonly outcome: string
    /** Why the deployment cannot serve after it, if it cannot. */
    readonly unfit: string | undefined
  }
  | {
    readonly _tag: "FallbackTaken"
    readonly at: number
    readonly from: string
    readonly to: string
    readonly errorTag: string
  }
  | {
    readonly _tag: "HedgeLaunched"
    readonly at: number
    readonly deployment: string
    readonly index: number
    readonly reason: "delay" | "failure"
    readonly delayMs: number
  }

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly publish: (event: AttemptEvent) => Effect.Effect<void>
  /** Events from now on; unsubscribes when the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<AttemptEvent>, never, Scope.Scope>
  readonly stream: Stream.Stream<AttemptEvent>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class AttemptEvents extends Context.Tag("@resilient-ai/core/AttemptEvents")<AttemptEvents, Service>() {}

const attempts: Metric.Metric.Counter<number> = Metric.counter("resilient_ai_attempts_total", {
  description: "attempts that reached a provider, by deployment, key name and outcome",
  incremental: true
})
const attemptDuration = Metric.histogram(
  "resilient_ai_attempt_duration_ms",
  MetricBoundaries.exponential({ start: 10, factor: 2, count: 14 }),
  "duration of attempts in milliseconds, by deployment"
)
const retries: Metric.Metric.Counter<number> = Metric.counter("resilient_ai_retries_total", {
  description: "retries scheduled, by deployment and reason (backoff, retry-after)",
  incremental: true
})
const fallbacks: Metric.Metric.Counter<number> = Metric.counter("resilient_ai_fallbacks_total", {
  description: "fallbacks taken, by step left, step taken and error tag",
  incremental: true
})
const hedges: Metric.Metric.Counter<number> = Metric.counter("resilient_ai_hedges_total", {
  description: "hedged attempts launched, by deployment and reason",
  incremental: true
})

/**
 * The metrics events feed, for reading them (tests, the gateway's /metrics).
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = { attempts, attemptDuration, retries, fallbacks, hedges } as const

const attemptsBy = taggedBy(attempts, ["deployment", "key", "outcome"])
const attemptDurationBy = taggedBy(attemptDuration, ["deployment"])
const retriesBy = taggedBy(retries, ["deployment", "reason"])
const fallbacksBy = taggedBy(fallbacks, ["from", "to", "error"])
const hedgesBy = taggedBy(hedges, ["deployment", "reason"])

/** The metric side of an event: counters and histograms tagged by names, never secrets. */
const measure = (event: AttemptEvent): Effect.Effect<void> => {
  switch (event._tag) {
    case "AttemptEnded":
      return Effect.zipRight(
        Metric.increment(
          attemptsBy(event.deployment, event.keyName ?? "none", event.outcome)
        ),
        Metric.update(attemptDurationBy(event.deployment), event.durationMs)
      )
    case "RetryScheduled":
      return Metric.increment(retriesBy(event.deployment, event.reason))
    case "FallbackTaken":
      return Metric.increment(fallbacksBy(event.from, event.to, event.errorTag))
    case "HedgeLaunched":
      return Metric.increment(hedgesBy(event.deployment, event.reason))
    default:
      return Effect.void
  }
}

/**
 * A sliding buffer per subscriber: a slow subscriber loses the oldest events,
 * the calls never wait for it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: { readonly capacity?: number } = {}): Effect.Effect<Service> =>
  Effect.map(PubSub.sliding<AttemptEvent>(options.capacity ?? 4096), (pubsub) => ({
    publish: (event) => Effect.zipRight(measure(event), PubSub.publish(pubsub, event)),
    subscribe: PubSub.subscribe(pubsub),
    stream: Stream.fromPubSub(pubsub)
  }))

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<AttemptEvents> = Layer.effect(AttemptEvents, make())

/**
 * Publishes through the service if it is in context; otherwise does nothing.
 *
 * @since 0.1.0
 * @category publishing
 */
export const emit = (event: AttemptEvent): Effect.Effect<void> =>
  Effect.flatMap(Effect.serviceOption(AttemptEvents), (events) =>
    events._tag === "Some" ? events.value.publish(event) : Effect.void)
