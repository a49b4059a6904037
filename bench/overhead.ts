/**
 * Per-call overhead of a full resilience stack, in nanoseconds: ours
 * (@resilient-ai/core, from the compiled `tsc -b` output) against cockatiel
 * 3.2.1 and opossum 9.0.0, around a call that succeeds at once.
 *
 *   npm run bench:overhead                 # tsc -b, then this file
 *   npx tsx bench/overhead.ts --quick      # fewer rounds
 *   npx tsx bench/overhead.ts --core <dir>/build/src/index.js   # another build (before/after)
 *
 * Method
 * - Each stack is measured in its own Node process (a fresh V8, warmed up
 *   with its own code only), one after the other, never in parallel.
 * - A round times N calls of the stack and N calls of the bare call, run the
 *   same way; overhead = (stack − bare) / N. Warm-up rounds first, then the
 *   median of the measured rounds. N is calibrated so a round lasts about
 *   150 ms.
 * - Sequential: one fiber (one async loop) making N calls one after another.
 *   Concurrency 100: 100 fibers (100 concurrent async loops) making N/100
 *   calls each; total time / N.
 * - Ours: `Policy.make` with a key pool of 3 keys, a per-key rate limiter
 *   with a budget no run can exhaust, a bulkhead, the default circuit
 *   breaker (5 consecutive failures), a 10 s attempt timeout and the default
 *   retry (3 retries, retry budget), around `Effect.succeed(1)`, driven by
 *   `Effect.runPromise`. The bare call is the same `Effect.succeed(1)` in the
 *   same loop. Our code is imported from `packages/core/build/src` (the
 *   output of `tsc -b`), never through tsx: tsx (esbuild keepNames) wraps
 *   every closure in `__name(...)`, which users would not pay.
 * - cockatiel: `wrap(retry, circuitBreaker, bulkhead, timeout)` (3 attempts,
 *   consecutive breaker of 5, bulkhead 1000, 10 s cooperative timeout).
 *   cockatiel has no rate limiter and no key pool.
 * - opossum: its breaker with `timeout: 10000` and `capacity: 1000`. opossum
 *   has no retry, no rate limiter and no key pool.
 * - The peers wrap `async () => 1`; their bare call is that function, awaited.
 *
 * Writes bench/results/overhead.json: an array of
 * `{ stack, concurrency, nsPerCall }` (plus the medians it came from).
 */
import { spawnSync } from "node:child_process"
import { setMaxListeners } from "node:events"
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

type Core = typeof import("../packages/core/src/index.js")

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const quick = args.includes("--quick")
const corePath = resolve(flag("--core") ?? join(here, "../packages/core/build/src/index.js"))
const WARMUP = quick ? 2 : 4
const ROUNDS = quick ? 5 : 11
const ROUND_NS = 150e6
const CONCURRENCY = 100

interface Sample {
  readonly concurrency: number
  readonly nsPerCall: number
  readonly stackNs: number
  readonly bareNs: number
  readonly calls: number
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** A runner: makes `n` calls at a concurrency and resolves when all are done. */
type Runner = (n: number, concurrency: number) => Promise<void>

const measure = async (stack: Runner, bare: Runner, concurrency: number): Promise<Sample> => {
  // Calibrate N from a short probe of the stack (after a first warm-up of both).
  await bare(10 * concurrency, concurrency)
  await stack(10 * concurrency, concurrency)
  const probe = 200 * concurrency
  const t0 = performance.now()
  await stack(probe, concurrency)
  const perCall = ((performance.now() - t0) * 1e6) / probe
  const n = Math.max(concurrency * 10, Math.round(ROUND_NS / Math.max(perCall, 1) / concurrency) * concurrency)
  const overheads: Array<number> = []
  const stacks: Array<number> = []
  const bares: Array<number> = []
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const b0 = performance.now()
    await bare(n, concurrency)
    const b1 = performance.now()
    await stack(n, concurrency)
    const s1 = performance.now()
    if (round < WARMUP) continue
    const bareNs = ((b1 - b0) * 1e6) / n
    const stackNs = ((s1 - b1) * 1e6) / n
    bares.push(bareNs)
    stacks.push(stackNs)
    overheads.push(stackNs - bareNs)
  }
  return { concurrency, nsPerCall: median(overheads), stackNs: median(stacks), bareNs: median(bares), calls: n }
}

// ---------------------------------------------------------------------------
// runners

