/**
 * The multi-process scenarios, run on one Redis server (MultiProcess.test.ts)
 * and on a Redis Cluster (Cluster.test.ts): `target` is the environment that
 * points the workers at one or the other.
 */
import { expect } from "@effect/vitest"
import { startWorker, type Worker } from "./processes.js"
import { freshPrefix } from "./stores.js"

export const PROCESSES = 4

const startAll = async (name: string, env: Record<string, string>): Promise<ReadonlyArray<Worker>> => {
  const workers = Array.from({ length: PROCESSES }, () => startWorker(name, env))
  await Promise.all(workers.map((w) => w.ready))
  return workers
}

const stopAll = (workers: ReadonlyArray<Worker>) => Promise.all(workers.map((w) => (w.child.stdin.write("exit\n"), w.exited)))

/**
 * A down provider behind 4 processes: the breaker opens once the threshold is
 * counted across all of them, and its half-open trials are budgeted for all.
 */
export const breakerOpensClusterWide = async (target: Record<string, string>) => {
  const THRESHOLD = 5
  const TRIALS = 1
  const workers = await startAll("breakerWorker", {
    ...target,
    PREFIX: freshPrefix(),
    THRESHOLD: String(THRESHOLD),
    TRIALS: String(TRIALS),
    // One half-open period in the run: the breaker opens early, tries once after 1 s, opens again
    // (the next trial would be 2 s in, well after the last process stops, however late it started).
    OPEN_MILLIS: "1000",
    RUN_MILLIS: "1500"
  })
  const reports = await Promise.all(
    workers.map((w) => w.ask<{ readonly upstream: number; readonly refused: number; readonly state: string }>("go"))
  )
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
  await Promise.all(workers.map((w) => w.exited))
  return { upstream, perProcess: reports.map((r) => r.upstream) }
}

/**
 * 4 processes, 16 fibers each, press on one limiter (a bucket of 10 refilled
 * with 1 every 20 ms: 50 calls/s) for `millis`: the calls admitted in all,
 * over the time between the first and the last admission, are within 2 % of
 * the limit. Per-process buckets would admit 4 times the limit. (The rate is
 * one a loaded 2-core machine keeps pressed: at a rate its processes cannot
 * reach, refills are lost to a full bucket and the test would measure the
 * machine.)
 */
export const limiterHoldsTheRate = async (target: Record<string, string>, millis: number) => {
  const CAPACITY = 10
  const REFILL_MILLIS = 20
  const workers = await startAll("worker", { ...target, PREFIX: freshPrefix(), CAPACITY: String(CAPACITY), REFILL_MILLIS: String(REFILL_MILLIS) })
  try {
    const reports = await Promise.all(
      workers.map((w) =>
        w.ask<{ readonly admitted: number; readonly first: number; readonly last: number; readonly clashes: number; readonly contended: number; readonly connected: boolean }>(
          `limiter ${millis}`
        )
      )
    )
    const clashes = reports.reduce((n, r) => n + r.clashes, 0)
    const contended = reports.reduce((n, r) => n + r.contended, 0)
    // Shared all along: a process on local state would admit its own budget.
    for (const r of reports) expect(r).toMatchObject({ connected: true })
    const admitted = reports.reduce((n, r) => n + r.admitted, 0)
    const windowMillis = Math.max(...reports.map((r) => r.last)) - Math.min(...reports.map((r) => r.first))
    const limitPerSecond = 1000 / REFILL_MILLIS
    // The first CAPACITY came from the full bucket; the rest from refills during the window.
    const ratePerSecond = (admitted - CAPACITY) / (windowMillis / 1000)
    const error = (ratePerSecond - limitPerSecond) / limitPerSecond
    // Every process got a share: they pressed on one budget together.
    for (const r of reports) expect(r.admitted).toBeGreaterThan(0)
    expect(windowMillis).toBeGreaterThan(millis * 0.9)
    expect(Math.abs(error)).toBeLessThan(0.02)
    return { admitted, windowMillis, ratePerSecond, limitPerSecond, error, clashes, contended, perProcess: reports.map((r) => r.admitted) }
  } finally {
    await stopAll(workers)
  }
}

/**
 * A cache entry written by one process serves the others, and identical
 * concurrent requests from all 4 (8 each) share one upstream call.
 */
export const cacheServesAll = async (target: Record<string, string>) => {
  const workers = await startAll("worker", { ...target, PREFIX: freshPrefix() })
  interface CacheReport {
    readonly upstream: number
    readonly sources: ReadonlyArray<string>
    readonly texts: ReadonlyArray<string>
  }
  try {
    const seeded = await workers[0]!.ask<CacheReport>("seed")
    expect(seeded).toMatchObject({ upstream: 1, sources: ["computed"] })
    const others = await Promise.all(workers.slice(1).map((w) => w.ask<CacheReport>("seed")))
    for (const r of others) expect(r).toMatchObject({ upstream: 0, sources: ["hit"], texts: seeded.texts })
    const burst = await Promise.all(workers.map((w) => w.ask<CacheReport>("burst")))
    const upstream = burst.reduce((n, r, i) => n + r.upstream - (i === 0 ? 1 : 0), 0)
    expect(upstream).toBe(1)
    const texts = new Set(burst.flatMap((r) => r.texts))
    expect(texts.size).toBe(1)
    expect(burst.flatMap((r) => r.sources).length).toBe(PROCESSES * 8)
  } finally {
    await stopAll(workers)
  }
}

/** A key revoked (401) on one process is skipped by all, once the refresh interval has passed. */
export const revokedKeySkippedByAll = async (target: Record<string, string>) => {
  const workers = await startAll("worker", { ...target, PREFIX: freshPrefix() })
  try {
    // Every process has used the pool (all keys healthy) before the revocation.
    for (const r of await Promise.all(workers.map((w) => w.ask<{ readonly used: ReadonlyArray<string> }>("keys 3")))) {
      expect(r.used.length).toBe(3)
    }
    await workers[0]!.ask("revoke")
    // The others pick from a view at most the refresh interval (100 ms) old.
    await new Promise((resolve) => setTimeout(resolve, 300))
    const reports = await Promise.all(workers.map((w) => w.ask<{ readonly used: ReadonlyArray<string> }>("keys 12")))
    for (const r of reports) {
      expect(r.used).not.toContain("k1")
      expect(new Set(r.used)).toEqual(new Set(["k2", "k3"]))
    }
  } finally {
    await stopAll(workers)
  }
}
