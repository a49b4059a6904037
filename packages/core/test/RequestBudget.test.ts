import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import * as Errors from "../src/Errors.js"
import * as RequestBudget from "../src/RequestBudget.js"

const spend = (cost = 0) => RequestBudget.spendAttempt({ deployment: "d", estimatedCostUsd: cost })

describe("RequestBudget", () => {
  it.effect("outside a tracked request every attempt is allowed and nothing is recorded", () =>
    Effect.gen(function*() {
      yield* Effect.replicateEffect(spend(100), 50)
      expect(yield* RequestBudget.spent).toEqual(Option.none())
    }))

  it.effect("the attempt after maxAttempts is refused with BudgetExhaustedError(attempts)", () =>
    Effect.gen(function*() {
      const result = yield* Effect.either(Effect.replicateEffect(spend(), 4).pipe(RequestBudget.track({ maxAttempts: 3 })))
      expect(result).toEqual(Either.left(new Errors.BudgetExhaustedError({ budget: "attempts", limit: 3, deployment: "d" })))
    }))

  it.effect("nested tracking draws from the outer budget", () =>
    Effect.gen(function*() {
      const inner = Effect.zipRight(spend(), spend()).pipe(RequestBudget.track({ maxAttempts: 100 }))
      const result = yield* Effect.either(Effect.zipRight(inner, inner).pipe(RequestBudget.track({ maxAttempts: 3 })))
      expect(Either.isLeft(result) && result.left.budget).toBe("attempts")
    }))

  it.effect("cost: estimates add up, settling corrects them, and an estimate past the limit is refused", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        yield* spend(0.02)
        yield* RequestBudget.settleCost(0.02, 0.005)
        yield* spend(0.04)
        const spent = yield* RequestBudget.spent
        const refused = yield* Effect.either(spend(0.01))
        return { spent, refused }
      }).pipe(RequestBudget.track({ maxCostUsd: 0.05 }))
      const { refused, spent } = yield* program
      expect(Option.map(spent, (s) => s.costUsd)).toEqual(Option.some(0.045))
      expect(Either.isLeft(refused) && refused.left.budget).toBe("cost")
    }))

  it.effect("deadline: it sets the Deadline, and no attempt starts at or after it", () =>
    Effect.gen(function*() {
      const program = Effect.gen(function*() {
        const left = yield* Deadline.remaining
        yield* TestClock.adjust("2 seconds")
        const refused = yield* Effect.either(spend())
        return { left, refused }
      }).pipe(RequestBudget.track({ deadline: "2 seconds" }))
      const { left, refused } = yield* program
      expect(left).toEqual(Option.some(2000))
      expect(Either.isLeft(refused) && refused.left.budget).toBe("deadline")
    }))

  const endsWithTheRequest = Effect.gen(function*() {
    const seen = Effect.all([RequestBudget.spent, Deadline.remaining])
    const inFork = yield* RequestBudget.track({ deadline: "2 seconds" })(Effect.flatMap(Effect.fork(seen), Fiber.join))
    expect(Option.isSome(inFork[0])).toBe(true)
    expect(inFork[1]).toEqual(Option.some(2000))
    expect(yield* seen).toEqual([Option.none(), Option.none()])
    yield* Effect.either(RequestBudget.track({ deadline: "2 seconds" })(Effect.fail("boom")))
    expect(yield* seen).toEqual([Option.none(), Option.none()])
    const started = yield* Deferred.make<void>()
    const running = yield* Effect.fork(
      RequestBudget.track({ deadline: "2 seconds" })(Effect.zipRight(Deferred.succeed(started, undefined), Effect.never))
    )
    yield* Deferred.await(started)
    yield* Fiber.interrupt(running)
    expect(yield* seen).toEqual([Option.none(), Option.none()])
    // An enclosing deadline that comes first stays: nested deadlines only shrink.
    const nested = yield* Deadline.within(1_000)(RequestBudget.track({ deadline: "2 seconds" })(Deadline.remaining))
    expect(nested).toEqual(Option.some(1000))
  })

  it.effect("the ledger and the deadline end with the request, whatever its exit, and a fiber forked inside sees them", () =>
    endsWithTheRequest)

  // The same on a fiber that already has a request scope of its own (set up by an enclosing wait limit):
  // the request's fields are then set and put back in place.
  it.effect("the same inside an enclosing wait limit", () => Deadline.maxWait(60_000)(endsWithTheRequest))
})
