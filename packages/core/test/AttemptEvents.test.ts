import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as AttemptEvents from "../src/AttemptEvents.js"
import * as Errors from "../src/Errors.js"
import * as Hedge from "../src/Hedge.js"
import * as Policy from "../src/Policy.js"
import * as StateStore from "../src/StateStore.js"

describe("AttemptEvents", () => {
  it.scoped("a policy reports each attempt, the delay it chose and why, and breaker transitions", () =>
    Effect.gen(function*() {
      const events = yield* AttemptEvents.AttemptEvents
      const queue = yield* events.subscribe
      const policy = yield* Policy.make({
        deployment: "primary",
        retry: { maxRetries: 2, jitter: "none", baseDelay: "1 seconds" },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 2 } }
      })
      const script = [
        new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(5) }),
        new Errors.ProviderUnavailableError({ status: 503 }),
        new Errors.ProviderUnavailableError({ status: 503 })
      ]
      const fiber = yield* Effect.fork(Effect.either(policy.execute(({ attempt }) => {
        const error = script[attempt - 1]
        return error === undefined ? Effect.succeed("ok") : Effect.delay(Effect.fail(error), "100 millis")
      })))
      yield* TestClock.adjust("1 minutes")
      yield* Fiber.join(fiber)
      const seen = Chunk.toReadonlyArray(yield* Queue.takeAll(queue)).map((e) => {
        switch (e._tag) {
          case "AttemptStarted":
            return `${e.at} start #${e.attempt}`
          case "AttemptEnded":
            return `${e.at} end #${e.attempt} ${e.outcome} ${e.durationMs}ms`
          case "RetryScheduled":
            return `${e.at} retry ${e.retry} in ${e.delayMs}ms (${e.reason}, ${e.errorTag})`
          case "RetryStopped":
            return `${e.at} stop (${e.reason})`
          case "BreakerTransition":
            return `${e.at} breaker ${e.from}->${e.to}`
          default:
            return e._tag
        }
      })
      expect(seen).toEqual([
        "0 start #1",
        "100 end #1 RateLimitError 100ms",
        "100 retry 1 in 5000ms (retry-after, RateLimitError)",
        "5100 start #2",
        "5200 end #2 ProviderUnavailableError 100ms",
        "5200 retry 2 in 2000ms (backoff, ProviderUnavailableError)",
        "7200 start #3",
        "7300 end #3 ProviderUnavailableError 100ms",
        "7300 breaker closed->open",
        "7300 stop (max-retries)"
      ])
    }).pipe(Effect.provide(AttemptEvents.layer), Effect.provide(StateStore.layerMemory)))

  it.effect("attempts are counted in a metric tagged by deployment and outcome", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "metered", retry: false })
      yield* policy.execute(() => Effect.succeed(1))
      yield* Effect.either(policy.execute(() => Effect.fail(new Errors.ConnectionError({}))))
      const counter = AttemptEvents.metrics.attempts
      const ok = yield* Metric.value(
        counter.pipe(Metric.tagged("deployment", "metered"), Metric.tagged("key", "none"), Metric.tagged("outcome", "success"))
      )
      const failed = yield* Metric.value(
        counter.pipe(Metric.tagged("deployment", "metered"), Metric.tagged("key", "none"), Metric.tagged("outcome", "ConnectionError"))
      )
      expect([ok.count, failed.count]).toEqual([1, 1])
    }).pipe(Effect.provide(AttemptEvents.layer), Effect.provide(StateStore.layerMemory)))

  it.scoped("a hedge's extra launches are events, with the delay that triggered them", () =>
    Effect.gen(function*() {
      const events = yield* AttemptEvents.AttemptEvents
      const queue = yield* events.subscribe
      const hedge = yield* Hedge.make({ name: "primary", delay: "300 millis" })
      const fiber = yield* Effect.fork(hedge.execute((i) => (i === 0 ? Effect.never : Effect.succeed("hedge won"))))
      yield* TestClock.adjust("300 millis")
      expect(yield* Fiber.join(fiber)).toBe("hedge won")
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(queue))).toEqual([
        { _tag: "HedgeLaunched", at: 300, deployment: "primary", index: 1, reason: "delay", delayMs: 300 }
      ])
    }).pipe(Effect.provide(AttemptEvents.layer)))

  it.effect("without the service nothing is emitted and calls work the same", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.make({ deployment: "quiet" })
      expect(yield* policy.execute(() => Effect.succeed(Redacted.make("x")).pipe(Effect.map(() => "ok")))).toBe("ok")
    }).pipe(Effect.provide(StateStore.layerMemory)))
})
