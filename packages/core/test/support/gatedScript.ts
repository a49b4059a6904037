/**
 * Random scripts of calls through a policy that holds calls (a bulkhead, an
 * adaptive limit), for property tests: calls arrive, end (succeed, fail,
 * die) when the script says, are interrupted, and the clock moves. Each
 * call's body records when it runs, so a test can check the policy against
 * what really ran.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"

export type Step<Arrival> =
  | { readonly _tag: "arrive"; readonly arrival: Arrival }
  | { readonly _tag: "finish"; readonly pick: number; readonly how: "succeed" | "fail" | "die" }
  | { readonly _tag: "interrupt"; readonly pick: number }
  | { readonly _tag: "tick"; readonly millis: number }

/** Steps drawn with these weights; `arrival` is what a test draws for each call (say, whether it has a later step). */
export const steps = <Arrival>(options: {
  readonly arrival: FastCheck.Arbitrary<Arrival>
  readonly how: FastCheck.Arbitrary<"succeed" | "fail" | "die">
  readonly millis: FastCheck.Arbitrary<number>
  readonly weights: { readonly arrive: number; readonly finish: number; readonly interrupt: number; readonly tick: number }
}): FastCheck.Arbitrary<Step<Arrival>> =>
  FastCheck.oneof(
    { arbitrary: FastCheck.record({ _tag: FastCheck.constant("arrive" as const), arrival: options.arrival }), weight: options.weights.arrive },
    {
      arbitrary: FastCheck.record({ _tag: FastCheck.constant("finish" as const), pick: FastCheck.nat(), how: options.how }),
      weight: options.weights.finish
    },
    {
      arbitrary: FastCheck.record({ _tag: FastCheck.constant("interrupt" as const), pick: FastCheck.nat() }),
      weight: options.weights.interrupt
    },
    { arbitrary: FastCheck.record({ _tag: FastCheck.constant("tick" as const), millis: options.millis }), weight: options.weights.tick }
  )

/** A call of the script: its number (arrival order), what was drawn for it, when it arrived, its fiber. */
export interface Call<Arrival> {
  readonly id: number
  readonly arrival: Arrival
  readonly arrivedAt: number
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
}

/** What ran: the calls whose body is running now, and every call whose body began, in order. */
export interface Ran {
  readonly running: Set<number>
  readonly started: Array<number>
}

/**
 * Runs `script`: `through` sends each call's body through the policy; a
 * body holds until the script ends it, with `failure` when it fails.
 * `check` runs after every step (after the fibers have settled, but for a
 * tick); at the end every call is interrupted.
 */
export const run = <Arrival, E>(
  script: ReadonlyArray<Step<Arrival>>,
  options: {
    readonly through: (arrival: Arrival, body: Effect.Effect<void, E>) => Effect.Effect<unknown, unknown>
    readonly failure: E
    readonly check: (calls: ReadonlyArray<Call<Arrival>>, ran: Ran) => Effect.Effect<void>
  }
): Effect.Effect<Ran> =>
  Effect.gen(function*() {
    const settle = TestClock.adjust(0)
    const ran: Ran = { running: new Set(), started: [] }
    const calls: Array<Call<Arrival> & { readonly gate: Deferred.Deferred<void, E> }> = []
    const picked = (pick: number) => calls[pick % Math.max(calls.length, 1)]
    for (const step of script) {
      switch (step._tag) {
        case "arrive": {
          const id = calls.length
          const gate = yield* Deferred.make<void, E>()
          const body = Effect.acquireUseRelease(
            Effect.sync(() => {
              ran.running.add(id)
              ran.started.push(id)
            }),
            () => Deferred.await(gate),
            () => Effect.sync(() => ran.running.delete(id))
          )
          const arrivedAt = yield* Clock.currentTimeMillis
          const fiber = yield* Effect.fork(options.through(step.arrival, body))
          calls.push({ id, arrival: step.arrival, arrivedAt, gate, fiber })
          yield* settle
          break
        }
        case "finish": {
          const call = picked(step.pick)
          if (call !== undefined) {
            yield* step.how === "succeed"
              ? Deferred.succeed(call.gate, undefined)
              : step.how === "fail"
              ? Deferred.fail(call.gate, options.failure)
              : Deferred.die(call.gate, "bug")
          }
          yield* settle
          break
        }
        case "interrupt": {
          const call = picked(step.pick)
          if (call !== undefined) yield* Fiber.interrupt(call.fiber)
          yield* settle
          break
        }
        case "tick": {
          yield* TestClock.adjust(step.millis)
          break
        }
      }
      yield* options.check(calls, ran)
    }
    yield* Effect.forEach(calls, (call) => Fiber.interrupt(call.fiber), { discard: true })
    return ran
  })
