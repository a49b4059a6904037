import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Drill from "../src/Drill.js"
import * as DrillReport from "../src/DrillReport.js"
import * as Scenarios from "../src/Scenarios.js"

// Every scenario in miniature: durations x 0.02 (provider-outage: 3.6 minutes), traffic x 0.2.
const small = { scale: 0.02, rateScale: 0.2 }
const drill = (seed: number) => Effect.runSync(Drill.runAll(Scenarios.all(small), { seed }))
const first = drill(7)
const byName = (name: Scenarios.Name) => {
  const result = first.find((r) => r.scenario.name === name)
  const report = (stack: Drill.Stack) => {
    const run = result?.runs.find((r) => r.report.stack === stack)
    if (run === undefined) expect.fail(`no ${stack} run of ${name}`)
    return run.report
  }
  return { protected: report("protected"), none: report("none"), naive: report("naive-retry") }
}

describe("Drill", () => {
  it("runs every scenario through the three stacks, and no request dies of a defect", () => {
    expect(first.map((r) => r.scenario.name)).toEqual([...Scenarios.names])
    for (const r of first) {
      expect(r.runs.map((run) => run.report.stack)).toEqual(["protected", "none", "naive-retry"])
      for (const run of r.runs) {
        expect(run.firstDefect).toBeUndefined()
        expect(run.report.requests).toBeGreaterThan(0)
      }
    }
  })

  it("the same seed gives the same JSON; another seed another", () => {
    const json = (results: ReadonlyArray<Drill.ScenarioResult>) => JSON.stringify(DrillReport.document(results))
    expect(json(drill(7))).toEqual(json(first))
    expect(json(drill(8))).not.toEqual(json(first))
  })

  it("the JSON has the agreed keys for every scenario and stack", () => {
    const doc = DrillReport.document(first)
    expect(doc.scenarios).toHaveLength(Scenarios.names.length * 3)
    for (const s of doc.scenarios) {
      for (
        const key of [
          "name",
          "seed",
          "stack",
          "requests",
          "answeredByModel",
          "answeredByCache",
          "answeredByStaleCache",
          "answeredByStatic",
          "failed",
          "availability",
          "latencyMs",
          "attemptsPerRequest",
          "callsToDownProvider",
          "failoverMs",
          "recoveryMs",
          "breakerTransitions",
          "keyTransitions",
          "costUsd"
        ]
      ) expect(s).toHaveProperty(key)
      expect(Object.keys(s.latencyMs)).toEqual(["p50", "p95", "p99"])
    }
  })

  it("provider-outage: the fault is injected (the baselines fail during the outage only); the protected stack answers all", () => {
    const r = byName("provider-outage")
    expect(r.none.failed).toBeGreaterThan(0)
    expect(r.none.errors).toEqual({ ProviderUnavailableError: r.none.failed })
    expect(r.none.latencyByPhaseMs.during.p99).toBeLessThan(500) // fast 503s, not answers
    expect(r.naive.failed).toBeGreaterThan(0)
    expect(r.naive.callsToDownProvider).toBeGreaterThan(3 * r.none.failed)
    expect(r.protected.failed).toBe(0)
    expect(r.protected.answeredByStatic).toBe(0)
    expect(r.protected.callsToDownProvider).toBeLessThan(r.none.callsToDownProvider / 10)
    expect(r.protected.breakerTransitions[0]).toMatchObject({ breaker: "gpt-4o", from: "closed", to: "open" })
    expect(r.protected.failoverMs).not.toBeNull()
    expect(r.protected.answeredBy["claude-sonnet"]).toBeGreaterThan(0)
  })

  it("flash-sale: the primary slows to 15 s under 15x traffic; the protected stack moves away from it", () => {
    const r = byName("flash-sale")
    expect(r.none.latencyByPhaseMs.before.p50).toBeLessThan(2_000)
    expect(r.none.latencyByPhaseMs.during.p50).toBeGreaterThan(10_000)
    expect(r.protected.latencyByPhaseMs.during.p50).toBeLessThan(3_000)
    expect(r.protected.breakerTransitions.some((t) => t.to === "open")).toBe(true)
    expect(r.protected.failed).toBe(0)
  })

  it("rate-limit-storm: 429s reach the baseline; the protected stack answers all", () => {
    const r = byName("rate-limit-storm")
    expect(r.none.errors["RateLimitError"]).toBeGreaterThan(0)
    expect(r.protected.failed).toBe(0)
    expect(r.protected.keyTransitions.length).toBeGreaterThan(0)
    expect(r.protected.keyTransitions[0]).toEqual({
      at: expect.any(Number),
      pool: "gpt-4o",
      key: expect.stringMatching(/^primary-\d$/),
      from: "healthy",
      to: expect.any(String),
      reason: expect.any(String)
    })
  })

  it("key-revoked: the revoked key fails a third of the baseline's calls; the protected stack disables it after one", () => {
    const r = byName("key-revoked")
    expect(r.none.errors["AuthError"]).toBeGreaterThan(0)
    expect(r.protected.failed).toBe(0)
    expect(r.protected.callsToDownProvider).toBe(1)
  })

  it("flapping: the baseline fails in the down phases; the protected stack answers all", () => {
    const r = byName("flapping")
    expect(r.none.failed).toBeGreaterThan(0)
    expect(r.protected.failed).toBe(0)
    expect(r.protected.breakerTransitions.some((t) => t.to === "open")).toBe(true)
  })

  it("every request is counted once: model + fresh cache + stale cache + static + failed = requests", () => {
    for (const r of first) {
      for (const { report: s } of r.runs) {
        expect(s.answeredByModel + s.answeredByCache + s.answeredByStaleCache + s.answeredByStatic + s.failed).toBe(s.requests)
      }
    }
  })

  it("availability by model is (model + fresh cache) / requests; a stale cache answer counts in availability only", () => {
    // Every deployment down for the last third, cache entries expiring after 10 s: stale-if-error answers.
    const base = Scenarios.make("provider-outage", small)
    const down = { _tag: "Outage", from: base.durationMs * 2 / 3, to: base.durationMs } as const
    const scenario: Drill.Scenario = {
      ...base,
      traffic: { ...base.traffic, repeatShare: 0.5, popularPrompts: 5 },
      providers: base.providers.map((p) => ({ ...p, script: [down] })),
      extras: { cache: { timeToLive: "10 seconds", maxEntries: 100, maxStale: "1 hour" } }
    }
    const report = Effect.runSync(Drill.run(scenario, "protected", { seed: 3 })).report
    expect(report.answeredByStaleCache).toBeGreaterThan(0)
    expect(report.answeredByCache).toBeGreaterThan(0)
    expect(report.availabilityByModel).toBeCloseTo((report.answeredByModel + report.answeredByCache) / report.requests, 6)
    expect(report.availability).toBeCloseTo(
      (report.answeredByModel + report.answeredByCache + report.answeredByStaleCache) / report.requests,
      6
    )
    expect(report.availability).toBeGreaterThan(report.availabilityByModel)
    const text = DrillReport.table({ scenario, runs: [{ report, firstDefect: undefined, timeline: { bucketMs: 1000, series: {} } }] })
    expect(text).toMatch(/availability by model: \(model \+ fresh cache\) \/ requests +\d/)
  })

  it("the table's cells line up whatever the length of a label", () => {
    for (const r of first) {
      const text = DrillReport.table(r)
      const block = text.split("\n\n")[1]?.split("\n") ?? []
      expect(block.length).toBeGreaterThan(10)
      // Cells are right-aligned to a fixed width after a label column as wide as the longest label.
      expect(new Set(block.map((l) => l.length)).size).toBe(1)
    }
  })

  it("the report renders a table per scenario and an SVG timeline", () => {
    const text = DrillReport.table(first[0]!)
    expect(text).toMatch(/^provider-outage: /)
    expect(text).toMatch(/availability by model/)
    const svg = DrillReport.svg(first)
    expect(svg.startsWith("<svg")).toBe(true)
    expect(svg).toMatch(/flapping/)
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true)
  })
})
