// What a root fiber per short task costs on effect 3.x and V8, against long-lived fibers that serve the
// tasks one after another: the reason the drill's traffic reuses a request's fiber for the next arrival.
//   node --max-semi-space-size=64 scripts/fork-churn.mjs [tasks=1000000] [inFlight: 100 then 1000]
// Each task waits on a callback (as a request waits on its provider) that is called once `inFlight` newer
// tasks have started, so about `inFlight` tasks are in flight at any time, in both shapes.
//
// effect keeps every root fiber in one long-lived `Set` (`Fiber.roots`) until it ends. V8 replaces a set's
// table as entries come and go; a replaced table that had been promoted still points at the fibers it held,
// and until the next full collection each scavenge keeps those finished fibers, and all they point at,
// alive, and promotes them. Promoted bytes and GC time show it; so does the time a task takes.
import { PerformanceObserver } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import { ControlledScheduler } from "effect/Scheduler"

const tasks = Number(process.argv[2] ?? 1_000_000)
const inFlights = process.argv[3] === undefined ? [100, 1000] : [Number(process.argv[3])]

/**
 * Starts `tasks` tasks with `start(scheduler, wait)`, each of them waiting on `wait`, and calls the oldest
 * waiting callback once more than `inFlight` wait; returns the milliseconds it took.
 */
const drive = (inFlight, start) => {
  const scheduler = new ControlledScheduler()
  const waiting = []
  const wait = Effect.async((resume) => {
    waiting.push(resume)
  })
  const began = performance.now()
  for (let i = 0; i < tasks; i++) {
    start(scheduler, wait)
    if (waiting.length > inFlight) waiting.shift()(Effect.void)
    if (i % 64 === 0) while (scheduler.tasks.buckets.length > 0) scheduler.step()
  }
  while (waiting.length > 0) {
    waiting.shift()(Effect.void)
    while (scheduler.tasks.buckets.length > 0) scheduler.step()
  }
  return performance.now() - began
}

const shapes = {
  "a root fiber per task": (inFlight) => {
    const fork = Runtime.runFork(Runtime.defaultRuntime)
    return drive(inFlight, (scheduler, wait) => fork(wait, { scheduler, immediate: false }))
  },
  "fibers that serve the next task": (inFlight) => {
    const idle = []
    const next = Effect.async((resume) => {
      idle.push(resume)
    })
    const serve = (wait) => Effect.flatMap(wait, () => Effect.flatMap(next, (more) => (more ? serve(wait) : Effect.void)))
    const fork = Runtime.runFork(Runtime.defaultRuntime)
    const ms = drive(inFlight, (scheduler, wait) => {
      const wake = idle.pop()
      if (wake === undefined) fork(serve(wait), { scheduler, immediate: false })
      else wake(Effect.succeed(true))
    })
    for (const wake of idle.splice(0)) wake(Effect.succeed(false))
    return ms
  }
}

const gc = { minor: 0, major: 0 }
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    // NODE_PERFORMANCE_GC_MINOR = 1, NODE_PERFORMANCE_GC_MAJOR = 4 (node:perf_hooks constants).
    if (entry.detail?.kind === 1) gc.minor += entry.duration
    else gc.major += entry.duration
  }
}).observe({ entryTypes: ["gc"] })

const flushGcEntries = () => new Promise((resolve) => setTimeout(resolve, 50))

for (const inFlight of inFlights) {
  console.log(`${tasks.toLocaleString("en-US")} tasks, ${inFlight} in flight`)
  for (const [name, run] of Object.entries(shapes)) {
    await flushGcEntries()
    gc.minor = 0
    gc.major = 0
    const ms = run(inFlight)
    await flushGcEntries()
    console.log(
      `  ${name.padEnd(32)} ${((ms * 1000) / tasks).toFixed(2).padStart(6)} µs a task; GC ${gc.minor.toFixed(0)} ms scavenging, ${gc.major.toFixed(0)} ms full`
    )
  }
}
