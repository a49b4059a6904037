import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as VirtualTime from "../src/VirtualTime.js"

describe("VirtualTime", () => {
  it("an hour of sleeps takes no real time and ends at the virtual hour", () => {
    const started = performance.now()
    const { exit, endedAt } = VirtualTime.runExit(
      Effect.gen(function*() {
        for (let i = 0; i < 3600; i++) yield* Effect.sleep("1 second")
        return yield* Clock.currentTimeMillis
      })
    )
    expect(exit).toEqual(Exit.succeed(3_600_000))
    expect(endedAt).toBe(3_600_000)
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  it("concurrent fibers wake in time order, equal times in the order they were set", () => {
    const order: Array<string> = []
    const at = (name: string, millis: number) =>
      Effect.delay(Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => order.push(`${name}@${t}`))), millis)
    const { exit } = VirtualTime.runExit(
      Effect.all([at("c", 300), at("a", 100), at("b", 100), at("d", 0)], { concurrency: "unbounded" })
    )
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(order).toEqual(["d@0", "a@100", "b@100", "c@300"])
  })

  it("timeouts interrupt the loser in virtual time", () => {
    const { exit, endedAt } = VirtualTime.runExit(
      Effect.timeoutTo(Effect.sleep("10 seconds"), { duration: "2 seconds", onSuccess: () => "done", onTimeout: () => "timed out" })
    )
    expect(exit).toEqual(Exit.succeed("timed out"))
    expect(endedAt).toBe(2_000)
  })

  it("a program waiting on nothing the simulation controls ends with SimulationStalledError, not a hang", () => {
    const { exit } = VirtualTime.runExit(
      Effect.flatMap(Deferred.make<void>(), (d) => Effect.zipRight(Effect.sleep("1 second"), Deferred.await(d)))
    )
    expect(exit).toEqual(Exit.fail(new VirtualTime.SimulationStalledError({ at: 1_000 })))
  })

  it("the same seed gives the same run", () => {
    const program = Effect.gen(function*() {
      const fibers = yield* Effect.forEach(
        [1, 2, 3, 4, 5],
        (i) =>
          Effect.fork(
            Effect.gen(function*() {
              const wait = yield* Random.nextIntBetween(0, 1000)
              yield* Effect.sleep(wait)
              return `${i}@${yield* Clock.currentTimeMillis}`
            })
          )
      )
      return yield* Fiber.joinAll(fibers)
    })
    const once = (seed: number) => VirtualTime.runExit(Effect.withRandom(program, Random.make(seed))).exit
    expect(once(7)).toEqual(once(7))
    expect(once(7)).not.toEqual(once(8))
  })

  it.effect("run is an effect that can be composed", () =>
    Effect.gen(function*() {
      const t = yield* VirtualTime.run(Effect.zipRight(Effect.sleep("5 minutes"), Clock.currentTimeMillis), { start: 1_000 })
      expect(t).toBe(301_000)
    }))
})
