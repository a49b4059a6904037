import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
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
const runOf = (name: Scenarios.Name, stack: Drill.Stack) => {
  const run = first.find((r) => r.scenario.name === name)?.runs.find((r) => r.report.stack === stack)
  if (run === undefined) return expect.fail(`no ${stack} run of ${name}`)
  return run.report
}

// stream-faults at a scale with enough streams in each of its three fault windows (2 minutes, 5 req/s).
const streamScenario = Scenarios.make("stream-faults", { scale: 0.1, rateScale: 0.5 })
const streamRuns = new Map<number, ReadonlyArray<Drill.ScenarioResult>>()
const streaming = (seed: number): ReadonlyArray<Drill.ScenarioResult> => {
  const done = streamRuns.get(seed)
  if (done !== undefined) return done
  const results = Effect.runSync(Drill.runAll([streamScenario], { seed }))
  streamRuns.set(seed, results)
  return results
}
const streamingReports = (results: ReadonlyArray<Drill.ScenarioResult>) => {
  const report = (stack: Drill.Stack) => {
    const run = results[0]?.runs.find((r) => r.report.stack === stack)
    if (run === undefined) expect.fail(`no ${stack} run of stream-faults`)
    return run.report
  }
  return { protected: report("protected"), none: report("none"), naive: report("naive-retry") }
}

