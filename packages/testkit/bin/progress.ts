/**
 * The drill's progress display on stderr: a line per worker (the run it is
 * on, a bar of its virtual time, virtual time done / total, requests so
 * far) under a line for the whole drill (runs finished, requests, wall
 * time). cli-progress draws it: redrawn in place 4 times a second on a
 * terminal; elsewhere (a CI log) the same lines, without bars, every 5 s.
 * Finished runs are logged above the bars. `--quiet` makes none of this.
 *
 * Its cost, measured as the main thread's own CPU (`DRILL_MEASURE_MAIN`
 * reads it from /proc; scale 0.1, all scenarios, 2 cores at a load of
 * 23–28): 1,460 and 1,560 ms on a terminal against 1,040 and 1,030 ms in
 * `--quiet` runs, i.e. 0.42–0.53 s over 133–153 s of wall time: about
 * 3.5 ms of CPU a second, 0.2 % of the two cores the workers keep busy.
 * It redraws 4 times a second and the workers post at most 4 times a
 * second; most of a redraw was `toLocaleString` building a number format
 * per call (now one `Intl.NumberFormat`), the rest the terminal writes.
 * `--quiet` runs pass no progress callback at all.
 */
import { MultiBar } from "cli-progress"
import * as DrillReport from "@resilient-ai/testkit/DrillReport"

/**
 * @since 0.1.0
 */
export interface Progress {
  /** Worker `worker` starts the run `job` of `totalMs` virtual milliseconds. */
  readonly start: (worker: number, job: string, totalMs: number) => void
  /** Worker `worker` reached virtual share `done` (0–1) with `requests` requests sent. */
  readonly update: (worker: number, done: number, requests: number) => void
  readonly finish: (worker: number, job: string, requests: number, wallMs: number) => void
  /** Worker `worker` has no more runs. */
  readonly idle: (worker: number) => void
  readonly end: () => void
}

interface Line {
  job: string
  totalMs: number
  done: number
  requests: number
}

// One formatter for every redraw: `toLocaleString` builds one per call (~0.1 ms), which was two
// thirds of a redraw's CPU.
const grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 })
const int = (n: number): string => grouped.format(Math.round(n))

/** Nothing on stderr: `--quiet`. */
export const silent: Progress = { start: () => {}, update: () => {}, finish: () => {}, idle: () => {}, end: () => {} }

/**
 * The display for `workers` workers and `runs` runs.
 *
 * @since 0.1.0
 */
export const make = (workers: number, runs: number, stream: NodeJS.WriteStream = process.stderr): Progress => {
  const tty = stream.isTTY === true
  const started = performance.now()
  const lines: Array<Line> = Array.from({ length: workers }, () => ({ job: "", totalMs: 0, done: 0, requests: 0 }))
  let finished = 0
  let requestsDone = 0
  const barOf = (share: number, width = 24): string => {
    const filled = Math.round(Math.min(1, Math.max(0, share)) * width)
    return `${"█".repeat(filled)}${"░".repeat(width - filled)}`
  }
  const describe = (l: Line): string =>
    l.job === ""
      ? "  (idle)"
      : `  ${l.job.padEnd(30)} ${tty ? `${barOf(l.done)} ` : ""}${(100 * l.done).toFixed(0).padStart(3)} %  virtual ${
        DrillReport.clock(l.done * l.totalMs)
      } / ${DrillReport.clock(l.totalMs)}  ${int(l.requests)} requests`
  const overall = (): string => {
    let inFlight = 0
    for (const l of lines) inFlight += l.requests
    const wall = ((performance.now() - started) / 1000).toFixed(0)
    return `drill ${tty ? `${barOf(finished / runs)} ` : ""}${finished}/${runs} runs  ${int(requestsDone + inFlight)} requests  ${wall} s`
  }
  const multi = new MultiBar({
    stream,
    fps: 4,
    notTTYSchedule: 5_000,
    noTTYOutput: true,
    hideCursor: tty,
    clearOnComplete: true,
    autopadding: false,
    // On its timer cli-progress renders every line and writes those that changed; a log gets them all.
    forceRedraw: !tty,
    // The lines are ours: the bar's own value and total are not used.
    format: (_options, _params, payload: { readonly render: () => string }) => payload.render()
  })
  multi.create(1, 0, { render: overall })
  for (const l of lines) multi.create(1, 0, { render: () => describe(l) })
  return {
    start: (worker, job, totalMs) => {
      const l = lines[worker]
      if (l === undefined) return
      l.job = job
      l.totalMs = totalMs
      l.done = 0
      l.requests = 0
    },
    update: (worker, done, requests) => {
      const l = lines[worker]
      if (l === undefined) return
      l.done = done
      l.requests = requests
    },
    finish: (worker, job, requests, wallMs) => {
      const l = lines[worker]
      if (l !== undefined) {
        l.job = ""
        l.requests = 0
      }
      finished += 1
      requestsDone += requests
      const line = `drill: ${job} done in ${(wallMs / 1000).toFixed(1)} s, ${int(requests)} requests (${finished}/${runs})\n`
      // Above the bars on a terminal (written at the next redraw); at once in a log.
      if (tty) multi.log(line)
      else stream.write(line)
    },
    idle: (worker) => {
      const l = lines[worker]
      if (l !== undefined) l.job = ""
    },
    end: () => {
      // One last redraw writes the finished runs still waiting in cli-progress's log buffer.
      if (tty) multi.update()
      multi.stop()
    }
  }
}
