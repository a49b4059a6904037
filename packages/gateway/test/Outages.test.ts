/**
 * Real-time outages of the primary through the chaos upstream, at a steady
 * 40 requests/s: 1 s normal, 2.5 s of outage, 2.5 s of recovery. In each:
 * at least 99.9 % answered; during the outage at most 1.05 calls to the
 * primary per client request; once the breaker is open, p50 close to normal
 * (asserted within 2x + 50 ms on a loaded test machine, the real figure printed);
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

/** 40 by default; `OUTAGE_RATE` for a machine that cannot keep up (the load, the gateway and the upstream share this process). */
const rate = Number(process.env["OUTAGE_RATE"] ?? 40)
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
  /** Top-level client fields of the gateway's config for this outage. */
  readonly client?: Record<string, unknown>
  /** Streams of the outage that were cut after a token and went on elsewhere: more tokens than one stream has. */
  readonly continued?: boolean
}

const scenarios: ReadonlyArray<Scenario> = [
  { name: "503", stream: false, fault: (from, to) => ({ _tag: "Outage", from, to, error: "unavailable" }), settledAfterMs: 500 },
  { name: "refuses connections", stream: false, fault: undefined, settledAfterMs: 500 },
  { name: "hangs", stream: false, fault: (from, to) => ({ _tag: "Outage", from, to, error: "hang" }), settledAfterMs: 1_500 },
  { name: "answers in 3 s", stream: false, fault: (from, to) => ({ _tag: "Latency", from, to, latency: FaultScript.fixed(3_000) }), settledAfterMs: 1_500 },
  {
    // Cut after the opening event and one token, which the client has already received: the
    // backup goes on from that prefix (`continue-with-prefix`), so the stream still ends whole.
    name: "breaks mid-stream",
    stream: true,
    fault: (from, to) => ({ _tag: "StreamStall", from, to, rate: 1, afterChunks: 2, as: "cut" }),
    settledAfterMs: 500,
    client: { midStreamPolicy: "continue-with-prefix" },
    continued: true
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
  /** Streams of the outage whose client got more tokens than one stream has: cut after output, then continued; undefined without streams. */
  readonly continuedStreams: number | undefined
}
const figures: Array<Figures> = []

/**
 * Calls of these requests that went to the primary, from their headers: a
 * refused connection never reaches the upstream's log. The backup makes one
 * attempt (no retries), so an answer from it made `attempts - 1` on the primary.
 */
const primaryAttempts = (samples: ReadonlyArray<Load.Sample>) =>
  samples.reduce((n, s) => n + (s.deployment === "backup" ? s.attempts - 1 : s.attempts), 0)

const upstreamLatencyMs = 40
/** Text deltas of one chaos stream (the harness's `quick` deployments). */
const streamTokens = 3

/**
 * Whether this run can judge time: a normal request (a 40 ms upstream)
 * took at most 4 times that at p50. On a machine whose CPU is shared by
 * far more work than it has cores, requests queue in this process for
 * seconds; the run then still checks every count and ratio, and prints its
 * figures marked as not judged.
 */
const fitToTime = (f: Figures): boolean => f.p50NormalMs <= 4 * upstreamLatencyMs

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits

/** Calls of the chaos log in [from, to) of its clock. */
const primaryCalls = (log: ReadonlyArray<ChaosUpstream.CallRecord>, from: number, to: number) =>
  log.filter((c) => c.deployment === "primary" && c.startedAt >= from && c.startedAt < to)

const retryAfterMs = 1_000
/**
 * Calls with a key inside its Retry-After, made after the gateway could know
 * of the 429. A call already on its way when the 429 came back (its key
 * picked before the gateway read the 429) is not one: calls that reach the
 * upstream within `slackMs` of a 429's end (250 ms, or the machine's own
 * delay on a request when it is longer) are let pass.
 */
const callsBeforeRetryAfter = (log: ReadonlyArray<ChaosUpstream.CallRecord>, slackMs: number): number | undefined => {
  const calls = log.filter((c) => c.deployment === "primary")
  const limited = calls.filter((c) => c.outcome === "rate-limit")
  if (limited.length === 0) return undefined
  return calls.filter((c) =>
    limited.some((l) =>
      c.keyName === l.keyName && c.startedAt >= l.endedAt + slackMs && c.startedAt < l.endedAt + retryAfterMs - 5
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
    const latency = { latency: FaultScript.fixed(upstreamLatencyMs) }
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
      client: { maxWaitBeforeFallback: 0, ...scenario.client },
      ...(proxy === undefined ? {} : { primaryBaseUrl: (url: string) => url.replace(/:\d+\//, `:${proxy.port}/`) })
    })
    upstreamPort = chaos.port
    const body = JSON.stringify({ model: "primary", stream: scenario.stream, messages: [{ role: "user", content: "hi" }] })
    // Warm-up: the first requests load and compile the request path; "normal" is measured after them.
    yield* Effect.promise(() => Load.run({ rate: 50, durationMs: 400, url: `${gateway.url}/v1/chat/completions`, body, stream: scenario.stream }))
    const at0 = yield* chaos.elapsed
    if (scenario.fault !== undefined) {
      yield* chaos.setScript("primary", [scenario.fault(normalMs, outageEnd)], { from: "now" })
    }
    const cpuBefore = process.cpuUsage()
    const samples = yield* Effect.promise(() =>
      Load.run({
        rate,
        durationMs: normalMs + outageMs + recoveryMs,
        url: `${gateway.url}/v1/chat/completions`,
        body,
        stream: scenario.stream,
        at: proxy === undefined ? [] : [
          { ms: normalMs, run: () => proxy.refuse() },
          { ms: outageEnd, run: () => proxy.accept() }
        ]
      })
    )
    const cpu = process.cpuUsage(cpuBefore)
    const log = yield* chaos.log
    const during = Load.between(samples, normalMs, outageEnd)
    const calls = proxy === undefined
      ? primaryCalls(log, at0 + normalMs, at0 + outageEnd).length
      : primaryAttempts(during)
    const p50NormalMs = round(Load.percentile(Load.between(samples, 200, normalMs).map((s) => s.latencyMs), 0.5))
    const result: Figures = {
      scenario: scenario.name,
      requests: samples.length,
      answeredPct: round(100 * samples.filter((s) => s.answered).length / samples.length, 2),
      primaryCallsPerRequest: round(calls / during.length, 3),
      p50NormalMs,
      p50SettledMs: round(Load.percentile(Load.between(samples, normalMs + scenario.settledAfterMs, outageEnd).map((s) => s.latencyMs), 0.5)),
      tookBackMs: round(Load.tookBackAfter(samples, "primary", outageEnd), 0),
      earlyCalls: callsBeforeRetryAfter(log, Math.max(250, p50NormalMs)),
      cpuMsPerRequest: round((cpu.user + cpu.system) / 1000 / samples.length, 2),
      continuedStreams: scenario.stream ? during.filter((s) => s.answered && s.tokens > streamTokens).length : undefined
    }
    figures.push(result)
    const failed = samples.filter((s) => !s.answered)
    if (failed.length > 0) console.log(scenario.name, "unanswered:", failed.slice(0, 3).map((s) => `${s.startMs.toFixed(0)} ms ${s.status} ${s.problem}`))
    // The status page still answers: the gateway is serving.
    expect((yield* get(`${gateway.url}/health`)).status).toBe(200)
    return result
  }))

describe(`real-time outages of the primary at ${rate} requests/s`, () => {
  for (const scenario of scenarios) {
    it.live(`the primary ${scenario.name}`, () =>
      Effect.map(runScenario(scenario), (f) => {
        // Counts and ratios hold whatever the machine's speed.
        expect(f.primaryCallsPerRequest).toBeLessThanOrEqual(1.05)
        if (f.earlyCalls !== undefined) expect(f.earlyCalls).toBe(0)
        // The breaker opens on cut streams: the first ones had handed a token on, and still ended whole.
        if (scenario.continued === true) expect(f.continuedStreams).toBeGreaterThanOrEqual(1)
        if (!fitToTime(f)) {
          // Requests wait in this process's queue for seconds: answers and latency measure the machine, not the gateway.
          expect(f.answeredPct).toBeGreaterThanOrEqual(90)
          return
        }
        expect(f.answeredPct).toBeGreaterThanOrEqual(99.9)
        // The target is 10 %; a loaded CI machine gets a margin, the table shows the real figure.
        expect(f.p50SettledMs).toBeLessThanOrEqual(f.p50NormalMs * 2 + 50)
        // 2 s, plus the machine's own delay on a request (a loaded CI machine queues requests before the gateway sees them).
        expect(f.tookBackMs).toBeLessThanOrEqual(2_000 + f.p50NormalMs)
      }), 60_000)
  }

  afterAll(() => {
    const header = "| the primary | requests | answered | primary calls / request (outage) | p50 normal | p50 breaker open | primary back after | calls inside Retry-After | CPU / request | streams cut after a token, ended whole | time judged |"
    const rows = figures.map((f) =>
      `| ${f.scenario} | ${f.requests} | ${f.answeredPct} % | ${f.primaryCallsPerRequest} | ${f.p50NormalMs} ms | ${f.p50SettledMs} ms | ${f.tookBackMs} ms | ${f.earlyCalls ?? "-"} | ${f.cpuMsPerRequest} ms | ${f.continuedStreams ?? "-"} | ${fitToTime(f) ? "yes" : "no: machine too loaded"} |`
    )
    console.log([header, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", ...rows].join("\n"))
  })
})
