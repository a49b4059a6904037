/**
 * Per-call overhead of resilience stacks around three bodies shaped like real
 * calls, in nanoseconds: ours (@resilient-ai/core, from the compiled `tsc -b`
 * output) against cockatiel 3.2.1 and opossum 9.0.0.
 *
 *   npm run bench:overhead                          # tsc -b core and llm, type-checks bench/, runs this (~3.5 min on 2 cores)
 *   npx tsx bench/overhead.ts --quick               # half the warm-up, fewer rounds (~2 min)
 *   npx tsx bench/overhead.ts --body io --stack ours,cockatiel   # re-run some rows
 *   npx tsx bench/overhead.ts --core <dir>/build/src/index.js --llm <dir>/build/src/index.js   # another build
 *   npx tsx bench/overhead.ts --help
 *
 * Why three bodies: a body that is already done (`exit`) is the cheapest case
 * a policy can meet and no real call is like it; a call that suspends on I/O
 * (`io`) takes the path every real call takes; `http` is a real chat call
 * through our own provider, to see the overhead beside what a call costs.
 *
 * Bodies (each stack wraps the same call; "bare" is that call alone)
 * - exit: already done. Ours `Effect.succeed(1)`; peers `async () => 1`.
 * - io: resolves on the next `setImmediate`. Ours `Effect.async` resumed from
 *   `setImmediate`; peers `new Promise(r => setImmediate(() => r(1)))`.
 * - http: one non-streamed chat call through packages/llm's OpenAI-compatible
 *   provider (`HttpProviders.layer` over `HttpTransport.layer`, i.e.
 *   @effect/platform's HttpClient on undici) to a node:http server on
 *   127.0.0.1 (port 0, in the measuring process) that answers a fixed chat
 *   completion at once. The bare call is identical for every stack:
 *   `await Effect.runPromise(provider.chat(request, context))` with one fixed
 *   context (key, model), one promise per call. Ours wraps the effect inside
 *   that `runPromise` (`runPromise(policy.execute(() => provider.chat(...)))`;
 *   the call ignores the attempt's key so the body stays identical); the peers
 *   wrap the whole `() => runPromise(provider.chat(...))` (not given their
 *   abort signal, again so the body stays identical).
 *
 * Stacks
 * - bare: the body alone. Its row is the body's own time per call (what the
 *   other rows' overheads are over), in our form: for exit and io the
 *   peers' promise form has its own bare, measured in their processes and
 *   kept in their rows (`bareNs`).
 * - ours: `Policy.make` with a key pool of 3 keys, a per-key rate limiter
 *   with a budget no run exhausts, a bulkhead, the default circuit breaker,
 *   a 10 s attempt timeout and the default retry with its budget
 *   (`makeOurs`, the one place that knows how the core API builds it).
 * - ours-timeout: `Timeout.attempt("10 seconds")` alone.
 * - cockatiel: `wrap(retry, circuitBreaker, bulkhead, timeout)` (3 attempts,
 *   consecutive breaker of 5, bulkhead 1000, 10 s cooperative timeout). It has
 *   no rate limiter and no key pool.
 * - opossum: its breaker with `timeout: 10000` and `capacity: 1000`. It has no
 *   retry, no rate limiter and no key pool.
 * - Opt-in only (`--stack`), our policies one at a time: ours-breaker,
 *   ours-key-pool, ours-limiter, ours-bulkhead, ours-retry.
 * - Opt-in only, the floor under any timeout on effect's runtime:
 *   effect-bracket (`uninterruptibleMask` + `restore` + a handler of the
 *   exit: what a timeout needs to see its own fiber interrupted and go on),
 *   node-timer (a 10 s `setTimeout` set and cleared per call), and
 *   effect-timeoutFail (effect's own timeout, for comparison).
 *
 * Method
 * - Each (stack, body) is measured in its own Node process (a fresh V8,
 *   warmed up with its own code only), one after the other, never in
 *   parallel; concurrency 1 first, then 100 in the same process.
 * - Warm-up by calls and time first (10 000 calls and 0.5 s of each runner;
 *   4000 chat calls for http, which the JIT takes that long to settle), then
 *   N is calibrated so a round's stack part lasts about 150 ms (an http call
 *   costs 0.1-1 ms, an io call 2-10 µs, an exit call 0.1 µs: one N for all
 *   would not do).
 * - A round runs N/2 bare calls, N/2 stack calls, N/2 stack calls, N/2 bare
 *   calls (ABBA), driven the same way; its overhead = (stack − bare) / N.
 *   Timed warm-up rounds, then the median of the measured rounds (the medians
 *   of the stack and bare times alone are kept beside it).
 * - Concurrency 1: one loop making N calls one after another. Concurrency
 *   100: 100 loops making N/100 calls each; total time / N.
 * - Ours on exit and io: fibers (`Effect.whileLoop`) in one `runPromise` per
 *   block, as an Effect program makes calls. Ours on http: one `runPromise`
 *   per call (see above). The peers: async loops awaiting each call.
 * - Our code is imported from `packages/core/build/src` and
 *   `packages/llm/build/src` (the output of `tsc -b`), never through tsx:
 *   tsx (esbuild keepNames) wraps every closure in `__name(...)`, which users
 *   would not pay. `resolve-core.mjs` points the llm build's imports of
 *   `@resilient-ai/core` at that same core build.
 * - `--verbose` prints every round (wall and CPU time) to stderr: on a shared
 *   machine a wall time far above the CPU time is other processes' load, and
 *   the http rows are the first to drown in it.
 *
 * Writes bench/results/overhead.json (git ignores it: figures are per
 * machine): rows `{ stack, body, concurrency, nsPerCall, stackNs, bareNs,
 * calls, rounds, measuredAt }`, nsPerCall = median overhead (for bare: the
 * call itself). A run limited by `--body` / `--stack` replaces its own rows
 * and keeps the others. Prints a table (µs) and checks the targets; a missed
 * target is reported, never an error exit.
 */
