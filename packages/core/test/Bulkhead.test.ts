import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Bulkhead from "../src/Bulkhead.js"
import * as Deadline from "../src/Deadline.js"
import { BulkheadFullError, InvalidConfigError } from "../src/Errors.js"
import { Permits } from "../src/internal/bulkhead.js"
import * as GatedScript from "./support/gatedScript.js"

/** Lets every forked fiber run until it is done or suspended (no time passes). */
const settle = TestClock.adjust(0)

/** Records which calls entered their body, in order, and how many ran at once. */
const probe = () => {
  const state = { running: 0, max: 0, started: [] as Array<string>, finished: [] as Array<string> }
  const body = <A, E, R>(id: string, work: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        state.running++
        state.max = Math.max(state.max, state.running)
        state.started.push(id)
      }),
      () => work,
      () =>
        Effect.sync(() => {
          state.running--
          state.finished.push(id)
        })
    )
  return { state, body }
}

describe("Bulkhead", () => {
  it.effect("runs at most maxConcurrent calls at once", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 3, maxQueue: 10 })
      const { body, state } = probe()
      const fibers = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => i),
        (i) => Effect.fork(bulkhead.execute(body(`c${i}`, Effect.sleep("100 millis")))),
      )
      yield* settle
      expect(state.running).toBe(3)
      expect(yield* bulkhead.status).toEqual({ name: "openai", running: 3, queued: 7, maxConcurrent: 3, maxQueue: 10 })
      yield* TestClock.adjust("1 second")
      yield* Fiber.joinAll(fibers)
      expect(state.max).toBe(3)
      expect(state.finished).toHaveLength(10)
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect("queued callers start in arrival order (FIFO)", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "fifo", maxConcurrent: 1, maxQueue: 5 })
      const { body, state } = probe()
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(bulkhead.execute(body("holder", Deferred.await(gate))))
      yield* settle
      const waiters = []
      for (const id of ["w1", "w2", "w3", "w4", "w5"]) {
        waiters.push(yield* Effect.fork(bulkhead.execute(body(id, Effect.sleep("10 millis")))))
        yield* settle
      }
      expect((yield* bulkhead.status).queued).toBe(5)
      yield* Deferred.succeed(gate, undefined)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(holder)
      yield* Fiber.joinAll(waiters)
      expect(state.started).toEqual(["holder", "w1", "w2", "w3", "w4", "w5"])
      expect(state.max).toBe(1)
    }))

  it.effect("a freed permit goes to the oldest waiter, not to a caller arriving in the same instant", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "handoff", maxConcurrent: 1, maxQueue: 2 })
      const { body, state } = probe()
      const gate = yield* Deferred.make<void>()
      const seenByNewcomer: Array<Bulkhead.Status> = []
      // The holder's fiber releases its permit and, without yielding, calls
      // again: the newcomer arrives after the release but before the waiter
      // has resumed. It must queue behind the waiter.
      const holder = yield* Effect.fork(
        Effect.zipRight(
          bulkhead.execute(body("holder", Deferred.await(gate))),
          Effect.suspend(() => Effect.zipRight(Effect.tap(bulkhead.status, (s) => seenByNewcomer.push(s)), bulkhead.execute(body("newcomer", Effect.void))))
        )
      )
      yield* settle
      const waiter = yield* Effect.fork(bulkhead.execute(body("waiter", Effect.sleep("10 millis"))))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      expect(seenByNewcomer).toEqual([{ name: "handoff", running: 1, queued: 0, maxConcurrent: 1, maxQueue: 2 }])
      expect(state.started).toEqual(["holder", "waiter"])
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(waiter)
      yield* Fiber.join(holder)
      expect(state.started).toEqual(["holder", "waiter", "newcomer"])
      expect(state.max).toBe(1)
    }))

  it.effect("a queued caller gives up at the request's deadline, whatever its maxQueueWait; one whose deadline has passed is refused at once", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "b", maxConcurrent: 1, maxQueue: 5 })
      const holder = yield* Effect.fork(bulkhead.execute(Effect.never))
      yield* settle
      const waiter = yield* Effect.fork(Effect.flip(Deadline.within(1_000)(bulkhead.execute(Effect.void))))
      yield* TestClock.adjust("999 millis")
      expect(waiter.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 milli")
      expect(yield* Fiber.join(waiter)).toMatchObject({ _tag: "BulkheadFullError", reason: "queue-timeout" })
      expect(yield* Effect.flip(Deadline.at(0)(bulkhead.execute(Effect.void)))).toMatchObject({ reason: "queue-timeout" })
      expect(yield* bulkhead.status).toMatchObject({ running: 1, queued: 0 })
      yield* Fiber.interrupt(holder)
    }))

  it.effect("a full queue refuses at once with queue-full, and the refused call never runs", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1, maxQueue: 1, maxQueueWait: "1 minute" })
      const { body, state } = probe()
      yield* Effect.fork(bulkhead.execute(body("holder", Effect.never)))
      yield* settle
      yield* Effect.fork(bulkhead.execute(body("queued", Effect.void)))
      yield* settle
      const refused = yield* Effect.fork(bulkhead.execute(body("refused", Effect.void)))
      yield* settle // no time passes: the refusal must already be there
      const exit = yield* Fiber.poll(refused)
      expect(exit).toEqual(
        Option.some(Exit.fail(new BulkheadFullError({ bulkhead: "openai", reason: "queue-full", maxConcurrent: 1, maxQueue: 1 })))
      )
      expect(state.started).toEqual(["holder"])
      expect(yield* bulkhead.status).toMatchObject({ running: 1, queued: 1 })
    }))

  it.effect("without a queue (maxQueue 0, the default) a caller with no free permit is refused at once", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "noqueue", maxConcurrent: 1 })
      yield* Effect.fork(bulkhead.execute(Effect.never))
      yield* settle
      const error = yield* Effect.flip(bulkhead.execute(Effect.succeed(1)))
      expect(error).toMatchObject({ _tag: "BulkheadFullError", reason: "queue-full", maxQueue: 0 })
    }))

  it.effect("an effect already done passes a free permit at once, and waits its turn behind a full bulkhead", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "done", maxConcurrent: 1, maxQueue: 2 })
      expect(yield* bulkhead.execute(Effect.succeed("free"))).toBe("free")
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(bulkhead.execute(Deferred.await(gate)))
      yield* settle
      const first = yield* Effect.fork(bulkhead.execute(Effect.succeed("first")))
      const second = yield* Effect.fork(bulkhead.execute(Effect.fail("second")))
      yield* settle
      expect(yield* bulkhead.status).toMatchObject({ running: 1, queued: 2 })
      expect(yield* Effect.flip(bulkhead.execute(Effect.succeed("refused")))).toMatchObject({ reason: "queue-full" })
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(holder)
      expect(yield* Fiber.join(first)).toBe("first")
      expect(yield* Effect.flip(Fiber.join(second))).toBe("second")
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect("a queued caller fails with queue-timeout at exactly maxQueueWait, not a millisecond earlier", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1, maxQueue: 2, maxQueueWait: "1 second" })
      const { body, state } = probe()
      yield* Effect.fork(bulkhead.execute(body("holder", Effect.never)))
      yield* settle
      const waiter = yield* Effect.fork(bulkhead.execute(body("waiter", Effect.void)))
      yield* TestClock.adjust("999 millis")
      expect(yield* Fiber.poll(waiter)).toEqual(Option.none())
      expect((yield* bulkhead.status).queued).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.poll(waiter)).toEqual(
        Option.some(Exit.fail(new BulkheadFullError({ bulkhead: "openai", reason: "queue-timeout", maxConcurrent: 1, maxQueue: 2 })))
      )
      expect(state.started).toEqual(["holder"])
      expect(yield* bulkhead.status).toMatchObject({ running: 1, queued: 0 })
    }))

  it.scoped("a waiter handed a permit before maxQueueWait runs, and its timer does not fire later", () =>
    Effect.gen(function*() {
      // Every expiry a wait limit's timer asks for, seen on the permits' own method (put back after the test).
      const expired: Array<string> = []
      const expire = Permits.prototype.expire
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          Permits.prototype.expire = function(this: Permits, waiter) {
            expired.push(waiter.state)
            return expire.call(this, waiter)
          }
        }),
        () => Effect.sync(() => void (Permits.prototype.expire = expire))
      )
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1, maxQueue: 2, maxQueueWait: "1 second" })
      const { body, state } = probe()
      const holder = yield* Effect.fork(bulkhead.execute(body("holder", Effect.sleep("500 millis"))))
      const waiter = yield* Effect.fork(bulkhead.execute(body("waiter", Effect.sleep("2 seconds"))))
      yield* TestClock.adjust("500 millis")
      expect(state.started).toEqual(["holder", "waiter"])
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(waiter)).toBeUndefined()
      // Its wait limit's timer was stopped: it never came to expire the waiter (at 1 s).
      expect(expired).toEqual([])
      yield* Fiber.join(holder)
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect("maxQueueWait 0 means no waiting: queue-timeout at once", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "nowait", maxConcurrent: 1, maxQueue: 3, maxQueueWait: 0 })
      yield* Effect.fork(bulkhead.execute(Effect.never))
      yield* settle
      const error = yield* Effect.flip(bulkhead.execute(Effect.succeed(1)))
      expect(error).toMatchObject({ _tag: "BulkheadFullError", reason: "queue-timeout" })
      expect((yield* bulkhead.status).queued).toBe(0)
    }))

  it.effect("an interrupted waiter leaves the queue, never runs, and the next waiter gets the permit", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1, maxQueue: 3 })
      const { body, state } = probe()
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(bulkhead.execute(body("holder", Deferred.await(gate))))
      yield* settle
      const first = yield* Effect.fork(bulkhead.execute(body("first", Effect.void)))
      yield* settle
      const second = yield* Effect.fork(bulkhead.execute(body("second", Effect.void)))
      yield* settle
      expect((yield* bulkhead.status).queued).toBe(2)
      yield* Fiber.interrupt(first)
      expect(yield* bulkhead.status).toMatchObject({ running: 1, queued: 1 })
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(second)
      expect(state.started).toEqual(["holder", "second"])
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect("a waiter interrupted as the permit is handed to it passes the permit on", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1, maxQueue: 3 })
      const { body, state } = probe()
      const gate = yield* Deferred.make<void>()
      const victim = yield* Deferred.make<Fiber.RuntimeFiber<void, BulkheadFullError>>()
      // The holder sends the interrupt to the first waiter and, in the same
      // synchronous step, releases its permit, which is handed to that waiter
      // before it has seen the interrupt.
      const holder = yield* Effect.fork(
        bulkhead.execute(
          body(
            "holder",
            Effect.zipRight(
              Deferred.await(gate),
              Effect.flatMap(Deferred.await(victim), (fiber) => Fiber.interruptAsFork(fiber, FiberId.none))
            )
          )
        )
      )
      yield* settle
      const first = yield* Effect.fork(bulkhead.execute(body("first", Effect.void)))
      yield* Deferred.succeed(victim, first)
      yield* settle
      const second = yield* Effect.fork(bulkhead.execute(body("second", Effect.void)))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      expect(Exit.isInterrupted(yield* Fiber.await(first))).toBe(true)
      yield* Fiber.join(second)
      yield* Fiber.join(holder)
      expect(state.started).toEqual(["holder", "second"])
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect.each(
    [
      ["a failure", Effect.fail("boom")],
      ["a defect", Effect.die("bug")],
      ["an interruption", Effect.interrupt]
    ] as const
  )("the permit comes back after %s of the running call", ([, ending]) =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1, maxQueue: 1 })
      const { body, state } = probe()
      const gate = yield* Deferred.make<void>()
      const running = yield* Effect.fork(bulkhead.execute(Effect.zipRight(Deferred.await(gate), ending)))
      yield* settle
      const waiter = yield* Effect.fork(bulkhead.execute(body("waiter", Effect.void)))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      const exit = yield* Fiber.await(running)
      expect(Exit.isFailure(exit)).toBe(true)
      yield* Fiber.join(waiter)
      expect(state.started).toEqual(["waiter"])
      expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect("the permit comes back when the running call is interrupted from outside", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make({ name: "openai", maxConcurrent: 1 })
      const running = yield* Effect.fork(bulkhead.execute(Effect.never))
      yield* settle
      expect((yield* bulkhead.status).running).toBe(1)
      yield* Fiber.interrupt(running)
      expect((yield* bulkhead.status).running).toBe(0)
      expect(yield* bulkhead.execute(Effect.succeed("next"))).toBe("next")
    }))

  it.effect("one deployment's saturated bulkhead does not starve another's", () =>
    Effect.gen(function*() {
      const slow = yield* Bulkhead.make({ name: "slow-deployment", maxConcurrent: 2, maxQueue: 2 })
      const healthy = yield* Bulkhead.make({ name: "healthy-deployment", maxConcurrent: 2, maxQueue: 2 })
      for (let i = 0; i < 4; i++) {
        yield* Effect.fork(slow.execute(Effect.never))
      }
      yield* settle
      expect(yield* slow.status).toMatchObject({ running: 2, queued: 2 })
      expect((yield* Effect.flip(slow.execute(Effect.void))).reason).toBe("queue-full")
      expect(yield* healthy.execute(Effect.succeed("answered"))).toBe("answered")
      expect(yield* healthy.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect.each(
    [
      [{ name: "openai", maxConcurrent: 0 }, "maxConcurrent"],
      [{ name: "openai", maxConcurrent: 1.5 }, "maxConcurrent"],
      [{ name: "openai", maxConcurrent: 1, maxQueue: -1 }, "maxQueue"],
      [{ name: "openai", maxConcurrent: 1, maxQueueWait: "soon" }, "maxQueueWait"],
      [{ name: "openai", maxConcurrent: 1, maxQueueWait: Number.NaN }, "maxQueueWait"],
      [{ name: "", maxConcurrent: 1 }, "name"]
    ] as const
  )("rejects %o naming the field %s", ([options, path]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Bulkhead.make(options as Bulkhead.Options))
      expect(error).toBeInstanceOf(InvalidConfigError)
      expect(error.path).toBe(path)
      expect(error.component).toBe(`Bulkhead "${options.name}"`)
    }))

  it.effect("rejects an unknown option (a typo) by its name", () =>
    Effect.gen(function*() {
      const options = { name: "openai", maxConcurrent: 1, maxQueueWaitMs: 100 }
      const error = yield* Effect.flip(Bulkhead.make(options))
      expect(error.path).toBe("maxQueueWaitMs")
    }))

  it.effect("layer and layerConfig provide the Bulkhead tag", () =>
    Effect.gen(function*() {
      const viaLayer = yield* Effect.provide(Bulkhead.Bulkhead, Bulkhead.layer({ name: "a", maxConcurrent: 2 }))
      expect(yield* viaLayer.status).toEqual({ name: "a", running: 0, queued: 0, maxConcurrent: 2, maxQueue: 0 })
      const viaConfig = yield* Effect.provide(
        Bulkhead.Bulkhead,
        Bulkhead.layerConfig({
          name: Config.string("NAME"),
          maxConcurrent: Config.integer("MAX_CONCURRENT"),
          maxQueue: Config.integer("MAX_QUEUE"),
          maxQueueWait: Config.duration("MAX_QUEUE_WAIT")
        })
      ).pipe(
        Effect.withConfigProvider(
          ConfigProvider.fromMap(
            new Map([["NAME", "b"], ["MAX_CONCURRENT", "3"], ["MAX_QUEUE", "4"], ["MAX_QUEUE_WAIT", "2 seconds"]])
          )
        )
      )
      expect(yield* viaConfig.status).toEqual({ name: "b", running: 0, queued: 0, maxConcurrent: 3, maxQueue: 4 })
    }))

  describe("Permits (the synchronous permit book)", () => {
    it("a permit given up by a waiter granted in the same instant goes to the next waiter", () => {
      const permits = new Permits(1, 3)
      expect(permits.tryTake()).toBe(true)
      const first = permits.enqueue()
      const second = permits.enqueue()
      if (first === undefined || second === undefined) return expect.fail("queue should have room")
      permits.release()
      expect(first.state).toBe("granted")
      expect(permits.running).toBe(1)
      permits.leave(first)
      expect(second.state).toBe("granted")
      expect(permits.running).toBe(1)
      permits.leave(second)
      expect(permits.running).toBe(0)
      expect(permits.queued).toBe(0)
    })

    it("a wait limit that runs out after the grant changes nothing", () => {
      const permits = new Permits(1, 1)
      permits.tryTake()
      const waiter = permits.enqueue()
      if (waiter === undefined) return expect.fail("queue should have room")
      permits.release()
      permits.expire(waiter)
      expect(waiter.state).toBe("granted")
      expect(permits.running).toBe(1)
    })

    it("a capacity that grows hands its room to the waiters, oldest first; one that shrinks takes permits back as they are released", () => {
      const permits = new Permits(1, Number.POSITIVE_INFINITY)
      permits.tryTake()
      const [a, b, c] = [permits.enqueue(), permits.enqueue(), permits.enqueue()]
      if (a === undefined || b === undefined || c === undefined) return expect.fail("queue should have room")
      permits.resize(3)
      expect([a.state, b.state, c.state]).toEqual(["granted", "granted", "waiting"])
      expect(permits.running).toBe(3)
      // A newcomer does not pass the waiter that is still queued.
      expect(permits.tryTake()).toBe(false)
      permits.resize(1)
      permits.release()
      permits.release()
      expect(c.state).toBe("waiting")
      expect(permits.running).toBe(1)
      permits.release()
      expect(c.state).toBe("granted")
      expect(permits.running).toBe(1)
    })
  })

  const script = GatedScript.steps({
    arrival: FastCheck.constant(undefined),
    how: FastCheck.constantFrom("succeed" as const, "fail" as const, "die" as const),
    millis: FastCheck.oneof(FastCheck.integer({ min: 1, max: 5 }), FastCheck.integer({ min: 1, max: 150 })),
    weights: { arrive: 4, finish: 3, interrupt: 2, tick: 1 }
  })

  it.effect.prop(
    "random arrivals, completions, interruptions and timeouts never exceed maxConcurrent, keep FIFO and never leak a permit",
    {
      maxConcurrent: FastCheck.integer({ min: 1, max: 3 }),
      maxQueue: FastCheck.integer({ min: 0, max: 3 }),
      maxQueueWait: FastCheck.option(FastCheck.integer({ min: 0, max: 400 }), { nil: undefined, freq: 3 }),
      ops: FastCheck.array(script, { minLength: 8, maxLength: 30 })
    },
    ({ maxConcurrent, maxQueue, maxQueueWait, ops }) =>
      Effect.gen(function*() {
        const bulkhead = yield* Bulkhead.make({ name: "prop", maxConcurrent, maxQueue, maxQueueWait })
        const check = (calls: ReadonlyArray<GatedScript.Call<undefined>>, ran: GatedScript.Ran) =>
          Effect.gen(function*() {
            const status = yield* bulkhead.status
            const now = yield* Clock.currentTimeMillis
            expect(ran.running.size).toBeLessThanOrEqual(maxConcurrent)
            // once settled, every permit held is a running body: none leaked
            expect(status.running).toBe(ran.running.size)
            expect(status.queued).toBeLessThanOrEqual(maxQueue)
            // no idle permit while someone waits (a lost hand-off would show here)
            if (status.queued > 0) expect(status.running).toBe(maxConcurrent)
            const waiting: Array<number> = []
            for (const call of calls) {
              const exit = yield* Fiber.poll(call.fiber)
              if (Option.isNone(exit) && !ran.started.includes(call.id)) {
                waiting.push(call.id)
                // a waiter is still queued only while its wait limit has not run out
                if (maxQueueWait !== undefined) expect(now - call.arrivedAt).toBeLessThan(maxQueueWait)
              }
              if (Option.isSome(exit) && Exit.isFailure(exit.value)) {
                const error = Cause.failureOption(exit.value.cause)
                if (Option.isSome(error) && error.value instanceof BulkheadFullError && error.value.reason === "queue-timeout") {
                  expect(maxQueueWait).toBeDefined()
                  expect(now - call.arrivedAt).toBeGreaterThanOrEqual(maxQueueWait ?? Infinity)
                }
              }
            }
            expect(status.queued).toBe(waiting.length)
            // FIFO: no call that arrived later has started while an earlier one still waits
            const lastStarted = Math.max(-1, ...ran.started)
            for (const id of waiting) expect(id).toBeGreaterThan(lastStarted)
          })
        const ran = yield* GatedScript.run(ops, { through: (_, body) => bulkhead.execute(body), failure: "boom", check })
        expect(yield* bulkhead.status).toMatchObject({ running: 0, queued: 0 })
        expect(ran.running.size).toBe(0)
        // every permit is back: maxConcurrent calls are admitted at once again
        const again = yield* Effect.forEach(
          Array.from({ length: maxConcurrent }, () => 0),
          () => Effect.fork(bulkhead.execute(Effect.never))
        )
        yield* settle
        expect(yield* bulkhead.status).toMatchObject({ running: maxConcurrent, queued: 0 })
        yield* Fiber.interruptAll(again)
      }),
    { timeout: 30_000, fastCheck: { numRuns: 40 } }
  )
})
