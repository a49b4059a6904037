import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import { TimeoutError } from "../src/Errors.js"
import * as Timeout from "../src/Timeout.js"

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

/** Records the virtual time at which the effect's interruption finalizer ran. */
const interruptedAt = (ref: Ref.Ref<Option.Option<number>>) =>
  Effect.onInterrupt(() => Effect.flatMap(Clock.currentTimeMillis, (t) => Ref.set(ref, Option.some(t))))

describe("Timeout.attempt", () => {
  it.effect("interrupts the attempt when it fires: its finalizer has run before the error is returned", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(Option.none<number>())
      const fiber = yield* Effect.fork(
        Effect.flip(Timeout.attempt("1 second", { deployment: "gpt-4o" })(interruptedAt(finalized)(Effect.never)))
      )
      yield* TestClock.adjust(999)
      expect(yield* isDone(fiber)).toBe(false)
      expect(yield* Ref.get(finalized)).toEqual(Option.none())
      yield* TestClock.adjust(1)
      const error = yield* Fiber.join(fiber)
      expect(yield* Ref.get(finalized)).toEqual(Option.some(1000))
      expect(error).toBeInstanceOf(TimeoutError)
      expect(error.phase).toBe("attempt")
      expect(error.deployment).toBe("gpt-4o")
      expect(Duration.toMillis(error.timeout)).toBe(1000)
    }))

  it.effect("fires at the deadline exactly: a value one millisecond before it is returned", () =>
    Effect.gen(function*() {
      const early = yield* Effect.fork(Timeout.attempt("1 second")(Effect.as(Effect.sleep(999), "early")))
      const late = yield* Effect.fork(Effect.flip(Timeout.attempt("1 second")(Effect.as(Effect.sleep(1001), "late"))))
      yield* TestClock.adjust(999)
      expect(yield* Fiber.join(early)).toBe("early")
      expect(yield* isDone(late)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* isDone(late)).toBe(true)
      expect((yield* Fiber.join(late))._tag).toBe("TimeoutError")
      expect(yield* Clock.currentTimeMillis).toBe(1000)
    }))

  it.effect("never returns a value that arrived after the deadline, and waits for the interruption to finish", () =>
    Effect.gen(function*() {
      // The attempt cannot be interrupted; its value comes at 2 s, after the 1 s deadline.
      const stubborn = Effect.uninterruptible(Effect.as(Effect.sleep(2000), "late value"))
      const fiber = yield* Effect.fork(Effect.either(Timeout.attempt("1 second")(stubborn)))
      yield* TestClock.adjust(1000)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1000)
      const result = yield* Fiber.join(fiber)
      expect(Either.isLeft(result)).toBe(true)
      expect(Either.getLeft(result).pipe(Option.map((e) => e.phase))).toEqual(Option.some("attempt"))
    }))

  it.effect("disconnect returns at the deadline while the loser's slow finalizer is still running", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(Option.none<number>())
      const slowFinalizer = Effect.never.pipe(
        Effect.onInterrupt(() =>
          Effect.sleep(5000).pipe(
            Effect.zipRight(Effect.flatMap(Clock.currentTimeMillis, (t) => Ref.set(finalized, Option.some(t))))
          )
        )
      )
      const disconnected = yield* Effect.fork(Effect.flip(Timeout.attempt(1000, { disconnect: true })(slowFinalizer)))
      const awaited = yield* Effect.fork(Effect.flip(Timeout.attempt(1000)(slowFinalizer)))
      yield* TestClock.adjust(1000)
      expect(yield* isDone(disconnected)).toBe(true)
      expect((yield* Fiber.join(disconnected)).phase).toBe("attempt")
      expect(yield* Ref.get(finalized)).toEqual(Option.none())
      expect(yield* isDone(awaited)).toBe(false)
      yield* TestClock.adjust(5000)
      expect(yield* Ref.get(finalized)).toEqual(Option.some(6000))
      expect(yield* isDone(awaited)).toBe(true)
    }))

  it.effect("an infinite duration adds no timeout", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(Timeout.attempt(Duration.infinity)(Effect.as(Effect.sleep("1 hour"), "done")))
      yield* TestClock.adjust("1 hour")
      expect(yield* Fiber.join(fiber)).toBe("done")
    }))
})

