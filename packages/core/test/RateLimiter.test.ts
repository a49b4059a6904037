import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import { InvalidConfigError, RateLimitError } from "../src/Errors.js"
import * as TokenBucket from "../src/internal/tokenBucket.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as StateStore from "../src/StateStore.js"

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

const retryAfterMillis = (e: RateLimitError): number | undefined =>
  e.retryAfter === undefined ? undefined : Duration.toMillis(e.retryAfter)

/** The error of an acquire that must be rejected. */
const rejection = (limiter: RateLimiter.Service, cost?: RateLimiter.Cost) => Effect.flip(limiter.acquire(cost))

const available = (limiter: RateLimiter.Service) =>
  Effect.map(limiter.status, (s) => ({ requests: s.requests?.available, tokens: s.tokens?.available }))

/** One request per second, capacity 1. */
const perSecond = (maxWait: Duration.DurationInput = 0) =>
  RateLimiter.make({
    name: "per-second",
    buckets: { requests: { capacity: 1, refillInterval: "1 second" } },
    maxWait
  })

const withStore = <A, E>(self: Effect.Effect<A, E, StateStore.StateStore>) =>
  Effect.provide(self, StateStore.layerMemory)

describe("RateLimiter: buckets", () => {
  it.effect("refills at exact refillInterval boundaries aligned to the limiter's creation, not to the calls", () =>
    withStore(Effect.gen(function*() {
      yield* TestClock.adjust(12_345) // creation at an arbitrary time
      const limiter = yield* RateLimiter.make({ name: "rpm", requestsPerMinute: 2 })
      yield* TestClock.adjust(30_000)
      yield* limiter.acquire()
      yield* limiter.acquire()
      // The next refill is at creation + 60 s, 30 s from now (not 60 s after these calls).
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(30_000)
      yield* TestClock.adjust(29_999) // creation + 59_999
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(1)
      yield* TestClock.adjust(1) // creation + 60_000
      yield* limiter.acquire()
      yield* limiter.acquire()
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(60_000)
    })))

  it.effect("capacity caps the balance after idle time", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "cap",
        buckets: { requests: { capacity: 3, refillAmount: 1, refillInterval: "1 second" } }
      })
      yield* Effect.repeatN(limiter.acquire(), 2)
      yield* TestClock.adjust("10 seconds")
      expect(yield* available(limiter)).toEqual({ requests: 3, tokens: undefined })
      yield* Effect.repeatN(limiter.acquire(), 2)
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(1000)
    })))

  it.effect("a call costs its declared tokens in the tokens bucket and 1 in the requests bucket", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "weighted", requestsPerMinute: 10, tokensPerMinute: 1000 })
      yield* limiter.acquire({ tokens: 600 })
      expect(yield* available(limiter)).toEqual({ requests: 9, tokens: 400 })
      expect(retryAfterMillis(yield* rejection(limiter, { tokens: 500 }))).toBe(60_000)
      yield* limiter.acquire({ tokens: 400 })
      yield* limiter.acquire() // no tokens declared: costs only a request
      expect(yield* available(limiter)).toEqual({ requests: 7, tokens: 0 })
    })))

  it.effect("takes both buckets atomically: when the tokens bucket is short the requests bucket is not debited", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "pair", requestsPerMinute: 10, tokensPerMinute: 1000 })
      yield* limiter.acquire({ tokens: 900 })
      yield* rejection(limiter, { tokens: 200 })
      expect(yield* available(limiter)).toEqual({ requests: 9, tokens: 100 })
    })))

  it.effect("takes both buckets atomically: when the requests bucket is short the tokens bucket is not debited", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "pair", requestsPerMinute: 1, tokensPerMinute: 1000 })
      yield* limiter.acquire({ tokens: 10 })
      yield* rejection(limiter, { tokens: 10 })
      expect(yield* available(limiter)).toEqual({ requests: 0, tokens: 990 })
    })))

  it.effect("a cost above a bucket's capacity fails at once, without retryAfter, and debits nothing", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        name: "oversized",
        requestsPerMinute: 10,
        tokensPerMinute: 1000,
        maxWait: "1 hour"
      })
      const error = yield* rejection(limiter, { tokens: 1001 })
      expect(error.source).toBe("local")
      expect(error.retryAfter).toBeUndefined()
      expect(error.detail).toContain("capacity of 1000")
      expect(yield* available(limiter)).toEqual({ requests: 10, tokens: 1000 })
    })))

  it.effect("keeps its state as JSON in the StateStore under rate-limiter/<name>, shared by limiters of that name", () => {
    const store = StateStore.makeMemory()
    return Effect.gen(function*() {
      const a = yield* RateLimiter.make({ name: "shared", requestsPerMinute: 2 })
      const b = yield* RateLimiter.make({ name: "shared", requestsPerMinute: 2 })
      yield* a.acquire()
      yield* b.acquire()
      yield* rejection(a)
      const state = store.inspect("rate-limiter/shared")
      expect(state).toMatchObject({ balances: [0] })
      expect(JSON.parse(JSON.stringify(state))).toEqual(state)
    }).pipe(Effect.provideService(StateStore.StateStore, store))
  })
})

