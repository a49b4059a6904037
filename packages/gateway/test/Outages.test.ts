/**
 * Real-time outages of the primary through the chaos upstream, at a steady
 * 40 requests/s: 1 s normal, 2.5 s of outage, 2.5 s of recovery. In each:
 * at least 99.9 % answered; during the outage at most 1.05 calls to the
 * primary per client request; once the breaker is open, p50 close to normal
 * (asserted within 50 % on a loaded test machine, the real figure printed);
 * no key called again before its Retry-After; after recovery the primary
 * takes every request back within 2 s. The figures are printed as a table
 * (the README's "Outages" table comes from it).
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import type { ChaosUpstream } from "@resilient-ai/testkit"
import { FaultScript } from "@resilient-ai/testkit"
import * as Effect from "effect/Effect"
import { get, harness } from "./support/harness.js"
import * as Load from "./support/steadyLoad.js"

const rate = 40
const normalMs = 1_000
const outageMs = 2_500
const recoveryMs = 2_500
const outageEnd = normalMs + outageMs

interface Scenario {
  readonly name: string
  readonly stream: boolean
  /** The primary's fault over [from, to) of the chaos clock; none: connections are refused. */
  readonly fault: ((from: number, to: number) => FaultScript.Fault) | undefined
  /** From when in the outage the breaker (or the key's cooldown) keeps requests off the primary. */
  readonly settledAfterMs: number
}

const scenarios: ReadonlyArray<Scenario> = [
  { name: "503", stream: false, fault: (from, to) => ({ _tag: "Outage", from, to, error: "unavailable" }), settledAfterMs: 500 },
  { name: "refuses connections", stream: false, fault: undefined, settledAfterMs: 500 },
  { name: "hangs", stream: false, fault: (from, to) => ({ _tag: "Outage", from, to, error: "hang" }), settledAfterMs: 1_500 },
  { name: "answers in 3 s", stream: false, fault: (from, to) => ({ _tag: "Latency", from, to, latency: FaultScript.fixed(3_000) }), settledAfterMs: 1_500 },
  {
    name: "breaks mid-stream",
    stream: true,
    fault: (from, to) => ({ _tag: "StreamStall", from, to, rate: 1, afterChunks: 1, as: "cut" }),
    settledAfterMs: 500
  },
  { name: "429 with Retry-After 1 s", stream: false, fault: (from, to) => ({ _tag: "RateLimitStorm", from, to, rate: 1, retryAfterMs }), settledAfterMs: 500 }
]

interface Figures {
  readonly scenario: string
  readonly requests: number
  readonly answeredPct: number
  readonly primaryCallsPerRequest: number
  readonly p50NormalMs: number
  readonly p50SettledMs: number
  readonly tookBackMs: number
  /** Calls with a key inside its Retry-After after a 429 (see `inFlightSlackMs`); undefined without a 429. */
  readonly earlyCalls: number | undefined
  /** CPU of this process (load, gateway and upstream together) per request. */
  readonly cpuMsPerRequest: number
}
const figures: Array<Figures> = []

