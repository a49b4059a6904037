import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import * as Errors from "../src/Errors.js"
import * as RequestBudget from "../src/RequestBudget.js"
import * as Retry from "../src/Retry.js"

const rateLimited = new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.millis(5_000) })

/**
 * Whether a retry in this place sits out a 5 s Retry-After (true) or gives
 * up at once because the wait limit of rule 25 is shorter (false).
 */
const waitsOutRetryAfter = Effect.gen(function*() {
  const retry = yield* Retry.make({ maxRetries: 1 })
  const calls = yield* Ref.make(0)
  const call = Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) => (n === 1 ? Effect.fail(rateLimited) : Effect.succeed("ok")))
  const fiber = yield* Effect.fork(Effect.either(retry.execute(call)))
  yield* TestClock.adjust("5 seconds")
  yield* Fiber.join(fiber)
  return (yield* Ref.get(calls)) === 2
})

describe("Deadline.maxWait (rule 25)", () => {
  it.effect("inside it a Retry-After above the limit ends the step at once; outside it, it is waited out", () =>
    Effect.gen(function*() {
      expect(yield* Deadline.maxWait(1_000)(waitsOutRetryAfter)).toBe(false)
      expect(yield* Deadline.maxWait(10_000)(waitsOutRetryAfter)).toBe(true)
      expect(yield* waitsOutRetryAfter).toBe(true)
    }))

  it.effect("in a tracked request too, and the limit is put back after a success, a failure and an interruption", () =>
    RequestBudget.track({})(Effect.gen(function*() {
      yield* Deadline.maxWait(1_000)(Effect.void)
      expect(yield* waitsOutRetryAfter).toBe(true)
      yield* Effect.either(Deadline.maxWait(1_000)(Effect.fail("boom")))
      expect(yield* waitsOutRetryAfter).toBe(true)
      const started = yield* Deferred.make<void>()
      const held = yield* Effect.fork(Deadline.maxWait(1_000)(Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(held)
      expect(yield* waitsOutRetryAfter).toBe(true)
      expect(yield* Deadline.maxWait(1_000)(waitsOutRetryAfter)).toBe(false)
    })))

  it.effect("nested limits only shrink: the enclosing shorter one holds inside a longer one", () =>
    RequestBudget.track({})(
      Deadline.maxWait(1_000)(Effect.gen(function*() {
        expect(yield* Deadline.maxWait(60_000)(waitsOutRetryAfter)).toBe(false)
      }))
    ))

  it.effect("a limit set in a forked fiber is that fiber's own: its parent and its sibling, running at the same time, keep theirs", () =>
    RequestBudget.track({})(Effect.gen(function*() {
      const inChild = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // One child sets a short limit and holds it while the parent and a second child retry.
      const holder = yield* Effect.fork(
        Deadline.maxWait(1_000)(Effect.zipRight(Deferred.succeed(inChild, undefined), Deferred.await(release)))
      )
      yield* Deferred.await(inChild)
      const sibling = yield* Effect.fork(Deadline.maxWait(10_000)(waitsOutRetryAfter))
      expect(yield* Fiber.join(sibling)).toBe(true)
      expect(yield* waitsOutRetryAfter).toBe(true)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      // A forked fiber reads the limit of the part it was forked in.
      expect(yield* Deadline.maxWait(1_000)(Effect.flatMap(Effect.fork(waitsOutRetryAfter), Fiber.join))).toBe(false)
      // Each of the three retries moved the test clock by 5 s.
      expect(yield* Clock.currentTimeMillis).toBe(15_000)
    })))
})
