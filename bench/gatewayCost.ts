/**
 * What one gateway request costs, in figures that do not drift with the
 * machine's speed: Effect ops run, fibers and stream stages (channel
 * executors) per request, for whole answers and for streams.
 *
 *   npm run bench:gateway-cost              # 1,000 requests of each kind
 *   npm run bench:gateway-cost -- 300
 *
 * The gateway and upstream of `bench/gateway.ts` and the client share this
 * process; requests go one at a time over loopback, after 300 unmeasured
 * ones (V8 compiles the hot paths first). Ops are counted by wrapping the
 * fiber runtime's op handlers and executors by wrapping their `run`: effect
 * 3.x internals, so a measuring tool only.
 */
import * as Http from "node:http"
import { startGateway, upstream } from "./servers.js"

const requests = Number(process.argv[2] ?? 1000)

/** A class of effect's internals whose prototype methods are wrapped (the module is untyped from here). */
const prototypeOf = async (path: string, name: string): Promise<Record<string, unknown>> => {
  const module: Record<string, unknown> = await import(new URL(`../node_modules/effect/dist/esm/internal/${path}`, import.meta.url).href)
  const constructor = module[name]
  if (typeof constructor !== "function") throw new Error(`effect's ${path} has no ${name}: this tool follows effect 3.x internals`)
  const prototype: unknown = constructor.prototype
  return prototype as Record<string, unknown>
}

let ops = 0
let fibers = 0
let executors = 0
const seenFibers = new WeakSet<object>()
const seenExecutors = new WeakSet<object>()

const fiberRuntime = await prototypeOf("fiberRuntime.js", "FiberRuntime")
const opCodes = ["Sync", "Success", "Failure", "WithRuntime", "UpdateRuntimeFlags", "OnSuccess", "OnFailure", "OnSuccessAndFailure", "Async", "Yield", "Iterator", "Commit", "Tag", "While"]
for (const op of opCodes) {
  const handler = fiberRuntime[op]
  if (typeof handler !== "function") continue
  fiberRuntime[op] = function(this: object, cur: unknown) {
    ops++
    if (!seenFibers.has(this)) (seenFibers.add(this), fibers++)
    return handler.call(this, cur)
  }
}
const channelExecutor = await prototypeOf("channel/channelExecutor.js", "ChannelExecutor")
const run = channelExecutor["run"]
if (typeof run === "function") {
  channelExecutor["run"] = function(this: object) {
    if (!seenExecutors.has(this)) (seenExecutors.add(this), executors++)
    return run.call(this)
  }
}

const gateway = await startGateway(await upstream())
const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
const send = (stream: boolean) =>
  new Promise<void>((resolve, reject) => {
    const body = JSON.stringify({ model: "up", stream, messages: [{ role: "user", content: "Hi" }] })
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
  for (let i = 0; i < 300; i++) await send(stream)
  ops = fibers = executors = 0
  for (let i = 0; i < requests; i++) await send(stream)
  const per = (n: number) => (n / requests).toFixed(1)
  console.log(`${stream ? "stream" : "answer"}: ${per(ops)} Effect ops, ${per(fibers)} fibers, ${per(executors)} stream stages (channel executors) a request`)
}
agent.destroy()
await gateway.close()
process.exit(0)