/** Attempts the gateway made on the primary, from its /metrics. */
const primaryAttempts = (url: string) =>
  fetch(`${url}/metrics`).then((r) => r.text()).then((text) =>
    [...text.matchAll(/^resilient_ai_attempts_total\{[^}]*deployment="primary"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
  )

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits

/** Calls of the chaos log in [from, to) of its clock. */
const primaryCalls = (log: ReadonlyArray<ChaosUpstream.CallRecord>, from: number, to: number) =>
  log.filter((c) => c.deployment === "primary" && c.startedAt >= from && c.startedAt < to)

const retryAfterMs = 1_000
/**
 * A call already on its way when a 429 came back (its key picked before the
 * gateway read the 429) is not a call made against the Retry-After: calls
 * that reach the upstream within this long of a 429's end are let pass.
 */
const inFlightSlackMs = 250

/** Calls with a key inside its Retry-After, made after the gateway could know of the 429. */
const callsBeforeRetryAfter = (log: ReadonlyArray<ChaosUpstream.CallRecord>): number | undefined => {
  const calls = log.filter((c) => c.deployment === "primary")
  const limited = calls.filter((c) => c.outcome === "rate-limit")
  if (limited.length === 0) return undefined
  return calls.filter((c) =>
    limited.some((l) =>
      c.keyName === l.keyName && c.startedAt >= l.endedAt + inFlightSlackMs && c.startedAt < l.endedAt + retryAfterMs - 5
    )
  ).length
}

const runScenario = (scenario: Scenario) =>
  Effect.scoped(Effect.gen(function*() {
    let upstreamPort = 0
    const proxy = scenario.fault === undefined
      ? yield* Effect.acquireRelease(
        Effect.promise(() => Load.forwarder(() => ({ host: "127.0.0.1", port: upstreamPort }))),
        (f) => Effect.promise(() => f.close())
      )
      : undefined
    const latency = { latency: FaultScript.fixed(40) }
    const { gateway, chaos } = yield* harness({
      primary: latency,
      backup: latency,
      // The backup is healthy: its time limit only has to outlast a starved test machine.
      backupPolicy: { attemptTimeout: "10 seconds" },
      primaryPolicy: {
        attemptTimeout: "1 second",
        retry: { maxRetries: 1, baseDelay: 5, jitter: "none" },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 3 }, openDuration: "1 second" }
      },
      client: { maxWaitBeforeFallback: 0 },
      ...(proxy === undefined ? {} : { primaryBaseUrl: (url: string) => url.replace(/:\d+\//, `:${proxy.port}/`) })
    })
    upstreamPort = chaos.port
    const at0 = yield* chaos.elapsed
    if (scenario.fault !== undefined) {
      yield* chaos.setScript("primary", [scenario.fault(normalMs, outageEnd)], { from: "now" })
    }
    let attemptsAtStart = 0
    let attemptsAtEnd = 0
    const cpuBefore = process.cpuUsage()
    const samples = yield* Effect.promise(() =>
      Load.run({
        rate,
        durationMs: normalMs + outageMs + recoveryMs,
        url: `${gateway.url}/v1/chat/completions`,
        body: JSON.stringify({ model: "primary", stream: scenario.stream, messages: [{ role: "user", content: "hi" }] }),
        stream: scenario.stream,
        at: proxy === undefined ? [] : [
          { ms: normalMs, run: async () => { attemptsAtStart = await primaryAttempts(gateway.url); await proxy.refuse() } },
          { ms: outageEnd, run: async () => { await proxy.accept(); attemptsAtEnd = await primaryAttempts(gateway.url) } }
        ]
      })
    )
    const cpu = process.cpuUsage(cpuBefore)
    const log = yield* chaos.log
    const during = Load.between(samples, normalMs, outageEnd)
    const calls = proxy === undefined
      ? primaryCalls(log, at0 + normalMs, at0 + outageEnd).length
      : attemptsAtEnd - attemptsAtStart
    const result: Figures = {
      scenario: scenario.name,
      requests: samples.length,
      answeredPct: round(100 * samples.filter((s) => s.answered).length / samples.length, 2),
      primaryCallsPerRequest: round(calls / during.length, 3),
      p50NormalMs: round(Load.percentile(Load.between(samples, 200, normalMs).map((s) => s.latencyMs), 0.5)),
      p50SettledMs: round(Load.percentile(Load.between(samples, normalMs + scenario.settledAfterMs, outageEnd).map((s) => s.latencyMs), 0.5)),
      tookBackMs: round(Load.tookBackAfter(samples, "primary", outageEnd), 0),
      earlyCalls: callsBeforeRetryAfter(log),
      cpuMsPerRequest: round((cpu.user + cpu.system) / 1000 / samples.length, 2)
    }
    figures.push(result)
    const failed = samples.filter((s) => !s.answered)
    if (failed.length > 0) console.log(scenario.name, "unanswered:", failed.slice(0, 3).map((s) => `${s.startMs.toFixed(0)} ms ${s.status} ${s.problem}`))
    // The status page still answers: the gateway is serving.
    expect((yield* get(`${gateway.url}/health`)).status).toBe(200)
    return result
  }))

describe("real-time outages of the primary at 40 requests/s", () => {
  for (const scenario of scenarios) {
    it.live(`the primary ${scenario.name}`, () =>
      Effect.map(runScenario(scenario), (f) => {
        expect(f.answeredPct).toBeGreaterThanOrEqual(99.9)
        expect(f.primaryCallsPerRequest).toBeLessThanOrEqual(1.05)
        // The target is 10 %; a loaded CI machine gets a margin, the table shows the real figure.
        expect(f.p50SettledMs).toBeLessThanOrEqual(f.p50NormalMs * 1.5 + 5)
        // 2 s, plus the machine's own delay on a request (a loaded CI machine queues requests before the gateway sees them).
        expect(f.tookBackMs).toBeLessThanOrEqual(2_000 + f.p50NormalMs)
        if (f.earlyCalls !== undefined) expect(f.earlyCalls).toBe(0)
      }), 60_000)
  }

  afterAll(() => {
    const header = "| the primary | requests | answered | primary calls / request (outage) | p50 normal | p50 breaker open | primary back after | calls inside Retry-After | CPU / request |"
    const rows = figures.map((f) =>
      `| ${f.scenario} | ${f.requests} | ${f.answeredPct} % | ${f.primaryCallsPerRequest} | ${f.p50NormalMs} ms | ${f.p50SettledMs} ms | ${f.tookBackMs} ms | ${f.earlyCalls ?? "-"} | ${f.cpuMsPerRequest} ms |`
    )
    console.log([header, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", ...rows].join("\n"))
  })
})
