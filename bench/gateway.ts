/**
 * What the gateway adds to a chat call, against an instant upstream on
 * loopback.
 *
 *   npm run bench:gateway                # ~1 min on 2 cores
 *   npm run bench:gateway -- --quick     # shorter rounds (a smoke run)
 *   npm run bench:gateway -- --only gateway/json/1,proxy/stream/10   # some rows
 *   GW_PROF=1 npm run bench:gateway -- --only gateway/json/10       # CPU profile of the gateway process in /tmp/gwprof
 *
 * Targets, each a server in its own Node process (so its CPU time is its
 * own), all in front of the same upstream process:
 * - direct: the upstream itself, a minimal OpenAI-compatible responder
 *   (a fixed `chat.completion`, or a 3-chunk SSE stream with `[DONE]`,
 *   answered at once);
 * - proxy: a plain Node reverse proxy (`http.request` piped both ways over a
 *   keep-alive agent): the floor, what any proxy costs;
 * - platform-server: `@effect/platform`'s Node HTTP server, the server the
 *   gateway is built on, answering what the upstream would by itself (no
 *   upstream call): what the server alone costs;
 * - platform-proxy: the plain reverse proxy on that server and the
 *   platform's undici client (the body forwarded, the answer's bytes
 *   streamed back, nothing parsed): a proxy written plainly on this stack;
 * - gateway: `@resilient-ai/gateway` with the full policy stack on the one
 *   deployment (key pool of 3 keys, per-key rate limiter with a budget no run
 *   exhausts, bulkhead, circuit breaker, retry with its budget, 10 s attempt
 *   timeout).
 *
 * Method: each target process is first warmed with `stream` and `json`
 * requests at c = 10 for 4 s each (1.5 s with `--quick`), unmeasured: V8
 * compiles a server's hot paths over its first few thousand requests (the
 * gateway's CPU per request falls threefold in its first 10 s), and a gateway
 * serves for hours. Then a closed loop of `c` clients (1, 10, 100) over a keep-alive agent
 * with `c` sockets, for a warm-up and then a measured window; latency is the
 * time from sending the request to the end of the answer (non-streaming) or
 * to its first body byte (streaming: time to first chunk), from
 * `process.hrtime`. Requests per second = answers in the window / window.
 * CPU per request = the target process's `process.cpuUsage()` (user +
 * system) over the window / answers. The load generator runs in this
 * process, on the same 2 cores: at c = 100 it competes with the target.
 *
 * Why not autocannon: it reports latency to the millisecond and cannot time
 * a stream's first chunk; the targets here are 0.25 ms and 1 ms.
 *
 * Writes `bench/results/gateway.json` (ignored by git: figures are per machine).
 */
import { fork, type ChildProcess } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import * as Http from "node:http"
import { fileURLToPath } from "node:url"
import { listen, platformProxy, platformServer, startGateway, upstream } from "./servers.js"

type Role = "upstream" | "proxy" | "platform-server" | "platform-proxy" | "gateway"
type Message = { readonly port: number } | { readonly cpuMicros: number }

const proxy = (upstreamPort: number): Promise<number> => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: 256 })
  return listen(Http.createServer((request, response) => {
    const forward = Http.request(
      { host: "127.0.0.1", port: upstreamPort, path: request.url, method: request.method, headers: request.headers, agent },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(response)
      }
    )
    forward.on("error", () => response.destroy())
    request.pipe(forward)
  }))
}

const gateway = async (upstreamPort: number): Promise<number> => {
  const started = await startGateway(upstreamPort)
  process.once("disconnect", () => void started.close())
  return started.port
}