describe("Drill", () => {
  it("runs every scenario through its stacks (the three, or cold-fallback's two protected ones), and no request dies of a defect", () => {
    expect(first.map((r) => r.scenario.name)).toEqual([...Scenarios.names])
    for (const r of first) {
      expect(r.runs.map((run) => run.report.stack)).toEqual(
        r.scenario.name === "cold-fallback" ? ["protected", "protected-no-probes"] : ["protected", "none", "naive-retry"]
      )
      for (const run of r.runs) {
        expect(run.firstDefect).toBeUndefined()
        expect(run.report.requests).toBeGreaterThan(0)
      }
    }
  })

  it("a fiber whose request has ended serves the next arrival: a run makes fibers for its peak of requests in flight, not one per request", () => {
    // Fiber ids count up from one counter: the ids taken during the run are the fibers it made.
    const before = FiberId.unsafeMake().id
    const run = Effect.runSync(Drill.run(Scenarios.make("provider-outage", { scale: 0.02 }), "none", { seed: 7 }))
    const made = FiberId.unsafeMake().id - before - 1
    expect(run.report.requests).toBeGreaterThan(10_000)
    expect(run.firstDefect).toBeUndefined()
    // 50 requests a second of about a second each (and up to 30 s while the primary hangs): some hundreds at once.
    expect(made).toBeLessThan(run.report.requests / 10)
    // Every request was answered or failed on its own: the counts add up, none lost between fibers.
    expect(run.report.answeredByModel + run.report.failed).toBe(run.report.requests)
  })

  // Two more drills of every scenario: seconds on a loaded machine, more than vitest's default 5 s.
  it("the same seed gives the same JSON; another seed another", () => {
    const json = (results: ReadonlyArray<Drill.ScenarioResult>) => JSON.stringify(DrillReport.document(results))
    expect(json(drill(7))).toEqual(json(first))
    expect(json(drill(8))).not.toEqual(json(first))
  }, 60_000)

  it("the JSON has the agreed keys for every scenario and stack", () => {
    const doc = DrillReport.document(first)
    expect(doc.scenarios).toHaveLength((Scenarios.names.length - 1) * 3 + 2)
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
          "callsDuringIncident",
          "firstFallbackAnswerMs",
          "limitDecreases",
          "breakerTransitions",
          "keyTransitions",
          "streams",
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
    // No bulkhead set: the adaptive limit sheds the slowed primary, and its first cut counts as the fail-over.
    expect(r.protected.limitDecreases).toBeGreaterThan(0)
    const opened = r.protected.breakerTransitions.find((t) => t.breaker === "gpt-4o" && t.to === "open")
    const scenario = first.find((s) => s.scenario.name === "flash-sale")?.scenario
    expect(r.protected.failoverMs ?? Infinity).toBeLessThan((opened?.at ?? Infinity) - (scenario?.incident.from ?? 0))
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

  it("all-down: degraded answers are queued and a model completes them after the outage; the report counts them", () => {
    // At a tenth of the scale, so the 30 s open breakers close with time to spare before the end.
    const scenario = Scenarios.make("all-down", { scale: 0.1, rateScale: 0.2 })
    const run = Effect.runSync(Drill.run(scenario, "protected", { seed: 7 }))
    const r = run.report
    expect(r.answeredByStatic).toBeGreaterThan(0)
    const c = r.completions
    if (c === null) return expect.fail("the protected stack completes degraded answers")
    // Every degraded answer got a ticket, and every queued request was completed by a model before the end.
    expect(c.queued + c.duplicates + c.refused).toBeGreaterThanOrEqual(r.answeredByStatic)
    expect(c.queued).toBeGreaterThan(0)
    expect(c).toMatchObject({ completed: c.queued, failed: 0, leftAtEnd: 0, refused: 0 })
    const text = DrillReport.table({ scenario, runs: [run] })
    expect(text).toMatch(new RegExp(`completed later by a model\\s+${c.completed.toLocaleString("en-US")}\\b`))
    expect(DrillReport.document([{ scenario, runs: [run] }]).scenarios[0]?.completions).toEqual(c)
    // The baselines have no such queue.
    expect(byName("all-down").none.completions).toBeNull()
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

  it("stream-faults: the protected stack never mixes answers and falls back before the first token; a naive retry mixes them", () => {
    const r = streamingReports(streaming(11))
    const [p, none, naive] = [r.protected.streams, r.none.streams, r.naive.streams]
    if (p === null || none === null || naive === null) return expect.fail("stream-faults reports its streams")
    expect(p.requests).toBeGreaterThan(0)
    expect(p.requests).toBe(none.requests)
    expect(p.mixedAnswers).toBe(0)
    expect(p.failedBeforeFirstToken).toBe(0)
    expect(p.fellBackBeforeFirstToken).toBeGreaterThan(0)
    expect(p.endedMidStream).toBeGreaterThan(0)
    expect(r.protected.errors).toEqual({ StreamInterruptedError: p.endedMidStream })
    // Without protection a stall before the first token is the caller's error (the transport's first-token timeout).
    expect(none.failedBeforeFirstToken).toBeGreaterThan(0)
    expect(none.mixedAnswers).toBe(0)
    // Reading a cut stream again from the start hands the caller a second answer after part of the first.
    expect(naive.mixedAnswers).toBeGreaterThan(0)
    expect(p.completed + p.endedMidStream + p.failedBeforeFirstToken).toBe(p.requests)
    // Scenarios without streaming traffic say so.
    expect(byName("provider-outage").protected.streams).toBeNull()
  }, 30_000)

  it("flapping, full length at a tenth of the traffic: the growing open duration meets the scenario's three targets", () => {
    const scenario = Scenarios.make("flapping", { rateScale: 0.1 })
    const run = () => Effect.runSync(Drill.run(scenario, "protected", { seed: 1 }))
    const report = run().report
    const targets = DrillReport.targets(scenario, report)
    expect(targets.map((t) => t.name)).toEqual([
      "the breaker does not open and close on every flap (closes on fewer than half)",
      "the primary still serves between flaps",
      "the primary takes traffic back within its longest open duration (120 s) after the flapping"
    ])
    for (const t of targets) expect(t, `${t.name}: ${t.value}`).toMatchObject({ ok: true })
    // It does close now and then: the primary is not held out for the whole flapping, as a fixed 2 minutes held it.
    expect(report.breakerTransitions.filter((t) => t.to === "closed").length).toBeGreaterThan(0)
    expect(JSON.stringify(run().report)).toEqual(JSON.stringify(report))
    // Shortened to a few flaps, a run is judged only on the openings and closings it can show.
    const short = Scenarios.make("flapping", { scale: 0.05, rateScale: 0.1 })
    const shortReport = Effect.runSync(Drill.run(short, "protected", { seed: 1 })).report
    expect(DrillReport.targets(short, shortReport).map((t) => t.name)).toEqual([targets[0]?.name])
  }, 60_000)

  it("stream-faults: the same seed gives the same JSON, another seed another", () => {
    const json = (results: ReadonlyArray<Drill.ScenarioResult>) => JSON.stringify(DrillReport.document(results))
    const once = json(streaming(11))
    expect(json(Effect.runSync(Drill.runAll([streamScenario], { seed: 11 })))).toEqual(once)
    expect(json(streaming(12))).not.toEqual(once)
    expect(streamingReports(streaming(11)).protected.streams?.requests).toBeGreaterThan(250)
  }, 60_000)

  it("primary-hang: the adaptive limit sheds the hung primary at once; without it calls pile up until the breaker opens, and the targets say so", () => {
    // Two minutes at 25 req/s, the hang from 0:30 to 1:30 (1,500 requests: the 1 % of the targets is 15).
    const scenario = Scenarios.make("primary-hang", { scale: 0.5, rateScale: 0.5 })
    const adaptive = Effect.runSync(Drill.run(scenario, "protected", { seed: 1 })).report
    const [primary, ...fallbacks] = scenario.client.deployments
    expect(primary.name).toBe("gpt-4o")
    const noLimit: Drill.Scenario = {
      ...scenario,
      client: { ...scenario.client, deployments: [{ ...primary, policy: { ...primary.policy, bulkhead: false } }, ...fallbacks] }
    }
    const unlimited = Effect.runSync(Drill.run(noLimit, "protected", { seed: 1 })).report
    const judged = (r: Drill.StackReport) => Object.fromEntries(DrillReport.targets(scenario, r).map((t) => [t.name.split(" ")[0], t.ok]))
    expect(DrillReport.targets(scenario, adaptive).map((t) => t.name)).toEqual([
      "calls per request (not from the cache) during the hang ≤ 1.01",
      "p99 during the hang ≤ 1.5 × p99 before",
      "first answer by a fallback < 0.5 s after the hang starts"
    ])
    expect(judged(adaptive)).toEqual({ calls: true, p99: true, first: true })
    expect(adaptive.limitDecreases).toBeGreaterThan(0)
    // The limit's decrease is the first reaction, before the breaker has seen 5 timeouts (2.5 s each).
    expect(adaptive.failoverMs).not.toBeNull()
    expect(adaptive.failoverMs ?? Infinity).toBeLessThan(2_500)
    expect(adaptive.callsDuringIncident.toDeployment).toBeLessThan(unlimited.callsDuringIncident.toDeployment / 3)
    // Without a limit, every call of the first 2.5 s waits for its timeout: every target fails.
    expect(judged(unlimited)).toEqual({ calls: false, p99: false, first: false })
    expect(unlimited.firstFallbackAnswerMs ?? 0).toBeGreaterThan(2_500)
    expect(unlimited.limitDecreases).toBe(0)
  }, 60_000)

  it("cold-fallback: with probes the revoked fallback gets no call in the outage; without, its first requests try it; both settings reported", () => {
    const withProbes = runOf("cold-fallback", "protected")
    const without = runOf("cold-fallback", "protected-no-probes")
    expect(withProbes).toMatchObject({ probes: true, callsToDeadFallback: 0 })
    expect(without.probes).toBe(false)
    // The outage's first requests get 401s (requests at once may try the same key) until no key is left.
    expect(without.callsToDeadFallback).toBeGreaterThan(0)
    expect(withProbes.failed + without.failed).toBe(0)
    for (const r of [withProbes, without]) {
      expect(r.outageFirstMinuteP99Ms).toEqual(expect.any(Number))
      expect(r.outageRestP99Ms).toEqual(expect.any(Number))
    }
    const scenario = first.find((r) => r.scenario.name === "cold-fallback")
    if (scenario === undefined) return expect.fail("no cold-fallback")
    const targets = DrillReport.targets(scenario.scenario, withProbes)
    expect(targets[0]).toMatchObject({ name: "no call to the dead claude-sonnet during the outage", ok: true })
    expect(DrillReport.targets(scenario.scenario, { ...withProbes, callsToDeadFallback: 1 })[0]?.ok).toBe(false)
    expect(DrillReport.targets(scenario.scenario, { ...withProbes, outageFirstMinuteP99Ms: 5_000, outageRestP99Ms: 4_000 })[1]?.ok).toBe(false)
    const text = DrillReport.table(scenario)
    expect(text).toMatch(/health probes +on +off/)
    expect(text).toMatch(new RegExp(`calls to the dead claude-sonnet during the outage +0 +${without.callsToDeadFallback}\\b`))
    // Other scenarios carry none of these fields.
    expect(byName("provider-outage").protected).not.toHaveProperty("probes")
  })

  it("cold-fallback at half scale: with probes it meets both targets of issue 18", () => {
    const scenario = Scenarios.make("cold-fallback", { scale: 0.5, rateScale: 0.5 })
    const report = Effect.runSync(Drill.run(scenario, "protected", { seed: 1 })).report
    for (const t of DrillReport.targets(scenario, report)) expect(t, `${t.name}: ${t.value}`).toMatchObject({ ok: true })
  }, 60_000)

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
