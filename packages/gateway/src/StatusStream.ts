/**
 * `GET /status/stream`: the gateway's status as server-sent events, for the
 * live dashboard (`Dashboard`).
 *
 * Rules (docs/semantics.md rule 37):
 * - One sampler per gateway, not per connection: every `interval` (250 ms)
 *   it counts the answers by source since the last sample and, only while
 *   a connection is open, reads each deployment's status (what `/status`
 *   shows, plus the breaker's rates, its thresholds and the latency p50/p99
 *   of successful attempts over the last minute) and publishes a `snapshot`
 *   event. Breaker, key and limit changes are published as `transition`
 *   events when they happen.
 * - A connection starts with `retry: 1000` (the browser's EventSource
 *   reconnects after a second) and a `hello` event: a snapshot read then, with
 *   the answers of the last `history` seconds (300) and the last 50
 *   transitions, so a page that opens or reconnects draws the recent past at
 *   once. Later snapshots carry the last two seconds only.
 * - A connection holds a subscription and nothing else: when the client goes
 *   away, the server interrupts the response's stream, the subscription's
 *   scope closes and no fiber or listener stays behind (`subscribers` counts
 *   them; the dashboard's tests measure it over 100 connections).
 * - When the gateway stops, the streams end first, so that they do not hold
 *   its drain of requests in flight for `shutdownTimeout`; the browser
 *   reconnects to whatever answers next.
 * - A slow client loses old events (a sliding buffer of 16), never slows
 *   the sampler or another client.
 * - Events carry names, states, counts and times: never a key.
 *
 * Why not `@effect/experimental/Sse`: it parses and encodes single events;
 * the writing here is three lines (`event:`, `data:`, a blank line).
 *
 * @since 0.1.0
 */
import { AttemptEvents, Errors, LatencyTracker } from "@resilient-ai/core"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Palette from "@resilient-ai/testkit/Palette"
import * as Health from "./Health.js"
import * as view from "./internal/statusView.js"

/**
 * What opens a deployment's breaker, for drawing rates against it.
 *
 * @since 0.1.0
 * @category models
 */
export type Thresholds =
  | { readonly kind: "consecutive"; readonly failures: number }
  | {
    readonly kind: "failure-rate"
    readonly failureRate: number
    readonly slowCallRate: number | null
    readonly minimumCalls: number
  }

/**
 * One second of answers. `at`: the epoch ms the second starts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Second {
  readonly at: number
  readonly counts: Partial<Record<Palette.Source, number>>
}

/**
 * A state change worth a line on the dashboard. `seq` orders them and lets a reconnecting page skip those it has.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transition {
  readonly seq: number
  readonly at: number
  readonly kind: "breaker" | "key" | "limit"
  /** The breaker's, key's or limit's name: names only, never a key. */
  readonly subject: string
  readonly from: string
  readonly to: string
  readonly reason: string
}

/**
 * One deployment in a snapshot: what `/status` shows, with what the
 * dashboard draws beside it.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeploymentView extends Health.DeploymentJson {
  readonly thresholds: Thresholds | null
  /** The breaker's window rates, 0..1; `rated` false while the window holds fewer than `minimumCalls`. */
  readonly rates: { readonly failureRate: number; readonly slowCallRate: number; readonly rated: boolean } | null
  /** Successful attempts over the last minute, in ms; null before the first. */
  readonly latency: { readonly p50: number; readonly p99: number; readonly count: number } | null
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** Epoch ms of the sample. */
  readonly at: number
  readonly ready: boolean
  readonly deployments: ReadonlyArray<DeploymentView>
  /** Answers per second by source: the last `history` seconds in a `hello`, the last two after. */
  readonly traffic: ReadonlyArray<Second>
}

/**
 * What a connection receives.
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | { readonly _tag: "hello"; readonly snapshot: Snapshot; readonly transitions: ReadonlyArray<Transition> }
  | { readonly _tag: "snapshot"; readonly snapshot: Snapshot }
  | { readonly _tag: "transition"; readonly transition: Transition }

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  readonly deployments: ReadonlyArray<ResilientClient.DeploymentHandle>
  /** The events the deployments' policies publish to. */
  readonly events: AttemptEvents.Service
  /** Between samples. Default 250 ms. */
  readonly interval?: Duration.DurationInput
  /** Seconds of answers a `hello` carries. Default 300. */
  readonly history?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The events of one connection, starting with its `hello`; the subscription ends with the stream. */
  readonly events: Stream.Stream<Event>
  /** The SSE response of `GET /status/stream`. */
  readonly response: HttpServerResponse.HttpServerResponse
  /** Connections subscribed now. */
  readonly subscribers: Effect.Effect<number>
  /** Ends every connection's stream (a server going down would otherwise wait for them to drain). */
  readonly close: Effect.Effect<void>
}

const transitionsKept = 50

const encoder = new TextEncoder()