/** A child process: serves its role, reports its port, then its CPU time when asked. */
const child = async (role: Role, upstreamPort: number) => {
  const port = role === "upstream"
    ? await upstream()
    : role === "proxy"
    ? await proxy(upstreamPort)
    : role === "platform-server"
    ? await platformServer()
    : role === "platform-proxy"
    ? await platformProxy(upstreamPort)
    : await gateway(upstreamPort)
  process.send?.({ port } satisfies Message)
  process.on("message", () => {
    const cpu = process.cpuUsage()
    process.send?.({ cpuMicros: cpu.user + cpu.system } satisfies Message)
  })
  process.once("disconnect", () => setTimeout(() => process.exit(0), 200))
}

interface Target {
  readonly process: ChildProcess
  readonly port: number
}

/**
 * A young generation of 32 MB (Node's default is 16): the gateway allocates
 * fast, and with the default its CPU per request was 9-12 % higher for
 * whole answers and 14-17 % for streams (interleaved runs, c = 10:
 * `npx tsx bench/gatewayInterleaved.ts --mode stream --variant "default="
 * --variant "32 MB=--max-semi-space-size=32"`).
 */
const gatewayHeapFlag = "--max-semi-space-size=32"

const start = (role: Role, upstreamPort = 0): Promise<Target> =>
  new Promise((resolve, reject) => {
    const proc = fork(fileURLToPath(import.meta.url), ["--role", role, "--upstream-port", String(upstreamPort)], {
      // tsx for this file only: the packages resolve to their built JavaScript (`dist`), which is what
      // `npm run gateway` runs. Loaded from source through tsx, every named closure the gateway makes
      // per request also goes through esbuild's `__name` (an `Object.defineProperty` each).
      execArgv: [
        "--import",
        "tsx",
        // As `npm run gateway` runs it; the platform's servers too, so that the floor is measured as the gateway is.
        ...(role === "gateway" || role.startsWith("platform") ? [gatewayHeapFlag] : []),
        ...(role === "gateway" && process.env["GW_PROF"] ? ["--cpu-prof", "--cpu-prof-dir=/tmp/gwprof"] : [])
      ]
    })
    proc.once("message", (m: Message) => ("port" in m ? resolve({ process: proc, port: m.port }) : reject(new Error("no port"))))
    proc.once("error", reject)
  })

const cpuOf = (target: Target): Promise<number> =>
  new Promise((resolve) => {
    target.process.once("message", (m: Message) => resolve("cpuMicros" in m ? m.cpuMicros : 0))
    target.process.send("cpu")
  })

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN

/** One request; resolves with its latency in ms (to the end, or to the first byte when `firstByte`). */
const request = (port: number, agent: Http.Agent, body: string, firstByte: boolean): Promise<number> =>
  new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    let first: bigint | undefined
    const req = Http.request(
      { host: "127.0.0.1", port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (response) => {
        response.on("data", () => (first ??= process.hrtime.bigint()))
        response.on("end", () => {
          const end = firstByte ? first ?? process.hrtime.bigint() : process.hrtime.bigint()
          if (response.statusCode !== 200) reject(new Error(`status ${response.statusCode}`))
          else resolve(Number(end - started) / 1e6)
        })
      }
    )
    req.on("error", reject)
    req.end(body)
  })

interface Row {
  readonly target: string
  readonly mode: "json" | "stream"
  readonly concurrency: number
  readonly requestsPerSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly cpuMsPerRequest: number
}

const measure = async (target: Target, name: string, mode: Row["mode"], concurrency: number, warmupMs: number, windowMs: number): Promise<Row> => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })
  const body = JSON.stringify({ model: "up", messages: [{ role: "user", content: "Hi" }], ...(mode === "stream" ? { stream: true } : {}) })
  const latencies: Array<number> = []
  let recording = false
  let stop = false
  const loop = async () => {
    while (!stop) {
      // Only requests sent inside the window count: one sent during the warm-up (the first burst on fresh
      // sockets) and answered inside it would put the warm-up's latency in the window's p99.
      const inWindow = recording
      const ms = await request(target.port, agent, body, mode === "stream")
      if (inWindow && recording) latencies.push(ms)
    }
  }
  const loops = Array.from({ length: concurrency }, loop)
  await new Promise((r) => setTimeout(r, warmupMs))
  const cpuBefore = await cpuOf(target)
  recording = true
  const started = process.hrtime.bigint()
  await new Promise((r) => setTimeout(r, windowMs))
  recording = false
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6
  const cpuAfter = await cpuOf(target)
  stop = true
  await Promise.all(loops)
  agent.destroy()
  const sorted = [...latencies].sort((a, b) => a - b)
  const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits
  return {
    target: name,
    mode,
    concurrency,
    requestsPerSecond: Math.round(latencies.length / (elapsedMs / 1000)),
    p50Ms: round(percentile(sorted, 0.5), 3),
    p99Ms: round(percentile(sorted, 0.99), 3),
    cpuMsPerRequest: round((cpuAfter - cpuBefore) / 1000 / Math.max(1, latencies.length), 4)
  }
}