describe("Timeout.attempt: the fiber-light mechanism", () => {
  const answer = FiberRef.unsafeMake("none")

  it.effect("an effect that completes at once returns its value (or its failure) and starts no timer", () =>
    Effect.gen(function*() {
      const timed = Timeout.attempt("1 second")
      expect(yield* timed(Effect.sync(() => "now"))).toBe("now")
      expect(yield* Effect.flip(timed(Effect.failSync(() => "bad")))).toBe("bad")
      expect(yield* timed(Effect.succeed("exit"))).toBe("exit")
      const defect = yield* Effect.exit(timed(Effect.sync(() => Effect.runSync(Effect.die("boom")))))
      expect(Exit.isFailure(defect)).toBe(true)
      // Nothing was left sleeping on the clock.
      expect(Chunk.toReadonlyArray(yield* TestClock.sleeps())).toEqual([])
    }))

  it.effect("fiber refs set by a timed effect are visible after it, as with Effect.timeoutFail (sync and async)", () =>
    Effect.gen(function*() {
      const timed = Timeout.attempt("1 second")
      yield* timed(FiberRef.set(answer, "sync"))
      expect(yield* FiberRef.get(answer)).toBe("sync")
      const fiber = yield* Effect.fork(
        Effect.zipRight(timed(Effect.zipRight(Effect.sleep(10), FiberRef.set(answer, "async"))), FiberRef.get(answer))
      )
      yield* TestClock.adjust(10)
      expect(yield* Fiber.join(fiber)).toBe("async")
    }))

  it.effect("a caller interrupted while waiting interrupts the attempt and waits for its finalizer", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(Option.none<number>())
      const slowFinalizer = Effect.never.pipe(
        Effect.onInterrupt(() =>
          Effect.sleep(500).pipe(Effect.zipRight(Effect.flatMap(Clock.currentTimeMillis, (t) => Ref.set(finalized, Option.some(t)))))
        )
      )
      const caller = yield* Effect.fork(Timeout.attempt("10 seconds")(slowFinalizer))
      yield* TestClock.adjust(100)
      const interrupting = yield* Effect.fork(Fiber.interrupt(caller))
      yield* TestClock.adjust(499)
      expect(yield* isDone(interrupting)).toBe(false)
      yield* TestClock.adjust(1)
      const exit = yield* Fiber.join(interrupting)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(yield* Ref.get(finalized)).toEqual(Option.some(600))
    }))

  it.effect("with disconnect, a caller interrupted while waiting does not wait for the attempt's finalizer", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(false)
      const slowFinalizer = Effect.never.pipe(
        Effect.onInterrupt(() => Effect.zipRight(Effect.sleep(500), Ref.set(finalized, true)))
      )
      const caller = yield* Effect.fork(Timeout.attempt("10 seconds", { disconnect: true })(slowFinalizer))
      yield* TestClock.adjust(100)
      yield* Fiber.interrupt(caller)
      expect(yield* Ref.get(finalized)).toBe(false)
      yield* TestClock.adjust(500)
      expect(yield* Ref.get(finalized)).toBe(true)
    }))

  it.effect("the timed effect runs with its caller's interruptibility", () =>
    Effect.gen(function*() {
      const probe = Timeout.attempt("1 second")(Effect.checkInterruptible((interruptible) => Effect.succeed(interruptible)))
      expect(yield* Effect.uninterruptible(probe)).toBe(false)
      expect(yield* probe).toBe(true)
    }))
})

describe("Timeout.total", () => {
  it.effect("sets the request's deadline, visible inside through Deadline.remaining", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust(10_000)
      const inside = Effect.all([Deadline.remaining, Effect.zipRight(Effect.sleep(1500), Deadline.remaining)])
      const fiber = yield* Effect.fork(Timeout.total("5 seconds")(inside))
      yield* TestClock.adjust(1500)
      const [atStart, later] = yield* Fiber.join(fiber)
      expect(atStart).toEqual(Option.some(5000))
      expect(later).toEqual(Option.some(3500))
      expect(yield* Effect.map(Deadline.remaining, Option.isNone)).toBe(true)
    }))

  it.effect("keeps an enclosing earlier deadline", () =>
    Effect.gen(function*() {
      const remaining = yield* Deadline.within(2000)(Timeout.total("5 seconds")(Deadline.remaining))
      expect(remaining).toEqual(Option.some(2000))
    }))

  it.effect("fails with phase total at the deadline and interrupts the request", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(Option.none<number>())
      const fiber = yield* Effect.fork(
        Effect.flip(Timeout.total("5 seconds", { provider: "openai" })(interruptedAt(finalized)(Effect.never)))
      )
      yield* TestClock.adjust(4999)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      const error = yield* Fiber.join(fiber)
      expect(error.phase).toBe("total")
      expect(error.provider).toBe("openai")
      expect(Duration.toMillis(error.timeout)).toBe(5000)
      expect(yield* Ref.get(finalized)).toEqual(Option.some(5000))
    }))
})
