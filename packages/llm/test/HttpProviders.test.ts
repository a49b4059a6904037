import { describe, expect, it } from "@effect/vitest"
import { StateStore } from "@resilient-ai/core"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as ClientConfig from "../src/ClientConfig.js"
import * as HttpProviders from "../src/HttpProviders.js"
import * as HttpTransport from "../src/HttpTransport.js"
import * as Provider from "../src/Provider.js"
import * as ResilientClient from "../src/ResilientClient.js"
import { completion, context, json, openAiOn, providerOn, request, upstream } from "./support/loopback.js"

const transport = HttpTransport.layer({ proxyFromEnvironment: false, connectTimeout: "2 seconds" })

describe("HttpProviders: a key quoted by the provider never leaks", () => {
  const keys = [
    "relay-SECRET123xyz",
    "sk-proj-abcdefghijklmnop1234",
    "sk-ant-api03-abcdefghijklmnop",
    "AIzaSyA1234567890abcdefghijklmnop",
    "hf_abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdef0123456789abcdef"
  ]
  it.scoped("401, 403, 429, 5xx, 400 and malformed bodies quoting the key: no trace of it in the error, its message, String or Cause.pretty", () =>
    Effect.gen(function*() {
      let current = ""
      let status = 401
      const { url } = yield* upstream((_req, _body, res) => {
        if (status === 200) {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(`{"choices": "Key ${current} is not a list"}`)
          return
        }
        json(res, status, { error: { message: `Key '${current}' is not valid`, type: "invalid_request_error", code: `bad ${current}` } })
      })
      const provider = yield* openAiOn(url)
      for (const key of keys) {
        current = key
        for (status of [401, 403, 429, 500, 503, 400, 200]) {
          const exit = yield* Effect.exit(provider.chat(request, { ...context, key: Redacted.make(key) }))
          expect(Exit.isFailure(exit)).toBe(true)
          if (!Exit.isFailure(exit)) continue
          const texts = [JSON.stringify(exit.cause), Cause.pretty(exit.cause), String(Cause.squash(exit.cause))]
          for (const text of texts) expect(text, `status ${status}`).not.toContain(key)
        }
      }
    }).pipe(Effect.provide(transport)))
})

describe("HttpProviders: a closed transport", () => {
  it.scoped("a call through a transport whose layer has closed is a defect that says so, never a retryable ConnectionError", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => json(res, 200, completion("never")))
      // `Effect.provide` with a layer closes it when the effect ends: the provider outlives its dispatcher.
      const provider = yield* Effect.provide(openAiOn(url), transport)
      const exit = yield* Effect.exit(provider.chat(request, context))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "").toContain("the HTTP transport is closed")
    }))
})