import { spawnSync } from "node:child_process"
import { setMaxListeners } from "node:events"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { register } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as CoreModule from "../packages/core/src/index.js"
import type * as LlmModule from "../packages/llm/src/index.js"

type Core = typeof CoreModule
type Llm = typeof LlmModule

// ---------------------------------------------------------------------------
// what can be measured

const bodyNames = ["exit", "io", "http"] as const
type BodyName = (typeof bodyNames)[number]

/** The default run, in table order. */
const mainStacks = ["bare", "ours", "ours-timeout", "cockatiel", "opossum"] as const
/** Our policies one at a time: only when named by `--stack` (they explain a figure, they are not one). */
const extraStacks = ["ours-breaker", "ours-key-pool", "ours-limiter", "ours-bulkhead", "ours-retry"] as const
/**
 * What any timeout on effect's runtime pays, opt-in too: the floor under
 * `ours-timeout` (a timeout must see its own fiber's interruption, and set
 * and clear a timer), and effect's own `Effect.timeoutFail` beside it.
 */
const floorStacks = ["effect-bracket", "node-timer", "effect-timeoutFail"] as const
const stackNames = [...mainStacks, ...extraStacks, ...floorStacks] as const
/** The width of the stack column: the longest name and two spaces. */
const stackWidth = Math.max(...stackNames.map((s) => s.length)) + 2
type StackName = (typeof stackNames)[number]

const CONCURRENCIES = [1, 100] as const

// ---------------------------------------------------------------------------
// arguments

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
/** A list flag: repeated and/or comma-separated (`--body io,http --body exit`). */
const listFlag = <N extends string>(name: string, allowed: ReadonlyArray<N>): ReadonlyArray<N> | undefined => {
  const values = args.flatMap((a, i) => (a === name && args[i + 1] !== undefined ? args[i + 1]!.split(",") : []))
  if (values.length === 0) return undefined
  const isAllowed = (v: string): v is N => (allowed as ReadonlyArray<string>).includes(v)
  for (const v of values) {
    if (!isAllowed(v)) {
      process.stderr.write(`unknown ${name} "${v}"; one of: ${allowed.join(", ")}\n`)
      process.exit(2)
    }
  }
  return values.filter(isAllowed)
}

const quick = args.includes("--quick")
/** Each round's figures on stderr: to see the noise behind a median. */
const verbose = args.includes("--verbose")
const corePath = resolve(flag("--core") ?? join(here, "../packages/core/build/src/index.js"))
const llmPath = resolve(flag("--llm") ?? join(here, "../packages/llm/build/src/index.js"))
/** Timed warm-up rounds, after the warm-up by calls and time (`warmUp`). */
const WARMUP = quick ? 1 : 2
const ROUNDS = quick ? 5 : 11
/** The stack's part of a round. */
const ROUND_NS = 150e6
/** The least warm-up of each runner before its first round, besides the body's count of calls. */
const WARM_UP_NS = 500e6
/** A calibration probe grows until it lasts this long. */
const PROBE_NS = 30e6

const usage = `usage: npx tsx bench/overhead.ts [--quick] [--body ${bodyNames.join("|")}] [--stack <name>]
                                 [--core <core build index.js>] [--llm <llm build index.js>] [--out <file>]
  --body, --stack  limit the run (repeat or comma-separate); stacks: ${mainStacks.join(", ")}
                   (opt-in, our policies alone: ${extraStacks.join(", ")})
  --quick          half the warm-up, 1 warm-up + 5 measured rounds instead of 2 + 11
  --core, --llm    compiled builds to measure (default: this checkout's packages/*/build/src/index.js)
  --out            results file (default bench/results/overhead.json)
  --verbose        every round's stack and bare figures (stderr)
`

