import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
const core = await import(process.argv[2])
const { Policy, KeyPool, StateStore } = core
const policy = await Effect.runPromise(Effect.gen(function* () {
  const keyPool = yield* KeyPool.make({ name: "k", keys: [1,2,3].map(i => ({ name: `k${i}`, key: Redacted.make(`sk-${i}`) })) })
  return yield* Policy.make({ deployment: "d", keyPool, rateLimiter: { requestsPerMinute: 1e12 }, bulkhead: { maxConcurrent: 1000 }, attemptTimeout: "10 seconds" })
}).pipe(Effect.provide(StateStore.layerMemory)))
const stack = policy.execute(() => Effect.succeed(1))
const t = Date.now()
let n = 0
while (Date.now() - t < 4000) { await Effect.runPromise(Effect.gen(function* () { for (let i = 0; i < 10000; i++) yield* stack })); n += 10000 }
console.log("ns/call", 4e6 / n * 1000)
