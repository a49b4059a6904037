import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Errors from "../src/Errors.js"
import * as KeyPool from "../src/KeyPool.js"
import * as Policy from "../src/Policy.js"
import * as StateStore from "../src/StateStore.js"

/**
 * The in-memory store finishes every operation in the call (an `Exit` the
 * policies take in the same op). A shared store (Redis) returns an effect to
 * run. The policies run the same code on both: a store whose every
 * operation is an effect still to run must give the same results, call for
 * call. (It runs at once, so concurrent calls interleave as they do on the
 * memory store and the two runs can be compared step for step.)
 */
const later = <A>(op: () => Effect.Effect<A>): Effect.Effect<A> => Effect.suspend(op)

const suspendingStore = (): StateStore.Service => {
  const memory = StateStore.makeMemory()
  return {
    breaker: (name, config) => {
      const slot = memory.breaker(name, config)
      return {
        admit: (now) => later(() => slot.admit(now)),
        record: (admission, outcome, duration, now) => later(() => slot.record(admission, outcome, duration, now)),
        read: (now) => later(() => slot.read(now)),
        force: (to, now) => later(() => slot.force(to, now))
      }
    },
    tokenBucket: (name, config) => {
      const slot = memory.tokenBucket(name, config)
      return {
        reserve: (costs, now, maxWait, deadline) => later(() => slot.reserve(costs, now, maxWait, deadline)),
        release: (costs, now) => later(() => slot.release(costs, now)),
        correct: (bucket, delta, now) => later(() => slot.correct(bucket, delta, now)),
        pause: (until, now) => later(() => slot.pause(until, now)),
        read: (now) => later(() => slot.read(now))
      }
    },
    keyHealth: (name, config) => {
      const slot = memory.keyHealth(name, config)
      return {
        pick: (now, avoid, affinity) => later(() => slot.pick(now, avoid, affinity)),
        record: (index, outcome, now) => later(() => slot.record(index, outcome, now)),
        cool: (index, until, now, reason) => later(() => slot.cool(index, until, now, reason)),
        force: (index, to, now) => later(() => slot.force(index, to, now)),
        read: (now) => later(() => slot.read(now))
      }
    },
    adaptiveLimit: (name, config) => {
      const slot = memory.adaptiveLimit(name, config)
      return { step: (event, now, inFlightSince) => later(() => slot.step(event, now, inFlightSince)) }
    },
    retryBudget: (name, config) => {
      const slot = memory.retryBudget(name, config)
      return {
        recordAttempt: (now) => later(() => slot.recordAttempt(now)),
        tryAcquireRetry: (now) => later(() => slot.tryAcquireRetry(now)),
        read: (now) => later(() => slot.read(now))
      }
    }
  }
}

type Outcome = "ok" | "503" | "429" | "401" | "400" | "slow" | "hang" | "die"

const errorOf = (outcome: Outcome) => {
  switch (outcome) {
    case "503":
      return new Errors.ProviderUnavailableError({ status: 503 })
    case "429":
      return new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(3) })
    case "401":
      return new Errors.AuthError({ status: 401 })
    default:
      return new Errors.BadRequestError({ status: 400 })
  }
}

/** One attempt's behaviour: some are `Exit`s (done at once), some run on the clock. */
const attemptFor = (outcome: Outcome, answer: string): Effect.Effect<string, unknown> => {
  switch (outcome) {
    case "ok":
      return Effect.succeed(answer)
    case "slow":
      return Effect.as(Effect.sleep(1500), answer)
    case "hang":
      return Effect.never
    case "die":
      return Effect.suspend(() => Effect.die("boom"))
    default:
      return Effect.fail(errorOf(outcome))
  }
}

// Attempt outcomes in the order the calls make them (cycled).
const script: ReadonlyArray<Outcome> = [
  "ok", "503", "503", "ok", "429", "ok", "slow", "503", "503", "503", "503", "503", "ok", "400", "hang", "ok",
  "401", "ok", "die", "ok", "503", "slow", "ok", "ok", "429", "429", "ok", "503", "hang", "ok"
]

const allDone = (fibers: ReadonlyArray<Fiber.Fiber<unknown, unknown>>) =>
  Effect.map(Effect.forEach(fibers, Fiber.poll), (polls) => polls.every(Option.isSome))