/**
 * An event in the SSE wire format.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (event: Event): Uint8Array => {
  const { _tag, ...data } = event
  return encoder.encode(`event: ${_tag}\ndata: ${JSON.stringify(data)}\n\n`)
}

const retryField = encoder.encode("retry: 1000\n\n")

const latencyOf = (tracker: LatencyTracker.Service | undefined): Effect.Effect<DeploymentView["latency"]> =>
  tracker === undefined ? Effect.succeed(null) : Effect.map(tracker.snapshot, (s) =>
    s.p50 === undefined || s.p99 === undefined ? null : { p50: Math.round(s.p50), p99: Math.round(s.p99), count: s.count })

const deploymentView = (
  handle: ResilientClient.DeploymentHandle,
  state: Health.DeploymentState,
  latency: DeploymentView["latency"],
  now: number
): DeploymentView => {
  const breaker = state.status.circuitBreaker
  return {
    ...Health.toJson(handle, state, now),
    thresholds: view.thresholds(handle.config),
    rates: breaker === undefined
      ? null
      : { failureRate: breaker.failureRate, slowCallRate: breaker.slowCallRate, rated: breaker.rated },
    latency
  }
}

/** The deployments now, read from their policies (the store: Redis round trips when shared). */
const snapshotOf = (
  deployments: ReadonlyArray<ResilientClient.DeploymentHandle>,
  trackers: ReadonlyMap<string, LatencyTracker.Service>,
  traffic: ReadonlyArray<Second>,
  now: number
): Effect.Effect<Snapshot> =>
  Effect.flatMap(Health.read(deployments, now), (states) =>
    Effect.map(
      Effect.forEach(states, (state, i) => {
        const handle = deployments[i]
        return handle === undefined
          ? Effect.succeed([])
          : Effect.map(latencyOf(trackers.get(state.name)), (latency) => [deploymentView(handle, state, latency, now)])
      }),
      (views) => ({ at: now, ready: Health.isReady(states, now), deployments: views.flat(), traffic })
    ))

/**
 * Starts the sampler and the transition feed in the scope; they stop with it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, Errors.InvalidConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    const { deployments, events } = options
    const interval = Duration.decode(options.interval ?? "250 millis")
    const history = options.history ?? 300
    const trackers = new Map<string, LatencyTracker.Service>()
    for (const h of deployments) {
      trackers.set(h.config.name, yield* LatencyTracker.make({ name: h.config.name, window: "60 seconds", minSamples: 5 }))
    }
    const pubsub = yield* Effect.acquireRelease(PubSub.sliding<Event>(16), PubSub.shutdown)

    // The sampler's and the feed's own state: one fiber writes each, connections only read.
    let answered = view.answeredSoFar(yield* Metric.snapshot)
    let traffic: ReadonlyArray<Second> = []
    let transitions: ReadonlyArray<Transition> = []
    let seq = 0
    let subscribers = 0

    // The answers are counted always (the next page wants the last minutes); the deployments are read only while someone watches.
    const tick = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const counts = view.answeredSoFar(yield* Metric.snapshot)
      traffic = view.addSince(traffic, answered, counts, now, history)
      answered = counts
      if (subscribers === 0) return
      const snapshot = yield* snapshotOf(deployments, trackers, traffic.slice(-2), now)
      yield* PubSub.publish(pubsub, { _tag: "snapshot", snapshot })
    })
    yield* Effect.forkScoped(Effect.repeat(tick, Schedule.spaced(interval)))

    const onEvent = (event: AttemptEvents.AttemptEvent): Effect.Effect<void> => {
      if (event._tag === "AttemptEnded") {
        const tracker = trackers.get(event.deployment)
        return event.outcome === "success" && tracker !== undefined ? tracker.record(event.durationMs) : Effect.void
      }
      const transition = view.transitionOf(event, seq + 1)
      if (transition === undefined) return Effect.void
      seq = transition.seq
      transitions = [...transitions.slice(-(transitionsKept - 1)), transition]
      return PubSub.publish(pubsub, { _tag: "transition", transition })
    }
    // Subscribed before `make` returns, so no transition of the gateway's first requests is missed.
    const feed = yield* events.subscribe
    // Taken from the queue in batches, not as a stream: a stream's stages cost every request's events
    // about 30 Effect ops more (6 % of what a whole answer through the gateway runs). The wait for the
    // next batch suspends the fiber, so the loop needs no `Effect.forever` yield of its own.
    const drainFeed: Effect.Effect<never> = Effect.suspend(() =>
      Effect.flatMap(
        Queue.takeBetween(feed, 1, Number.MAX_SAFE_INTEGER),
        (batch) => Effect.zipRight(Effect.forEach(batch, onEvent, { discard: true }), drainFeed)
      )
    )
    yield* Effect.forkScoped(drainFeed)

    const connection = Effect.gen(function*() {
      // Subscribed before the hello is read: what happens in between arrives after it (a transition twice at worst, which `seq` dedupes).
      const queue = yield* PubSub.subscribe(pubsub)
      yield* Effect.acquireRelease(Effect.sync(() => void subscribers++), () => Effect.sync(() => void subscribers--))
      const snapshot = yield* Effect.flatMap(Clock.currentTimeMillis, (now) => snapshotOf(deployments, trackers, traffic, now))
      const hello: Event = { _tag: "hello", snapshot, transitions }
      return Stream.concat(Stream.make(hello), Stream.fromQueue(queue))
    })
    const eventsOf: Stream.Stream<Event> = Stream.unwrapScoped(connection)

    return {
      events: eventsOf,
      response: HttpServerResponse.stream(Stream.concat(Stream.make(retryField), Stream.map(eventsOf, encode)), {
        contentType: "text/event-stream",
        headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
      }),
      subscribers: Effect.sync(() => subscribers),
      close: PubSub.shutdown(pubsub)
    }
  })