// ---------------------------------------------------------------------------
// measurement

/** Makes `n` calls at a concurrency (n a multiple of it) and resolves when all are done. */
type Runner = (n: number, concurrency: number) => Promise<void>

interface WarmUp {
  readonly calls: number
  readonly ns: number
}

const Sample = Schema.Struct({
  concurrency: Schema.Number,
  /** Median of (stack − bare) per call; for the bare stack, the bare call itself. */
  nsPerCall: Schema.Number,
  stackNs: Schema.Number,
  bareNs: Schema.Number,
  /** Calls per round (of the stack, and as many of the bare call). */
  calls: Schema.Number
})
type Sample = typeof Sample.Type

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const timeNs = async (run: Runner, n: number, concurrency: number): Promise<number> => {
  const t0 = performance.now()
  await run(n, concurrency)
  return (performance.now() - t0) * 1e6
}

/** ns per call of `run`, from a probe that grows until it lasts PROBE_NS. */
const calibrate = async (run: Runner, concurrency: number): Promise<number> => {
  let n = concurrency * 10
  for (;;) {
    const ns = await timeNs(run, n, concurrency)
    if (ns >= PROBE_NS || n >= 1e8) return ns / n
    // Jump straight to about the probe's length once a time is readable, grow 10× while it is not.
    n = ns < 1e6 ? n * 10 : Math.ceil((n * 1.2 * PROBE_NS) / ns / concurrency) * concurrency
  }
}

/**
 * Runs `run` for at least `calls` calls and `ns`, in growing batches. The JIT
 * tiers code up by calls, not by time: a cold chat call costs ten times a
 * warm one and takes some 4000 calls to settle, which rounds of 150 ms alone
 * would never reach (and they would time it cold).
 */
const warmUp = async (run: Runner, warm: WarmUp, concurrency: number) => {
  let n = concurrency
  let done = 0
  for (let spent = 0; spent < warm.ns || done < warm.calls;) {
    const batch = await timeNs(run, n, concurrency)
    spent += batch
    done += n
    if (batch < 20e6) n *= 2
  }
}

/**
 * A round runs bare, stack, stack, bare (N/2 calls each, ABBA) so a drift of
 * the machine's speed within a round (other processes, a GC) falls on both
 * sides alike. `stack` undefined: times the bare runner alone (the bare row).
 */
const measure = async (
  stack: Runner | undefined,
  bare: Runner,
  concurrency: number,
  warm: WarmUp
): Promise<Sample> => {
  await warmUp(bare, warm, concurrency)
  if (stack !== undefined) await warmUp(stack, warm, concurrency)
  const perCall = await calibrate(stack ?? bare, concurrency)
  // Each block makes at least one call per loop (at concurrency 100 an http call can take longer than a round wants).
  const half = Math.max(concurrency, Math.round(ROUND_NS / 2 / Math.max(perCall, 1) / concurrency) * concurrency)
  const stacks: Array<number> = []
  const bares: Array<number> = []
  const overheads: Array<number> = []
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const cpu0 = process.cpuUsage()
    let bareNs: number
    let stackNs: number
    if (stack === undefined) {
      bareNs = stackNs = (await timeNs(bare, 2 * half, concurrency)) / (2 * half)
    } else {
      const b1 = await timeNs(bare, half, concurrency)
      const s1 = await timeNs(stack, half, concurrency)
      const s2 = await timeNs(stack, half, concurrency)
      const b2 = await timeNs(bare, half, concurrency)
      bareNs = (b1 + b2) / (2 * half)
      stackNs = (s1 + s2) / (2 * half)
    }
    if (verbose) {
      // CPU time beside wall time: a wall time far above it is waiting (a timer, the machine's other processes).
      const cpu = process.cpuUsage(cpu0)
      const cpuUs = (cpu.user + cpu.system) / (stack === undefined ? 2 * half : 4 * half)
      process.stderr.write(
        `    c=${concurrency} ${round < WARMUP ? "warm-up" : "round"} ${round}: stack ${(stackNs / 1000).toFixed(2)} µs, bare ${
          (bareNs / 1000).toFixed(2)
        } µs, ${2 * half} calls; cpu ${cpuUs.toFixed(2)} µs per call of either\n`
      )
    }
    if (round < WARMUP) continue
    bares.push(bareNs)
    stacks.push(stackNs)
    overheads.push(stack === undefined ? bareNs : stackNs - bareNs)
  }
  return { concurrency, nsPerCall: median(overheads), stackNs: median(stacks), bareNs: median(bares), calls: 2 * half }
}

// ---------------------------------------------------------------------------
// runners

