/**
 * The adaptive limit (rule 29) over a fast, healthy provider: 10 callers
 * through `HttpTransport`'s client to an instant upstream in another process
 * on loopback, each call under `AdaptiveLimit.execute` with the default
 * options, once with the latency floor off (`minJudgedLatency: 0`, the rule
 * before it) and once with its default (100 ms).
 *
 *   npx tsx bench/fastProviderLimit.ts            # ~25 s (SECONDS=10 a run)
 *
 * Measured on 2 shared, busy cores (median 0.65 ms a call): with the floor
 * off, 4 hang verdicts took the limit from 50 to 4 and refused 12,676
 * calls in 10 s; with it, no decrease and nothing refused. The longest
 * span with no call ending was 32-38 ms, the event loop's longest delay
 * 23-44 ms (185 ms once, in a run's first second).
 *
 * Figures a run: the calls' median and p99.9 latency, the longest span in
 * which no call ended while calls were in flight (what a hang verdict
 * sees), the event loop's longest delay (`monitorEventLoopDelay`), the
 * limit's decreases by reason, its lowest value, and the calls it refused.
 */
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { fork } from "node:child_process"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { EnvHttpProxyAgent } from "undici"
import * as AdaptiveLimit from "../packages/core/src/AdaptiveLimit.js"
import * as StateStore from "../packages/core/src/StateStore.js"
import * as UndiciHttpClient from "../packages/llm/src/internal/undiciHttpClient.js"

const upstream = fork(fileURLToPath(new URL("./transport.ts", import.meta.url)), ["--upstream"], { execArgv: ["--import", "tsx"] })
const port = await new Promise<number>((resolve) => upstream.once("message", (m: { port: number }) => resolve(m.port)))
const agent = new EnvHttpProxyAgent({ httpProxy: "", httpsProxy: "", noProxy: "*" })
const client = UndiciHttpClient.make(agent)
const request = HttpClientRequest.post(`http://127.0.0.1:${port}/v1/chat/completions`).pipe(
  HttpClientRequest.bodyText(JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Hi" }] }), "application/json"),
  HttpClientRequest.bearerToken("sk-bench")
)
const seconds = Number(process.env["SECONDS"] ?? 10)
const callers = 10

const quantile = (sorted: ReadonlyArray<number>, q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN

const run = async (minJudgedLatency: number) => {
  const changes: Array<AdaptiveLimit.Change> = []
  const limit = await Effect.runPromise(
    AdaptiveLimit.make({ name: "up", minJudgedLatency, onChange: (c) => Effect.sync(() => changes.push(c)) }).pipe(
      Effect.provide(StateStore.layerMemory)
    )
  )
  const call = limit.execute(Effect.flatMap(client.execute(request), (r) => r.json))
  const latencies: Array<number> = []
  let refused = 0, inFlight = 0, lastEnd = performance.now(), longestQuiet = 0
  const loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  const until = performance.now() + seconds * 1000
  await Promise.all(Array.from({ length: callers }, async () => {
    while (performance.now() < until) {
      const start = performance.now()
      inFlight++
      const exit = await Effect.runPromiseExit(call)
      const end = performance.now()
      inFlight--
      // Spans with calls in flight and none ending: what the hang verdict looks at.
      if (inFlight > 0) longestQuiet = Math.max(longestQuiet, end - lastEnd)
      lastEnd = end
      if (Exit.isSuccess(exit)) latencies.push(end - start)
      else refused++
      // The next request arrives from outside (a gateway's client, a queue, a timer), not in the same tick as the
      // answer: after a pause of the process, timers run before the answers that came in meanwhile are read.
      await new Promise<void>((resolve) => setTimeout(resolve, 0))
    }
  }))
  loop.disable()
  latencies.sort((a, b) => a - b)
  const decreases = changes.filter((c) => c.to < c.from)
  const byReason = Object.fromEntries(["hang", "slow", "drop"].map((r) => [r, decreases.filter((c) => c.reason === r).length]))
  console.log(`minJudgedLatency ${minJudgedLatency} ms, ${callers} callers, ${seconds} s:`)
  console.log(`  calls ${latencies.length}, median ${quantile(latencies, 0.5).toFixed(2)} ms, p99.9 ${quantile(latencies, 0.999).toFixed(2)} ms, max ${(latencies.at(-1) ?? Number.NaN).toFixed(1)} ms`)
  console.log(`  longest span with no call ending ${longestQuiet.toFixed(1)} ms; event loop delay max ${(loop.max / 1e6).toFixed(1)} ms, p99.9 ${(loop.percentile(99.9) / 1e6).toFixed(1)} ms`)
  const status = await Effect.runPromise(limit.status)
  console.log(`  limit at the end ${status.limit}, usual latency learned ${(status.usualMillis ?? Number.NaN).toFixed(2)} ms`)
  console.log(`  decreases ${JSON.stringify(byReason)}, lowest limit ${Math.min(50, ...changes.map((c) => c.to))}, refused ${refused}`)
}

await run(0)
await run(100)
upstream.disconnect()
await agent.close()
