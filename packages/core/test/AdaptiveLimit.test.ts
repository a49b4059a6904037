import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as TestClock from "effect/TestClock"
import * as AdaptiveLimit from "../src/AdaptiveLimit.js"
import * as Deadline from "../src/Deadline.js"
import * as Errors from "../src/Errors.js"
import { exitOf } from "../src/internal/done.js"
import * as StateStore from "../src/StateStore.js"
import * as GatedScript from "./support/gatedScript.js"

/** What the provider does with call `i` sent at `t` ms: answers `tokens` after `millis`, or hangs. */
type Behaviour = (i: number, t: number) => { readonly millis: number; readonly tokens: number } | "hang"

const TTFT = 300
const PER_TOKEN = 20
const normal = (tokens: number) => ({ millis: TTFT + tokens * PER_TOKEN, tokens })

interface Run {
  readonly admitted: number
  readonly refused: number
  readonly timedOut: number
  readonly answered: number
  /** The admitted limit at the end of every second. */
  readonly limits: ReadonlyArray<number>
  readonly firstRefusalAt: number | undefined
}

/**
 * A discrete-event run in virtual time of the gate as `Policy` drives it
 * (acquire, then release with the call's `Exit` and end time): `perSecond`
 * calls a second, each under an attempt timeout. Events are processed in
 * time order; the gate's effects (on the memory store) run synchronously.
 */
const simulate = (
  limit: AdaptiveLimit.Service,
  changes: Array<AdaptiveLimit.Change>,
  from: number,
  seconds: number,
  behaviour: Behaviour,
  options: { readonly perSecond?: number; readonly timeoutMs?: number } = {}
): Effect.Effect<Run> =>
  Effect.withFiberRuntime((fiber) => {
    const perSecond = options.perSecond ?? 50
    const timeoutMs = options.timeoutMs ?? 2500
    const timeout = Duration.millis(timeoutMs)
    const context = (now: number) => ({ now, restore: <A, E, R>(self: Effect.Effect<A, E, R>) => self, fiber })
    const ends: Array<{ readonly at: number; readonly release: () => void }> = []
    let admitted = 0, refused = 0, timedOut = 0, answered = 0
    let firstRefusalAt: number | undefined
    const limits: Array<number> = []
    const limitAt = (t: number) => {
      let current = changes.filter((c) => c.at <= t).at(-1)?.to
      return Math.floor(current ?? 0)
    }
    const endUntil = (t: number) => {
      ends.sort((x, y) => x.at - y.at)
      while (ends.length > 0 && ends[0]!.at <= t) ends.shift()!.release()
    }
    for (let i = 0; i < seconds * perSecond; i++) {
      const t = from + (i * 1000) / perSecond
      endUntil(t)
      const acquired = Effect.runSyncExit(limit.gate.acquire({ work: (v) => (typeof v === "number" ? v : undefined) }, context(t)))
      if (Exit.isFailure(acquired)) {
        refused++
        firstRefusalAt ??= t
      } else {
        admitted++
        const permit = acquired.value
        const outcome = behaviour(i, t)
        if (outcome === "hang" || outcome.millis > timeoutMs) {
          ends.push({
            at: t + timeoutMs,
            release: () => {
              timedOut++
              Effect.runSync(permit.release(Exit.fail(new Errors.TimeoutError({ phase: "attempt", timeout })), t + timeoutMs, t))
            }
          })
        } else {
          ends.push({
            at: t + outcome.millis,
            release: () => {
              answered++
              Effect.runSync(permit.release(Exit.succeed(outcome.tokens), t + outcome.millis, t))
            }
          })
        }
      }
      if ((i + 1) % perSecond === 0) limits.push(limitAt(t))
    }
    endUntil(from + seconds * 1000 + timeoutMs)
    return Effect.succeed({ admitted, refused, timedOut, answered, limits, firstRefusalAt })
  })

const setUp = (initialLimit = 5) =>
  Effect.gen(function*() {
    const changes: Array<AdaptiveLimit.Change> = [{ name: "primary", at: 0, from: 0, to: initialLimit, reason: "pressed" }]
    const limit = yield* AdaptiveLimit.make({
      name: "primary",
      initialLimit,
      // Refused at once, as where a later step of the chain can take the call (rule 25): these runs count refusals.
      maxQueueWait: 0,
      onChange: (change) => Effect.sync(() => changes.push(change))
    }).pipe(Effect.provide(StateStore.layerMemory))
    return { limit, changes }
  })

const steady: Behaviour = () => normal(10)