type EffectCall = () => Effect.Effect<unknown, unknown>
type PromiseCall = () => Promise<unknown>

/** Fibers looping over the call, in one `runPromise` per round: how an Effect program makes calls. */
const fiberRunner = (call: EffectCall): Runner => {
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

/** Async loops awaiting each call. */
const promiseRunner = (call: PromiseCall): Runner => async (n, concurrency) => {
  const loop = async (k: number) => {
    for (let i = 0; i < k; i++) await call()
  }
  if (concurrency === 1) return loop(n)
  await Promise.all(Array.from({ length: concurrency }, () => loop(n / concurrency)))
}

// ---------------------------------------------------------------------------
// bodies

interface Body {
  /** The call as an effect, for our stacks. */
  readonly effect: EffectCall
  /** The same call as a promise, for the peers. */
  readonly promise: PromiseCall
  /** How an effect stack is driven: fibers, or one `runPromise` per call (so the bare call is every stack's). */
  readonly drive: "fiber" | "promise"
  /** Calls each runner makes before its first timed round, at concurrency 1 (a quarter of them at 100: the code is warm by then). */
  readonly warmUpCalls: number
  readonly close: () => Promise<void>
}

const exitBody = (): Body => {
  const done = Effect.succeed(1)
  return { effect: () => done, promise: async () => 1, drive: "fiber", warmUpCalls: 10_000, close: async () => {} }
}

const ioBody = (): Body => {
  const io = Effect.async<number>((resume) => {
    setImmediate(() => resume(Effect.succeed(1)))
  })
  return {
    effect: () => io,
    promise: () => new Promise<number>((r) => setImmediate(() => r(1))),
    drive: "fiber",
    warmUpCalls: 10_000,
    close: async () => {}
  }
}

/** A chat completion as OpenAI returns it (shape of `CreateChatCompletionResponse`). */
const completion = {
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-4o-mini-2024-07-18",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "pong", refusal: null, annotations: [] },
    logprobs: null,
    finish_reason: "stop"
  }],
  usage: {
    prompt_tokens: 9,
    completion_tokens: 1,
    total_tokens: 10,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 }
  },
  service_tier: "default",
  system_fingerprint: "fp_bench"
}

