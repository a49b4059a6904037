/**
 * The servers the gateway benchmarks run: an instant OpenAI-compatible
 * upstream on loopback, and the gateway in front of it with the full policy
 * stack (`bench/gateway.ts`, `bench/gatewayCost.ts`).
 */
import * as Http from "node:http"
import { completion } from "./completion.js"

const chunk = (delta: object, finish: string | null) =>
  `data: ${JSON.stringify({ id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model: "bench", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`

/** A 3-chunk answer, its usage chunk and `[DONE]`, written at once. */
export const streamBody = chunk({ role: "assistant", content: "Hel" }, null) + chunk({ content: "lo!" }, null) + chunk({}, "stop") +
  `data: ${JSON.stringify({ id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model: "bench", choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n` +
  "data: [DONE]\n\n"

/** Listens on a free port of 127.0.0.1; resolves with it. */
export const listen = (server: Http.Server): Promise<number> =>
  new Promise((resolve) => {
    server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, () => {
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : 0)
    })
  })

/** The upstream: a fixed `chat.completion`, or `streamBody` to a request with `"stream":true`. */
export const upstream = (): Promise<number> =>
  listen(Http.createServer((request, response) => {
    let body = ""
    request.setEncoding("utf8")
    request.on("data", (c: string) => (body += c))
    request.on("end", () => {
      if (body.includes("\"stream\":true")) {
        response.writeHead(200, { "content-type": "text/event-stream" })
        response.end(streamBody)
      } else {
        response.writeHead(200, { "content-type": "application/json" })
        response.end(completion)
      }
    })
  }))

/**
 * The gateway in front of `upstreamPort`, model `up`: one deployment with
 * the full stack (key pool of 3 keys, per-key rate limiter with a budget no
 * run exhausts, bulkhead, circuit breaker, retry with its budget, 10 s
 * attempt timeout).
 */
export const startGateway = async (upstreamPort: number): Promise<{ readonly port: number; readonly close: () => Promise<void> }> => {
  const { Gateway, GatewayConfig } = await import("@resilient-ai/gateway")
  const { ConfigProvider, Effect, Exit, Scope } = await import("effect")
  const keys = ["K1", "K2", "K3"].map((env, i) => ({ name: `key-${i + 1}`, env }))
  const program = Effect.gen(function*() {
    const config = yield* GatewayConfig.decode({
      deployments: [{
        name: "up",
        provider: "openai",
        model: "bench",
        baseUrl: `http://127.0.0.1:${upstreamPort}/v1`,
        keys,
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
  }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["K1", "sk-1"], ["K2", "sk-2"], ["K3", "sk-3"]]))))
  const scope = Effect.runSync(Scope.make())
  const service = await Effect.runPromise(Scope.extend(program, scope))
  return { port: service.port, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
