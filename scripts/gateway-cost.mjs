// What one gateway request costs, in figures that do not drift with the machine's speed: Effect ops run,
// fibers and stream stages (channel executors) per request, whole answers and streams (`npx tsc -b` first).
//   node scripts/gateway-cost.mjs [requests=1000]
// The gateway (full policy stack, as `npm run bench:gateway` runs it), an instant upstream and the client
// share this process; requests go one at a time over loopback. Ops are counted by wrapping the fiber
// runtime's op handlers and executors by wrapping their `run` (effect 3.x internals, so a measuring tool only).
import * as Http from "node:http"

const requests = Number(process.argv[2] ?? 1000)
const internal = (path) => new URL(`../node_modules/effect/dist/esm/internal/${path}`, import.meta.url).href
const { FiberRuntime } = await import(internal("fiberRuntime.js"))
const { ChannelExecutor } = await import(internal("channel/channelExecutor.js"))

let ops = 0
const fibers = new WeakSet()
const executors = new WeakSet()
let fiberCount = 0
let executorCount = 0
const opCodes = ["Sync", "Success", "Failure", "WithRuntime", "UpdateRuntimeFlags", "OnSuccess", "OnFailure", "OnSuccessAndFailure", "Async", "Yield", "Iterator", "Commit", "Tag", "While"]
for (const op of opCodes) {
  const handler = FiberRuntime.prototype[op]
  if (typeof handler !== "function") continue
  FiberRuntime.prototype[op] = function(cur) {
    ops++
    if (!fibers.has(this)) (fibers.add(this), fiberCount++)
    return handler.call(this, cur)
  }
}
const run = ChannelExecutor.prototype.run
ChannelExecutor.prototype.run = function() {
  if (!executors.has(this)) (executors.add(this), executorCount++)
  return run.call(this)
}

const event = (delta, finish) =>
  `data: ${JSON.stringify({ id: "chatcmpl-cost", object: "chat.completion.chunk", created: 1, model: "cost", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
const streamBody = event({ role: "assistant", content: "Hel" }, null) + event({ content: "lo!" }, null) + event({}, "stop") + "data: [DONE]\n\n"
const completion = JSON.stringify({
  id: "chatcmpl-cost",
  object: "chat.completion",
  created: 1,
  model: "cost",
  choices: [{ index: 0, message: { role: "assistant", content: "Hello!" }, finish_reason: "stop", logprobs: null }],
  usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
})
const upstream = Http.createServer((request, response) => {
  let body = ""
  request.on("data", (c) => (body += c))
  request.on("end", () => {
    const stream = body.includes("\"stream\":true")
    response.writeHead(200, { "content-type": stream ? "text/event-stream" : "application/json" })
    response.end(stream ? streamBody : completion)
  })
})
await new Promise((resolve) => upstream.listen(0, "127.0.0.1", resolve))

const { Gateway, GatewayConfig } = await import("@resilient-ai/gateway")
const { ConfigProvider, Effect, Logger, LogLevel, Scope } = await import("effect")
const scope = Effect.runSync(Scope.make())
const gateway = await Effect.runPromise(Scope.extend(
  Effect.gen(function*() {
    const config = yield* GatewayConfig.decode({
      deployments: [{
        name: "up",
        provider: "openai",
        model: "cost",
        baseUrl: `http://127.0.0.1:${upstream.address().port}/v1`,
        keys: ["K1", "K2", "K3"].map((env, i) => ({ name: `key-${i + 1}`, env })),
        probe: false,
        policy: {
          attemptTimeout: "10 seconds",
          retry: { maxRetries: 2 },
          circuitBreaker: {},
          rateLimiter: { requestsPerMinute: 100_000_000 },
          bulkhead: { maxConcurrent: 1000, maxQueue: 1000 }
        }
      }],
      cascade: ["up"],
      gateway: { port: 0 }
    })
    return yield* Gateway.start({ config }, { proxyFromEnvironment: false })
  }).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["K1", "sk-1"], ["K2", "sk-2"], ["K3", "sk-3"]]))),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  ),
  scope
))

const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
const send = (stream) =>
  new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: "up", stream, messages: [{ role: "user", content: "hi" }] })
    const request = Http.request({
      host: "127.0.0.1",
      port: gateway.port,
      path: "/v1/chat/completions",
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
    }, (response) => {
      response.resume()
      response.on("end", () => (response.statusCode === 200 ? resolve() : reject(new Error(`status ${response.statusCode}`))))
    })
    request.on("error", reject)
    request.end(body)
  })

for (const stream of [false, true]) {
  // Warmed first: V8 compiles the hot paths over the first few hundred requests.
  for (let i = 0; i < 300; i++) await send(stream)
  ops = fiberCount = executorCount = 0
  for (let i = 0; i < requests; i++) await send(stream)
  const per = (n) => (n / requests).toFixed(1)
  console.log(`${stream ? "stream" : "answer"}: ${per(ops)} Effect ops, ${per(fiberCount)} fibers, ${per(executorCount)} stream stages (channel executors) a request`)
}
await Effect.runPromise(Scope.close(scope, (await import("effect/Exit")).void))
upstream.close()
agent.destroy()