/** An upstream that answers every request with `completion` as soon as it has read the request body. */
const startUpstream = (): Promise<{ readonly url: string; readonly close: () => Promise<void> }> =>
  new Promise((resolveUpstream, reject) => {
    const payload = Buffer.from(JSON.stringify(completion))
    const headers = { "content-type": "application/json", "content-length": String(payload.length) }
    const server = createServer((req, res) => {
      req.resume()
      req.on("end", () => {
        res.writeHead(200, headers)
        res.end(payload)
      })
    })
    // A pause between rounds (GC, calibration) must not close the kept-alive connections.
    server.keepAliveTimeout = 60_000
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolveUpstream({
        url: `http://127.0.0.1:${port}/v1`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })

const loadLlm = async (): Promise<Llm> => {
  register(new URL("./resolve-core.mjs", import.meta.url), { data: { core: pathToFileURL(corePath).href } })
  return (await import(pathToFileURL(llmPath).href)) as Llm
}

const httpBody = async (): Promise<Body> => {
  const llm = await loadLlm()
  const upstream = await startUpstream()
  // No proxy: the machine's HTTP(S)_PROXY must not route a loopback call.
  const runtime = ManagedRuntime.make(
    llm.HttpProviders.layer().pipe(Layer.provide(llm.HttpTransport.layer({ proxyFromEnvironment: false })))
  )
  const providers = await runtime.runPromise(llm.Provider.Providers)
  const provider = providers.forTarget({ name: "bench", kind: "openai", baseUrl: upstream.url, model: "gpt-4o-mini" })
  const request: LlmModule.Chat.ChatRequest = { model: "gpt-4o-mini", messages: [{ role: "user", content: "ping" }] }
  const context: LlmModule.Provider.CallContext = {
    deployment: "bench",
    model: "gpt-4o-mini",
    key: Redacted.make("sk-bench-0"),
    keyName: "key-0"
  }
  const effect = () => provider.chat(request, context)
  // Measuring an error path by mistake would be worse than no figure.
  const answer = await Effect.runPromise(effect())
  if (answer.response.text !== "pong") throw new Error(`the http body answered ${JSON.stringify(answer.response.text)}, not "pong"`)
  return {
    effect,
    promise: () => Effect.runPromise(effect()),
    drive: "promise",
    // A chat call runs far more code (schema decoding, undici, the HttpClient): measured, it settles after ~4000 calls.
    warmUpCalls: 4000,
    close: async () => {
      await runtime.dispose()
      await upstream.close()
    }
  }
}

const makeBody = (name: BodyName): Promise<Body> =>
  name === "http" ? httpBody() : Promise.resolve(name === "io" ? ioBody() : exitBody())

// ---------------------------------------------------------------------------
// stacks

/** How a stack wraps a call: our stacks wrap effects, the peers promises. */
type Stack =
  | { readonly kind: "bare" }
  | { readonly kind: "effect"; readonly wrap: (call: EffectCall) => EffectCall }
  | { readonly kind: "promise"; readonly wrap: (call: PromiseCall) => PromiseCall; readonly close?: () => void }

const loadCore = async (): Promise<Core> => (await import(pathToFileURL(corePath).href)) as Core

const withStore = <A>(core: Core, make: Effect.Effect<A, unknown, CoreModule.StateStore.StateStore>): Promise<A> =>
  Effect.runPromise(Effect.provide(make, core.StateStore.layerMemory))

const benchKeys = [0, 1, 2].map((i) => ({ name: `key-${i}`, key: Redacted.make(`sk-bench-${i}`) }))

/**
 * Our full stack, built as a deployment builds it. The one place that knows
 * the shape of `KeyPool.make` and `Policy.make`: adapt here when they move.
 */
const makeOurs = async (core: Core): Promise<Stack> => {
  const policy = await withStore(
    core,
    Effect.flatMap(core.KeyPool.make({ name: "bench", keys: benchKeys }), (keyPool) =>
      core.Policy.make({
        deployment: "bench",
        keyPool,
        // Per key (there is a key pool); a budget no run can exhaust, so the limiter is paid for, never waited on.
        rateLimiter: { requestsPerMinute: 1e12 },
        bulkhead: { maxConcurrent: 1000 },
        attemptTimeout: "10 seconds"
        // circuit breaker, retry and retry budget: on with their defaults
      }))
  )
  return { kind: "effect", wrap: (call) => () => policy.execute(call) }
}

/** One of our policies alone, as `effect => effect`. */
const ourPolicy = (wrap: (self: Effect.Effect<unknown, unknown>) => Effect.Effect<unknown, unknown>): Stack => ({
  kind: "effect",
  wrap: (call) => () => wrap(call())
})

const stacks: Record<StackName, { readonly label: string; readonly make: () => Promise<Stack> }> = {
  bare: { label: "the body alone (µs per call, not an overhead)", make: async () => ({ kind: "bare" }) },
  ours: {
    label: "resilient-ai: retry + budget, breaker, key pool (3), per-key limiter, bulkhead, attempt timeout",
    make: async () => makeOurs(await loadCore())
  },
  "ours-timeout": {
    label: "resilient-ai: Timeout.attempt(\"10 seconds\") alone",
    make: async () => {
      const timeout = (await loadCore()).Timeout.attempt("10 seconds")
      return ourPolicy(timeout)
    }
  },
  cockatiel: {
    label: "cockatiel: retry, breaker, bulkhead, timeout (no rate limiter, no key pool)",
    make: async () => {
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
      return { kind: "promise", wrap: (call) => () => policy.execute(call) }
    }
  },
  opossum: {
    label: "opossum: breaker with timeout and capacity (no retry, no rate limiter, no key pool)",
    make: async () => {
      const CircuitBreaker = (await import("opossum")).default
      const breakers: Array<{ shutdown: () => void }> = []
      return {
        kind: "promise",
        wrap: (call) => {
          const breaker = new CircuitBreaker(call, { timeout: 10_000, capacity: 1000 })
          breakers.push(breaker)
          return () => breaker.fire()
        },
        close: () => breakers.forEach((b) => b.shutdown())
      }
    }
  },
  "ours-breaker": {
    label: "resilient-ai: circuit breaker alone",
    make: async () => {
      const core = await loadCore()
      const breaker = await withStore(core, core.CircuitBreaker.make({ name: "bench" }))
      return ourPolicy((self) => breaker.execute(self))
    }
  },
  "ours-key-pool": {
    label: "resilient-ai: key pool (3 keys) alone",
    make: async () => {
      const core = await loadCore()
      const pool = await withStore(core, core.KeyPool.make({ name: "bench", keys: benchKeys }))
      return { kind: "effect", wrap: (call) => () => pool.withKey(call) }
    }
  },
  "ours-limiter": {
    label: "resilient-ai: rate limiter alone",
    make: async () => {
      const core = await loadCore()
      const limiter = await withStore(core, core.RateLimiter.make({ name: "bench", requestsPerMinute: 1e12 }))
      return ourPolicy((self) => limiter.execute(self))
    }
  },
  "ours-bulkhead": {
    label: "resilient-ai: bulkhead alone",
    make: async () => {
      const core = await loadCore()
      const bulkhead = await Effect.runPromise(core.Bulkhead.make({ name: "bench", maxConcurrent: 1000 }))
      return ourPolicy((self) => bulkhead.execute(self))
    }
  },
  "ours-retry": {
    label: "resilient-ai: retry with budget alone",
    make: async () => {
      const core = await loadCore()
      const retry = await withStore(
        core,
        Effect.flatMap(core.RetryBudget.make({ name: "bench" }), (budget) => core.Retry.make({ name: "bench", budget }))
      )
      return ourPolicy((self) => retry.execute(self))
    }
  },
  "effect-bracket": {
    label: "floor: uninterruptibleMask + restore + a handler of the exit, the least code that outlives its own fiber's interruption",
    make: async () =>
      ourPolicy((self) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.matchCauseEffect(restore(self), { onFailure: Effect.failCause, onSuccess: Effect.succeed })
        )
      )
  },
  "node-timer": {
    label: "floor: a 10 s setTimeout set before the call and cleared after it (no handler: not a timeout)",
    make: async () =>
      ourPolicy((self) =>
        Effect.suspend(() => {
          const timer = setTimeout(() => {}, 10_000)
          return Effect.tap(self, () => clearTimeout(timer))
        })
      )
  },
  "effect-timeoutFail": {
    label: "effect's Effect.timeoutFail, 10 s (a fiber for the call and one for the timer)",
    make: async () =>
      ourPolicy((self) => Effect.timeoutFail(self, { duration: "10 seconds", onTimeout: () => "timeout" }))
  }
}

/** An effect call driven the body's way. */
const effectDriven = (body: Body, call: EffectCall): Runner =>
  body.drive === "fiber" ? fiberRunner(call) : promiseRunner(() => Effect.runPromise(call()))

const runnersOf = (stack: Stack, body: Body): { readonly stack: Runner | undefined; readonly bare: Runner } => {
  switch (stack.kind) {
    case "bare":
      return { stack: undefined, bare: effectDriven(body, body.effect) }
    case "effect":
      return { stack: effectDriven(body, stack.wrap(body.effect)), bare: effectDriven(body, body.effect) }
    case "promise":
      return { stack: promiseRunner(stack.wrap(body.promise)), bare: promiseRunner(body.promise) }
  }
}

// ---------------------------------------------------------------------------
// child: one (stack, body) in its own process

const ChildResult = Schema.parseJson(Schema.Struct({ samples: Schema.Array(Sample) }))

const child = async (stackName: StackName, bodyName: BodyName) => {
  const body = await makeBody(bodyName)
  const stack = await stacks[stackName].make()
  const runners = runnersOf(stack, body)
  const samples: Array<Sample> = []
  for (const concurrency of CONCURRENCIES) {
    // Concurrency 100 runs second, in code concurrency 1 has warmed: a quarter of the warm-up is enough.
    const share = (concurrency === 1 ? 1 : 0.25) * (quick ? 0.5 : 1)
    const warm = { calls: Math.ceil((body.warmUpCalls * share) / concurrency) * concurrency, ns: WARM_UP_NS * share }
    samples.push(await measure(runners.stack, runners.bare, concurrency, warm))
  }
  if (stack.kind === "promise") stack.close?.()
  await body.close()
  process.stdout.write(Schema.encodeSync(ChildResult)({ samples }) + "\n")
}

const runChild = (stack: StackName, body: BodyName): Either.Either<ReadonlyArray<Sample>, string> => {
  const result = spawnSync(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      ...(quick ? ["--quick"] : []),
      ...(verbose ? ["--verbose"] : []),
      "--core",
      corePath,
      "--llm",
      llmPath,
      "--child",
      `${stack}:${body}`
    ],
    // A hung call (an upstream that never answers) must not hang the whole run.
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 180_000 }
  )
  const line = result.stdout.trim().split("\n").pop() ?? ""
  if (result.status !== 0) {
    return Either.left(result.signal !== null ? `killed by ${result.signal}` : `exit ${result.status}`)
  }
  return Either.mapLeft(Schema.decodeEither(ChildResult)(line), () => `unreadable output: ${line.slice(0, 200)}`).pipe(
    Either.map((r) => r.samples)
  )
}

