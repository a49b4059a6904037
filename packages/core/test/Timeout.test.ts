import { describe, expect, it } from "@effect/vitest"
import { vi } from "vitest"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Scheduler from "effect/Scheduler"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import * as Deadline from "../src/Deadline.js"
import * as DeadlineQueue from "../src/internal/deadlineQueue.js"
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

describe("Timeout.failWith", () => {
  it.effect("fails with the caller's own error at the deadline, after the effect's finalizer has run", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(Option.none<number>())
      const fiber = yield* Effect.fork(
        Effect.flip(Timeout.failWith("250 millis", () => ({ _tag: "FirstByte" as const }))(interruptedAt(finalized)(Effect.never)))
      )
      yield* TestClock.adjust(249)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* Fiber.join(fiber)).toEqual({ _tag: "FirstByte" })
      expect(yield* Ref.get(finalized)).toEqual(Option.some(250))
    }))

  it.effect("a value before the deadline is returned; an infinite duration adds no timeout", () =>
    Effect.gen(function*() {
      const early = yield* Effect.fork(Timeout.failWith("1 second", () => "late")(Effect.as(Effect.sleep(999), "early")))
      const unbounded = yield* Effect.fork(Timeout.failWith(Duration.infinity, () => "late")(Effect.as(Effect.sleep("1 hour"), "done")))
      yield* TestClock.adjust("1 hour")
      expect(yield* Fiber.join(early)).toBe("early")
      expect(yield* Fiber.join(unbounded)).toBe("done")
    }))
})

describe("Timeout.attempt: on the caller's fiber", () => {
  const answer = FiberRef.unsafeMake("none")

  it.effect("an effect that completes at once returns its value (or its failure) and leaves nothing sleeping", () =>
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

/**
 * The test's `TestClock`, counting the sleeps on it that have neither woken
 * nor been interrupted. It hands out no scheduler: a timeout sleeps on it in
 * a fiber, as on `TestClock` itself.
 */
class CountingClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  pending = 0

  constructor(protected readonly clock: TestClock.TestClock) {}

  unsafeCurrentTimeMillis(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  unsafeCurrentTimeNanos(): bigint {
    return this.clock.unsafeCurrentTimeNanos()
  }

  get currentTimeMillis(): Effect.Effect<number> {
    return this.clock.currentTimeMillis
  }

  get currentTimeNanos(): Effect.Effect<bigint> {
    return this.clock.currentTimeNanos
  }

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.pending += 1
      return Effect.ensuring(this.clock.sleep(duration), Effect.sync(() => this.pending -= 1))
    })
  }
}

/**
 * The same with a scheduler, as effect's live clock and the testkit's
 * virtual clock have one: a timeout then takes its production path (one
 * timer, no fiber of its own). Each timer sleeps on the `TestClock` in a
 * fiber of the default runtime, outside the test's fibers.
 */
class SchedulingClock extends CountingClock {
  /**
   * With `lateCancel`, cancelling does not stop the task, as when a timer is
   * cancelled after it was dispatched.
   */
  constructor(clock: TestClock.TestClock, private readonly lateCancel = false) {
    super(clock)
  }

  scheduler(): Effect.Effect<Clock.ClockScheduler> {
    return Effect.succeed({
      unsafeSchedule: (task, duration) => {
        const timer = Effect.runFork(Effect.zipRight(this.sleep(duration), Effect.sync(task)))
        return () => {
          if (this.lateCancel || timer.unsafePoll() !== null) return false
          timer.unsafeInterruptAsFork(FiberId.none)
          return true
        }
      }
    })
  }
}

/** A clock to run the timed effects on, and the number of its sleeps in flight (each timer's among them). */
interface TimerSource {
  readonly run: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
  readonly sleeping: Effect.Effect<number>
}

const timerSource = (make: (clock: TestClock.TestClock) => CountingClock): Effect.Effect<TimerSource> =>
  Effect.map(TestClock.testClock(), (testClock) => {
    const clock = make(testClock)
    return { run: (effect) => Effect.withClock(effect, clock), sleeping: Effect.sync(() => clock.pending) }
  })