const effectRunner = <E>(call: () => Effect.Effect<unknown, E>): Runner => {
  const loop = (n: number) => {
    let i = 0
    return Effect.whileLoop({ while: () => i++ < n, body: call, step: () => {} })
  }
  return (n, concurrency) =>
    Effect.runPromise(
      concurrency === 1
        ? loop(n)
        : Effect.forEach(Array.from({ length: concurrency }), () => loop(n / concurrency), { concurrency, discard: true })
    )
}

const promiseRunner = (call: () => Promise<unknown>): Runner => async (n, concurrency) => {
  const loop = async (k: number) => {
    for (let i = 0; i < k; i++) await call()
  }
  if (concurrency === 1) return loop(n)
  await Promise.all(Array.from({ length: concurrency }, () => loop(n / concurrency)))
}

const body = Effect.succeed(1)
const syncBody = Effect.sync(() => 1)
const bareEffect = effectRunner(() => body)
const bareSync = effectRunner(() => syncBody)
const asyncFn = async () => 1
const barePromise = promiseRunner(() => asyncFn())

interface Case {
  readonly label: string
  readonly stack: Runner
  readonly bare: Runner
  readonly close?: () => void
}

const loadCore = async (): Promise<Core> => (await import(pathToFileURL(corePath).href)) as Core

const build = <A>(core: Core, make: Effect.Effect<A, unknown, import("../packages/core/src/StateStore.js").StateStore>) =>
  Effect.runPromise(Effect.provide(make, core.StateStore.layerMemory))

const fullPolicy = (core: Core) =>
  build(
    core,
    Effect.flatMap(
      core.KeyPool.make({
        name: "bench",
        keys: [0, 1, 2].map((i) => ({ name: `key-${i}`, key: Redacted.make(`sk-bench-${i}`) }))
      }),
      (keyPool) =>
        core.Policy.make({
          deployment: "bench",
          keyPool,
          rateLimiter: { requestsPerMinute: 1e12 },
          bulkhead: { maxConcurrent: 1000 },
          attemptTimeout: "10 seconds"
        })
    )
  )

const cases: Record<string, () => Promise<Case>> = {
  "resilient-ai": async () => {
    const policy = await fullPolicy(await loadCore())
    const call = () => body
    return { label: "resilient-ai", stack: effectRunner(() => policy.execute(call)), bare: bareEffect }
  },
  cockatiel: async () => {
    // cockatiel hangs one abort listener per call in flight on a shared signal: 100 at once trips
    // Node's leak warning, which is noise here.
    setMaxListeners(0)
    const c = await import("cockatiel")
    const policy = c.wrap(
      c.retry(c.handleAll, { maxAttempts: 3, backoff: new c.ExponentialBackoff() }),
      c.circuitBreaker(c.handleAll, { halfOpenAfter: 30_000, breaker: new c.ConsecutiveBreaker(5) }),
      c.bulkhead(1000, 0),
      c.timeout(10_000, c.TimeoutStrategy.Cooperative)
    )
    return { label: "cockatiel", stack: promiseRunner(() => policy.execute(asyncFn)), bare: barePromise }
  },
  opossum: async () => {
    const CircuitBreaker = (await import("opossum")).default
    const breaker = new CircuitBreaker(asyncFn, { timeout: 10_000, capacity: 1000 })
    return {
      label: "opossum",
      stack: promiseRunner(() => breaker.fire()),
      bare: barePromise,
      close: () => breaker.shutdown()
    }
  },
  // Our policies one at a time, and the full stack around a call that is not already an `Exit`.
  "resilient-ai/sync-body": async () => {
    const policy = await fullPolicy(await loadCore())
    const call = () => syncBody
    return { label: "full stack, Effect.sync body", stack: effectRunner(() => policy.execute(call)), bare: bareSync }
  },
  "policy/timeout": async () => {
    const core = await loadCore()
    const t = core.Timeout.attempt("10 seconds")
    return { label: "attempt timeout", stack: effectRunner(() => t(body)), bare: bareEffect }
  },
  "policy/timeout-sync-body": async () => {
    const core = await loadCore()
    const t = core.Timeout.attempt("10 seconds")
    return { label: "attempt timeout, Effect.sync body", stack: effectRunner(() => t(syncBody)), bare: bareSync }
  },
  "policy/breaker": async () => {
    const core = await loadCore()
    const b = await build(core, core.CircuitBreaker.make({ name: "bench" }))
    return { label: "circuit breaker", stack: effectRunner(() => b.execute(body)), bare: bareEffect }
  },
  "policy/key-pool": async () => {
    const core = await loadCore()
    const pool = await build(
      core,
      core.KeyPool.make({
        name: "bench",
        keys: [0, 1, 2].map((i) => ({ name: `key-${i}`, key: Redacted.make(`sk-bench-${i}`) }))
      })
    )
    const use = () => body
    return { label: "key pool", stack: effectRunner(() => pool.withKey(use)), bare: bareEffect }
  },
  "policy/limiter": async () => {
    const core = await loadCore()
    const l = await build(core, core.RateLimiter.make({ name: "bench", requestsPerMinute: 1e12 }))
    return { label: "rate limiter", stack: effectRunner(() => l.execute(body)), bare: bareEffect }
  },
  "policy/bulkhead": async () => {
    const core = await loadCore()
    const b = await Effect.runPromise(core.Bulkhead.make({ name: "bench", maxConcurrent: 1000 }))
    return { label: "bulkhead", stack: effectRunner(() => b.execute(body)), bare: bareEffect }
  },
  "policy/retry": async () => {
    const core = await loadCore()
    const r = await build(
      core,
      Effect.flatMap(core.RetryBudget.make({ name: "bench" }), (budget) => core.Retry.make({ name: "bench", budget }))
    )
    return { label: "retry (with budget)", stack: effectRunner(() => r.execute(body)), bare: bareEffect }
  }
}

