import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Http from "node:http"
import * as Net from "node:net"
import * as HttpTransport from "../src/HttpTransport.js"
import { completion, context, json, openAiOn, request, upstream } from "./support/loopback.js"

/**
 * A forward proxy on loopback: it records each CONNECT target and tunnels it
 * to `tunnelTo` on 127.0.0.1 (a host name no resolver knows is reachable
 * through it only), or refuses the tunnel when there is none.
 */
const connectProxy = (tunnelTo: number | undefined) =>
  Effect.gen(function*() {
    const tunnels: Array<string> = []
    const { server, url } = yield* upstream((_, __, res) => json(res, 405, {}))
    server.on("connect", (req: Http.IncomingMessage, client: Net.Socket, head: Buffer) => {
      tunnels.push(req.url ?? "")
      if (tunnelTo === undefined) {
        client.end("HTTP/1.1 403 Forbidden\r\n\r\n")
        return
      }
      const upstreamSocket = Net.connect(tunnelTo, "127.0.0.1", () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
        upstreamSocket.write(head)
        upstreamSocket.pipe(client)
        client.pipe(upstreamSocket)
      })
      client.on("error", () => upstreamSocket.destroy())
      upstreamSocket.on("error", () => client.destroy())
    })
    return { url, tunnels }
  })

/** An upstream answering every chat with `text`, and its port. */
const answering = (text: string) =>
  Effect.map(upstream((_, __, res) => json(res, 200, completion(text))), ({ url }) => ({ url, port: Number(new URL(url).port) }))

const proxyVariables = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"] as const

/**
 * Sets the proxy variables of `process.env` for the scope (the lower-case
 * ones, which undici reads first, cleared) and puts every one back as it
 * was when the scope closes.
 */
const proxyEnvironment = (vars: Partial<Record<"HTTP_PROXY" | "HTTPS_PROXY" | "NO_PROXY", string>>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const saved = proxyVariables.map((name) => [name, process.env[name]] as const)
      for (const name of proxyVariables) delete process.env[name]
      for (const [name, value] of Object.entries(vars)) process.env[name] = value
      return saved
    }),
    (saved) =>
      Effect.sync(() => {
        for (const [name, value] of saved) {
          if (value === undefined) delete process.env[name]
          else process.env[name] = value
        }
      })
  )

/** The variables as the test process started with them. */
const before: Readonly<Record<string, string | undefined>> = Object.fromEntries(
  proxyVariables.map((name) => [name, process.env[name]])
)

/** One chat to `url` through the default transport layer, built after the environment is set. */
const chatWithDefaultTransport = (url: string) =>
  Effect.flatMap(openAiOn(url), (p) => p.chat(request, context)).pipe(Effect.provide(HttpTransport.layer()))

describe("HttpTransport: proxies from the real environment (process.env), with the default layer", () => {
  it.scoped("HTTP_PROXY carries an http:// call through the proxy, by CONNECT", () =>
    Effect.gen(function*() {
      const target = yield* answering("via env proxy")
      const proxy = yield* connectProxy(target.port)
      yield* proxyEnvironment({ HTTP_PROXY: proxy.url, NO_PROXY: "" })
      const answer = yield* chatWithDefaultTransport("http://llm.internal.test")
      expect(answer.response.text).toBe("via env proxy")
      expect(proxy.tunnels).toEqual(["llm.internal.test:80"])
    }))

  it.scoped("HTTPS_PROXY, not HTTP_PROXY, carries an https:// call", () =>
    Effect.gen(function*() {
      const forHttp = yield* connectProxy(undefined)
      const forHttps = yield* connectProxy(undefined)
      yield* proxyEnvironment({ HTTP_PROXY: forHttp.url, HTTPS_PROXY: forHttps.url, NO_PROXY: "" })
      // The proxy refuses the tunnel: the call fails, but it was asked where to go.
      const error = yield* Effect.flip(chatWithDefaultTransport("https://llm.internal.test"))
      expect(error._tag).toBe("ConnectionError")
      expect(forHttps.tunnels).toEqual(["llm.internal.test:443"])
      expect(forHttp.tunnels).toEqual([])
    }))

  it.scoped("NO_PROXY keeps a listed host direct while HTTP_PROXY is set", () =>
    Effect.gen(function*() {
      const target = yield* answering("direct")
      const proxy = yield* connectProxy(undefined)
      yield* proxyEnvironment({ HTTP_PROXY: proxy.url, NO_PROXY: "127.0.0.1" })
      const answer = yield* chatWithDefaultTransport(target.url)
      expect(answer.response.text).toBe("direct")
      expect(proxy.tunnels).toEqual([])
    }))

  it.scoped("proxyFromEnvironment: false ignores HTTP_PROXY", () =>
    Effect.gen(function*() {
      const target = yield* answering("direct")
      const proxy = yield* connectProxy(target.port)
      yield* proxyEnvironment({ HTTP_PROXY: proxy.url, NO_PROXY: "" })
      const answer = yield* Effect.flatMap(openAiOn(target.url), (p) => p.chat(request, context)).pipe(
        Effect.provide(HttpTransport.layer({ proxyFromEnvironment: false }))
      )
      expect(answer.response.text).toBe("direct")
      expect(proxy.tunnels).toEqual([])
    }))

  it.scoped("the environment is put back as it was after each test", () =>
    Effect.sync(() => {
      for (const name of proxyVariables) expect(process.env[name]).toBe(before[name])
    }))
})

describe("HttpTransport: proxies given as options", () => {
  it.scoped("sends requests through the configured proxy (as HTTPS_PROXY / HTTP_PROXY would), by CONNECT", () =>
    Effect.gen(function*() {
      const target = yield* answering("via proxy")
      const proxy = yield* connectProxy(target.port)
      // A host name no resolver knows: only the proxy can reach "it".
      const viaProxy = HttpTransport.layer({ httpProxy: proxy.url, httpsProxy: proxy.url, noProxy: "" })
      const answer = yield* Effect.flatMap(openAiOn("http://llm.internal.test"), (p) => p.chat(request, context)).pipe(
        Effect.provide(viaProxy)
      )
      expect(answer.response.text).toBe("via proxy")
      expect(proxy.tunnels).toEqual(["llm.internal.test:80"])
    }))

  it.scoped("NO_PROXY keeps a host direct", () =>
    Effect.gen(function*() {
      const proxied: Array<string> = []
      const { url: proxy } = yield* upstream((req, _, res) => {
        proxied.push(req.url ?? "")
        json(res, 502, { error: { message: "proxy" } })
      })
      const { url: direct } = yield* answering("direct")
      const layer = HttpTransport.layer({ httpProxy: proxy, noProxy: "127.0.0.1" })
      const answer = yield* Effect.flatMap(openAiOn(direct), (p) => p.chat(request, context)).pipe(Effect.provide(layer))
      expect(answer.response.text).toBe("direct")
      expect(proxied).toEqual([])
    }))
})