describe("AdaptiveLimit (rule 29)", () => {
  it.effect("converges when latency is steady: above what the traffic needs, and not far above it", () =>
    Effect.gen(function*() {
      // 50 calls a second of 0.5 s each: about 25 in flight.
      const { changes, limit } = yield* setUp()
      const run = yield* simulate(limit, changes, 0, 120, steady)
      const settled = run.limits.slice(-60)
      expect(Math.min(...settled)).toBeGreaterThanOrEqual(25)
      expect(Math.max(...settled)).toBeLessThanOrEqual(60)
      // Once grown, calls are seldom refused.
      const later = yield* simulate(limit, changes, 120_000, 60, steady)
      expect(later.refused / (later.refused + later.admitted)).toBeLessThan(0.01)
    }))

  it.effect("a provider that hangs: calls are refused once the calls in flight fill the limit, and it halves within a window once the hang shows", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* setUp()
      const before = (yield* simulate(limit, changes, 0, 60, steady)).limits.at(-1) ?? 0
      const hang = yield* simulate(limit, changes, 60_000, 5, () => "hang")
      // The calls in flight end within one usual call time (0.5 s), the hung ones take their places, and the
      // limit's headroom over the 25 the traffic needs fills: from then on every call is refused at once.
      expect((hang.firstRefusalAt ?? Infinity) - 60_000).toBeLessThan(1000)
      // Nothing has ended well for 3 usual call times (1.5 s): by the next window it has halved.
      const first = changes.find((c) => c.at > 60_000)
      expect(first).toMatchObject({ reason: "hang", to: (first?.from ?? 0) / 2 })
      expect((first?.at ?? Infinity) - 60_000).toBeLessThanOrEqual(2000)
      // Calls let through to the hanging provider in 5 s: about the limit's worth, not the traffic's 250.
      expect(hang.admitted).toBeLessThanOrEqual(1.5 * before)
    }))

  it.effect("a fast provider that hangs is shed once three usual call times pass without an answer, not at the window's end, down to half the calls in flight", () =>
    Effect.gen(function*() {
      // Issue 17's setup: 50 calls a second answered in 60 ms (3 in flight), the default limit of 50.
      const { changes, limit } = yield* setUp(50)
      const fast: Behaviour = () => ({ millis: 60, tokens: 10 })
      const before = yield* simulate(limit, changes, 0, 60, fast)
      expect(before.refused).toBe(0)
      expect(before.limits.at(-1)).toBe(50)
      const hang = yield* simulate(limit, changes, 60_000, 5, () => "hang")
      // Nothing ends well for 3 × 60 ms: the hang shows within 0.3 s, the window closes there, and the limit comes
      // down from the dozen calls in flight (a halving of 50 would have let 25 through), so calls are refused at once.
      const first = changes.find((c) => c.at > 60_000)
      expect(first).toMatchObject({ reason: "hang", from: 50 })
      expect((first?.at ?? Infinity) - 60_000).toBeLessThan(300)
      expect(first?.to ?? Infinity).toBeLessThan(10)
      expect((hang.firstRefusalAt ?? Infinity) - 60_000).toBeLessThan(300)
      // 5 s of a hung provider at 50 calls a second: about 15 calls let through, not the limit's 50.
      expect(hang.admitted).toBeLessThan(25)
    }))

  it.scoped("every change of the limit reaches its subscribers, as onChange hears it", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* setUp(50)
      const queue = yield* limit.subscribe
      yield* simulate(limit, changes, 0, 5, () => "hang")
      const published = yield* Queue.takeAll(queue)
      expect([...published].length).toBeGreaterThan(0)
      expect([...published]).toEqual(changes.slice(1))
    }))

  it.effect("recovers after the provider recovers", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* setUp()
      const before = (yield* simulate(limit, changes, 0, 60, steady)).limits.at(-1) ?? 0
      const hang = yield* simulate(limit, changes, 60_000, 10, () => "hang")
      // Down to its floor (minLimit, 4 by default).
      expect(hang.limits.at(-1)).toBe(4)
      const after = yield* simulate(limit, changes, 70_000, 30, steady)
      expect(after.limits.at(-1)).toBeGreaterThanOrEqual(Math.min(before, 25))
    }))

  it.effect("a provider that turns slow (15× per token) is shed as a hang is", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* setUp()
      const before = (yield* simulate(limit, changes, 0, 60, steady)).limits.at(-1) ?? 0
      const slow = yield* simulate(limit, changes, 60_000, 10, () => ({ millis: 15 * (TTFT + 10 * PER_TOKEN), tokens: 10 }), {
        timeoutMs: 60_000
      })
      expect(slow.limits.at(-1)).toBeLessThanOrEqual(before / 4)
    }))

  it.effect("long answers alone do not shrink it: one call in ten answers 2000 tokens (40 s) among short ones", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* setUp()
      const run = yield* simulate(limit, changes, 0, 300, (i) => normal(i % 10 === 0 ? 2000 : 20), { perSecond: 10, timeoutMs: 60_000 })
      expect(run.timedOut).toBe(0)
      expect(changes.filter((c) => c.to < c.from)).toEqual([])
      expect(run.limits.at(-1)).toBeGreaterThan(5)
    }))

  it.effect("heavy-tailed latency alone does not shrink it: answers whose latency varies 10x around the same mean", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* setUp()
      // A fixed pseudo-random sequence: latency 0.2-2 s whatever the answer's size (p99/p50 about 3, as real providers).
      let seed = 7
      const next = () => (seed = (seed * 48271) % 2147483647) / 2147483647
      const answer = () => ({ millis: 200 + 1800 * next() ** 3, tokens: Math.floor(50 + 400 * next()) })
      // From an initial limit of 5: past the first minute's growth, nothing is refused and nothing shrinks it.
      yield* simulate(limit, changes, 0, 60, answer)
      const run = yield* simulate(limit, changes, 60_000, 240, answer)
      expect(changes.filter((c) => c.to < c.from)).toEqual([])
      expect(run.refused).toBe(0)
    }))

  it.effect("a bad option names its field", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(AdaptiveLimit.make({ name: "a", minLimit: 10, maxLimit: 5 }).pipe(Effect.provide(StateStore.layerMemory)))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path: "minLimit" } })
      const backoff = yield* Effect.exit(AdaptiveLimit.make({ name: "a", backoff: 1 }).pipe(Effect.provide(StateStore.layerMemory)))
      expect(Exit.isFailure(backoff) && backoff.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path: "backoff" } })
    }))
})