describe("RateLimiter: waiting", () => {
  it.effect("maxWait 0 (the default) rejects at once with the exact retryAfter and reserves nothing", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond()
      yield* TestClock.adjust(250)
      yield* limiter.acquire()
      const error = yield* rejection(limiter)
      expect(error).toBeInstanceOf(RateLimitError)
      expect(error.source).toBe("local")
      expect(retryAfterMillis(error)).toBe(750)
      expect(yield* available(limiter)).toEqual({ requests: 0, tokens: undefined })
    })))

  it.effect("a wait within maxWait is granted after exactly that wait", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("5 seconds")
      yield* TestClock.adjust(250)
      yield* limiter.acquire()
      const waiter = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(749)
      expect(yield* isDone(waiter)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* isDone(waiter)).toBe(true)
      expect((yield* Fiber.join(waiter)).waited).toBe(750)
    })))

  it.effect("a wait of exactly maxWait is within it: granted after that wait", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("750 millis")
      yield* TestClock.adjust(250)
      yield* limiter.acquire()
      const waiter = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(750)
      expect((yield* Fiber.join(waiter)).waited).toBe(750)
    })))

  it.effect("a wait beyond maxWait is rejected at once and leaves no reservation", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("500 millis")
      yield* TestClock.adjust(250)
      yield* limiter.acquire()
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(750)
      yield* TestClock.adjust(750)
      const permit = yield* limiter.acquire({ maxWait: 0 })
      expect(permit.waited).toBe(0)
    })))

  it.effect("waiters are granted in FIFO order, and a later caller is told to wait behind them", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("10 seconds")
      yield* limiter.acquire()
      const first = yield* Effect.fork(limiter.acquire())
      const second = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(100)
      expect(retryAfterMillis(yield* rejection(limiter, { maxWait: 0 }))).toBe(2900)
      yield* TestClock.adjust(900)
      expect(yield* isDone(first)).toBe(true)
      expect(yield* isDone(second)).toBe(false)
      yield* TestClock.adjust(1000)
      expect((yield* Fiber.join(second)).waited).toBe(2000)
    })))

  it.effect("an interrupted waiter gives its reservation back", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("10 seconds")
      yield* limiter.acquire()
      const waiter = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(100)
      expect(yield* available(limiter)).toEqual({ requests: -1, tokens: undefined })
      yield* Fiber.interrupt(waiter)
      expect(yield* available(limiter)).toEqual({ requests: 0, tokens: undefined })
      yield* TestClock.adjust(900)
      // With the reservation leaked the balance would be 0 here, and this call rejected.
      yield* limiter.acquire({ maxWait: 0 })
    })))

  it.effect("never waits past the request's deadline", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("5 seconds")
      yield* limiter.acquire()
      const error = yield* Deadline.within(1000)(rejection(limiter))
      expect(retryAfterMillis(error)).toBe(1000)
      const fiber = yield* Effect.fork(Deadline.within(1001)(limiter.acquire()))
      yield* TestClock.adjust(1000)
      expect((yield* Fiber.join(fiber)).waited).toBe(1000)
    })))
})