// ---------------------------------------------------------------------------
// parent: the run, the table, the targets, the results file

const Row = Schema.Struct({
  stack: Schema.String,
  body: Schema.Literal(...bodyNames),
  concurrency: Schema.Number,
  /** Median overhead over bare, ns per call; for the bare stack, the bare call itself. */
  nsPerCall: Schema.Number,
  stackNs: Schema.Number,
  bareNs: Schema.Number,
  calls: Schema.Number,
  rounds: Schema.Number,
  measuredAt: Schema.String
})
type Row = typeof Row.Type
const RowsJson = Schema.parseJson(Schema.Array(Row), { space: 2 })

const us = (ns: number | undefined, width = 9): string =>
  (ns === undefined ? "-" : (ns / 1000).toFixed(2)).padStart(width)

const printTable = (rows: ReadonlyArray<Row>) => {
  const at = (stack: string, body: BodyName, c: number) =>
    rows.find((r) => r.stack === stack && r.body === body && r.concurrency === c)?.nsPerCall
  process.stdout.write(
    `\noverhead over bare, µs per call (median of ${ROUNDS} rounds; the bare row is the body itself)\n` +
      `${"stack".padEnd(stackWidth)}${"body".padEnd(6)}${"conc 1".padStart(9)}${"conc 100".padStart(10)}\n`
  )
  for (const stack of stackNames) {
    for (const body of bodyNames) {
      if (!rows.some((r) => r.stack === stack && r.body === body)) continue
      process.stdout.write(`${stack.padEnd(stackWidth)}${body.padEnd(6)}${us(at(stack, body, 1))}${us(at(stack, body, 100), 10)}\n`)
    }
  }
  // The peers' bare call differs from ours on exit and io (a promise, not an effect): show it.
  const peerBares = bodyNames.flatMap((body) => {
    const peer = rows.filter((r) => (r.stack === "cockatiel" || r.stack === "opossum") && r.body === body)
    if (peer.length === 0 || body === "http") return []
    const bare = (c: number) => {
      const xs = peer.filter((r) => r.concurrency === c).map((r) => r.bareNs)
      return xs.length === 0 ? undefined : median(xs)
    }
    return [`${body} ${us(bare(1), 0)} / ${us(bare(100), 0)}`]
  })
  if (peerBares.length > 0) process.stdout.write(`(the peers' own bare call, promise form, conc 1 / 100: ${peerBares.join("; ")} µs)\n`)
  process.stdout.write("\n")
  for (const stack of stackNames) {
    if (rows.some((r) => r.stack === stack)) process.stdout.write(`${stack.padEnd(stackWidth)}${stacks[stack].label}\n`)
  }
}

