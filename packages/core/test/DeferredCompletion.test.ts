import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import * as DeferredCompletion from "../src/DeferredCompletion.js"
import { BadRequestError, InvalidConfigError, ProviderUnavailableError, RateLimitError } from "../src/Errors.js"
import * as ResponseCache from "../src/ResponseCache.js"

interface Req {
  readonly model: string
  readonly messages: ReadonlyArray<{ readonly role: string; readonly content: string }>
}

const request = (content: string): Req => ({ model: "gpt-4o", messages: [{ role: "user", content }] })

/** Lets the workers run until `done` holds; virtual time stands still meanwhile. */
const settle = <A>(read: Effect.Effect<A>, done: (a: A) => boolean, rounds = 1_000): Effect.Effect<A> =>
  Effect.flatMap(read, (a) =>
    done(a)
      ? Effect.succeed(a)
      : rounds === 0
      ? Effect.dieMessage("the workers never reached the expected state")
      : Effect.zipRight(Effect.yieldNow(), settle(read, done, rounds - 1)))

/** A Logger that collects warnings. */
const collectWarnings = Effect.sync(() => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Warning") lines.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
  })
  return { lines, logger }
})

/** Fails `failures` times with `error`, then answers `answer-<content>`. */
const flaky = (failures: number, error: () => unknown = () => new ProviderUnavailableError({ status: 503 })) =>
  Effect.map(Ref.make(0), (calls) => ({
    calls,
    complete: (r: Req) =>
      Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) =>
        n <= failures ? Effect.fail(error()) : Effect.succeed(`answer-${r.messages[0]?.content}`))
  }))

/** Queues one request whose first attempt fails: the second comes at 10 s exactly, not a millisecond sooner, and answers. */
const secondAttemptAt10s = (calls: Ref.Ref<number>, deferred: DeferredCompletion.Service<Req>) =>
  Effect.gen(function*() {
    yield* deferred.enqueue(request("hi"))
    yield* settle(Ref.get(calls), (n) => n === 1)
    yield* TestClock.adjust("9999 millis")
    expect(yield* Ref.get(calls)).toBe(1)
    yield* TestClock.adjust("1 millis")
    yield* settle(deferred.status, (s) => s.completed === 1)
    expect(yield* Ref.get(calls)).toBe(2)
  })

