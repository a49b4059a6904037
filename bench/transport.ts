/**
 * CPU time of one HTTP call through `HttpTransport`'s client (undici
 * `dispatch`) against `@effect/platform-node`'s undici client, both over the
 * same dispatcher, to an instant upstream in another process on loopback.
 *
 *   npx tsx bench/transport.ts            # ~30 s on 2 cores
 *
 * Method: `c` = 10 concurrent callers (`C=1` for sequential), 6 000 calls a
 * round, each `execute` + `json` under `Effect.runPromise`, traced (effect's
 * default) and untraced; 5 measured rounds after a warm-up round, the
 * clients alternated round by round so a busy machine weighs on both alike.
 * Figure: this process's `process.cpuUsage()` over a round / calls (median).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { fork } from "node:child_process"
import * as Http from "node:http"
import { fileURLToPath } from "node:url"
import { EnvHttpProxyAgent } from "undici"
import * as UndiciHttpClient from "../packages/llm/src/internal/undiciHttpClient.js"
import { completion } from "./completion.js"


if (process.argv[2] === "--upstream") {
  const server = Http.createServer((request, response) => {
    request.resume()
    request.on("end", () => {
      response.writeHead(200, { "content-type": "application/json" })
      response.end(completion)
    })
  })
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    process.send?.({ port: typeof address === "object" && address !== null ? address.port : 0 })
  })
  process.on("disconnect", () => process.exit(0))
} else {
  const upstream = fork(fileURLToPath(import.meta.url), ["--upstream"], { execArgv: ["--import", "tsx"] })
  const port = await new Promise<number>((resolve) => upstream.once("message", (m: { port: number }) => resolve(m.port)))
  const agent = new EnvHttpProxyAgent({ httpProxy: "", httpsProxy: "", noProxy: "*" })
  const clients: ReadonlyArray<readonly [string, HttpClient.HttpClient]> = [
    ["@effect/platform-node undici", Effect.runSync(Effect.provide(
      HttpClient.HttpClient,
      NodeHttpClient.layerUndiciWithoutDispatcher.pipe(Layer.provide(Layer.succeed(NodeHttpClient.Dispatcher, agent)))
    ))],
    ["HttpTransport (dispatch)", UndiciHttpClient.make(agent)]
  ]
  const request = HttpClientRequest.post(`http://127.0.0.1:${port}/v1/chat/completions`).pipe(
    HttpClientRequest.bodyText(JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Hi" }] }), "application/json"),
    HttpClientRequest.bearerToken("sk-bench")
  )
  const concurrency = Number(process.env["C"] ?? 10)
  const calls = 6_000
  const round = async (client: HttpClient.HttpClient, traced: boolean): Promise<number> => {
    const one = () => Effect.runPromise(Effect.withTracerEnabled(Effect.flatMap(client.execute(request), (r) => r.json), traced))
    const before = process.cpuUsage()
    let left = calls
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await one()
    }))
    const used = process.cpuUsage(before)
    return (used.user + used.system) / calls
  }
  const figures = new Map<string, Array<number>>()
  for (let r = 0; r < 6; r++) {
    for (const [name, client] of clients) {
      for (const traced of [true, false]) {
        const micros = await round(client, traced)
        const row = `${name}, ${traced ? "traced" : "untraced"}`
        if (r > 0) figures.set(row, [...(figures.get(row) ?? []), micros])
      }
    }
  }
  console.log(`c = ${concurrency}, µs of CPU per call (median of 5 rounds):`)
  for (const [name, values] of figures) {
    const sorted = [...values].sort((a, b) => a - b)
    console.log(`  ${name.padEnd(42)} ${(sorted[2] ?? Number.NaN).toFixed(1)}`)
  }
  upstream.disconnect()
  await agent.close()
}