const SECONDS = 150

/** The gate over the memory store mostly answers with an `Exit` already: millions of steps cost seconds less. */
const runNow = <A, E>(effect: Effect.Effect<A, E>): Exit.Exit<A, E> => exitOf(effect) ?? Effect.runSyncExit(effect)

interface ClosedRun {
  readonly calls: number
  readonly refused: number
  readonly stalls: number
  /** The most calls that were ever in flight at once. */
  readonly peakInFlight: number
}

/**
 * A closed-loop run in virtual time: `callers` callers each send a call as soon as their last one
 * ended (after `thinkMs`), the provider answers call `i` after `latency(i)` ms, and every
 * `stallEvery` ms the process stalls for `stallMs(k)` (a GC pause, a busy event loop): nothing that
 * falls in a stall happens before its end, and then in the order it was due.
 */
const closedLoop = (
  limit: AdaptiveLimit.Service,
  options: {
    readonly callers: number
    readonly seconds: number
    readonly latency: (i: number) => number
    readonly thinkMs: number
    readonly stallEvery: number
    readonly stallMs: (k: number) => number
  }
): Effect.Effect<ClosedRun> =>
  Effect.withFiberRuntime((fiber) => {
    const { callers, latency, thinkMs, stallEvery, stallMs } = options
    const until = options.seconds * 1000
    const context = (now: number) => ({ now, restore: <A, E, R>(self: Effect.Effect<A, E, R>) => self, fiber })
    /** When an event due at `t` happens: at the end of the stall it falls in, if any. */
    const happensAt = (t: number) => {
      const k = Math.floor(t / stallEvery)
      // Anywhere in the window, not always at the same point of it.
      const start = k * stallEvery + ((k * 379) % (stallEvery / 2)) + stallEvery / 4
      return t >= start && t < start + stallMs(k) ? start + stallMs(k) : t
    }
    // Due events, sorted by when they were due: a caller's next call, or a call's end.
    type Due = { readonly due: number; readonly run: (at: number) => void }
    const queue: Array<Due> = []
    const schedule = (due: Due) => {
      let i = queue.length
      while (i > 0 && queue[i - 1]!.due > due.due) i--
      queue.splice(i, 0, due)
    }
    let calls = 0, refused = 0, inFlight = 0, peakInFlight = 0
    const call = (at: number) => {
      if (at >= until) return
      const acquired = runNow(limit.gate.acquire({}, context(at)))
      if (Exit.isFailure(acquired)) {
        refused++
        schedule({ due: at + 1, run: call })
        return
      }
      const permit = acquired.value
      const i = calls++
      inFlight++
      peakInFlight = Math.max(peakInFlight, inFlight)
      schedule({
        due: at + latency(i),
        run: (end) => {
          inFlight--
          runNow(permit.release(Exit.succeed(undefined), end, at))
          schedule({ due: end + thinkMs, run: call })
        }
      })
    }
    for (let c = 0; c < callers; c++) schedule({ due: c * 0.05, run: call })
    while (queue.length > 0) {
      const next = queue.shift()!
      next.run(happensAt(next.due))
    }
    return Effect.succeed({ calls, refused, stalls: Math.floor(until / stallEvery), peakInFlight })
  })