/** The issue's targets, from this run's rows only (a comparison across runs would compare two machines' moods). */
const printTargets = (rows: ReadonlyArray<Row>) => {
  const at = (stack: StackName, body: BodyName, c: number) =>
    rows.find((r) => r.stack === stack && r.body === body && r.concurrency === c)?.nsPerCall
  const check = (what: string, value: string, ok: boolean | undefined) =>
    process.stdout.write(`  ${(ok === undefined ? "not measured" : ok ? "met" : "missed").padEnd(13)}${what}: ${value}\n`)
  process.stdout.write("\ntargets (this run)\n")
  for (const c of CONCURRENCIES) {
    const ours = at("ours", "io", c)
    check(`full stack ≤ 3 µs over bare on io, conc ${c}`, `${us(ours, 0)} µs`, ours === undefined ? undefined : ours <= 3000)
  }
  for (const c of CONCURRENCIES) {
    const timeout = at("ours-timeout", "io", c)
    check(`attempt timeout alone ≤ 0.5 µs on io, conc ${c}`, `${us(timeout, 0)} µs`, timeout === undefined ? undefined : timeout <= 500)
  }
  for (const c of CONCURRENCIES) {
    const bracket = at("effect-bracket", "io", c)
    const timer = at("node-timer", "io", c)
    if (bracket !== undefined && timer !== undefined) {
      process.stdout.write(
        `  ${"floor".padEnd(13)}any timeout on io, conc ${c}: bracket ${us(bracket, 0)} + timer ${us(timer, 0)} = ${
          us(bracket + timer, 0)
        } µs\n`
      )
    }
  }
  for (const c of CONCURRENCIES) {
    const ours = at("ours", "io", c)
    const cockatiel = at("cockatiel", "io", c)
    const measured = ours !== undefined && cockatiel !== undefined
    const ratio = measured ? (ours > 0 ? `${(cockatiel / ours).toFixed(1)}×` : "ours ≤ 0") : "-"
    check(
      `ours ≥ 5× below cockatiel on io, conc ${c}`,
      `${us(ours, 0)} vs ${us(cockatiel, 0)} µs (${ratio})`,
      measured ? ours * 5 <= cockatiel : undefined
    )
  }
  for (const c of CONCURRENCIES) {
    const ours = at("ours", "exit", c)
    check(`ours < 1 µs on exit, conc ${c}`, `${us(ours, 0)} µs`, ours === undefined ? undefined : ours < 1000)
  }
  const beside = (body: BodyName) =>
    `opossum ${us(at("opossum", body, 1), 0)} / ${us(at("opossum", body, 100), 0)} µs, ours ${us(at("ours", body, 1), 0)} / ${
      us(at("ours", body, 100), 0)
    } µs`
  process.stdout.write(`  ${"beside".padEnd(13)}opossum on io, conc 1 / 100: ${beside("io")}\n`)
  process.stdout.write(`  ${"beside".padEnd(13)}opossum on http, conc 1 / 100: ${beside("http")}\n`)
}

