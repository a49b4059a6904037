/**
 * `npm start`: the outage drill.
 *
 * Runs every scenario (or `--scenario NAME`, repeatable) through the
 * protected client and the two baselines, in virtual time, spread over the
 * machine's cores (one worker thread per core, the longest runs first),
 * with a progress display on stderr (`--quiet`: none), then prints a
 * report table per scenario.
 *
 *   npm start -- [--scenario NAME]... [--seed N] [--json FILE] [--plot FILE.svg]
 *                [--scale X] [--rate-scale X] [--workers N] [--quiet]
 *
 * `--scale` shrinks every duration and `--rate-scale` every traffic rate
 * (the tests run the drill at small scales). With `DRILL_MEASURE_MAIN=FILE`
 * the main thread's busy time is appended to FILE at the end: with and
 * without `--quiet`, the progress display's cost.
 */
import { appendFileSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { isMainThread, parentPort, Worker } from "node:worker_threads"
import * as Effect from "effect/Effect"
import * as Drill from "@resilient-ai/testkit/Drill"
import * as DrillReport from "@resilient-ai/testkit/DrillReport"
import * as Scenarios from "@resilient-ai/testkit/Scenarios"
import * as DrillArgs from "./args.js"
import * as Progress from "./progress.js"

interface Job {
  readonly scenario: Scenarios.Name
  readonly stack: Drill.Stack
  readonly seed: number
  readonly scale: number
  readonly rateScale: number
  /** Post progress to the main thread (off with `--quiet`: the run then pays nothing for it). */
  readonly progress: boolean
}

type FromWorker =
  | { readonly _tag: "progress"; readonly done: number; readonly requests: number }
  | { readonly _tag: "done"; readonly result: Drill.RunResult; readonly wallMs: number }
  | { readonly _tag: "failed"; readonly error: string }

type ToWorker = { readonly _tag: "job"; readonly job: Job } | { readonly _tag: "exit" }

// Errors are values in the drill; a stack trace per error object costs time and tells nothing here.
Error.stackTraceLimit = 0

const runJob = (job: Job, onProgress: (done: number, requests: number) => void): FromWorker => {
  const started = performance.now()
  const scenario = Scenarios.make(job.scenario, { scale: job.scale, rateScale: job.rateScale })
  const exit = Effect.runSyncExit(Drill.run(scenario, job.stack, job.progress ? { seed: job.seed, onProgress } : { seed: job.seed }))
  if (exit._tag === "Failure") return { _tag: "failed", error: String(exit.cause) }
  return { _tag: "done", result: exit.value, wallMs: performance.now() - started }
}

if (!isMainThread) {
  const port = parentPort
  port?.on("message", (message: ToWorker) => {
    if (message._tag === "exit") {
      port.close()
      return
    }
    // At most 4 messages a second: the display redraws 4 times a second.
    let last = 0
    const reply = runJob(message.job, (done, requests) => {
      const now = performance.now()
      if (now - last >= 250) {
        last = now
        port.postMessage({ _tag: "progress", done, requests } satisfies FromWorker)
      }
    })
    port.postMessage(reply)
  })
} else {
  void main()
}

/**
 * The main thread's own CPU time (Linux: `/proc/self/task/PID/stat`, in
 * clock ticks of 10 ms); `process.cpuUsage()` counts every thread.
 */
function mainThreadCpuMs(): string {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return String((Number(fields[11]) + Number(fields[12])) * 10)
  } catch {
    return "(unknown: no /proc)"
  }
}

/**
 * A rough cost of a job, to start the longest first, in requests of the bare
 * stack: a protected request costs ~12 of them, a stream 50-200 (measured on
 * the drill's own runs: 12, 28 and 90 µs a request for the bare, naive and
 * protected stacks; 0.6, 0.8 and 1.6 ms a stream). Weighing a stream as a
 * request started stream-faults last, its three runs alone at the end.
 */
function weight(job: Job): number {
  const s = Scenarios.make(job.scenario, { scale: job.scale, rateScale: job.rateScale })
  let requests = (s.traffic.ratePerSecond * s.durationMs) / 1000
  for (const surge of s.traffic.surges ?? []) requests += (s.traffic.ratePerSecond * (surge.factor - 1) * (surge.to - surge.from)) / 1000
  const protectedStack = job.stack === "protected" || job.stack === "protected-no-probes"
  const request = protectedStack ? 12 : job.stack === "naive-retry" ? 2.5 : 1
  const stream = protectedStack ? 200 : job.stack === "naive-retry" ? 70 : 50
  const streamShare = s.traffic.streamShare ?? 0
  return requests * ((1 - streamShare) * request + streamShare * stream)
}