/** A limit on its default options (but refusing at once, as with a later step: these runs count refusals), its changes recorded. */
const onDefaults = Effect.gen(function*() {
  const changes: Array<AdaptiveLimit.Change> = []
  const limit = yield* AdaptiveLimit.make({ name: "up", maxQueueWait: 0, onChange: (change) => Effect.sync(() => changes.push(change)) }).pipe(
    Effect.provide(StateStore.layerMemory)
  )
  return { changes, limit }
})

describe("AdaptiveLimit over a fast provider (rule 29)", () => {
  it.effect("stalls of the process shorter than the latency floor are neither a hang nor a slow window: 10 callers of a 0.5 ms provider, a 5-10 ms stall every second, keep the limit above the 10 they use and nothing is refused", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* onDefaults
      const run = yield* closedLoop(limit, {
        callers: 10,
        seconds: SECONDS,
        // 0.3-0.7 ms, a fixed sequence.
        latency: (i) => 0.3 + ((i * 7919) % 41) / 100,
        thinkMs: 0.02,
        stallEvery: 1000,
        stallMs: (k) => 5 + (k % 6)
      })
      expect(run.peakInFlight).toBe(10)
      expect(run.calls).toBeGreaterThan(SECONDS * 10_000)
      expect(changes.filter((c) => c.to < 10)).toEqual([])
      expect(run.refused).toBe(0)
    }), 60_000)

  it.effect("a window slower than slowFactor × the usual but under the latency floor is not slow: a 0.5 ms provider turning 2 ms keeps its limit", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* onDefaults
      // About 5 s at 0.5 ms (the usual learned from tens of thousands of calls), then 4× slower for the rest.
      const run = yield* closedLoop(limit, {
        callers: 10,
        seconds: 10,
        latency: (i) => (i < 100_000 ? 0.5 : 2),
        thinkMs: 0.02,
        stallEvery: 1000,
        stallMs: () => 0
      })
      expect(run.calls).toBeGreaterThan(100_000 + 10_000)
      expect(changes.filter((c) => c.to < c.from)).toEqual([])
      expect(run.refused).toBe(0)
    }))
})

