/**
 * Real HTTP on 127.0.0.1 for the llm tests: a scripted upstream, OpenAI-shaped
 * answers, and providers built over the `HttpClient` in the context.
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import type * as Chat from "../../src/Chat.js"
import * as HttpProviders from "../../src/HttpProviders.js"
import * as Provider from "../../src/Provider.js"

/** Scripts one upstream: what it answers to each request, given the request body read whole. */
export type Handler = (request: Http.IncomingMessage, body: string, response: Http.ServerResponse) => void

/** A real HTTP upstream on 127.0.0.1 whose behaviour each test scripts. */
export const upstream = (handler: Handler) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly server: Http.Server }>((resume) => {
      const server = Http.createServer((req, res) => {
        let body = ""
        req.on("data", (c: Buffer) => (body += c.toString("utf8")))
        req.on("end", () => handler(req, body, res))
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, server }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

export const context: Provider.CallContext = {
  deployment: "gpt",
  model: "gpt-4o-mini",
  key: Redacted.make("sk-test-secret-key-value"),
  keyName: "k1"
}
export const request: Chat.ChatRequest = { model: "ignored", messages: [{ role: "user", content: "hi" }] }

export const json = (res: Http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

export const completion = (text: string) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "gpt-4o-mini",
  choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, finish_reason: "stop", logprobs: null }],
  usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
})

export const providerOn = (kind: Provider.Kind, url: string, options: HttpProviders.Options = {}) =>
  Effect.map(Provider.Providers, (providers) =>
    providers.forTarget({ name: kind === "openai" ? "gpt" : "claude", kind, baseUrl: url, model: "m" })).pipe(
      Effect.provide(HttpProviders.layer(options))
    )
export const openAiOn = (url: string, options: HttpProviders.Options = {}) => providerOn("openai", url, options)