async function main(): Promise<void> {
  const args = DrillArgs.parse(process.argv.slice(2))
  if (typeof args === "string") {
    process.stderr.write(`${args === "usage" ? "" : `drill: ${args}\n`}${DrillArgs.usage}\n`)
    process.exitCode = args === "usage" ? 0 : 2
    return
  }
  const started = performance.now()
  const jobs: Array<Job> = args.scenarios.flatMap((scenario) =>
    Drill.stacksOf(Scenarios.make(scenario)).map((stack) => ({ scenario, stack, seed: args.seed, scale: args.scale, rateScale: args.rateScale, progress: !args.quiet }))
  )
  const queue = [...jobs].sort((a, b) => weight(b) - weight(a))
  const keyOf = (job: Job) => `${job.scenario}/${job.stack}`
  const results = new Map<string, Drill.RunResult>()
  const wall = new Map<string, number>()
  const workers = Math.max(1, Math.min(args.workers ?? availableParallelism(), jobs.length))
  const failures: Array<string> = []

  process.stderr.write(
    `drill: ${jobs.length} runs (${args.scenarios.length} scenarios, up to ${Drill.stacks.length} stacks each), seed ${args.seed}, ${workers} worker${workers === 1 ? "" : "s"}\n`
  )
  const progress = args.quiet ? Progress.silent : Progress.make(workers, jobs.length)
  const take = (): Job | undefined => queue.shift()
  const durationOf = (job: Job) => Scenarios.make(job.scenario, { scale: job.scale, rateScale: job.rateScale }).durationMs

  // Always worker threads, even one: the main thread stays free to draw the progress.
  await Promise.all(Array.from({ length: workers }, (_, index) =>
    new Promise<void>((resolve) => {
      const worker = new Worker(new URL(import.meta.url))
      let current: Job | undefined
      const next = () => {
        current = take()
        if (current === undefined) {
          progress.idle(index)
          worker.postMessage({ _tag: "exit" } satisfies ToWorker)
          void worker.terminate().then(() => resolve())
          return
        }
        progress.start(index, keyOf(current), durationOf(current))
        worker.postMessage({ _tag: "job", job: current } satisfies ToWorker)
      }
      worker.on("message", (message: FromWorker) => {
        if (current === undefined) return
        const key = keyOf(current)
        if (message._tag === "progress") progress.update(index, message.done, message.requests)
        else {
          if (message._tag === "done") {
            results.set(key, message.result)
            wall.set(key, message.wallMs)
            progress.finish(index, key, message.result.report.requests, message.wallMs)
          } else failures.push(`${key}: ${message.error}`)
          next()
        }
      })
      worker.on("error", (error) => {
        failures.push(`${current === undefined ? "worker" : keyOf(current)}: ${String(error)}`)
        resolve()
      })
      next()
    })
  ))
  progress.end()
  const measure = process.env["DRILL_MEASURE_MAIN"]
  if (measure !== undefined) {
    // CPU, not busy wall time: on a loaded machine a thread is "busy" while it waits for a core.
    const cpu = process.cpuUsage()
    appendFileSync(
      measure,
      `main thread CPU ${mainThreadCpuMs()} ms of the process's ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms\n`
    )
  }
  const wallMs = performance.now() - started

  const scenarioResults: Array<DrillReport.ScenarioResult> = []
  for (const name of args.scenarios) {
    const scenario = Scenarios.make(name, { scale: args.scale, rateScale: args.rateScale })
    const runs = Drill.stacksOf(scenario).flatMap((stack) => {
      const r = results.get(`${name}/${stack}`)
      return r === undefined ? [] : [r]
    })
    if (runs.length > 0) scenarioResults.push({ scenario, runs })
  }

  const out: Array<string> = []
  out.push(`resilient-ai outage drill: simulated providers in virtual time, seed ${args.seed}${args.scale === 1 && args.rateScale === 1 ? "" : `, scale ${args.scale}, rate scale ${args.rateScale}`}`)
  out.push("")
  for (const r of scenarioResults) {
    out.push(DrillReport.table(r))
    out.push("")
  }
  let requests = 0
  for (const r of results.values()) requests += r.report.requests
  const cpuMs = [...wall.values()].reduce((a, b) => a + b, 0)
  out.push(
    `${requests.toLocaleString("en-US")} requests in ${results.size} runs; wall time ${(wallMs / 1000).toFixed(1)} s on ${workers} worker${workers === 1 ? "" : "s"} (runs took ${(cpuMs / 1000).toFixed(1)} s in all)`
  )
  const slowest = [...wall].sort((a, b) => b[1] - a[1]).slice(0, 3)
  out.push(`slowest runs: ${slowest.map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`).join(", ")}`)
  process.stdout.write(`${out.join("\n")}\n`)

  if (args.json !== undefined) {
    writeFileSync(args.json, `${JSON.stringify(DrillReport.document(scenarioResults), null, 2)}\n`)
    process.stderr.write(`drill: wrote ${args.json}\n`)
  }
  if (args.plot !== undefined) {
    writeFileSync(args.plot, DrillReport.svg(scenarioResults))
    process.stderr.write(`drill: wrote ${args.plot}\n`)
  }
  for (const [key, r] of results) {
    if (r.firstDefect !== undefined) failures.push(`${key}: requests died of a defect (counted as failed), the first:\n${r.firstDefect}`)
  }
  if (failures.length > 0) {
    process.stderr.write(`drill: ${failures.length} runs failed:\n${failures.join("\n")}\n`)
    process.exitCode = 1
  }
}