describe("DeferredCompletion", () => {
  it.scoped("a queued request is completed later; the answer lands in the cache and the callback", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const answers = yield* Ref.make<ReadonlyArray<string>>([])
      const { calls, complete } = yield* flaky(2, () => new RateLimitError({ source: "upstream" }))
      const deferred = yield* DeferredCompletion.make({
        complete,
        cache,
        onAnswer: (_req: Req, res: string) => Ref.update(answers, (all) => [...all, res])
      })
      expect(yield* deferred.enqueue(request("hi"))).toBe("queued")
      // Attempt 1 at 0 s, attempt 2 after 1 s, attempt 3 after 2 s more.
      yield* settle(Ref.get(calls), (n) => n === 1)
      yield* TestClock.adjust("2999 millis")
      expect(yield* Ref.get(calls)).toBe(2)
      expect(yield* cache.lookup(request("hi"))).toEqual(Option.none())
      yield* TestClock.adjust("1 millis")
      yield* settle(deferred.status, (s) => s.completed === 1)
      expect(yield* Ref.get(answers)).toEqual(["answer-hi"])
      expect(Option.map(yield* cache.lookup(request("hi")), (c) => c.value)).toEqual(Option.some("answer-hi"))
      expect(yield* deferred.status).toMatchObject({ queued: 0, inProgress: 0, completed: 1, failed: 0 })
    }))

  it.scoped("an error's retryAfter wins over a shorter backoff", () =>
    Effect.gen(function*() {
      const { calls, complete } = yield* flaky(
        1,
        () => new RateLimitError({ source: "upstream", retryAfter: Duration.seconds(10) })
      )
      yield* secondAttemptAt10s(calls, yield* DeferredCompletion.make({ complete }))
    }))

  it.scoped("a full queue refuses the request with a typed error; a duplicate is not queued twice", () =>
    Effect.gen(function*() {
      const deferred = yield* DeferredCompletion.make({
        capacity: 1,
        complete: (_: Req) => Effect.never
      })
      expect(yield* deferred.enqueue(request("a"))).toBe("queued")
      yield* settle(deferred.status, (s) => s.inProgress === 1) // the worker holds "a"
      expect(yield* deferred.enqueue(request("b"))).toBe("queued")
      expect(yield* deferred.enqueue(request("b"))).toBe("duplicate")
      expect(yield* deferred.enqueue(request("a"))).toBe("duplicate")
      const error = yield* Effect.flip(deferred.enqueue(request("c")))
      expect(error).toBeInstanceOf(DeferredCompletion.DeferredQueueFullError)
      expect(error).toMatchObject({ _tag: "DeferredQueueFullError", capacity: 1, key: ResponseCache.hashRequest(request("c")) })
      expect(yield* deferred.status).toMatchObject({ queued: 1, inProgress: 1, refused: 1 })
    }))

  it.scoped("gives up after maxAttempts, counts it failed and tells onFailure", () =>
    Effect.gen(function*() {
      const failures = yield* Ref.make(0)
      const { calls, complete } = yield* flaky(Infinity)
      const deferred = yield* DeferredCompletion.make({
        complete,
        maxAttempts: 3,
        onFailure: () => Ref.update(failures, (n) => n + 1)
      })
      yield* deferred.enqueue(request("hi"))
      yield* settle(Ref.get(calls), (n) => n === 1)
      yield* TestClock.adjust("1 hour")
      yield* settle(deferred.status, (s) => s.failed === 1)
      expect(yield* Ref.get(calls)).toBe(3)
      expect(yield* Ref.get(failures)).toBe(1)
      expect(yield* deferred.status).toMatchObject({ completed: 0, failed: 1, inProgress: 0, queued: 0 })
    }))

  it.scoped("an error not worth retrying fails at once, and the worker goes on with the next request", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make<ReadonlyArray<string>>([])
      const deferred = yield* DeferredCompletion.make({
        complete: (r: Req) =>
          Effect.zipRight(
            Ref.update(calls, (all) => [...all, r.messages[0]?.content ?? ""]),
            r.messages[0]?.content === "bad" ? Effect.fail(new BadRequestError({ status: 400 })) : Effect.succeed("ok")
          )
      })
      yield* deferred.enqueue(request("bad"))
      yield* deferred.enqueue(request("good"))
      yield* settle(deferred.status, (s) => s.failed === 1 && s.completed === 1)
      expect(yield* Ref.get(calls)).toEqual(["bad", "good"])
    }))

  it.scoped("a callback that dies does not stop the worker", () =>
    Effect.gen(function*() {
      const deferred = yield* DeferredCompletion.make({
        complete: (r: Req) => Effect.succeed(r.messages[0]?.content ?? ""),
        onAnswer: (_: Req, res: string) => (res === "a" ? Effect.dieMessage("callback bug") : Effect.void)
      })
      yield* deferred.enqueue(request("a"))
      yield* deferred.enqueue(request("b"))
      yield* settle(deferred.status, (s) => s.completed === 2 && s.inProgress === 0 && s.queued === 0)
    }))

  it.scoped("a completion that fails with an interruption only (a joined child fiber was interrupted) is logged and counted failed; the worker goes on", () =>
    Effect.gen(function*() {
      const { lines, logger } = yield* collectWarnings
      const calls = yield* Ref.make<ReadonlyArray<string>>([])
      const deferred = yield* DeferredCompletion.make({
        complete: (r: Req) =>
          Effect.zipRight(
            Ref.update(calls, (all) => [...all, r.messages[0]?.content ?? ""]),
            r.messages[0]?.content === "orphan"
              // The completion joins a child someone else interrupted: its cause is an interruption only.
              ? Effect.flatMap(Effect.fork(Effect.never), (child) => Effect.zipRight(Fiber.interrupt(child), Fiber.join(child)))
              : Effect.succeed("ok")
          )
      }).pipe(Effect.provide(Logger.add(logger)))
      yield* deferred.enqueue(request("orphan"))
      yield* deferred.enqueue(request("next"))
      const status = yield* settle(deferred.status, (s) => s.failed === 1 && s.completed === 1)
      expect(status).toMatchObject({ queued: 0, inProgress: 0 })
      expect(yield* Ref.get(calls)).toEqual(["orphan", "next"])
      expect(lines.some((l) => l.includes(ResponseCache.hashRequest(request("orphan"))))).toBe(true)
      // The key was released: the same request queues again and is attempted again.
      expect(yield* deferred.enqueue(request("orphan"))).toBe("queued")
      yield* settle(deferred.status, (s) => s.failed === 2)
      expect(yield* Ref.get(calls)).toEqual(["orphan", "next", "orphan"])
    }))

  it.scoped("a user schedule replaces the default backoff: spaced 10 s retries at 10 s, not 1 s", () =>
    Effect.gen(function*() {
      const { calls, complete } = yield* flaky(1)
      yield* secondAttemptAt10s(calls, yield* DeferredCompletion.make({ complete, schedule: Schedule.spaced("10 seconds") }))
    }))

  it.scoped("concurrency 2: a second worker completes a request while the first is held up", () =>
    Effect.gen(function*() {
      const deferred = yield* DeferredCompletion.make({
        concurrency: 2,
        complete: (r: Req) => (r.messages[0]?.content === "slow" ? Effect.never : Effect.succeed("ok"))
      })
      yield* deferred.enqueue(request("slow"))
      yield* deferred.enqueue(request("fast"))
      expect(yield* settle(deferred.status, (s) => s.completed === 1)).toMatchObject({ inProgress: 1, queued: 0 })
    }))

  it.scoped("retryOn decides what is tried again: a 503 it refuses fails at once, a 400 it accepts is retried", () =>
    Effect.gen(function*() {
      const refuses503 = yield* flaky(1)
      const strict = yield* DeferredCompletion.make({ complete: refuses503.complete, retryOn: () => false })
      yield* strict.enqueue(request("a"))
      yield* settle(strict.status, (s) => s.failed === 1)
      expect(yield* Ref.get(refuses503.calls)).toBe(1)

      const accepts400 = yield* flaky(1, () => new BadRequestError({ status: 400 }))
      const lenient = yield* DeferredCompletion.make({
        complete: accepts400.complete,
        retryOn: (e: unknown) => Predicate.isTagged(e, "BadRequestError")
      })
      yield* lenient.enqueue(request("b"))
      yield* settle(Ref.get(accepts400.calls), (n) => n === 1)
      yield* TestClock.adjust("1 second")
      yield* settle(lenient.status, (s) => s.completed === 1)
      expect(yield* Ref.get(accepts400.calls)).toBe(2)
    }))

  it.effect("shutdown with requests still queued logs one warning naming how many and which", () =>
    Effect.gen(function*() {
      const { lines, logger } = yield* collectWarnings
      const status = yield* Effect.scoped(Effect.gen(function*() {
        const deferred = yield* DeferredCompletion.make({ complete: (_: Req) => Effect.never })
        yield* deferred.enqueue(request("a"))
        yield* settle(deferred.status, (s) => s.inProgress === 1)
        yield* deferred.enqueue(request("b"))
        yield* deferred.enqueue(request("c"))
        return deferred.status
      })).pipe(Effect.provide(Logger.add(logger)))
      const warnings = lines
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain("dropped 3 request(s)")
      for (const c of ["a", "b", "c"]) expect(warnings[0]).toContain(ResponseCache.hashRequest(request(c)))
      expect(yield* status).toMatchObject({ dropped: 3 })
    }))

  it.effect("shutdown with nothing left logs nothing", () =>
    Effect.gen(function*() {
      const { lines, logger } = yield* collectWarnings
      yield* Effect.scoped(Effect.gen(function*() {
        const deferred = yield* DeferredCompletion.make({ complete: (_: Req) => Effect.succeed("ok") })
        yield* deferred.enqueue(request("a"))
        yield* settle(deferred.status, (s) => s.completed === 1)
      })).pipe(Effect.provide(Logger.add(logger)))
      expect(lines).toEqual([])
    }))

  it.scoped("bad options fail with InvalidConfigError naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(DeferredCompletion.make({ complete: (_: Req) => Effect.succeed(1), capacity: 0 }))
      expect(error).toBeInstanceOf(InvalidConfigError)
      expect(error.path).toBe("capacity")
    }))
})