describe("RateLimiter: correction from usage", () => {
  interface Response {
    readonly totalTokens: number
  }
  const answer = (totalTokens: number) => Effect.succeed<Response>({ totalTokens })
  const usage = (r: Response) => r.totalTokens

  it.effect("debits the tokens used beyond the estimate, and a negative balance holds later calls back", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "usage", tokensPerMinute: 1000 })
      yield* limiter.execute(answer(800), { tokens: 500, usage })
      expect(yield* available(limiter)).toEqual({ requests: undefined, tokens: 200 })
      yield* limiter.execute(answer(400), { tokens: 100, usage })
      expect(yield* available(limiter)).toEqual({ requests: undefined, tokens: -200 })
      expect(retryAfterMillis(yield* rejection(limiter, { tokens: 0 }))).toBe(60_000)
    })))

  it.effect("refunds the tokens of an overestimate", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "usage", tokensPerMinute: 1000 })
      yield* limiter.execute(answer(150), { tokens: 600, usage })
      expect(yield* available(limiter)).toEqual({ requests: undefined, tokens: 850 })
    })))

  it.effect("keeps the estimate when the call fails or reports no usage", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "usage", tokensPerMinute: 1000 })
      yield* Effect.either(limiter.execute(Effect.fail("boom"), { tokens: 300, usage: () => 10 }))
      yield* limiter.execute(Effect.succeed(1), { tokens: 300, usage: () => undefined })
      expect(yield* available(limiter)).toEqual({ requests: undefined, tokens: 400 })
    })))

  it.effect("a permit's settle sets the actual usage; settling again replaces it", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "permit", requestsPerMinute: 10, tokensPerMinute: 1000 })
      const permit = yield* limiter.acquire({ tokens: 500 })
      yield* permit.settle(700)
      expect(yield* available(limiter)).toEqual({ requests: 9, tokens: 300 })
      yield* permit.settle(100)
      expect(yield* available(limiter)).toEqual({ requests: 9, tokens: 900 })
      yield* permit.settle(100)
      expect(yield* available(limiter)).toEqual({ requests: 9, tokens: 900 })
    })))
})

describe("RateLimiter: pause", () => {
  it.effect("an upstream 429 pauses grants until its Retry-After, with the exact remaining retryAfter", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "paused", requestsPerMinute: 100 })
      yield* limiter.pause("3 seconds")
      expect((yield* limiter.status).pausedUntil).toEqual(Option.some(3000))
      const error = yield* rejection(limiter)
      expect(retryAfterMillis(error)).toBe(3000)
      expect(error.detail).toContain("paused")
      yield* TestClock.adjust(1000)
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(2000)
      // A shorter pause never shortens the current one.
      yield* limiter.pause("1 second")
      expect(retryAfterMillis(yield* rejection(limiter))).toBe(2000)
      const waiter = yield* Effect.fork(limiter.acquire({ maxWait: "5 seconds" }))
      yield* TestClock.adjust(1999)
      expect(yield* isDone(waiter)).toBe(false)
      yield* TestClock.adjust(1)
      expect((yield* Fiber.join(waiter)).waited).toBe(2000)
      expect((yield* limiter.status).pausedUntil).toEqual(Option.none())
      yield* limiter.acquire()
    })))

  it.effect("used alone, an upstream 429 met by a call it admitted makes later acquisitions wait until its Retry-After has passed", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ name: "alone-429", requestsPerMinute: 100, maxWait: "10 seconds" })
      const upstream429 = new RateLimitError({ source: "upstream", retryAfter: Duration.seconds(3) })
      // The call is answered 429 after 1 s: no grant before 1 s + 3 s.
      const call = yield* Effect.fork(Effect.flip(limiter.execute(Effect.delay(Effect.fail(upstream429), "1 second"))))
      yield* TestClock.adjust(1000)
      expect(yield* Fiber.join(call)).toBe(upstream429)
      const first = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(1000)
      const second = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(1999)
      expect([yield* isDone(first), yield* isDone(second)]).toEqual([false, false])
      yield* TestClock.adjust(1)
      expect([(yield* Fiber.join(first)).waited, (yield* Fiber.join(second)).waited]).toEqual([3000, 2000])
    })))

  it.effect("a pause that arrives while a call waits holds its grant back until the pause ends", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("10 seconds")
      yield* limiter.acquire()
      const patient = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(500)
      yield* limiter.pause("5 seconds")
      yield* TestClock.adjust(500)
      expect(yield* isDone(patient)).toBe(false)
      yield* TestClock.adjust(4499)
      expect(yield* isDone(patient)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* isDone(patient)).toBe(true)
    })))

  it.effect("a pause beyond a waiting call's maxWait rejects it and gives its reservation back", () =>
    withStore(Effect.gen(function*() {
      const limiter = yield* perSecond("2 seconds")
      yield* limiter.acquire()
      const waiter = yield* Effect.fork(limiter.acquire())
      yield* TestClock.adjust(500)
      yield* limiter.pause("5 seconds")
      yield* TestClock.adjust(500)
      const exit = yield* Fiber.await(waiter)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(exit)
      expect(retryAfterMillis(error)).toBe(4500)
      expect(yield* available(limiter)).toEqual({ requests: 1, tokens: undefined })
    })))
})

