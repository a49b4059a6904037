/**
 * Four Node processes on one Redis, each with its own Policy in front of the
 * same provider, which is down. The breaker counts their failures together
 * and opens for all of them; its half-open trials are budgeted for all.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { freshPrefix, redisUrl } from "./stores.js"

const repo = fileURLToPath(new URL("../../..", import.meta.url))
const worker = fileURLToPath(new URL("./fixtures/breakerWorker.ts", import.meta.url))

interface Report {
  readonly upstream: number
  readonly refused: number
  readonly state: string
}

const THRESHOLD = 5
const TRIALS = 1
const PROCESSES = 4

/** Starts a worker; resolves `ready` when it has connected and `report` with its last line. */
const start = (env: Record<string, string>) => {
  // `--conditions=source`: @resilient-ai/* resolve to the TypeScript sources, which tsx runs.
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", worker], {
    cwd: repo,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "inherit"]
  })
  const lines = createInterface({ input: child.stdout })
  let onReady: () => void = () => {}
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  const report = new Promise<Report>((resolve, reject) => {
    let last = ""
    lines.on("line", (line) => {
      if (line === "ready") onReady()
      else last = line
    })
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(last) as Report) : reject(new Error(`worker exited with ${code}`))))
  })
  return { child, ready, report }
}

describe.skipIf(redisUrl === "")("4 processes on one Redis", () => {
  it("a down provider gets at most threshold + K calls in all, plus the calls already in flight when the breaker opened (rules 1, 9)", async () => {
    const env = {
      REDIS_URL: redisUrl,
      PREFIX: freshPrefix(),
      THRESHOLD: String(THRESHOLD),
      TRIALS: String(TRIALS),
      // One half-open period in the run: the breaker opens early, tries once after 1 s, opens again
      // (the next trial would be 2 s in, well after the last process stops, however late it started).
      OPEN_MILLIS: "1000",
      RUN_MILLIS: "1500"
    }
    const workers = Array.from({ length: PROCESSES }, () => start(env))
    await Promise.all(workers.map((w) => w.ready))
    for (const w of workers) w.child.stdin.write("go\n")
    const reports = await Promise.all(workers.map((w) => w.report))
    const upstream = reports.reduce((n, r) => n + r.upstream, 0)
    // Each process has at most one call in flight (they call one at a time): at most
    // PROCESSES - 1 calls besides the one that opened it can be under way when it opens.
    expect(upstream).toBeGreaterThanOrEqual(THRESHOLD)
    expect(upstream).toBeLessThanOrEqual(THRESHOLD + TRIALS + (PROCESSES - 1))
    // Every process saw the open breaker and was refused by it; per-process breakers would
    // have let through PROCESSES * (THRESHOLD + TRIALS) = 24.
    for (const r of reports) {
      expect(r.state).toBe("open")
      expect(r.refused).toBeGreaterThan(0)
    }
    console.log(`4 processes, threshold ${THRESHOLD}, K ${TRIALS}: ${upstream} calls reached the down provider (${reports.map((r) => r.upstream).join(" + ")})`)
  }, 60_000)
})
