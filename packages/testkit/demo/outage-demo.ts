/**
 * `npm start`: a provider outage replayed in virtual time.
 *
 * A primary deployment is healthy, then answers 503 for two minutes, then
 * recovers. 5 requests a second go through the policies of rule 18 (retry with
 * budget, circuit breaker, bulkhead, attempt timeout) and fall back to a
 * backup deployment on any fallbackable error. The same traffic also runs
 * unprotected, so the two can be compared. Five minutes of traffic run in
 * well under a second, the same every run: time is virtual (VirtualTime).
 */
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Clock from "effect/Clock"
import * as Queue from "effect/Queue"
import { CircuitBreaker, Errors, Policy, StateStore } from "@resilient-ai/core"
import { VirtualTime } from "../src/index.js"

const SECOND = 1000
const RUN = 5 * 60 * SECOND
const RATE_PER_SECOND = 5
const OUTAGE = { from: 60 * SECOND, to: 180 * SECOND }
const BUCKET = 30 * SECOND

/** The primary: 300 ms answers, except a 503 after 100 ms during the outage. */
const primaryCall = (counters: { sent: number; sentDuringOutage: number }) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    counters.sent += 1
    const down = now >= OUTAGE.from && now < OUTAGE.to
    if (down) counters.sentDuringOutage += 1
    return down
      ? Effect.delay(Effect.fail(new Errors.ProviderUnavailableError({ status: 503, deployment: "primary" })), "100 millis")
      : Effect.delay(Effect.succeed("primary" as const), "300 millis")
  })

const backupCall = Effect.delay(Effect.succeed("backup" as const), "500 millis")

type Answer = "primary" | "backup" | "failed"
interface Outcome {
  readonly at: number
  readonly answer: Answer
  readonly latency: number
}

/** Sends RATE_PER_SECOND requests a second for RUN ms, each through `handle`, and collects the outcomes. */
const traffic = (handle: Effect.Effect<Answer>) =>
  Effect.gen(function*() {
    const outcomes: Array<Outcome> = []
    const fibers: Array<Fiber.RuntimeFiber<void>> = []
    const total = (RUN / SECOND) * RATE_PER_SECOND
    for (let i = 0; i < total; i++) {
      const at = yield* Clock.currentTimeMillis
      fibers.push(
        yield* Effect.fork(
          Effect.flatMap(handle, (answer) =>
            Effect.map(Clock.currentTimeMillis, (end) => void outcomes.push({ at, answer, latency: end - at })))
        )
      )
      yield* Effect.sleep(Duration.millis(SECOND / RATE_PER_SECOND))
    }
    yield* Fiber.joinAll(fibers)
    return outcomes
  })

const pad = (s: string | number, n: number) => String(s).padStart(n)
const clock = (ms: number) => {
  const s = Math.floor(ms / SECOND)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`
}

const protectedRun = Effect.gen(function*() {
  const counters = { sent: 0, sentDuringOutage: 0 }
  const primary = yield* Policy.make({
    deployment: "primary",
    circuitBreaker: { trigger: { kind: "consecutive", failures: 5 }, openDuration: "20 seconds", permittedCallsInHalfOpen: 2 },
    retry: { maxRetries: 2, baseDelay: "200 millis", maxDelay: "2 seconds" },
    bulkhead: { maxConcurrent: 20, maxQueue: 50, maxQueueWait: "1 second" },
    attemptTimeout: "2 seconds"
  })
  const breaker = primary.circuitBreaker as CircuitBreaker.Service
  const transitions = yield* breaker.subscribe
  const handle: Effect.Effect<Answer> = primary.execute(() => primaryCall(counters)).pipe(
    Effect.catchIf(Errors.isFallbackable, () => backupCall),
    Effect.catchAll(() => Effect.succeed("failed" as const))
  )
  const outcomes = yield* traffic(handle)
  return { outcomes, counters, transitions: yield* Queue.takeAll(transitions) }
}).pipe(Effect.scoped, Effect.provide(StateStore.layerMemory))

const unprotectedRun = Effect.gen(function*() {
  const counters = { sent: 0, sentDuringOutage: 0 }
  const outcomes = yield* traffic(Effect.catchAll(primaryCall(counters), () => Effect.succeed("failed" as const)))
  return { outcomes, counters }
})

const main = Effect.gen(function*() {
  const started = performance.now()
  const guarded = yield* VirtualTime.run(protectedRun)
  const bare = yield* VirtualTime.run(unprotectedRun)
  const wall = performance.now() - started

  yield* Console.log(`resilient-ai outage demo: ${RATE_PER_SECOND} req/s for ${clock(RUN)}, primary down ${clock(OUTAGE.from)}–${clock(OUTAGE.to)} (virtual time)\n`)
  yield* Console.log("  window     | requests | primary | backup | failed | unprotected failed")
  yield* Console.log("  -----------+----------+---------+--------+--------+-------------------")
  for (let from = 0; from < RUN; from += BUCKET) {
    const inWindow = (o: Outcome) => o.at >= from && o.at < from + BUCKET
    const g = guarded.outcomes.filter(inWindow)
    const b = bare.outcomes.filter(inWindow)
    const count = (os: ReadonlyArray<Outcome>, a: Answer) => os.filter((o) => o.answer === a).length
    const marker = from >= OUTAGE.from && from < OUTAGE.to ? "  ← outage" : ""
    yield* Console.log(
      `  ${clock(from)}–${clock(from + BUCKET).padEnd(5)} | ${pad(g.length, 8)} | ${pad(count(g, "primary"), 7)} | ${pad(count(g, "backup"), 6)} | ${pad(count(g, "failed"), 6)} | ${pad(count(b, "failed"), 18)}${marker}`
    )
  }

  yield* Console.log("\n  circuit breaker of the primary:")
  for (const t of guarded.transitions) {
    yield* Console.log(`    ${clock(t.at)}  ${t.from.padEnd(9)} → ${t.to.padEnd(9)}  ${t.reason}`)
  }

  const failed = (os: ReadonlyArray<Outcome>) => os.filter((o) => o.answer === "failed").length
  const availability = (os: ReadonlyArray<Outcome>) => (100 * (os.length - failed(os))) / os.length
  const outageSeconds = (OUTAGE.to - OUTAGE.from) / SECOND
  yield* Console.log(`
  protected:   ${availability(guarded.outcomes).toFixed(2)} % answered, ${failed(guarded.outcomes)} failed; ${guarded.counters.sentDuringOutage} calls sent to the primary while it was down (${(guarded.counters.sentDuringOutage / outageSeconds).toFixed(2)}/s: trial calls only, the breaker fails fast)
  unprotected: ${availability(bare.outcomes).toFixed(2)} % answered, ${failed(bare.outcomes)} failed; ${bare.counters.sentDuringOutage} calls sent to the primary while it was down

  ${guarded.outcomes.length + bare.outcomes.length} requests over ${clock(RUN)} of virtual time, twice, in ${wall.toFixed(0)} ms of wall time.`)
})

Effect.runPromise(main).catch((error: unknown) => {
  process.exitCode = 1
  return Console.error("demo failed:", error).pipe(Effect.runPromise)
})
