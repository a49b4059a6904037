/**
 * A process whose only pending work is timed by `Timeout.attempt` on
 * effect's live clock, for the test of what keeps a process alive
 * (Timeout.test.ts). `ended`: 200 calls that end in time under a 10 s
 * timeout, then it prints "done" and should exit at once. `hung`: one call
 * that ends in time, then one that never does under a 300 ms timeout: the
 * timer alone keeps the process alive until it fires, and it prints the
 * error's tag.
 */
import * as Effect from "effect/Effect"
import * as Timeout from "../../src/Timeout.js"

const io = Effect.async<number>((resume) => {
  setImmediate(() => resume(Effect.succeed(1)))
})

const program = process.argv[2] === "hung"
  ? Effect.gen(function*() {
    const timed = Timeout.attempt("300 millis")
    yield* timed(io)
    const exit = yield* Effect.either(timed(Effect.async<number>(() => {})))
    return exit._tag === "Left" ? exit.left._tag : "no timeout"
  })
  : Effect.gen(function*() {
    const timed = Timeout.attempt("10 seconds")
    for (let i = 0; i < 200; i++) yield* timed(io)
    return "done"
  })

Effect.runPromise(program).then((line) => process.stdout.write(line + "\n"))