const timerSources = [
  ["a clock with a scheduler (one timer, no fiber)", timerSource((clock) => new SchedulingClock(clock))],
  ["a clock without one (a fiber sleeps on it)", timerSource((clock) => new CountingClock(clock))]
] as const

describe.each(timerSources)("Timeout: the rules with the timer from %s", (_, source) => {
  /** Records what happened and at what virtual time. */
  const journal = Effect.map(Ref.make<ReadonlyArray<string>>([]), (log) => ({
    note: (what: string) => Effect.flatMap(Clock.currentTimeMillis, (t) => Ref.update(log, (l) => [...l, `${what} at ${t}`])),
    read: Ref.get(log)
  }))

  it.effect("rule 19: the effect's finalizer, slow as it is, has run before the TimeoutError is seen", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const { note, read } = yield* journal
      const body = Effect.onInterrupt(Effect.never, () => Effect.zipRight(Effect.sleep(500), note("finalized")))
      const fiber = yield* Effect.fork(run(Effect.tap(Effect.flip(Timeout.attempt(1000)(body)), () => note("timeout seen"))))
      yield* TestClock.adjust(1000)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(500)
      expect((yield* Fiber.join(fiber)).phase).toBe("attempt")
      expect(yield* read).toEqual(["finalized at 1500", "timeout seen at 1500"])
    }))

  it.effect("rule 19: a value produced after the deadline (uninterruptibly) is dropped, and the fiber is not left interrupted", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const late = Effect.uninterruptible(Effect.as(Effect.sleep(2000), "late value"))
      const fiber = yield* Effect.fork(run(Effect.gen(function*() {
        const result = yield* Effect.either(Timeout.attempt(1000)(late))
        // A fiber left interrupted would stop here.
        yield* Effect.sleep(500)
        return [Either.getLeft(result).pipe(Option.map((e) => e.phase)), yield* Clock.currentTimeMillis] as const
      })))
      yield* TestClock.adjust(2000)
      yield* TestClock.adjust(500)
      expect(yield* Fiber.join(fiber)).toEqual([Option.some("attempt"), 2500])
    }))

  it.effect("rule 19: in an uninterruptible caller, a value produced after the deadline is dropped, and the fiber is not left interrupted", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const late = Effect.as(Effect.sleep(2000), "late value")
      const fiber = yield* Effect.fork(run(Effect.gen(function*() {
        const result = yield* Effect.uninterruptible(Effect.either(Timeout.attempt(1000)(late)))
        // Interruptible again: a fiber left interrupted would stop here.
        yield* Effect.sleep(500)
        return [Either.getLeft(result).pipe(Option.map((e) => e.phase)), yield* Clock.currentTimeMillis] as const
      })))
      yield* TestClock.adjust(2000)
      yield* TestClock.adjust(500)
      expect(yield* Fiber.join(fiber)).toEqual([Option.some("attempt"), 2500])
    }))

  it.effect("after a timeout the same fiber retries, suspends, and is interrupted by its interruptor only", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const { note, read } = yield* journal
      let attempts = 0
      const call = Effect.suspend(() => {
        attempts += 1
        return attempts === 1 ? Effect.never : Effect.as(Effect.sleep(100), "second attempt")
      })
      const fiber = yield* Effect.fork(run(
        Effect.flatMap(Effect.retry(Timeout.attempt(1000)(call), { times: 1 }), (value) => Effect.zipRight(note(value), Effect.never))
      ))
      yield* TestClock.adjust(1000)
      yield* TestClock.adjust(100)
      expect(yield* read).toEqual(["second attempt at 1100"])
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)).toBe(true)
      expect(Exit.isFailure(exit) && [...Cause.interruptors(exit.cause)]).toEqual([yield* Effect.fiberId])
    }))

  it.effect("a caller interrupted from outside is interrupted, not failed with a TimeoutError, and its timer is cancelled", () =>
    Effect.gen(function*() {
      const { run, sleeping } = yield* source
      const caller = yield* Effect.fork(run(Timeout.attempt(1000)(Effect.never)))
      yield* TestClock.adjust(100)
      const exit = yield* Fiber.interrupt(caller)
      expect(Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)).toBe(true)
      yield* TestClock.adjust(0)
      expect(yield* sleeping).toBe(0)
    }))

  it.effect("a caller interrupted from outside just before the deadline stays interrupted when the timer fires during the effect's finalizer", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const slow = Effect.onInterrupt(Effect.never, () => Effect.sleep(500))
      const caller = yield* Effect.fork(run(Timeout.attempt(1000)(slow)))
      yield* TestClock.adjust(900)
      const interrupting = yield* Effect.fork(Fiber.interrupt(caller))
      yield* TestClock.adjust(500)
      const exit = yield* Fiber.join(interrupting)
      expect(Exit.isInterrupted(exit)).toBe(true)
      // Only the interruptor from outside: the timeout took its own interruption back.
      expect(Exit.isFailure(exit) && [...Cause.interruptors(exit.cause)]).toEqual([interrupting.id()])
    }))

  it.effect("nested: the attempt timeout fires first inside the total one, and the request goes on", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const { note, read } = yield* journal
      const attempt = Timeout.attempt(1000)(Effect.onInterrupt(Effect.never, () => note("attempt finalized")))
      const request = Timeout.total(5000)(
        Effect.zipRight(
          Effect.catchTag(attempt, "TimeoutError", (e) => note(`${e.phase} timeout`)),
          Effect.as(Effect.sleep(500), "recovered")
        )
      )
      const fiber = yield* Effect.fork(run(request))
      yield* TestClock.adjust(1000)
      yield* TestClock.adjust(500)
      expect(yield* Fiber.join(fiber)).toBe("recovered")
      expect(yield* read).toEqual(["attempt finalized at 1000", "attempt timeout at 1000"])
    }))

  it.effect("nested: the total timeout fires first, around a longer attempt timeout, and wins", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const { note, read } = yield* journal
      const attempt = Timeout.attempt(5000)(Effect.onInterrupt(Effect.never, () => note("attempt finalized")))
      const fiber = yield* Effect.fork(run(Effect.flip(Timeout.total(1000)(attempt))))
      yield* TestClock.adjust(1000)
      expect((yield* Fiber.join(fiber)).phase).toBe("total")
      expect(yield* read).toEqual(["attempt finalized at 1000"])
      yield* TestClock.adjust(5000)
    }))

  it.effect("nested: a total timeout that fired is not taken back by an attempt timeout firing while the attempt unwinds", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      let attempts = 0
      // The total deadline comes at 1000, the attempt's at 1050, while the attempt's finalizer runs (until 1100).
      const call = Effect.suspend(() => {
        attempts += 1
        return Effect.onInterrupt(Effect.never, () => Effect.sleep(100))
      })
      const retried = Effect.retry(Timeout.attempt(1050)(call), { while: (e) => e._tag === "TimeoutError", times: 3 })
      const fiber = yield* Effect.fork(run(Effect.flip(Timeout.total(1000)(retried))))
      yield* TestClock.adjust(1100)
      expect(yield* isDone(fiber)).toBe(true)
      expect((yield* Fiber.join(fiber)).phase).toBe("total")
      expect(attempts).toBe(1)
    }))

  it.effect("a timeout leaves alone the fibers its caller forked before it", () =>
    Effect.gen(function*() {
      const { run } = yield* source
      const fiber = yield* Effect.fork(run(Effect.gen(function*() {
        const background = yield* Effect.fork(Effect.as(Effect.sleep(2000), "background done"))
        const error = yield* Effect.flip(Timeout.attempt(1000)(Effect.never))
        return [error.phase, yield* Fiber.join(background)] as const
      })))
      yield* TestClock.adjust(1000)
      yield* TestClock.adjust(1000)
      expect(yield* Fiber.join(fiber)).toEqual(["attempt", "background done"])
    }))
})