describe("RateLimiter: options", () => {
  const invalid = (options: RateLimiter.Options) =>
    Effect.map(Effect.flip(RateLimiter.make(options)), (e) => {
      expect(e).toBeInstanceOf(InvalidConfigError)
      return e.path
    })

  it.effect("a bad option fails with InvalidConfigError naming the field", () =>
    withStore(Effect.gen(function*() {
      expect(yield* invalid({ name: "x", requestsPerMinute: 0 })).toBe("requestsPerMinute")
      expect(yield* invalid({ name: "x", tokensPerMinute: 1.5 })).toBe("tokensPerMinute")
      expect(yield* invalid({ name: "", requestsPerMinute: 1 })).toBe("name")
      const soon = "soon" as unknown as Duration.DurationInput
      expect(yield* invalid({ name: "x", requestsPerMinute: 1, maxWait: soon })).toBe("maxWait")
      expect(
        yield* invalid({ name: "x", buckets: { tokens: { capacity: 10, refillInterval: "0 seconds" } } })
      ).toBe("buckets.tokens.refillInterval")
      expect(
        yield* invalid({ name: "x", buckets: { requests: { capacity: 0, refillInterval: "1 second" } } })
      ).toBe("buckets.requests.capacity")
      expect(
        yield* invalid({ name: "x", requestsPerMinute: 5, buckets: { requests: { capacity: 5, refillInterval: 1 } } })
      ).toBe("buckets.requests")
      expect(yield* invalid({ name: "x" })).toBe("requestsPerMinute")
      const typo = { name: "x", requestPerMinute: 5 } as unknown as RateLimiter.Options
      expect(yield* invalid(typo)).toBe("requestPerMinute")
    })))
})

describe("RateLimiter: token bucket state machine", () => {
  it("never grants more than capacity plus the refills due by the grant time, whatever the calls", () => {
    const bucket: TokenBucket.Bucket = { name: "tokens", capacity: 100, refillAmount: 30, refillInterval: 1000 }
    const config = TokenBucket.makeConfig([bucket])
    const origin = 5000
    const call = FastCheck.record({
      after: FastCheck.integer({ min: 0, max: 3000 }),
      cost: FastCheck.integer({ min: 0, max: 100 }),
      maxWait: FastCheck.constantFrom(0, 500, 5000, 60_000)
    })
    FastCheck.assert(
      FastCheck.property(FastCheck.array(call, { maxLength: 60 }), (calls) => {
        let state: TokenBucket.State | null = TokenBucket.initial(config, origin)
        let now = origin
        const grants: Array<{ readonly at: number; readonly cost: number }> = []
        for (const c of calls) {
          now += c.after
          const [decision, next]: readonly [TokenBucket.Decision, TokenBucket.State] = TokenBucket.reserve(
            config,
            [c.cost],
            now,
            c.maxWait,
            Infinity
          )(state)
          state = next
          if (decision._tag === "Granted") {
            expect(decision.wait).toBeLessThanOrEqual(c.maxWait)
            const at = now + decision.wait
            // A wait ends on a refill boundary aligned to the origin.
            if (decision.wait > 0) expect((at - origin) % bucket.refillInterval).toBe(0)
            grants.push({ at, cost: c.cost })
          } else {
            expect(decision.retryAfter).toBeGreaterThan(c.maxWait)
          }
          expect(next.balances[0]).toBeLessThanOrEqual(bucket.capacity)
        }
        for (const g of grants) {
          const grantedBy = grants.filter((h) => h.at <= g.at).reduce((sum, h) => sum + h.cost, 0)
          const refills = Math.floor((g.at - origin) / bucket.refillInterval)
          expect(grantedBy).toBeLessThanOrEqual(bucket.capacity + refills * bucket.refillAmount)
        }
      })
    )
  })
})