describe("AdaptiveLimit: a call over the limit that nothing after it can serve waits for a slot (rules 29 and 25)", () => {
  const make = (options: Omit<AdaptiveLimit.Options, "name">) =>
    AdaptiveLimit.make({ name: "only", ...options }).pipe(Effect.provide(StateStore.layerMemory))

  it.effect("first come first served; the same call with a later step to go to (a maxWait) is refused at once; the limit and the calls waiting are metrics", () =>
    Effect.gen(function*() {
      const limit = yield* AdaptiveLimit.make({ name: "fifo", initialLimit: 2 }).pipe(Effect.provide(StateStore.layerMemory))
      const gauge = (name: string) =>
        Effect.map(Metric.snapshot, (pairs) => {
          const pair = pairs.find((p) => p.metricKey.name === name && p.metricKey.tags.some((t) => t.key === "limit" && t.value === "fifo"))
          return pair !== undefined && "value" in pair.metricState ? pair.metricState.value : undefined
        })
      const began: Array<string> = []
      const call = (name: string) => limit.execute(Effect.zipRight(Effect.sync(() => began.push(name)), Effect.as(Effect.sleep("1 second"), name)))
      const fibers = [yield* Effect.fork(call("a")), yield* Effect.fork(call("b"))]
      yield* TestClock.adjust("10 millis")
      fibers.push(yield* Effect.fork(call("c")))
      yield* TestClock.adjust("10 millis")
      fibers.push(yield* Effect.fork(call("d")))
      yield* TestClock.adjust("10 millis")
      expect(began).toEqual(["a", "b"])
      expect(yield* limit.status).toMatchObject({ limit: 2, running: 2, queued: 2 })
      expect([yield* gauge("resilient_ai_adaptive_limit"), yield* gauge("resilient_ai_adaptive_limit_queued")]).toEqual([2, 2])
      const refused = yield* Effect.flip(Deadline.maxWait(1_000)(call("e")))
      expect(refused).toMatchObject({ _tag: "BulkheadFullError", reason: "adaptive-limit", maxConcurrent: 2 })
      expect(refused).toEqual(expect.not.objectContaining({ waitedMillis: expect.anything() }))
      yield* TestClock.adjust("1 second")
      expect(began).toEqual(["a", "b", "c", "d"])
      expect(yield* gauge("resilient_ai_adaptive_limit_queued")).toBe(0)
      yield* TestClock.adjust("1 second")
      expect(yield* Effect.all(fibers.map(Fiber.join))).toEqual(["a", "b", "c", "d"])
      expect(yield* limit.status).toMatchObject({ running: 0, queued: 0 })
    }))

  it.effect("the wait lasts as long as a call may run before it counts as hung (10 s before a usual latency is learned, then 3 usual call times); maxQueueWait sets it", () =>
    Effect.gen(function*() {
      const limit = yield* make({ initialLimit: 1 })
      const hold = limit.execute(Effect.sleep("1 minute"))
      yield* Effect.fork(hold)
      yield* TestClock.adjust("1 milli")
      const waiter = yield* Effect.fork(Effect.flip(limit.execute(Effect.void)))
      yield* TestClock.adjust("9999 millis")
      expect(yield* limit.status).toMatchObject({ queued: 1 })
      yield* TestClock.adjust("1 milli")
      const gaveUp = yield* Fiber.join(waiter)
      expect(gaveUp).toMatchObject({ _tag: "BulkheadFullError", reason: "adaptive-limit", waitedMillis: 10_000 })
      expect(gaveUp.message).toBe(`bulkhead "only" is at its adaptive limit (1 running) and no slot freed within 10000 ms`)

      // Answers of 200 ms, one after another, over a window: the usual latency is learned (and the limit kept at 1).
      const learnt = yield* make({ initialLimit: 1, maxLimit: 1 })
      for (let i = 0; i < 6; i++) {
        const fiber = yield* Effect.fork(learnt.execute(Effect.sleep("200 millis")))
        yield* TestClock.adjust("200 millis")
        yield* Fiber.join(fiber)
      }
      expect((yield* learnt.status).usualMillis).toBe(200)
      yield* Effect.fork(learnt.execute(Effect.sleep("1 minute")))
      yield* TestClock.adjust("1 milli")
      const second = yield* Effect.fork(Effect.flip(learnt.execute(Effect.void)))
      yield* TestClock.adjust("599 millis")
      expect(second.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 milli")
      expect(yield* Fiber.join(second)).toMatchObject({ waitedMillis: 600 })

      const set = yield* make({ initialLimit: 1, maxQueueWait: "2 seconds" })
      yield* Effect.fork(set.execute(Effect.sleep("1 minute")))
      yield* TestClock.adjust("1 milli")
      const third = yield* Effect.fork(Effect.flip(set.execute(Effect.void)))
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(third)).toMatchObject({ waitedMillis: 2_000 })
    }))

  it.effect("a limit that grows lets waiters in at once, oldest first", () =>
    Effect.gen(function*() {
      const limit = yield* make({ initialLimit: 1, minLimit: 1, maxLimit: 4, window: "100 millis" })
      const began: Array<string> = []
      const gates = new Map<string, Deferred.Deferred<void>>()
      const call = (name: string) =>
        Effect.gen(function*() {
          const gate = yield* Deferred.make<void>()
          gates.set(name, gate)
          return yield* Effect.fork(limit.execute(Effect.zipRight(Effect.sync(() => began.push(name)), Deferred.await(gate))))
        })
      yield* call("a")
      yield* TestClock.adjust("1 milli")
      yield* call("b")
      yield* call("c")
      yield* call("d")
      yield* TestClock.adjust("100 millis")
      expect(began).toEqual(["a"])
      // "a" answers after a window in which calls pressed against the limit: the slot goes to "b", and the limit
      // doubles, which lets "c" in at once; "d" waits for the next slot.
      yield* Deferred.succeed(gates.get("a")!, undefined)
      yield* TestClock.adjust("1 milli")
      expect(began).toEqual(["a", "b", "c"])
      expect(yield* limit.status).toMatchObject({ limit: 2, running: 2, queued: 1 })
    }))

  it.effect("a wait never outlasts the request's deadline: it gives up at the deadline, even with no wait limit of its own, and a deadline already passed refuses at once", () =>
    Effect.gen(function*() {
      for (const maxQueueWait of [undefined, Duration.infinity]) {
        const limit = yield* make({ initialLimit: 1, ...(maxQueueWait === undefined ? {} : { maxQueueWait }) })
        const holder = yield* Effect.fork(limit.execute(Effect.sleep("1 minute")))
        yield* TestClock.adjust("10 millis")
        const waiter = yield* Effect.fork(Effect.flip(Deadline.within(1_000)(limit.execute(Effect.succeed("ok")))))
        yield* TestClock.adjust("999 millis")
        expect(waiter.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 milli")
        expect(yield* Fiber.join(waiter)).toMatchObject({ _tag: "BulkheadFullError", waitedMillis: 1_000 })
        const late = yield* Effect.flip(Deadline.at(0)(limit.execute(Effect.succeed("ok"))))
        expect(late).toEqual(expect.not.objectContaining({ waitedMillis: expect.anything() }))
        yield* Fiber.interrupt(holder)
      }
    }))

  it.effect("on a store whose steps take time, the wait still ends at the request's deadline, counted from the step's end", () =>
    Effect.gen(function*() {
      const memory = StateStore.makeMemory()
      // A store 100 ms away for every step but reads, as a shared store on a slow network would be.
      const slow: StateStore.Service = {
        ...memory,
        adaptiveLimit: (name, config) => {
          const slot = memory.adaptiveLimit(name, config)
          return {
            step: (event, now, inFlightSince) =>
              event._tag === "Read" ? slot.step(event, now, inFlightSince) : Effect.zipRight(Effect.sleep("100 millis"), slot.step(event, now, inFlightSince))
          }
        }
      }
      const limit = yield* AdaptiveLimit.make({ name: "far", initialLimit: 1 }).pipe(Effect.provideService(StateStore.StateStore, slow))
      const holder = yield* Effect.fork(limit.execute(Effect.sleep("1 minute")))
      yield* TestClock.adjust("100 millis")
      const waiter = yield* Effect.fork(Effect.flip(Deadline.within(1_000)(limit.execute(Effect.void))))
      yield* TestClock.adjust("999 millis")
      expect(waiter.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 milli")
      expect(yield* Fiber.join(waiter)).toMatchObject({ _tag: "BulkheadFullError", waitedMillis: 900 })
      // The holder's release takes its step's 100 ms too.
      const stopped = yield* Effect.fork(Fiber.interrupt(holder))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(stopped)
    }))

  it.effect("a step that dies (an onChange with a defect) leaves no slot taken and no waiter behind", () =>
    Effect.gen(function*() {
      const limit = yield* make({ initialLimit: 2, minLimit: 1, onChange: () => Effect.dieMessage("listener bug") })
      const down = new Errors.ProviderUnavailableError({ status: 503 })
      yield* Effect.fork(Effect.exit(limit.execute(Effect.zipRight(Effect.sleep("100 millis"), Effect.fail(down)))))
      const b = yield* Effect.fork(limit.execute(Effect.sleep("2 seconds")))
      yield* TestClock.adjust("200 millis")
      const c = yield* Effect.fork(limit.execute(Effect.sleep("2 seconds")))
      yield* TestClock.adjust("900 millis")
      // Over the limit; its step closes the window with a drop, and telling the change dies.
      const d = yield* Effect.exit(limit.execute(Effect.succeed("d")))
      expect(Exit.isFailure(d) && Cause.isDie(d.cause)).toBe(true)
      expect(yield* limit.status).toMatchObject({ running: 2, queued: 0 })
      yield* TestClock.adjust("2 seconds")
      yield* Effect.all([Fiber.join(b), Fiber.join(c)])
      // Admitted, then its step dies the same way: the slot it took comes back.
      const dying = yield* make({ initialLimit: 2, minLimit: 1, window: "10 millis", onChange: () => Effect.dieMessage("listener bug") })
      yield* Effect.exit(dying.execute(Effect.fail(down)))
      yield* TestClock.adjust("20 millis")
      const admittedThenDied = yield* Effect.exit(dying.execute(Effect.succeed("e")))
      expect(Exit.isFailure(admittedThenDied) && Cause.isDie(admittedThenDied.cause)).toBe(true)
      expect(yield* dying.status).toMatchObject({ running: 0, queued: 0 })
      expect(yield* dying.execute(Effect.succeed("f"))).toBe("f")
    }))

  it.effect("a waiter that is interrupted leaves the queue, and the slot goes to the one behind it", () =>
    Effect.gen(function*() {
      const limit = yield* make({ initialLimit: 1 })
      const first = yield* Effect.fork(limit.execute(Effect.as(Effect.sleep("1 second"), "first")))
      yield* TestClock.adjust("1 milli")
      const leaving = yield* Effect.fork(limit.execute(Effect.succeed("leaving")))
      const behind = yield* Effect.fork(limit.execute(Effect.as(Effect.sleep("1 second"), "behind")))
      yield* TestClock.adjust("1 milli")
      expect(yield* limit.status).toMatchObject({ running: 1, queued: 2 })
      yield* Fiber.interrupt(leaving)
      expect(yield* limit.status).toMatchObject({ running: 1, queued: 1 })
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(first)).toBe("first")
      expect(yield* limit.status).toMatchObject({ running: 1, queued: 0 })
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(behind)).toBe("behind")
    }))
})

