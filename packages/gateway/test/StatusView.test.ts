import { describe, expect, it } from "@effect/vitest"
import { Palette } from "@resilient-ai/testkit"
import type * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Dashboard from "../src/Dashboard.js"
import * as view from "../src/internal/statusView.js"

const deployment = (policy: Record<string, unknown> | undefined) =>
  ({ name: "d", provider: "openai", model: "m", ...(policy === undefined ? {} : { policy }) }) as unknown as ClientConfig.Deployment

describe("the status stream's view", () => {
  it("thresholds: the breaker's default (5 in a row), a consecutive trigger, a failure-rate trigger with its defaults, none without a breaker", () => {
    expect(view.thresholds(deployment(undefined))).toEqual({ kind: "consecutive", failures: 5 })
    expect(view.thresholds(deployment({ circuitBreaker: { trigger: { kind: "consecutive", failures: 3 } } })))
      .toEqual({ kind: "consecutive", failures: 3 })
    expect(view.thresholds(deployment({
      circuitBreaker: { trigger: { kind: "failure-rate", window: { kind: "count", size: 10 }, threshold: 0.5 } }
    }))).toEqual({ kind: "failure-rate", failureRate: 0.5, slowCallRate: null, minimumCalls: 10 })
    expect(view.thresholds(deployment({ circuitBreaker: false }))).toBeNull()
  })

  it("addSince: what was answered between two samples lands in the second of the later one; older than `keep` seconds is dropped", () => {
    const s1 = view.addSince([], new Map(), new Map([["primary", 3]]), 10_400, 5)
    expect(s1).toEqual([{ at: 10_000, counts: { primary: 3 } }])
    const s2 = view.addSince(s1, new Map([["primary", 3]]), new Map([["primary", 5], ["fallback-provider", 2]]), 10_900, 5)
    expect(s2).toEqual([{ at: 10_000, counts: { primary: 5, "fallback-provider": 2 } }])
    const s3 = view.addSince(s2, new Map([["primary", 5]]), new Map([["primary", 6]]), 16_100, 5)
    expect(s3).toEqual([{ at: 16_000, counts: { primary: 1 } }])
    // A counter that went down (a registry reset) adds nothing.
    expect(view.addSince([], new Map([["primary", 9]]), new Map([["primary", 2]]), 20_000, 5)).toEqual([{ at: 20_000, counts: {} }])
  })

  it.effect("answeredSoFar reads the client's request counter by source, and nothing else", () =>
    Effect.gen(function*() {
      const requests = Metric.counter("resilient_ai_requests_total", { incremental: true })
      yield* Metric.incrementBy(Metric.tagged(requests, "source", "fallback-provider"), 4)
      yield* Metric.increment(Metric.tagged(requests, "source", "not-a-source"))
      yield* Metric.increment(Metric.tagged(Metric.counter("resilient_ai_other_total"), "source", "primary"))
      const counts = view.answeredSoFar(yield* Metric.snapshot)
      expect(counts.get("fallback-provider")).toBe(4)
      expect([...counts.keys()]).toEqual(["fallback-provider"])
    }))

  it("transitionOf: breaker, key and limit changes are transitions, numbered; attempts are not", () => {
    expect(view.transitionOf({ _tag: "BreakerTransition", at: 1, breaker: "p", from: "closed", to: "open", reason: "r" }, 7))
      .toEqual({ seq: 7, at: 1, kind: "breaker", subject: "p", from: "closed", to: "open", reason: "r" })
    expect(view.transitionOf({ _tag: "KeyTransition", at: 1, pool: "p", keyName: "k1", from: "healthy", to: "cooling", reason: "429" }, 1))
      .toMatchObject({ kind: "key", subject: "p/k1", to: "cooling" })
    expect(view.transitionOf({ _tag: "LimitChanged", at: 1, limit: "p", from: 50, to: 25, reason: "drop" }, 1))
      .toMatchObject({ kind: "limit", from: "50", to: "25" })
    expect(view.transitionOf({ _tag: "AttemptStarted", at: 1, deployment: "p", attempt: 1, keyName: undefined }, 1)).toBeUndefined()
  })
})

describe("the dashboard page", () => {
  it("draws each source and breaker state in the drill's colours (one Palette), and offers the demo's buttons only when asked", () => {
    const page = Dashboard.html({ controls: true })
    for (const colour of [...Object.values(Palette.source), ...Object.values(Palette.breakerState)]) expect(page).toContain(colour)
    expect(page).toContain("id=\"down\"")
    expect(Dashboard.html({ controls: false })).not.toContain("id=\"down\"")
    // Self-contained: nothing from another origin.
    expect(page).not.toMatch(/(src|href)="(https?:)?\/\//)
  })
})