const child = async (name: string) => {
  const make = cases[name]
  if (make === undefined) throw new Error(`unknown case ${name}`)
  const c = await make()
  const samples: Array<Sample> = []
  for (const concurrency of [1, CONCURRENCY]) samples.push(await measure(c.stack, c.bare, concurrency))
  c.close?.()
  process.stdout.write(JSON.stringify({ label: c.label, samples }) + "\n")
}

const runChild = (name: string): { readonly label: string; readonly samples: ReadonlyArray<Sample> } => {
  const result = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args, "--child", name], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"]
  })
  const line = result.stdout.trim().split("\n").pop()
  if (result.status !== 0 || line === undefined) throw new Error(`case ${name} failed (exit ${result.status})`)
  return JSON.parse(line)
}

const fmt = (ns: number) => ns.toFixed(0).padStart(8)

const main = () => {
  const stacks = ["resilient-ai", "cockatiel", "opossum"] as const
  const extras = [
    "resilient-ai/sync-body",
    "policy/timeout",
    "policy/timeout-sync-body",
    "policy/breaker",
    "policy/key-pool",
    "policy/limiter",
    "policy/bulkhead",
    "policy/retry"
  ]
  const runAll = !args.includes("--stacks-only")
  process.stdout.write(`core: ${corePath}\nnode ${process.version}, ${ROUNDS} rounds after ${WARMUP} warm-up rounds, median\n\n`)
  const results: Array<{ stack: string; concurrency: number; nsPerCall: number; stackNs: number; bareNs: number }> = []
  const header = `${"stack".padEnd(34)}${"conc".padStart(6)}${"ns/call".padStart(10)}${"stack ns".padStart(10)}${"bare ns".padStart(10)}\n`
  process.stdout.write(header)
  for (const name of stacks) {
    const r = runChild(name)
    for (const s of r.samples) {
      results.push({
        stack: name,
        concurrency: s.concurrency,
        nsPerCall: Math.round(s.nsPerCall),
        stackNs: Math.round(s.stackNs),
        bareNs: Math.round(s.bareNs)
      })
      process.stdout.write(`${name.padEnd(34)}${String(s.concurrency).padStart(6)}  ${fmt(s.nsPerCall)}  ${fmt(s.stackNs)}  ${fmt(s.bareNs)}\n`)
    }
  }
  process.stdout.write(
    "\nresilient-ai: retry + breaker + key pool (3 keys) + rate limiter + bulkhead + attempt timeout\n" +
      "cockatiel:    retry + breaker + bulkhead + timeout (no rate limiter, no key pool in cockatiel)\n" +
      "opossum:      breaker with timeout and capacity (no retry, no rate limiter, no key pool in opossum)\n"
  )
  if (runAll) {
    process.stdout.write(`\nresilient-ai, one policy at a time (and the full stack around a non-Exit body)\n${header}`)
    for (const name of extras) {
      const r = runChild(name)
      for (const s of r.samples) {
        process.stdout.write(`${r.label.padEnd(34)}${String(s.concurrency).padStart(6)}  ${fmt(s.nsPerCall)}  ${fmt(s.stackNs)}  ${fmt(s.bareNs)}\n`)
      }
    }
  }
  const out = flag("--out") ?? join(here, "results/overhead.json")
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, JSON.stringify(results, null, 2) + "\n")
  process.stdout.write(`\nwrote ${out}\n`)
}

const childName = flag("--child")
if (childName === undefined) main()
else await child(childName)
