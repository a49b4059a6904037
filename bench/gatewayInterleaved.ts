/**
 * Two or more gateway processes compared on the same machine load: each is
 * loaded in turn for short windows, round after round, and the median of its
 * windows is reported. On a 2-core VM the CPU time of one request varies by
 * up to 2x with what the other core does, so runs one after the other cannot
 * tell apart versions that differ by 10 %; interleaved windows can.
 *
 *   npx tsx bench/gatewayInterleaved.ts --mode stream \
 *     --variant "default=" --variant "young 32 MB=--max-semi-space-size=32"
 *
 * A variant is `name=node flags` (the gateway of `bench/gateway.ts`, with
 * the full policy stack, started with those flags instead of the ones
 * `npm run gateway` uses). Among the flags, `--checkout=DIR` runs the
 * gateway of another checkout of the repo (built, with its own
 * `node_modules`), to compare two versions of the code:
 *
 *   npx tsx bench/gatewayInterleaved.ts --variant "before=--checkout=/tmp/before" --variant 'after=' `--mode json|stream` (default json), `--rounds N`
 * (default 6, the first 2 warm up and are not counted), `--concurrency N`
 * (default 10), a 1 s ramp and a 2.5 s window per turn. Only 200 answers
 * count. Besides CPU and throughput it reports the p50 time to the first
 * bytes of the body (a stream's first chunk) of the requests sent inside the
 * windows.
 */
import { fork, type ChildProcess } from "node:child_process"
import * as Http from "node:http"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

type Message = { readonly port: number } | { readonly cpuMicros: number }
interface Target {
  readonly name: string
  readonly process: ChildProcess
  readonly port: number
  readonly windows: Array<{ readonly cpuMs: number; readonly perSecond: number; readonly firstBytesMs: number }>
}

const bench = fileURLToPath(new URL("gateway.ts", import.meta.url))
const argsOf = (flag: string): Array<string> => process.argv.flatMap((a, i) => (a === flag ? [process.argv[i + 1] ?? ""] : []))
const mode = argsOf("--mode")[0] ?? "json"
const rounds = Number(argsOf("--rounds")[0] ?? 6)
const concurrency = Number(argsOf("--concurrency")[0] ?? 10)

const start = (
  role: string,
  upstreamPort: number,
  flags: ReadonlyArray<string>,
  script = bench
): Promise<{ process: ChildProcess; port: number }> =>
  new Promise((resolve) => {
    const child = fork(script, ["--role", role, "--upstream-port", String(upstreamPort)], { execArgv: ["--import", "tsx", ...flags] })
    child.once("message", (m: Message) => resolve({ process: child, port: "port" in m ? m.port : 0 }))
  })

const cpuMicros = (child: ChildProcess): Promise<number> =>
  new Promise((resolve) => {
    child.once("message", (m: Message) => resolve("cpuMicros" in m ? m.cpuMicros : 0))
    child.send("cpu")
  })

const body = JSON.stringify({ model: "up", messages: [{ role: "user", content: "Hi" }], ...(mode === "stream" ? { stream: true } : {}) })

const turn = async (target: Target): Promise<{ cpuMs: number; perSecond: number; firstBytesMs: number }> => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })
  let answered = 0
  let stop = false
  let measuring = false
  const firstBytes: Array<number> = []
  const one = () =>
    new Promise<void>((resolve) => {
      const sentAt = performance.now()
      const counted = measuring
      const request = Http.request(
        { host: "127.0.0.1", port: target.port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json" } },
        (response) => {
          response.once("data", () => {
            if (counted && measuring) firstBytes.push(performance.now() - sentAt)
          })
          response.resume()
          response.on("end", () => {
            if (response.statusCode === 200) answered++
            resolve()
          })
        }
      )
      request.on("error", () => resolve())
      request.end(body)
    })
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stop) await one()
  })
  await new Promise((r) => setTimeout(r, 1_000))
  const [cpuBefore, before, startedAt] = [await cpuMicros(target.process), answered, Date.now()]
  measuring = true
  await new Promise((r) => setTimeout(r, 2_500))
  measuring = false
  const [cpuAfter, after, endedAt] = [await cpuMicros(target.process), answered, Date.now()]
  stop = true
  await Promise.all(loops)
  agent.destroy()
  return {
    cpuMs: (cpuAfter - cpuBefore) / 1000 / Math.max(1, after - before),
    perSecond: (after - before) / ((endedAt - startedAt) / 1000),
    firstBytesMs: median(firstBytes)
  }
}

const median = (values: ReadonlyArray<number>): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN

const upstream = await start("upstream", 0, [])
const targets: Array<Target> = []
for (const variant of argsOf("--variant")) {
  const at = variant.indexOf("=")
  const words = variant.slice(at + 1).split(" ").filter((f) => f !== "")
  const checkout = words.find((w) => w.startsWith("--checkout="))?.slice("--checkout=".length)
  const flags = words.filter((w) => !w.startsWith("--checkout="))
  const started = await start("gateway", upstream.port, flags, checkout === undefined ? bench : join(checkout, "bench", "gateway.ts"))
  targets.push({ name: variant.slice(0, at), ...started, windows: [] })
}
for (let round = 0; round < rounds; round++) {
  for (const target of targets) {
    const window = await turn(target)
    if (round >= 2) target.windows.push(window)
  }
}
console.log(`${mode}, c = ${concurrency}, median of ${Math.max(0, rounds - 2)} windows:`)
for (const t of targets) {
  console.log(
    `  ${t.name.padEnd(24)} ${median(t.windows.map((w) => w.cpuMs)).toFixed(3)} ms CPU/request, ${
      median(t.windows.map((w) => w.perSecond)).toFixed(0)
    } requests/s, first bytes p50 ${median(t.windows.map((w) => w.firstBytesMs)).toFixed(3)} ms`
  )
}
for (const child of [upstream.process, ...targets.map((t) => t.process)]) child.disconnect()
