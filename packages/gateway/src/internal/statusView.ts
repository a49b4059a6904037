/**
 * The pure parts of the status stream: the breaker thresholds a deployment
 * is judged against, answers per second by source from effect's request
 * counter, and events as transitions. No state, no clock: `StatusStream`
 * owns those.
 */
import { CircuitBreaker } from "@resilient-ai/core"
import type { AttemptEvents } from "@resilient-ai/core"
import type * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import * as Palette from "@resilient-ai/testkit/Palette"
import type * as MetricPair from "effect/MetricPair"
import type { Second, Thresholds, Transition } from "../StatusStream.js"
import * as MetricState from "effect/MetricState"

/** The thresholds of a configured deployment; null when it has no breaker. */
export const thresholds = (deployment: ClientConfig.Deployment): Thresholds | null => {
  const breaker = deployment.policy?.circuitBreaker
  if (breaker === false) return null
  const trigger = breaker?.trigger
  if (trigger === undefined) return { kind: "consecutive", failures: CircuitBreaker.defaults.failures }
  if (trigger.kind === "consecutive") return { kind: "consecutive", failures: trigger.failures }
  return {
    kind: "failure-rate",
    failureRate: trigger.threshold,
    slowCallRate: trigger.slowCallRateThreshold ?? null,
    minimumCalls: trigger.minimumCalls ?? CircuitBreaker.defaults.minimumCalls
  }
}

const isSource = (s: string): s is Palette.Source => s in Palette.source

/** The name of `ResilientClient`'s counter of answered requests, tagged by `source`. */
const requestsMetric = "resilient_ai_requests_total"

/**
 * Requests answered so far, by source, from a metric snapshot. The client
 * counts them in effect's registry; reading that registry keeps the gateway's
 * routes untouched, and is what `/metrics` shows.
 */
export const answeredSoFar = (snapshot: ReadonlyArray<MetricPair.MetricPair.Untyped>): Map<Palette.Source, number> => {
  const counts = new Map<Palette.Source, number>()
  for (const pair of snapshot) {
    if (pair.metricKey.name !== requestsMetric || !MetricState.isCounterState(pair.metricState)) continue
    const source = pair.metricKey.tags.find((t) => t.key === "source")?.value
    if (source === undefined || !isSource(source)) continue
    counts.set(source, (counts.get(source) ?? 0) + Number(pair.metricState.count))
  }
  return counts
}

/**
 * Adds what was answered since `before` to the second `now` falls in, and
 * drops the seconds older than `keep` seconds. Counters only grow; a
 * decrease (a registry reset in tests) counts as nothing.
 */
export const addSince = (
  seconds: ReadonlyArray<Second>,
  before: ReadonlyMap<Palette.Source, number>,
  after: ReadonlyMap<Palette.Source, number>,
  now: number,
  keep: number
): ReadonlyArray<Second> => {
  const at = Math.floor(now / 1000) * 1000
  const last = seconds[seconds.length - 1]
  const counts: Partial<Record<Palette.Source, number>> = last?.at === at ? { ...last.counts } : {}
  for (const [source, n] of after) {
    const delta = n - (before.get(source) ?? 0)
    if (delta > 0) counts[source] = (counts[source] ?? 0) + delta
  }
  const kept = seconds.filter((s) => s.at !== at && s.at > at - keep * 1000)
  return [...kept, { at, counts }]
}

/** An event as a transition, if it is one. */
export const transitionOf = (event: AttemptEvents.AttemptEvent, seq: number): Transition | undefined => {
  switch (event._tag) {
    case "BreakerTransition":
      return { seq, at: event.at, kind: "breaker", subject: event.breaker, from: event.from, to: event.to, reason: event.reason }
    case "KeyTransition":
      return {
        seq,
        at: event.at,
        kind: "key",
        subject: `${event.pool}/${event.keyName}`,
        from: event.from,
        to: event.to,
        reason: event.reason
      }
    case "LimitChanged":
      return { seq, at: event.at, kind: "limit", subject: event.limit, from: String(event.from), to: String(event.to), reason: event.reason }
    default:
      return undefined
  }
}