describe("Timeout.attempt: a timer that fires after the effect settled", () => {
  it.effect("does nothing: the fiber goes on uninterrupted", () =>
    Effect.gen(function*() {
      const clock = new SchedulingClock(yield* TestClock.testClock(), true)
      const fiber = yield* Effect.fork(Effect.withClock(
        Effect.gen(function*() {
          const value = yield* Timeout.attempt(1000)(Effect.as(Effect.sleep(500), "in time"))
          // Still running when the uncancelled timer fires at 1000.
          yield* Effect.sleep(1000)
          return [value, yield* Clock.currentTimeMillis] as const
        }),
        clock
      ))
      yield* TestClock.adjust(1500)
      expect(yield* Fiber.join(fiber)).toEqual(["in time", 1500])
    }))
})

/** Counts the fibers started under it. */
class CountingSupervisor extends Supervisor.AbstractSupervisor<number> {
  started = 0
  get value(): Effect.Effect<number> {
    return Effect.sync(() => this.started)
  }
  override onStart(): void {
    this.started += 1
  }
}

describe("Timeout.attempt: no fiber per call", () => {
  it.effect("with a clock that has a scheduler (effect's live clock), the effect runs on the caller's fiber and no fiber is started", () =>
    Effect.gen(function*() {
      const supervisor = new CountingSupervisor()
      const caller = yield* Effect.fiberId
      // Resumes on the next turn of the event loop, as I/O does.
      const io = Effect.async<FiberId.FiberId>((resume) => {
        setImmediate(() => resume(Effect.fiberId))
      })
      const timed = Timeout.attempt("10 seconds")
      const ids = yield* Effect.supervised(Effect.withClock(Effect.forEach([1, 2, 3], () => timed(io)), Clock.make()), supervisor)
      expect(ids).toEqual([caller, caller, caller])
      expect(yield* supervisor.value).toBe(0)
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

/** A call that never ends. */
const hung = Effect.async<never>(() => {})

/** The tag of a timed call's error, or "no timeout" when it returned. */
const tagOf = (result: Either.Either<unknown, { readonly _tag: string }>) =>
  Either.isLeft(result) ? result.left._tag : "no timeout"

/**
 * On effect's live clock every deadline of a configured duration shares one
 * Node timer (`internal/deadlineQueue.ts`). These run on real timers, on
 * purpose: what is tested is how the deadlines meet Node's timer, and what
 * keeps a process alive.
 */
describe("Timeout on effect's live clock: one Node timer per configured duration", () => {
  /** Real milliseconds until `timed(hung)` fails, with the error's tag. */
  const failure = (timed: Timeout.Timeout) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.map(Effect.either(timed(hung)), (result) => ({
        tag: tagOf(result),
        ms: performance.now() - start
      }))
    })

  it.live("a hung call fails at its own deadline, not at the deadline of an earlier call that ended in time", () =>
    Effect.gen(function*() {
      const timed = Timeout.attempt("80 millis")
      // Its timer is set for 80 ms from now, and stays set when the call ends.
      expect(yield* timed(Effect.succeed(1).pipe(Effect.delay("1 millis")))).toBe(1)
      yield* Effect.sleep("30 millis")
      const { ms, tag } = yield* failure(timed)
      expect(tag).toBe("TimeoutError")
      // 1 ms of slack: Node may wake a timer that much before performance.now() says it is due.
      expect(ms).toBeGreaterThanOrEqual(79)
    }))

  it.live("deadlines of one duration, set one after another, each fire at their own time, in the order they were set", () =>
    Effect.gen(function*() {
      const timed = Timeout.attempt("60 millis")
      const ended: Array<number> = []
      const fibers: Array<Fiber.RuntimeFiber<{ readonly tag: string; readonly ms: number }>> = []
      for (let i = 0; i < 4; i++) {
        fibers.push(yield* Effect.fork(Effect.tap(failure(timed), () => Effect.sync(() => ended.push(i)))))
        yield* Effect.sleep("15 millis")
      }
      const results = yield* Fiber.joinAll(fibers)
      for (const { ms, tag } of results) {
        expect(tag).toBe("TimeoutError")
        expect(ms).toBeGreaterThanOrEqual(59)
      }
      expect(ended).toEqual([0, 1, 2, 3])
    }))

  /** Runs `support/timeoutProcess.ts` in its own Node process; resolves with what it printed and how long it lived after. */
  const runProcess = (mode: "ended" | "hung") =>
    Effect.async<{ readonly printed: string; readonly code: number | null; readonly livedAfterMs: number }>((resume) => {
      const repo = fileURLToPath(new URL("../../..", import.meta.url))
      const file = fileURLToPath(new URL("./support/timeoutProcess.ts", import.meta.url))
      const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", file, mode], {
        cwd: repo,
        stdio: ["ignore", "pipe", "inherit"]
      })
      let printed = ""
      let printedAt = performance.now()
      child.stdout.on("data", (data: Buffer) => {
        printed += data.toString()
        printedAt = performance.now()
      })
      child.on("exit", (code) => resume(Effect.succeed({ printed: printed.trim(), code, livedAfterMs: performance.now() - printedAt })))
      return Effect.sync(() => child.kill())
    })

  it.live("a process whose calls all ended in time exits at once, not when their 10 s timer would have fired", () =>
    Effect.gen(function*() {
      const { code, livedAfterMs, printed } = yield* runProcess("ended")
      expect(printed).toBe("done")
      expect(code).toBe(0)
      expect(livedAfterMs).toBeLessThan(3000)
    }), 30_000)

  it.live("a call still running keeps the process alive until its timeout fires, though an earlier call's end let the timer go", () =>
    Effect.gen(function*() {
      const { code, printed } = yield* runProcess("hung")
      expect(printed).toBe("TimeoutError")
      expect(code).toBe(0)
    }), 30_000)
})

describe("Timeout on effect's live clock: what the shared timer must survive", () => {
  it("timers faked and restored in one process (vi.useFakeTimers): a timeout fires under fake time, and under real time after", async () => {
    const timed = Timeout.attempt("200 millis")
    const io = Effect.async<number>((resume) => {
      setTimeout(() => resume(Effect.succeed(1)), 10)
    })
    try {
      vi.useFakeTimers()
      const ended = Effect.runPromise(timed(io))
      await vi.advanceTimersByTimeAsync(10)
      expect(await ended).toBe(1)
      vi.useRealTimers()
      // A timer left by a fake `setTimeout` never fires under the real one.
      const start = performance.now()
      expect(tagOf(await Effect.runPromise(Effect.either(timed(hung))))).toBe("TimeoutError")
      expect(performance.now() - start).toBeLessThan(2000)
      // And the real timer this leaves behind never fires under fake time.
      expect(await Effect.runPromise(timed(Effect.succeed(2).pipe(Effect.delay("1 millis"))))).toBe(2)
      vi.useFakeTimers()
      let outcome = "pending"
      void Effect.runPromise(Effect.either(timed(hung))).then((result) => (outcome = tagOf(result)))
      await vi.advanceTimersByTimeAsync(300)
      expect(outcome).toBe("TimeoutError")
    } finally {
      vi.useRealTimers()
    }
  }, 10_000)

  it.live("a timeout's task that starts another attempt on the same duration (a scheduler that runs tasks at once) leaves the deadlines after it on time", () =>
    Effect.gen(function*() {
      const timed = Timeout.attempt("200 millis")
      const start = performance.now()
      const since = () => performance.now() - start
      // A times out at 200 ms, inside the timer's own turn, and its retry sets a deadline there.
      const a = Effect.catchAll(timed(hung), () => Effect.exit(timed(hung)))
      // B starts at 60 ms: due at 260, not at the 400 of A's retry.
      const b = Effect.zipRight(
        Effect.sleep("60 millis"),
        Effect.suspend(() => {
          const started = since()
          return Effect.map(Effect.either(timed(hung)), (result) => ({ tag: tagOf(result), ms: since() - started }))
        })
      )
      const [, timedOut] = yield* Effect.withScheduler(
        Effect.all([a, b], { concurrency: "unbounded" }),
        Scheduler.make((task) => task())
      )
      expect(timedOut.tag).toBe("TimeoutError")
      expect(timedOut.ms).toBeGreaterThanOrEqual(199)
      expect(timedOut.ms).toBeLessThan(300)
    }), 10_000)

  it("a call hanging at the head does not keep the calls that ended after it: the queue holds a bounded number of entries", () => {
    DeadlineQueue.register(61_000)
    const queue = DeadlineQueue.of(61_000)
    expect(queue).toBeDefined()
    if (queue === undefined) return
    const cancelHung = queue.schedule(() => {})
    for (let i = 0; i < 10_000; i++) queue.schedule(() => {})()
    expect(queue.held).toBeLessThanOrEqual(2 * 1024 + 1)
    cancelHung()
    expect(queue.held).toBe(0)
  })
})