const main = async () => {
  const quick = process.argv.includes("--quick")
  const onlyAt = process.argv.indexOf("--only")
  const only = onlyAt < 0 ? undefined : process.argv[onlyAt + 1]
  const [warmupMs, windowMs] = quick ? [300, 700] : [1_000, 2_500]
  const up = await start("upstream")
  const targets = {
    direct: up,
    proxy: await start("proxy", up.port),
    "platform-server": await start("platform-server"),
    "platform-proxy": await start("platform-proxy", up.port),
    gateway: await start("gateway", up.port)
  }
  // V8 compiles a server's hot paths over its first few thousand requests; a gateway serves for hours.
  const jitWarmMs = quick ? 1_500 : 4_000
  for (const [name, target] of Object.entries(targets)) {
    const wanted = only === undefined || only.split(",").some((row) => row.startsWith(`${name}/`))
    if (!wanted) continue
    for (const mode of ["json", "stream"] as const) await measure(target, name, mode, 10, jitWarmMs, 0)
  }
  const rows: Array<Row> = []
  for (const mode of ["json", "stream"] as const) {
    for (const concurrency of [1, 10, 100]) {
      for (const [name, target] of Object.entries(targets)) {
        if (only !== undefined && !only.split(",").includes(`${name}/${mode}/${concurrency}`)) continue
        const row = await measure(target, name, mode, concurrency, warmupMs, windowMs)
        rows.push(row)
        console.log(JSON.stringify(row))
      }
    }
  }
  const added = rows.filter((r) => r.target !== "direct").map((r) => {
    const direct = rows.find((d) => d.target === "direct" && d.mode === r.mode && d.concurrency === r.concurrency)
    return { target: r.target, mode: r.mode, concurrency: r.concurrency, addedP50Ms: direct === undefined ? null : Math.round((r.p50Ms - direct.p50Ms) * 1000) / 1000 }
  })
  mkdirSync(fileURLToPath(new URL("results", import.meta.url)), { recursive: true })
  const out = fileURLToPath(new URL("results/gateway.json", import.meta.url))
  writeFileSync(out, JSON.stringify({ quick, warmupMs, windowMs, rows, added }, null, 2))
  console.log(`\n| target | mode | c | req/s | p50 ms | p99 ms | added p50 ms | CPU ms/req |\n| --- | --- | --- | --- | --- | --- | --- | --- |`)
  for (const r of rows) {
    const a = added.find((x) => x.target === r.target && x.mode === r.mode && x.concurrency === r.concurrency)
    console.log(`| ${r.target} | ${r.mode} | ${r.concurrency} | ${r.requestsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${a?.addedP50Ms ?? "-"} | ${r.cpuMsPerRequest} |`)
  }
  console.log(`\nwrote ${out}`)
  for (const t of Object.values(targets)) t.process.disconnect()
}

const roleAt = process.argv.indexOf("--role")
if (roleAt >= 0) {
  const role = process.argv[roleAt + 1] as Role
  const upstreamPort = Number(process.argv[process.argv.indexOf("--upstream-port") + 1])
  void child(role, upstreamPort)
} else {
  void main()
}