describe("HttpProviders: trace context", () => {
  it.scoped("sends no trace headers unless the deployment opts in (propagateTrace)", () =>
    Effect.gen(function*() {
      const seen: Array<Http.IncomingHttpHeaders> = []
      const { url } = yield* upstream((req, _body, res) => {
        seen.push(req.headers)
        json(res, 200, completion("hello"))
      })
      const onTarget = (propagateTrace: boolean) =>
        Effect.flatMap(
          Effect.map(Provider.Providers, (providers) =>
            providers.forTarget({ name: "gpt", kind: "openai", baseUrl: url, model: "m", propagateTrace })).pipe(
              Effect.provide(HttpProviders.layer())
            ),
          (provider) => provider.chat(request, context)
        ).pipe(Effect.withSpan("user request"))
      yield* onTarget(false)
      yield* onTarget(true)
      const [plain, traced] = seen
      expect(plain?.traceparent).toBeUndefined()
      expect(plain?.b3).toBeUndefined()
      expect(traced?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    }).pipe(Effect.provide(transport)))
})

describe("HttpProviders: OpenAI-compatible over real HTTP", () => {
  it.scoped("sends the deployment's model and the key as a bearer token; parses the answer and rate-limit headers", () =>
    Effect.gen(function*() {
      const seen: Array<{ auth: string | undefined; body: Record<string, unknown> }> = []
      const { url } = yield* upstream((req, body, res) => {
        seen.push({ auth: req.headers.authorization, body: JSON.parse(body) })
        json(res, 200, completion("hello"), {
          "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-remaining-tokens": "9000",
          "x-ratelimit-reset-requests": "20s"
        })
      })
      const provider = yield* openAiOn(url)
      const answer = yield* provider.chat(request, context)
      expect(answer.response).toMatchObject({ text: "hello", finishReason: "stop", usage: { inputTokens: 5, outputTokens: 2 } })
      expect(answer.rateLimit?.remainingRequests).toBe(0)
      expect(answer.rateLimit?.remainingTokens).toBe(9000)
      expect(seen[0]?.auth).toBe("Bearer sk-test-secret-key-value")
      expect(seen[0]?.body).toMatchObject({ model: "gpt-4o-mini", stream: false, messages: [{ role: "user", content: "hi" }] })
    }).pipe(Effect.provide(transport)))

  it.scoped("an answer with a custom tool call is an answer (customToolCalls), never a BadRequestError after the call was paid for", () =>
    Effect.gen(function*() {
      const answer = completion("")
      const { url } = yield* upstream((_, __, res) =>
        json(res, 200, {
          ...answer,
          choices: [{
            index: 0,
            message: {
              role: "assistant",
              content: null,
              refusal: null,
              tool_calls: [{ id: "call_9", type: "custom", custom: { name: "sql", input: "select count(*) from t" } }]
            },
            finish_reason: "tool_calls",
            logprobs: null
          }]
        }))
      const provider = yield* openAiOn(url)
      const { response } = yield* provider.chat(request, context)
      expect(response.customToolCalls).toEqual([{ id: "call_9", name: "sql", input: "select count(*) from t" }])
      expect(response.finishReason).toBe("tool_calls")
    }).pipe(Effect.provide(transport)))

  const rows: ReadonlyArray<readonly [string, number, unknown, Record<string, string>, string, Record<string, unknown>]> = [
    ["401 revoked key", 401, { error: { message: "Incorrect API key provided: sk-test-***", type: "invalid_request_error", code: "invalid_api_key" } }, {}, "AuthError", { status: 401 }],
    ["403 forbidden", 403, { error: { message: "forbidden" } }, {}, "AuthError", { status: 403 }],
    ["429 with retry-after seconds", 429, { error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } }, { "retry-after": "7" }, "RateLimitError", { source: "upstream" }],
    ["429 insufficient quota", 429, { error: { message: "You exceeded your current quota", type: "insufficient_quota", code: "insufficient_quota" } }, {}, "QuotaExhaustedError", {}],
    ["402 insufficient balance", 402, { error: { message: "Insufficient Balance" } }, {}, "QuotaExhaustedError", {}],
    ["400 context length", 400, { error: { message: "This model's maximum context length is 128000 tokens", code: "context_length_exceeded" } }, {}, "ContextLengthError", {}],
    ["400 content policy", 400, { error: { message: "Your request was rejected by the safety system", code: "content_policy_violation" } }, {}, "ContentFilterError", {}],
    ["422 other client error", 422, { error: { message: "invalid value for temperature" } }, {}, "BadRequestError", { status: 422 }],
    ["500", 500, { error: { message: "internal" } }, {}, "ProviderUnavailableError", { status: 500 }],
    ["502", 502, "<html><title>Bad Gateway</title></html>", {}, "ProviderUnavailableError", { status: 502 }],
    ["503", 503, { error: { message: "overloaded" } }, {}, "ProviderUnavailableError", { status: 503 }],
    ["504", 504, { error: { message: "timeout" } }, {}, "ProviderUnavailableError", { status: 504 }],
    ["529 overloaded", 529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, {}, "ProviderUnavailableError", { status: 529 }]
  ]
  it.scoped.each(rows)("%s → %s", ([, status, body, headers, tag, fields]) =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => {
        if (typeof body === "string") {
          res.writeHead(status, { "content-type": "text/html", ...headers })
          res.end(body)
        } else json(res, status, body, headers)
      })
      const provider = yield* openAiOn(url)
      const exit = yield* Effect.exit(provider.chat(request, context))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: tag, deployment: "gpt", keyName: "k1", ...fields } })
      // The key never appears in an error.
      expect(JSON.stringify(exit)).not.toContain("sk-test-secret-key-value")
    }).pipe(Effect.provide(transport)))

  it.scoped("a 429's Retry-After becomes retryAfter", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => json(res, 429, { error: { message: "slow down" } }, { "retry-after-ms": "1500" }))
      const provider = yield* openAiOn(url)
      const error = yield* Effect.flip(provider.chat(request, context))
      expect(error._tag === "RateLimitError" && error.retryAfter).toEqual(Duration.millis(1500))
    }).pipe(Effect.provide(transport)))

  it.scoped("a 200 whose body does not decode is a MalformedResponseError", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => json(res, 200, { id: "x", choices: "nope" }))
      const provider = yield* openAiOn(url)
      const error = yield* Effect.flip(provider.chat(request, context))
      expect(error._tag).toBe("MalformedResponseError")
      const { url: url2 } = yield* upstream((_, __, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end("{ not json")
      })
      expect((yield* Effect.flip((yield* openAiOn(url2)).chat(request, context)))._tag).toBe("MalformedResponseError")
    }).pipe(Effect.provide(transport)))

  it.scoped("a refused connection and a dropped connection are ConnectionErrors", () =>
    Effect.gen(function*() {
      const closed = yield* Effect.scoped(Effect.map(upstream(() => {}), ({ url }) => url))
      const refused = yield* Effect.flip((yield* openAiOn(closed)).chat(request, context))
      expect(refused._tag).toBe("ConnectionError")
      const { url } = yield* upstream((req) => req.socket.destroy())
      const dropped = yield* Effect.flip((yield* openAiOn(url)).chat(request, context))
      expect(dropped._tag).toBe("ConnectionError")
    }).pipe(Effect.provide(transport)))

  it.live("no response headers within firstByteTimeout is a TimeoutError, and the request is abandoned", () =>
    Effect.scoped(Effect.gen(function*() {
      let closed = false
      const { url } = yield* upstream((req) => req.socket.on("close", () => (closed = true)))
      const provider = yield* openAiOn(url, { firstByteTimeout: "150 millis" })
      const error = yield* Effect.flip(provider.chat(request, context))
      expect(error).toMatchObject({ _tag: "TimeoutError", phase: "attempt" })
      yield* Effect.sleep("100 millis")
      expect(closed).toBe(true)
    })).pipe(Effect.provide(transport)))
})