describe("AdaptiveLimit: where its verdicts begin (rule 29)", () => {
  const down = new Errors.ProviderUnavailableError({ status: 503 })
  const recorded = (options: Omit<AdaptiveLimit.Options, "name" | "onChange">) =>
    Effect.gen(function*() {
      const changes: Array<AdaptiveLimit.Change> = []
      const limit = yield* AdaptiveLimit.make({
        name: "edges",
        ...options,
        onChange: (change) => Effect.sync(() => changes.push(change))
      }).pipe(Effect.provide(StateStore.layerMemory))
      return { limit, changes }
    })
  /** `seconds` windows of 1 s pass, the limit read at the end of each (a read closes a window that is over). */
  const windowsPass = (limit: AdaptiveLimit.Service, seconds: number) =>
    Effect.gen(function*() {
      for (let i = 0; i < seconds; i++) {
        yield* TestClock.adjust("1 second")
        yield* limit.status
      }
    })
  /** A bad request says nothing of the provider's capacity: neither a success nor a drop. */
  const bad = new Errors.BadRequestError({ status: 400 })
  /**
   * A window of 1 s in which `n` calls of 100 ms are sent at once; the first `well` end well, the rest
   * answer a bad request. The limit is read at its end.
   */
  const windowOfCalls = (limit: AdaptiveLimit.Service, n: number, well: number = n) =>
    Effect.gen(function*() {
      const calls = yield* Effect.forEach(Array.from({ length: n }), (_, i) =>
        Effect.fork(Effect.exit(limit.execute(Effect.zipRight(Effect.sleep("100 millis"), i < well ? Effect.void : Effect.fail(bad))))))
      yield* TestClock.adjust("100 millis")
      yield* Effect.forEach(calls, Fiber.join, { discard: true })
      yield* TestClock.adjust("900 millis")
      yield* limit.status
    })

  it.effect("one hung call alone does not cut the limit, however long it hangs; a second one hung as long does", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* recorded({ initialLimit: 10 })
      yield* Effect.fork(limit.execute(Effect.never))
      // Three times the 10 s a call may run before it counts as hung (no usual latency learned yet).
      yield* windowsPass(limit, 30)
      expect(changes).toEqual([])
      expect(yield* limit.status).toMatchObject({ limit: 10, running: 1 })
      // Two calls in flight with nothing ending well, both for 10 s: that is a hang.
      yield* Effect.fork(limit.execute(Effect.never))
      yield* windowsPass(limit, 11)
      expect(changes.map((c) => [c.from, c.to, c.reason])).toEqual([[10, 4, "hang"]])
    }))

  it.effect("after drops, the first raise goes at once to half the highest limit that held, not to twice the cut limit", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* recorded({ initialLimit: 40 })
      // The 40 it starts at holds; three windows with a drop halve it to 5.
      for (let i = 0; i < 3; i++) {
        yield* Effect.exit(limit.execute(Effect.fail(down)))
        yield* windowsPass(limit, 1)
      }
      expect(changes.map((c) => [c.from, c.to, c.reason])).toEqual([[40, 20, "drop"], [20, 10, "drop"], [10, 5, "drop"]])
      // A window with all 5 slots in flight, every call ending well: raised to 40 / 2 = 20, not 5 × 2 = 10.
      yield* windowOfCalls(limit, 5)
      expect(changes.slice(3).map((c) => [c.from, c.to, c.reason])).toEqual([[5, 20, "pressed"]])
      expect((yield* limit.status).limit).toBe(20)
    }))

  it.effect("exactly 80 % of the limit in flight presses against it (saturation is reached at, not above, 80 %)", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* recorded({ initialLimit: 10 })
      // 7 of 10 in flight: not pressed, the limit is left alone.
      yield* windowOfCalls(limit, 7)
      expect(changes).toEqual([])
      // 8 of 10 in flight, all ending well: pressed, and the limit doubles.
      yield* windowOfCalls(limit, 8)
      expect(changes.map((c) => [c.from, c.to, c.reason])).toEqual([[10, 20, "pressed"]])
    }))

  it.effect("calls ending well at exactly 80 % of the rate they were admitted at kept up (the boundary is inclusive); one fewer is not, and the limit is left alone", () =>
    Effect.gen(function*() {
      const { changes, limit } = yield* recorded({ initialLimit: 50 })
      // In each window all 50 slots are taken at once (pressed), and `well` of them end well.
      const windowEndingWell = (well: number) => windowOfCalls(limit, 50, well)
      // 39 of 50 (78 %) end well: the provider did not keep up, the limit is left alone though calls pressed on it.
      yield* windowEndingWell(39)
      expect(changes).toEqual([])
      expect((yield* limit.status).limit).toBe(50)
      // 40 of 50 (80 %) end well: it kept up, and the limit doubles.
      yield* windowEndingWell(40)
      expect(changes.map((c) => [c.from, c.to, c.reason])).toEqual([[50, 100, "pressed"]])
    }))
})