/** Runs the same scripted traffic against one policy and reports everything observable. */
const scenario = (store: StateStore.Service) =>
  Effect.gen(function*() {
    // Start on a minute boundary, and report times from there: both runs share one TestClock.
    const now = yield* Clock.currentTimeMillis
    const start = (Math.floor(now / 60_000) + 1) * 60_000
    yield* TestClock.adjust(start - now)
    const relative = (text: string) => text.replace(/\d{5,}/g, (n) => (Number(n) >= start ? String(Number(n) - start) : n))
    const keyPool = yield* KeyPool.make({
      name: "keys",
      keys: [
        { name: "k1", key: Redacted.make("sk-1") },
        { name: "k2", key: Redacted.make("sk-2") },
        { name: "k3", key: Redacted.make("sk-3") }
      ],
      failuresBeforeCooldown: 2,
      failureCooldown: "5 seconds"
    })
    const policy = yield* Policy.make({
      deployment: "d",
      keyPool,
      attemptTimeout: "1 second",
      retry: { jitter: "none", baseDelay: "200 millis", maxRetries: 2 },
      circuitBreaker: { trigger: { kind: "consecutive", failures: 4 }, openDuration: "3 seconds", permittedCallsInHalfOpen: 2 },
      rateLimiter: { requestsPerMinute: 12 },
      bulkhead: { maxConcurrent: 1, maxQueue: 1 }
    })
    let next = 0
    const log: Array<string> = []
    const call = ({ attempt, key }: Policy.Attempt) => {
      const outcome = script[next++ % script.length] ?? "ok"
      log.push(`${key?.name}#${attempt}:${outcome}`)
      return attemptFor(outcome, `${key?.name}`)
    }
    const results: Array<string> = []
    const show = (exit: Exit.Exit<Policy.Detailed<string>, unknown>) =>
      Exit.match(exit, {
        onSuccess: (d) => `ok ${d.value} ${d.keyName} backup=${d.backupKey} attempts=${d.attempts}`,
        onFailure: (cause) => `failed ${JSON.stringify(Exit.failCause(cause).pipe(Exit.causeOption))}`.slice(0, 200)
      })
    for (let round = 0; round < 12; round++) {
      // Four calls at once, one of them interrupted half-way, then time moves on.
      const fibers = yield* Effect.forEach([0, 1, 2, 3], () => Effect.fork(Effect.exit(policy.executeDetailed(call))))
      yield* TestClock.adjust("300 millis")
      yield* Fiber.interrupt(fibers[2]!)
      const waited = [fibers[0]!, fibers[1]!, fibers[3]!]
      for (let step = 0; step < 40 && !(yield* allDone(waited)); step++) yield* TestClock.adjust("500 millis")
      for (const fiber of waited) results.push(show(yield* Fiber.join(fiber)))
      const status = yield* policy.status
      results.push(JSON.stringify({
        breaker: status.circuitBreaker,
        bulkhead: status.bulkhead,
        keys: status.keyPool?.keys.map((k) => ({ ...k, picks: undefined })),
        limiters: status.keyRateLimiters,
        budget: status.retryBudget
      }))
      yield* TestClock.adjust("1500 millis")
    }
    return { log, results: results.map(relative) }
  }).pipe(Effect.provideService(StateStore.StateStore, store))

describe("Policy: one admission path over any store", () => {
  it.effect("a store that suspends gives the memory store's results, call for call (outcomes, key picks, breaker, limiter, bulkhead, budget)", () =>
    Effect.gen(function*() {
      const fused = yield* scenario(StateStore.makeMemory())
      const composed = yield* scenario(suspendingStore())
      expect(fused.log.length).toBeGreaterThan(20)
      expect(fused.log).toEqual(composed.log)
      expect(fused.results).toEqual(composed.results)
      // The script reached the interesting states: an open breaker, a cooling key, a full bulkhead.
      const all = fused.results.join("\n")
      expect(all).toContain("CircuitOpenError")
      expect(all).toContain("\"cooling\"")
      expect(all).toContain("BulkheadFullError")
    }))

  it.effect("an attempt interrupted from outside gives its bulkhead permit back", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "d", bulkhead: { maxConcurrent: 1 }, attemptTimeout: "1 minute" })
      const fiber = yield* Effect.fork(policy.execute(() => Effect.never))
      yield* TestClock.adjust("1 second")
      expect((yield* policy.status).bulkhead?.running).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect((yield* policy.status).bulkhead?.running).toBe(0)
      expect(yield* policy.execute(() => Effect.succeed("next"))).toBe("next")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("an attempt that is an Exit is recorded like any other: failures open the breaker", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({
        deployment: "d",
        retry: false,
        circuitBreaker: { trigger: { kind: "consecutive", failures: 2 } }
      })
      const down = new Errors.ProviderUnavailableError({ status: 503 })
      yield* Effect.either(policy.execute(() => Effect.fail(down)))
      expect((yield* policy.status).circuitBreaker?.state).toBe("closed")
      yield* Effect.either(policy.execute(() => Effect.fail(down)))
      expect((yield* policy.status).circuitBreaker?.state).toBe("open")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("a call that throws is a defect of its attempt, with no permit, grant or key left taken", () =>
    Effect.gen(function*() {
      const keyPool = yield* KeyPool.make({ name: "keys", keys: [{ name: "k1", key: Redacted.make("sk-1") }] })
      const policy = yield* Policy.make({
        deployment: "d",
        keyPool,
        retry: false,
        bulkhead: { maxConcurrent: 1 },
        rateLimiter: { requestsPerMinute: 2 }
      })
      const exit = yield* Effect.exit(policy.execute((): Effect.Effect<string> => {
        throw new Error("bad call")
      }))
      expect(Exit.isFailure(exit) && Exit.causeOption(exit).pipe(Option.map((c) => c._tag))).toEqual(Option.some("Die"))
      const status = yield* policy.status
      expect(status.bulkhead?.running).toBe(0)
      // The throwing attempt was admitted (one request of two), and the next call still gets the key.
      expect(status.keyRateLimiters?.k1?.requests?.available).toBe(1)
      expect(yield* policy.execute(({ key }) => Effect.succeed(key?.name))).toBe("k1")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.effect("first attempts are in the retry budget for every reader", () => {
    const store = StateStore.makeMemory()
    return Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "d" })
      for (let i = 0; i < 7; i++) yield* policy.execute(() => Effect.succeed(i))
      expect((yield* policy.status).retryBudget?.attempts).toBe(7)
      expect(store.inspect("retry-budget/d")).toEqual({ buckets: [{ second: 0, attempts: 7, retries: 0 }] })
      yield* TestClock.adjust("2 seconds")
      yield* policy.execute(() => Effect.succeed(0))
      expect((yield* policy.status).retryBudget?.attempts).toBe(8)
    }).pipe(Effect.provideService(StateStore.StateStore, store))
  })
})