const sse = (
  res: Http.ServerResponse,
  events: ReadonlyArray<unknown>,
  end: "done" | "cut" | "hang",
  headers: Record<string, string> = {}
) => {
  res.writeHead(200, { "content-type": "text/event-stream", ...headers })
  for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`)
  if (end === "done") res.end("data: [DONE]\n\n")
  else if (end === "cut") setTimeout(() => res.socket?.destroy(), 30) // after the chunks are flushed
}
const delta = (content: string, finish: string | null = null) => ({
  id: "c",
  object: "chat.completion.chunk",
  created: 1,
  model: "m",
  choices: [{ index: 0, delta: { content }, finish_reason: finish }]
})

describe("HttpProviders: streams over real HTTP", () => {
  it.scoped("SSE chunks arrive as chat chunks, and the stream ends at [DONE]", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => sse(res, [delta("Hel"), delta("lo"), delta("", "stop")], "done"))
      const chunks = yield* Stream.runCollect(Provider.chunksOf((yield* openAiOn(url)).stream(request, context)))
      const all = Chunk.toReadonlyArray(chunks)
      expect(all.map((c) => c.text ?? "").join("")).toBe("Hello")
      expect(all.at(-1)?.finishReason).toBe("stop")
    }).pipe(Effect.provide(transport)))

  it.scoped("a stream request says it accepts text/event-stream; a JSON 200 instead is a MalformedResponseError saying what arrived", () =>
    Effect.gen(function*() {
      const accepts: Array<string | undefined> = []
      const { url } = yield* upstream((req, _, res) => {
        accepts.push(req.headers.accept)
        json(res, 200, completion("not a stream"))
      })
      for (const kind of ["openai", "anthropic"] as const) {
        const provider = yield* providerOn(kind, url)
        const error = yield* Effect.flip(Stream.runCollect(Provider.chunksOf(provider.stream(request, context))))
        expect(error).toMatchObject({ _tag: "MalformedResponseError", status: 200 })
        expect(error.message).toContain("expected an event stream (text/event-stream), got application/json")
      }
      expect(accepts).toEqual(["text/event-stream", "text/event-stream"])
    }).pipe(Effect.provide(transport)))

  it.scoped("a stream cut after content is a StreamInterruptedError, after the chunks that arrived", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => sse(res, [delta("partial ")], "cut"))
      const received: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(Provider.chunksOf((yield* openAiOn(url)).stream(request, context)), (c) => Effect.sync(() => received.push(c.text ?? "")))
      )
      expect(received).toEqual(["partial "])
      expect(error).toMatchObject({ _tag: "StreamInterruptedError", chunksReceived: 1 })
    }).pipe(Effect.provide(transport)))

  it.scoped("an error status before the stream keeps its own tag", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => json(res, 503, { error: { message: "down" } }))
      const error = yield* Effect.flip(Stream.runDrain(Provider.chunksOf((yield* openAiOn(url)).stream(request, context))))
      expect(error._tag).toBe("ProviderUnavailableError")
    }).pipe(Effect.provide(transport)))

  it.live("a stream that stalls after its first chunk fails with StreamInterruptedError (a stall, typed)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => sse(res, [delta("slow")], "hang"))
      const error = yield* Effect.flip(
        Stream.runDrain(Provider.chunksOf((yield* openAiOn(url, { stallTimeout: "150 millis" })).stream(request, context)))
      )
      expect(error).toMatchObject({ _tag: "StreamInterruptedError" })
      expect(error._tag === "StreamInterruptedError" && error.detail).toMatch(/TimeoutError/)
    })).pipe(Effect.provide(transport)))
})

describe("HttpProviders: streams through another HttpClient (the platform's fetch client) read as through ours", () => {
  // The providers take any `HttpClient`: the stream guard reads the answer's `stream`, whoever made it.
  it.scoped("chunks to [DONE], a cut after content, an Anthropic stream", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((req, _, res) => {
        if (req.url?.includes("/v1/messages") === true) {
          res.writeHead(200, { "content-type": "text/event-stream" })
          res.end(
            [
              ["message_start", { type: "message_start", message: { id: "m1", type: "message", role: "assistant", model: "m", content: [], stop_reason: null, usage: { input_tokens: 3, output_tokens: 0 } } }],
              ["content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }],
              ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hi" } }],
              ["content_block_stop", { type: "content_block_stop", index: 0 }],
              ["message_delta", { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 1 } }],
              ["message_stop", { type: "message_stop" }]
            ].map(([event, data]) => `event: ${String(event)}\ndata: ${JSON.stringify(data)}\n\n`).join("")
          )
          return
        }
        if (req.headers["x-cut"] === "yes") return sse(res, [delta("partial ")], "cut")
        sse(res, [delta("Hel"), delta("lo"), delta("", "stop")], "done")
      })
      const whole = Chunk.toReadonlyArray(yield* Stream.runCollect(Provider.chunksOf((yield* openAiOn(url)).stream(request, context))))
      expect(whole.map((c) => c.text ?? "").join("")).toBe("Hello")
      expect(whole.at(-1)?.finishReason).toBe("stop")
      const cutting = yield* openAiOn(url, { headers: { "x-cut": "yes" } })
      const received: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(Provider.chunksOf(cutting.stream(request, context)), (c) => Effect.sync(() => received.push(c.text ?? "")))
      )
      expect(received).toEqual(["partial "])
      expect(error).toMatchObject({ _tag: "StreamInterruptedError", chunksReceived: 1 })
      const anthropic = Chunk.toReadonlyArray(yield* Stream.runCollect(Provider.chunksOf((yield* providerOn("anthropic", url)).stream(request, context))))
      expect(anthropic.map((c) => c.text ?? "").join("")).toBe("Hi")
      expect(anthropic.find((c) => c.finishReason !== undefined)?.finishReason).toBe("stop")
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})

describe("HttpProviders: health probes ask for the model list", () => {
  it.scoped("GET the model list with the deployment's key and headers; a 401 is an AuthError", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { url } = yield* upstream((req, _, res) => {
        const auth = req.headers.authorization ?? `x-api-key ${String(req.headers["x-api-key"])}`
        seen.push(`${req.method} ${req.url} ${auth}`)
        if (req.headers.authorization === "Bearer sk-revoked") return json(res, 401, { error: { message: "invalid key" } })
        json(res, 200, { object: "list", data: [{ id: "m", object: "model" }] })
      })
      for (const kind of ["openai", "anthropic"] as const) {
        const provider = yield* providerOn(kind, url)
        if (provider.probe === undefined) return expect.unreachable()
        yield* provider.probe(context)
      }
      const openai = yield* openAiOn(url)
      const revoked = yield* Effect.flip(openai.probe!({ ...context, key: Redacted.make("sk-revoked") }))
      expect(revoked._tag).toBe("AuthError")
      expect(seen).toEqual([
        "GET /models Bearer sk-test-secret-key-value",
        "GET /v1/models x-api-key sk-test-secret-key-value",
        "GET /models Bearer sk-revoked"
      ])
    }).pipe(Effect.provide(transport)))
})

describe("HttpProviders: Anthropic over real HTTP", () => {
  it.scoped("sends x-api-key and anthropic-version, and translates the answer", () =>
    Effect.gen(function*() {
      const seen: Array<Http.IncomingHttpHeaders> = []
      const { url } = yield* upstream((req, _, res) => {
        seen.push(req.headers)
        json(res, 200, {
          id: "msg_1",
          type: "message",
          role: "assistant",
          model: "claude",
          content: [{ type: "text", text: "bonjour" }],
          stop_reason: "end_turn",
          stop_sequence: null,
          usage: { input_tokens: 3, output_tokens: 1 }
        })
      })
      const provider = yield* providerOn("anthropic", url)
      const answer = yield* provider.chat(request, context)
      expect(answer.response).toMatchObject({ text: "bonjour", finishReason: "stop", usage: { inputTokens: 3, outputTokens: 1 } })
      expect(seen[0]?.["x-api-key"]).toBe("sk-test-secret-key-value")
      expect(seen[0]?.["anthropic-version"]).toBe("2023-06-01")
      expect(seen[0]?.authorization).toBeUndefined()
    }).pipe(Effect.provide(transport)))
})

describe("ResilientClient over real HTTP", () => {
  const config = (primary: string, backup: string) => ({
    deployments: [
      { name: "primary", provider: "openai", baseUrl: primary, model: "p-model", keys: [{ name: "p1", env: "P_KEY" }], policy: { retry: false } },
      { name: "backup", provider: "openai", baseUrl: backup, model: "b-model", keys: [{ name: "b1", env: "B_KEY" }], policy: { retry: false } }
    ],
    cascade: ["primary", "backup"]
  })
  const primaryOnly = (url: string, keys: ReadonlyArray<{ name: string; env: string }>, policy: object = {}) => ({
    deployments: [{ name: "primary", provider: "openai", baseUrl: url, model: "p", keys, policy }],
    cascade: ["primary"]
  })
  const env = ConfigProvider.fromMap(new Map([["P_KEY", "sk-p"], ["B_KEY", "sk-b"]]))
  const client = (c: unknown) =>
    Effect.flatMap(ClientConfig.decode(c), (decoded) => ResilientClient.make(decoded)).pipe(
      Effect.provide(HttpProviders.layer()),
      Effect.provide(StateStore.layerMemory),
      Effect.withConfigProvider(env)
    )

  it.scoped("a stream falls back before its first chunk: the answer is the backup's alone", () =>
    Effect.gen(function*() {
      const { url: primary } = yield* upstream((_, __, res) => json(res, 503, { error: { message: "down" } }))
      const { url: backup } = yield* upstream((_, __, res) => sse(res, [delta("from "), delta("backup", "stop")], "done"))
      const c = yield* client(config(primary, backup))
      const text = Chunk.toReadonlyArray(yield* Stream.runCollect(c.stream(request))).map((x) => x.text ?? "").join("")
      expect(text).toBe("from backup")
    }).pipe(Effect.provide(transport)))

  it.scoped("after the first chunk a failure is typed (StreamInterruptedError), never a mixed answer", () =>
    Effect.gen(function*() {
      const { url: primary } = yield* upstream((_, __, res) => sse(res, [delta("half an ")], "cut"))
      let backupCalls = 0
      const { url: backup } = yield* upstream((_, __, res) => {
        backupCalls++
        sse(res, [delta("other answer", "stop")], "done")
      })
      const c = yield* client(config(primary, backup))
      const received: Array<string> = []
      const error = yield* Effect.flip(Stream.runForEach(c.stream(request), (x) => Effect.sync(() => received.push(x.text ?? ""))))
      expect(received.join("")).toBe("half an ")
      expect(error._tag).toBe("StreamInterruptedError")
      expect(backupCalls).toBe(0)
    }).pipe(Effect.provide(transport)))

  it.scoped("continue-with-prefix: after a cut, the next deployment is asked to continue the partial answer", () =>
    Effect.gen(function*() {
      const { url: primary } = yield* upstream((_, __, res) => sse(res, [delta("half an ")], "cut"))
      const asked: Array<Array<{ role: string; content: unknown }>> = []
      const { url: backup } = yield* upstream((_, body, res) => {
        asked.push(JSON.parse(body).messages)
        sse(res, [delta("answer", "stop")], "done")
      })
      const c = yield* client({ ...config(primary, backup), midStreamPolicy: "continue-with-prefix" })
      const text = Chunk.toReadonlyArray(yield* Stream.runCollect(c.stream(request))).map((x) => x.text ?? "").join("")
      expect(text).toBe("half an answer")
      expect(asked[0]?.slice(-2).map((m) => m.role)).toEqual(["assistant", "user"])
      expect(asked[0]?.at(-2)?.content).toBe("half an ")
    }).pipe(Effect.provide(transport)))

  it.scoped("continue-with-prefix: the request's result is the continuation's, its usage and cost included", () =>
    Effect.gen(function*() {
      const { url: primary } = yield* upstream((_, __, res) => sse(res, [delta("half an ")], "cut"))
      const usage = { id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 7, completion_tokens: 1, total_tokens: 8 } }
      const { url: backup } = yield* upstream((_, __, res) => sse(res, [delta("answer", "stop"), usage], "done"))
      const c = yield* client({ ...config(primary, backup), midStreamPolicy: "continue-with-prefix" })
      const started = yield* c.streamStarted(request)
      expect(started.start.deployment).toBe("primary")
      const text = Chunk.toReadonlyArray(yield* Stream.runCollect(started.chunks)).map((x) => x.text ?? "").join("")
      expect(text).toBe("half an answer")
      const result = yield* started.result
      expect(result.deployment).toBe("backup")
      expect(result.usage).toMatchObject({ inputTokens: 7, outputTokens: 1 })
    }).pipe(Effect.provide(transport)))

  it.scoped("continue-with-prefix: a cut no deployment can continue fails the result as it fails the stream", () =>
    Effect.gen(function*() {
      const { url: primary } = yield* upstream((_, __, res) => sse(res, [delta("half an ")], "cut"))
      const { url: backup } = yield* upstream((_, __, res) => json(res, 503, { error: { message: "down" } }))
      const c = yield* client({ ...config(primary, backup), midStreamPolicy: "continue-with-prefix" })
      const started = yield* c.streamStarted(request)
      const streamError = yield* Effect.flip(Stream.runDrain(started.chunks))
      const resultError = yield* Effect.flip(started.result)
      expect(streamError._tag).toBe("ProviderUnavailableError")
      expect(resultError).toBe(streamError)
    }).pipe(Effect.provide(transport)))

  it.scoped("rate-limit headers move traffic to another key before a 429", () =>
    Effect.gen(function*() {
      const keys: Array<string | undefined> = []
      const { url } = yield* upstream((req, _, res) => {
        keys.push(req.headers.authorization)
        // The first key reports its request budget spent until a minute from now.
        json(res, 200, completion("ok"), req.headers.authorization === "Bearer sk-p"
          ? { "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s" }
          : {})
      })
      const c = yield* client(primaryOnly(url, [{ name: "p1", env: "P_KEY" }, { name: "p2", env: "B_KEY" }]))
      yield* c.chat(request)
      yield* c.chat(request)
      yield* c.chat(request)
      expect(keys).toEqual(["Bearer sk-p", "Bearer sk-b", "Bearer sk-b"])
      const pool = c.deployments[0]?.keyPool
      if (pool === undefined) return expect.unreachable()
      const status = yield* pool.status
      expect(status.keys.map((k) => [k.name, k.state])).toEqual([["p1", "cooling"], ["p2", "healthy"]])
    }).pipe(Effect.provide(transport)))

  it.scoped("a stream's rate-limit headers reach the key pool before its first chunk: the next stream takes the other key", () =>
    Effect.gen(function*() {
      const keys: Array<string | undefined> = []
      const { url } = yield* upstream((req, _, res) => {
        keys.push(req.headers.authorization)
        sse(res, [delta("ok", "stop")], "done", req.headers.authorization === "Bearer sk-p"
          ? { "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s" }
          : {})
      })
      const c = yield* client(primaryOnly(url, [{ name: "p1", env: "P_KEY" }, { name: "p2", env: "B_KEY" }]))
      // The pool hears p1's spent budget while the first stream is still open, before its chunk reaches us.
      const stateWhenFirstChunkArrived: Array<string> = []
      yield* Stream.runDrain(Stream.tap(Stream.take(c.stream(request), 1), () =>
        Effect.map(c.deployments[0]!.keyPool!.status, (s) => {
          stateWhenFirstChunkArrived.push(s.keys[0]?.state ?? "none")
        })))
      yield* Stream.runDrain(c.stream(request))
      yield* Stream.runDrain(c.stream(request))
      expect(stateWhenFirstChunkArrived).toEqual(["cooling"])
      expect(keys).toEqual(["Bearer sk-p", "Bearer sk-b", "Bearer sk-b"])
    }).pipe(Effect.provide(transport)))

  /**
   * One request to a primary (2 retries allowed) that closes each socket once
   * it has read the request: the upstream may have started work, and undici
   * reports a real `UND_ERR_SOCKET`. Returns the error and the upstream hits.
   */
  const sentToResettingUpstream = <A, E>(send: (c: ResilientClient.Service) => Effect.Effect<A, E>) =>
    Effect.gen(function*() {
      let hits = 0
      const { url } = yield* upstream((req) => {
        hits++
        req.socket.destroy()
      })
      const c = yield* client(
        primaryOnly(url, [{ name: "p1", env: "P_KEY" }], { retry: { maxRetries: 2, baseDelay: "1 millis", jitter: "none" } })
      )
      const error = yield* Effect.flip(send(c))
      return { error, hits }
    }).pipe(Effect.scoped)

  // Live: the retry's 1 ms backoff sleeps on the real clock.
  it.live("chat(request, { idempotent: false }): a socket closed after the request was read (UND_ERR_SOCKET) is sent once; idempotent, 3 times", () =>
    Effect.gen(function*() {
      const once = yield* sentToResettingUpstream((c) => c.chat(request, { idempotent: false }))
      expect(once.error).toMatchObject({ _tag: "ConnectionError" })
      // The real error code of undici, not one a test wrote: this is what `Retry.mayHaveStartedWork` reads.
      expect(once.error._tag === "ConnectionError" ? once.error.detail : "").toMatch(/UND_ERR_SOCKET|other side closed/)
      expect(once.hits).toBe(1)
      expect((yield* sentToResettingUpstream((c) => c.chat(request))).hits).toBe(3)
    }).pipe(Effect.provide(transport)))

  // Live: the retry's 1 ms backoff sleeps on the real clock.
  it.live("stream(request, { idempotent: false }): a connection reset after the request was sent is not retried", () =>
    Effect.gen(function*() {
      const once = yield* sentToResettingUpstream((c) => Stream.runDrain(c.stream(request, { idempotent: false })))
      expect(once.error._tag).toBe("ConnectionError")
      expect(once.hits).toBe(1)
      expect((yield* sentToResettingUpstream((c) => Stream.runDrain(c.stream(request)))).hits).toBe(3)
    }).pipe(Effect.provide(transport)))

  it.scoped("each deployment sends its own headers (config `headers`), over the provider layer's", () =>
    Effect.gen(function*() {
      const seen: Array<Record<string, string | undefined>> = []
      const record = (req: Http.IncomingMessage) =>
        seen.push({ relay: req.headers["x-relay-token"] as string | undefined, org: req.headers["openai-organization"] as string | undefined })
      const { url: down } = yield* upstream((req, _, res) => {
        record(req)
        json(res, 500, { error: { message: "boom" } })
      })
      const { url: up } = yield* upstream((req, _, res) => {
        record(req)
        json(res, 200, completion("ok"))
      })
      const c = yield* client({
        deployments: [
          {
            name: "a",
            provider: "openai",
            baseUrl: down,
            model: "m",
            keys: [],
            headers: { "x-relay-token": "relay-token-a1", "OpenAI-Organization": "org-a" },
            policy: { retry: false }
          },
          { name: "b", provider: "openai", baseUrl: up, model: "m", keys: [], headers: { "x-relay-token": "relay-token-b2" } }
        ],
        cascade: ["a", "b"]
      })
      expect((yield* c.chat(request)).deployment).toBe("b")
      expect(seen).toEqual([{ relay: "relay-token-a1", org: "org-a" }, { relay: "relay-token-b2", org: undefined }])
    }).pipe(Effect.provide(transport)))

  it.scoped("a keyless deployment (keys: []) is built and called with no credentials", () =>
    Effect.gen(function*() {
      const auth: Array<string | undefined> = []
      const { url } = yield* upstream((req, _, res) => {
        auth.push(req.headers.authorization)
        json(res, 200, completion("local model"))
      })
      const c = yield* client({
        deployments: [{ name: "ollama", provider: "openai", baseUrl: url, model: "llama3", keys: [] }],
        cascade: ["ollama"]
      })
      const result = yield* c.chat(request)
      expect(result).toMatchObject({ source: "primary", deployment: "ollama", keyName: undefined })
      expect(result.response.text).toBe("local model")
      expect(auth).toEqual([undefined])
      expect(c.deployments[0]?.keyPool).toBeUndefined()
    }).pipe(Effect.provide(transport)))

  it.scoped("chat falls back across real HTTP and reports the metadata", () =>
    Effect.gen(function*() {
      const { url: primary } = yield* upstream((_, __, res) => json(res, 500, { error: { message: "boom" } }))
      const { url: backup } = yield* upstream((_, __, res) => json(res, 200, completion("saved")))
      const c = yield* client(config(primary, backup))
      const result = yield* c.chat(request)
      expect(result).toMatchObject({ source: "fallback-provider", deployment: "backup", keyName: "b1", attempts: 2 })
      expect(result.response.text).toBe("saved")
    }).pipe(Effect.provide(transport)))
})
