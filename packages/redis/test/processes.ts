/**
 * Worker processes for the multi-process tests: separate Node processes
 * (tsx runs the TypeScript sources) that talk to the test over stdin and
 * stdout, one JSON line per answer.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process"
import type { Readable, Writable } from "node:stream"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const repo = fileURLToPath(new URL("../../..", import.meta.url))

export interface Worker {
  readonly child: ChildProcessByStdio<Writable, Readable, null>
  /** Resolves when the worker has connected. */
  readonly ready: Promise<void>
  /** Sends a command line and resolves with the worker's answer. */
  readonly ask: <A>(command: string) => Promise<A>
  /** Resolves with the worker's exit code. */
  readonly exited: Promise<number | null>
}

/** Starts `fixtures/<name>.ts` with `env` added to this process's. */
export const startWorker = (name: string, env: Record<string, string>): Worker => {
  const file = fileURLToPath(new URL(`./fixtures/${name}.ts`, import.meta.url))
  // `--conditions=source`: @resilient-ai/* resolve to the TypeScript sources, which tsx runs.
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", file], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "inherit"]
  })
  const lines = createInterface({ input: child.stdout })
  const waiting: Array<(line: string) => void> = []
  let onReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  lines.on("line", (line) => {
    if (line === "ready") onReady()
    else if (line.startsWith("{")) waiting.shift()?.(line)
    // Anything else is the worker's log (Effect's logger writes to stdout).
    else process.stderr.write(`worker ${child.pid}: ${line}\n`)
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const ask = <A>(command: string): Promise<A> =>
    new Promise<A>((resolve, reject) => {
      waiting.push((line) => resolve(JSON.parse(line) as A))
      exited.then((code) => reject(new Error(`worker exited with ${code} before answering "${command}"`)))
      child.stdin.write(command + "\n")
    })
  return { child, ready, ask, exited }
}