/** This run's rows replace the same (stack, body, concurrency) in the file; the others stay. */
const writeResults = (out: string, rows: ReadonlyArray<Row>) => {
  const key = (r: Row) => `${r.stack} ${r.body} ${r.concurrency}`
  const fresh = new Set(rows.map(key))
  const previous = existsSync(out)
    ? Either.getOrElse(Schema.decodeEither(RowsJson)(readFileSync(out, "utf8")), () => {
      process.stdout.write(`(${out} was in another format: replaced)\n`)
      return []
    })
    : []
  const kept = previous.filter((r) => !fresh.has(key(r)))
  const order = (r: Row) =>
    (stackNames as ReadonlyArray<string>).indexOf(r.stack) * 1000 + bodyNames.indexOf(r.body) * 10 + (r.concurrency === 1 ? 0 : 1)
  const merged = [...kept, ...rows].sort((a, b) => order(a) - order(b))
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, Schema.encodeSync(RowsJson)(merged) + "\n")
  process.stdout.write(`\nwrote ${out}${kept.length > 0 ? ` (${rows.length} rows of this run, ${kept.length} kept from earlier runs)` : ""}\n`)
}

const main = () => {
  if (args.includes("--help")) {
    process.stdout.write(usage)
    return
  }
  const bodies = listFlag("--body", bodyNames) ?? bodyNames
  const chosen = listFlag("--stack", stackNames) ?? mainStacks
  const needs = [corePath, ...(bodies.includes("http") ? [llmPath] : [])]
  for (const path of needs) {
    if (!existsSync(path)) {
      process.stderr.write(`${path} does not exist: build it first (npx tsc -b packages/core packages/llm), or use npm run bench:overhead\n`)
      process.exit(2)
    }
  }
  process.stdout.write(
    `core: ${corePath}\n${bodies.includes("http") ? `llm:  ${llmPath}\n` : ""}` +
      `node ${process.version}; each (stack, body) in its own process; ${WARMUP} warm-up + ${ROUNDS} measured rounds, median; ` +
      `concurrency ${CONCURRENCIES.join(" and ")}\n\n`
  )
  const jobs = bodies.flatMap((body) => chosen.map((stack) => ({ stack, body })))
  const rows: Array<Row> = []
  const failed: Array<string> = []
  const start = performance.now()
  const width = String(jobs.length).length
  for (const [i, { body, stack }] of jobs.entries()) {
    process.stdout.write(`[${String(i + 1).padStart(width)}/${jobs.length}] ${body.padEnd(5)} ${stack.padEnd(stackWidth)} ... `)
    const t0 = performance.now()
    const result = runChild(stack, body)
    const seconds = ((performance.now() - t0) / 1000).toFixed(1)
    Either.match(result, {
      onLeft: (why) => {
        failed.push(`${stack} × ${body}: ${why}`)
        process.stdout.write(`failed (${why}), ${seconds} s\n`)
      },
      onRight: (samples) => {
        const measuredAt = new Date().toISOString()
        for (const s of samples) {
          // Whole nanoseconds: the noise between runs is hundreds of them.
          const { bareNs, nsPerCall, stackNs } = s
          rows.push({
            stack,
            body,
            ...s,
            nsPerCall: Math.round(nsPerCall),
            stackNs: Math.round(stackNs),
            bareNs: Math.round(bareNs),
            rounds: ROUNDS,
            measuredAt
          })
        }
        process.stdout.write(`${samples.map((s) => `${us(s.nsPerCall, 0)} µs @${s.concurrency}`).join(", ")}  (${seconds} s)\n`)
      }
    })
  }
  process.stdout.write(`\n${jobs.length} measurements in ${((performance.now() - start) / 1000).toFixed(0)} s\n`)
  if (rows.length > 0) {
    printTable(rows)
    printTargets(rows)
    writeResults(resolve(flag("--out") ?? join(here, "results/overhead.json")), rows)
  }
  if (failed.length > 0) {
    // A missed target is a finding; a measurement that could not be made is an error.
    process.stderr.write(`\nfailed: ${failed.join("; ")}\n`)
    process.exitCode = 1
  }
}

const childJob = flag("--child")
if (childJob === undefined) {
  main()
} else {
  const [stack, body] = childJob.split(":")
  const isStack = (s: string | undefined): s is StackName => (stackNames as ReadonlyArray<string | undefined>).includes(s)
  const isBody = (b: string | undefined): b is BodyName => (bodyNames as ReadonlyArray<string | undefined>).includes(b)
  if (!isStack(stack) || !isBody(body)) throw new Error(`bad --child ${childJob}`)
  await child(stack, body)
}
