import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
const core = await import(process.argv[2])
const { Policy, KeyPool, StateStore, Timeout } = core
const io = Effect.async((resume) => { setImmediate(() => resume(Effect.succeed(1))) })
const variants = {
  none: {},
  retry: { retry: {} },
  retryBudget: { retry: {}, retryBudget: {} },
  breaker: { circuitBreaker: {} },
  pool: { pool: true },
  poolLimiter: { pool: true, rateLimiter: { requestsPerMinute: 1e12 } },
  bulkhead: { bulkhead: { maxConcurrent: 1000 } },
  timeout: { attemptTimeout: "10 seconds" },
  allNoTimeout: { retry: {}, retryBudget: {}, circuitBreaker: {}, pool: true, rateLimiter: { requestsPerMinute: 1e12 }, bulkhead: { maxConcurrent: 1000 } },
  all: { retry: {}, retryBudget: {}, circuitBreaker: {}, pool: true, rateLimiter: { requestsPerMinute: 1e12 }, bulkhead: { maxConcurrent: 1000 }, attemptTimeout: "10 seconds" }
}
const only = process.argv[3]?.split(",")
const N = 40000
const loop = (eff, n) => Effect.runPromise(Effect.gen(function* () { for (let i = 0; i < n; i++) yield* eff }))
const cpu = async (f) => { const t = process.cpuUsage(); await f(); const d = process.cpuUsage(t); return (d.user + d.system) * 1000 }
for (const [name, v] of Object.entries(variants)) {
  if (only && !only.includes(name)) continue
  const policy = await Effect.runPromise(Effect.gen(function* () {
    const keyPool = v.pool ? yield* KeyPool.make({ name: "k", keys: [1,2,3].map(i => ({ name: `k${i}`, key: Redacted.make(`sk-${i}`) })) }) : undefined
    return yield* Policy.make({ deployment: "d", retry: v.retry ?? false, retryBudget: v.retryBudget ?? false, circuitBreaker: v.circuitBreaker ?? false,
      ...(keyPool ? { keyPool } : {}), ...(v.rateLimiter ? { rateLimiter: v.rateLimiter } : {}), ...(v.bulkhead ? { bulkhead: v.bulkhead } : {}), ...(v.attemptTimeout ? { attemptTimeout: v.attemptTimeout } : {}) })
  }).pipe(Effect.provide(StateStore.layerMemory)))
  const stack = policy.execute(() => io)
  for (let w = 0; w < 3; w++) { await loop(stack, N); await loop(io, N) }
  const rounds = []
  for (let r = 0; r < 9; r++) { const b1 = await cpu(() => loop(io, N / 2)); const s = await cpu(() => loop(stack, N)); const b2 = await cpu(() => loop(io, N / 2)); rounds.push((s - b1 - b2) / N) }
  rounds.sort((a, b) => a - b)
  console.log(name.padEnd(14), Math.round(rounds[4]), "ns cpu")
}
