/**
 * What the Redis store costs a call through `Policy`, beside the memory store:
 * the round trips a call waits for (the store's own count of awaited
 * operations), the scripts Redis runs per call (counted with MONITOR, by
 * slot: awaited, behind and background reads), and the latency a call gains,
 * at concurrency 1 and 100.
 *
 *   npm run bench:redis                      # starts a redis-server of its own (or uses REDIS_URL)
 *   node --import tsx bench/redis.ts --calls 5000
 *
 * The call suspends on I/O (resolves on the next `setImmediate`), as real
 * calls do. The policy is the overhead bench's: a key pool of 3 keys, a
 * per-key rate limiter no run exhausts, a bulkhead, the default breaker,
 * retry and retry budget, a 10 s attempt timeout.
 */
import * as Policy from "@resilient-ai/core/Policy"
import * as KeyPool from "@resilient-ai/core/KeyPool"
import * as StateStore from "@resilient-ai/core/StateStore"
import * as RedisStore from "@resilient-ai/redis/RedisStore"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { startRedisServer } from "../packages/redis/test/redisServer.js"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const calls = arg("calls", 3000)

const io = Effect.async<number>((resume) => {
  setImmediate(() => resume(Effect.succeed(1)))
})

const makePolicy = Effect.gen(function*() {
  const keyPool = yield* KeyPool.make({
    name: "keys",
    keys: [1, 2, 3].map((i) => ({ name: `k${i}`, key: Redacted.make(`sk-${i}`) }))
  })
  return yield* Policy.make({
    deployment: "bench",
    keyPool,
    attemptTimeout: "10 seconds",
    rateLimiter: { requestsPerMinute: 100_000_000 },
    bulkhead: { maxConcurrent: 1000, maxQueue: 1000 }
  })
})

interface Run {
  readonly meanMicros: number
  readonly p50Micros: number
  readonly p99Micros: number
  readonly callsPerSecond: number
}

const measure = (policy: Policy.Service, concurrency: number, n: number): Effect.Effect<Run> =>
  Effect.gen(function*() {
    const latencies: Array<number> = []
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: n }),
      () =>
        Effect.suspend(() => {
          const t0 = performance.now()
          return Effect.orDie(policy.execute(() => io)).pipe(Effect.tap(() => {
            latencies.push(performance.now() - t0)
          }))
        }),
      { concurrency, discard: true }
    )
    const wall = performance.now() - started
    latencies.sort((a, b) => a - b)
    const at = (q: number) => Math.round(1000 * (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0))
    return {
      meanMicros: Math.round((1000 * latencies.reduce((s, x) => s + x, 0)) / latencies.length),
      p50Micros: at(0.5),
      p99Micros: at(0.99),
      callsPerSecond: Math.round((n / wall) * 1000)
    }
  })

const main = Effect.gen(function*() {
  const server = process.env["REDIS_URL"] ? undefined : yield* Effect.promise(() => startRedisServer())
  yield* Effect.addFinalizer(() => Effect.promise(async () => server?.dispose()))
  const url = process.env["REDIS_URL"] ?? server!.url
  const prefix = `bench-${randomUUID()}:`

  // MONITOR sees every command the store sends: counted by command and slot.
  const admin = new Redis(url)
  const monitor = yield* Effect.promise(() => admin.monitor())
  yield* Effect.addFinalizer(() => Effect.sync(() => {
    monitor.disconnect()
    admin.disconnect()
  }))
  const commands = new Map<string, number>()
  monitor.on("monitor", (_time: string, args: ReadonlyArray<string>) => {
    const name = (args[0] ?? "").toLowerCase()
    if (name !== "evalsha" && name !== "eval") return
    const slot = (args[3] ?? "").slice(prefix.length).replace(/:\{.*\}$/, "")
    commands.set(slot, (commands.get(slot) ?? 0) + 1)
  })

  // A generous store timeout: on a loaded machine 50 ms is missed now and then, and the calls that
  // ran on local state meanwhile would be counted as free.
  const { redis, store } = yield* RedisStore.make({ url, prefix, operationTimeout: "2 seconds" })
  const stores: ReadonlyArray<readonly [string, StateStore.Service]> = [["memory", StateStore.makeMemory()], ["redis", store]]
  const rows: Array<Record<string, string | number>> = []
  for (const concurrency of [1, 100]) {
    for (const [name, s] of stores) {
      const policy = yield* Effect.provideService(makePolicy, StateStore.StateStore, s)
      yield* measure(policy, concurrency, Math.min(500, calls)) // warm-up
      yield* Effect.sleep("200 millis") // MONITOR lines of the warm-up arrive
      commands.clear()
      const before = yield* redis.counters
      const run = yield* measure(policy, concurrency, calls)
      const after = yield* redis.counters
      yield* Effect.sleep("200 millis")
      const total = [...commands.values()].reduce((a, b) => a + b, 0)
      rows.push({
        store: name,
        concurrency,
        ...run,
        roundTripsPerCall: name === "memory" ? 0 : Number(((after.awaited - before.awaited) / calls).toFixed(3)),
        scriptsPerCall: Number((total / calls).toFixed(3)),
        bySlot: [...commands.entries()].map(([slot, n]) => `${slot} ${(n / calls).toFixed(3)}`).join(", ") || "-"
      })
    }
  }
  console.table(rows)
  for (const concurrency of [1, 100]) {
    const mem = rows.find((r) => r["store"] === "memory" && r["concurrency"] === concurrency)!
    const red = rows.find((r) => r["store"] === "redis" && r["concurrency"] === concurrency)!
    console.log(
      `concurrency ${concurrency}: redis adds ${Number(red["meanMicros"]) - Number(mem["meanMicros"])} µs mean, ` +
        `${Number(red["p99Micros"]) - Number(mem["p99Micros"])} µs p99 per call; ${red["roundTripsPerCall"]} awaited round trips ` +
        `and ${red["scriptsPerCall"]} scripts per call`
    )
  }
})

Effect.runPromise(Effect.scoped(main)).catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