describe("AdaptiveLimit's queue (property)", () => {
  const script = GatedScript.steps({
    arrival: FastCheck.record({ laterStep: FastCheck.boolean() }),
    // Mostly answers, so that limits grow (with callers waiting) as often as they shrink.
    how: FastCheck.constantFrom("succeed" as const, "succeed" as const, "succeed" as const, "fail" as const, "die" as const),
    millis: FastCheck.integer({ min: 1, max: 150 }),
    weights: { arrive: 5, finish: 4, interrupt: 1, tick: 2 }
  })

  it.effect.prop(
    "random arrivals (with and without a later step), outcomes that move the limit, interruptions and clock steps: no slot idle while a call waits, first come first served, waits within their limit, nothing leaked",
    {
      initialLimit: FastCheck.integer({ min: 1, max: 3 }),
      maxQueueWait: FastCheck.option(FastCheck.integer({ min: 0, max: 400 }), { nil: undefined, freq: 2 }),
      ops: FastCheck.array(script, { minLength: 8, maxLength: 60 })
    },
    ({ initialLimit, maxQueueWait, ops }) =>
      Effect.gen(function*() {
        // A short window and no latency floor, so the limit moves within a run: halved by drops and hangs, doubled when pressed.
        const limit = yield* AdaptiveLimit.make({
          name: "prop",
          initialLimit,
          minLimit: 1,
          maxLimit: 4,
          window: "100 millis",
          minJudgedLatency: 0,
          initialHangAfter: "300 millis",
          ...(maxQueueWait === undefined ? {} : { maxQueueWait })
        }).pipe(Effect.provide(StateStore.layerMemory))
        const check = (calls: ReadonlyArray<GatedScript.Call<{ readonly laterStep: boolean }>>, ran: GatedScript.Ran) =>
          Effect.gen(function*() {
            // Reading the status moves the limit when a window has ended, and a waiter handed a slot then begins on the next turn.
            yield* limit.status
            yield* TestClock.adjust(0)
            const status = yield* limit.status
            const now = yield* Clock.currentTimeMillis
            // Every slot held is a running body: none leaked, none lost.
            expect(status.running).toBe(ran.running.size)
            // A freed slot, or room a larger limit adds, goes to a waiter at once.
            if (status.queued > 0) expect(status.running).toBeGreaterThanOrEqual(status.limit)
            const waiting: Array<number> = []
            for (const call of calls) {
              const exit = yield* Fiber.poll(call.fiber)
              if (Option.isNone(exit) && !ran.started.includes(call.id)) {
                // Only a call with no later step waits.
                expect(call.arrival.laterStep).toBe(false)
                waiting.push(call.id)
                if (maxQueueWait !== undefined) expect(now - call.arrivedAt).toBeLessThan(maxQueueWait)
              }
            }
            expect(status.queued).toBe(waiting.length)
            // First come first served: no later call has begun while an earlier one waits.
            const lastStarted = Math.max(-1, ...ran.started)
            for (const id of waiting) expect(id).toBeGreaterThan(lastStarted)
          })
        const ran = yield* GatedScript.run(ops, {
          through: ({ laterStep }, body) => laterStep ? Deadline.maxWait(1_000)(limit.execute(body)) : limit.execute(body),
          failure: new Errors.ProviderUnavailableError({ status: 503 }),
          check
        })
        expect(yield* limit.status).toMatchObject({ running: 0, queued: 0 })
        expect(ran.running.size).toBe(0)
      }),
    { timeout: 30_000, fastCheck: { numRuns: 40 } }
  )
})
