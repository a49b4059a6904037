/**
 * The servers the gateway benchmarks run: an instant OpenAI-compatible
 * upstream on loopback, the gateway in front of it with the full policy
 * stack (`bench/gateway.ts`, `bench/gatewayCost.ts`), and the floor of the
 * stack the gateway is built on: `@effect/platform`'s Node HTTP server,
 * answering by itself or forwarding through the platform's HTTP client.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
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

const streams = (body: string): boolean => body.includes("\"stream\":true")

/** The upstream: a fixed `chat.completion`, or `streamBody` to a request with `"stream":true`. */
export const upstream = (): Promise<number> =>
  listen(Http.createServer((request, response) => {
    let body = ""
    request.setEncoding("utf8")
    request.on("data", (c: string) => (body += c))
    request.on("end", () => {
      if (streams(body)) {
        response.writeHead(200, { "content-type": "text/event-stream" })
        response.end(streamBody)
      } else {
        response.writeHead(200, { "content-type": "application/json" })
        response.end(completion)
      }
    })
  }))

/**
 * Serves `app` on a Node server of its own, with tracing off as the gateway
 * runs (a span per request otherwise halves what the platform serves);
 * resolves with the port.
 */
const servePlatform = (
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | HttpClient.HttpClient>
): Promise<number> => {
  const server = Http.createServer()
  const served = HttpServer.serve(app).pipe(
    Layer.provide(NodeHttpServer.layer(() => server, { port: 0, host: "127.0.0.1", backlog: 4096 })),
    Layer.provide(NodeHttpClient.layerUndici)
  )
  Effect.runFork(Layer.launch(served).pipe(Effect.withTracerEnabled(false)))
  return new Promise((resolve) => {
    const report = () => {
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : 0)
    }
    if (server.listening) report()
    else server.once("listening", report)
  })
}

/**
 * The platform's server alone: `@effect/platform`'s Node HTTP server reads
 * the body and answers what the upstream would, calling nobody. No proxy
 * built on this server can answer faster or take less CPU than this.
 */
export const platformServer = (): Promise<number> =>
  servePlatform(Effect.gen(function*() {
    const body = yield* (yield* HttpServerRequest.HttpServerRequest).text
    return streams(body)
      ? HttpServerResponse.text(streamBody, { contentType: "text/event-stream" })
      : HttpServerResponse.text(completion, { contentType: "application/json" })
  }).pipe(Effect.orDie))

/**
 * The plain reverse proxy again, on the platform: its Node HTTP server reads
 * the body and forwards it through its undici client; the answer's bytes are
 * streamed back as they come. It parses nothing and applies no policy: what
 * a proxy written plainly on the platform's server and client costs before
 * it does anything (the gateway's providers call undici's `dispatch` instead,
 * and its handler writes streams on the Node response itself).
 */
export const platformProxy = (upstreamPort: number): Promise<number> => {
  const url = `http://127.0.0.1:${upstreamPort}/v1/chat/completions`
  return servePlatform(Effect.gen(function*() {
    const body = yield* (yield* HttpServerRequest.HttpServerRequest).text
    const client = yield* HttpClient.HttpClient
    const answer = yield* client.execute(HttpClientRequest.bodyText(HttpClientRequest.post(url), body, "application/json"))
    return HttpServerResponse.stream(answer.stream, {
      status: answer.status,
      contentType: answer.headers["content-type"] ?? "application/json"
    })
  }).pipe(Effect.orDie))
}

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
