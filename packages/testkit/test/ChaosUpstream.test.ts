import { describe, expect, it } from "@effect/vitest"
import type * as HttpClient from "@effect/platform/HttpClient"
import { StateStore } from "@resilient-ai/core"
import * as AnthropicWire from "@resilient-ai/llm/AnthropicWire"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import * as HttpProviders from "@resilient-ai/llm/HttpProviders"
import * as HttpTransport from "@resilient-ai/llm/HttpTransport"
import * as OpenAiWire from "@resilient-ai/llm/OpenAiWire"
import * as Provider from "@resilient-ai/llm/Provider"
import * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import OpenAI from "openai"
import * as ChaosUpstream from "../src/ChaosUpstream.js"
import * as FaultScript from "../src/FaultScript.js"

const transport = HttpTransport.layer({ proxyFromEnvironment: false, connectTimeout: "2 seconds" })

/** A fast deployment: 5 ms answers, errors at once, three-word streams. */
const quick = (name: string, extra: Partial<ChaosUpstream.Deployment> = {}): ChaosUpstream.Deployment => ({
  name,
  latency: FaultScript.fixed(5),
  errorLatency: FaultScript.fixed(0),
  script: [],
  stream: { chunks: 3, interChunk: FaultScript.fixed(2) },
  ...extra
})

const kinds: ReadonlyArray<Provider.Kind> = ["openai", "anthropic"]

const providerOn = (
  chaos: ChaosUpstream.Service,
  kind: Provider.Kind,
  deployment: string,
  options: HttpProviders.Options = {}
) =>
  Effect.map(Provider.Providers, (providers) =>
    providers.forTarget({
      name: deployment,
      kind,
      baseUrl: kind === "openai" ? chaos.openAiBaseUrl(deployment) : chaos.anthropicBaseUrl(deployment),
      model: "m"
    })).pipe(Effect.provide(HttpProviders.layer(options)))

const contextFor = (deployment: string, keyName = "k1", secret = "sk-one"): Provider.CallContext => ({
  deployment,
  model: "chaos-model",
  key: Redacted.make(secret),
  keyName
})
const request: Chat.ChatRequest = { model: "ignored", messages: [{ role: "user", content: "hi" }] }

const textOf = (chunks: Chunk.Chunk<Chat.ChatChunk>): string =>
  Chunk.toReadonlyArray(chunks).map((c) => c.text ?? "").join("")

/** A live-clock test with its own scope (the upstream sleeps for real). */
const live = (name: string, body: () => Effect.Effect<void, unknown, Scope.Scope | HttpClient.HttpClient>) =>
  it.live(name, () => Effect.scoped(body()).pipe(Effect.provide(transport)))

describe("ChaosUpstream: answers in both wire formats", () => {
  for (const kind of kinds) {
    live(`${kind}: the real HTTP provider gets a chat answer and a whole stream`, () =>
      Effect.gen(function*() {
        const chaos = yield* ChaosUpstream.make({ deployments: [quick("d")] })
        const provider = yield* providerOn(chaos, kind, "d")
        const answer = yield* provider.chat(request, contextFor("d"))
        expect(answer.response).toMatchObject({ text: "answer from d", finishReason: "stop", model: "chaos-model" })
        expect(answer.response.usage?.outputTokens).toBeGreaterThanOrEqual(100)
        const chunks = yield* Stream.runCollect(Provider.chunksOf(provider.stream(request, contextFor("d"))))
        expect(textOf(chunks)).toBe("word1 word2 word3")
        expect(Chunk.toReadonlyArray(chunks).some((c) => c.finishReason === "stop")).toBe(true)
        // OpenAI sends usage only when asked (our provider asks); Anthropic always.
        expect(Chunk.toReadonlyArray(chunks).some((c) => c.usage !== undefined)).toBe(true)
        const stats = (yield* chaos.calls)["d"]
        expect(stats).toMatchObject({ calls: 2, streams: 1, successes: 2, outcomes: { success: 2 } })
      }))
  }
})

describe("ChaosUpstream: each fault reaches the real providers as its typed error", () => {
  const rows: ReadonlyArray<
    readonly [string, FaultScript.Script, Partial<ChaosUpstream.Deployment>, string, Record<string, unknown>]
  > = [
    ["503 outage", [{ _tag: "Outage", from: 0, to: Infinity }], {}, "ProviderUnavailableError", { status: 503 }],
    ["529 overloaded", [{ _tag: "Outage", from: 0, to: Infinity, error: "overloaded" }], {}, "ProviderUnavailableError", {
      status: 529
    }],
    ["500 internal error", [{ _tag: "Outage", from: 0, to: Infinity, error: "internal-error" }], {}, "ProviderUnavailableError", {
      status: 500
    }],
    ["502 bad gateway (an HTML page)", [{ _tag: "Outage", from: 0, to: Infinity, error: "bad-gateway" }], {}, "ProviderUnavailableError", {
      status: 502,
      detail: expect.stringMatching(/502 Bad Gateway/)
    }],
    ["504 gateway timeout", [{ _tag: "Outage", from: 0, to: Infinity, error: "gateway-timeout" }], {}, "ProviderUnavailableError", {
      status: 504
    }],
    ["insufficient quota", [{ _tag: "QuotaExhausted", at: 0 }], {}, "QuotaExhaustedError", {}],
    ["malformed body", [{ _tag: "Outage", from: 0, to: Infinity, error: "malformed" }], {}, "MalformedResponseError", {
      status: 200
    }],
    ["dropped connection", [{ _tag: "Outage", from: 0, to: Infinity, error: "connection" }], {}, "ConnectionError", {}],
    ["hang, then reset", [{ _tag: "Outage", from: 0, to: Infinity, error: "hang" }], { hangMs: 50 }, "ConnectionError", {}]
  ]
  for (const kind of kinds) {
    for (const [label, script, extra, tag, fields] of rows) {
      live(`${kind}: ${label} → ${tag}`, () =>
        Effect.gen(function*() {
          const chaos = yield* ChaosUpstream.make({ deployments: [quick("d", { script, ...extra })] })
          const provider = yield* providerOn(chaos, kind, "d")
          const exit = yield* Effect.exit(provider.chat(request, contextFor("d")))
          expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: tag, deployment: "d", ...fields } })
          // A streamed call meets the same fault before its first chunk: same tag.
          const streamed = yield* Effect.flip(Stream.runDrain(Provider.chunksOf(provider.stream(request, contextFor("d")))))
          expect(streamed._tag).toBe(tag)
        }))
    }

    live(`${kind}: a 429 storm is a RateLimitError whose retryAfter comes from the headers`, () =>
      Effect.gen(function*() {
        const chaos = yield* ChaosUpstream.make({
          deployments: [quick("d", { script: [{ _tag: "RateLimitStorm", from: 0, to: Infinity, rate: 1, retryAfterMs: 1500 }] })]
        })
        const provider = yield* providerOn(chaos, kind, "d")
        const error = yield* Effect.flip(provider.chat(request, contextFor("d")))
        expect(error).toMatchObject({ _tag: "RateLimitError", source: "upstream", status: 429 })
        // OpenAI sends retry-after-ms; Anthropic whole seconds (rounded up).
        expect(error._tag === "RateLimitError" && error.retryAfter).toEqual(
          kind === "openai" ? Duration.millis(1500) : Duration.seconds(2)
        )
      }))

    live(`${kind}: a quota with a reset time tells the client when it comes back`, () =>
      Effect.gen(function*() {
        const hour = 3_600_000
        const chaos = yield* ChaosUpstream.make({ deployments: [quick("d", { script: [{ _tag: "QuotaExhausted", at: 0, resetAt: hour }] })] })
        const started = Date.now() - (yield* chaos.elapsed)
        const error = yield* Effect.flip((yield* providerOn(chaos, kind, "d")).chat(request, contextFor("d")))
        expect(error._tag).toBe("QuotaExhaustedError")
        // The message says it to the minute.
        const resetAt = error._tag === "QuotaExhaustedError" ? error.resetAt ?? 0 : 0
        expect(Math.abs(resetAt - (started + hour))).toBeLessThan(60_000)
      }))

    live(`${kind}: a revoked key gets 401 AuthError; the other key still answers; an unknown secret is refused`, () =>
      Effect.gen(function*() {
        const chaos = yield* ChaosUpstream.make({
          deployments: [
            quick("d", { keys: { k1: "sk-one", k2: "sk-two" }, script: [{ _tag: "KeyRevoked", keyName: "k2", at: 0 }] })
          ]
        })
        const provider = yield* providerOn(chaos, kind, "d")
        const revoked = yield* Effect.flip(provider.chat(request, contextFor("d", "k2", "sk-two")))
        expect(revoked).toMatchObject({ _tag: "AuthError", status: 401, keyName: "k2" })
        const fine = yield* provider.chat(request, contextFor("d", "k1", "sk-one"))
        expect(fine.response.text).toBe("answer from d")
        const unknown = yield* Effect.flip(provider.chat(request, contextFor("d", "k9", "sk-nope")))
        expect(unknown).toMatchObject({ _tag: "AuthError", status: 401 })
        const stats = (yield* chaos.calls)["d"]
        expect(stats?.byKey).toEqual({ k1: 1, k2: 1 })
        expect(stats?.outcomes).toEqual({ auth: 1, success: 1, "unknown-key": 1 })
        expect(stats?.callsWhileDown).toBe(1)
      }))
  }
})

describe("ChaosUpstream: streams that fail after content", () => {
  const stall: FaultScript.Script = [{ _tag: "StreamStall", from: 0, to: Infinity, rate: 1, afterChunks: 2 }]
  for (const kind of kinds) {
    const collect = (chaos: ChaosUpstream.Service, options: HttpProviders.Options = {}) =>
      Effect.gen(function*() {
        const provider = yield* providerOn(chaos, kind, "d", options)
        const received: Array<string> = []
        const error = yield* Effect.flip(
          Stream.runForEach(Provider.chunksOf(provider.stream(request, contextFor("d"))), (c) => Effect.sync(() => received.push(c.text ?? "")))
        )
        return { received: received.join(""), error }
      })

    live(`${kind}: a stream cut mid-body is a StreamInterruptedError after the content that arrived`, () =>
      Effect.gen(function*() {
        const chaos = yield* ChaosUpstream.make({ deployments: [quick("d", { script: stall, stallAs: "cut" })] })
        const { error, received } = yield* collect(chaos)
        expect(received).toBe("word1")
        expect(error).toMatchObject({ _tag: "StreamInterruptedError", chunksReceived: 1 })
        expect((yield* chaos.calls)["d"]?.outcomes).toEqual({ "stream-cut": 1 })
      }))

    live(`${kind}: an error event mid-stream (overloaded) is a StreamInterruptedError`, () =>
      Effect.gen(function*() {
        const chaos = yield* ChaosUpstream.make({ deployments: [quick("d", { script: stall, stallAs: "error-event" })] })
        const { error, received } = yield* collect(chaos)
        expect(received).toBe("word1")
        expect(error).toMatchObject({ _tag: "StreamInterruptedError", chunksReceived: 1 })
        if (kind === "anthropic") expect(error).toMatchObject({ status: 529 })
      }))

    live(`${kind}: a stalled stream trips the client's stall timeout`, () =>
      Effect.gen(function*() {
        const chaos = yield* ChaosUpstream.make({ deployments: [quick("d", { script: stall })] })
        const { error, received } = yield* collect(chaos, { stallTimeout: "150 millis" })
        expect(received).toBe("word1")
        expect(error).toMatchObject({ _tag: "StreamInterruptedError" })
        expect(error._tag === "StreamInterruptedError" && error.detail).toMatch(/TimeoutError/)
        expect((yield* chaos.calls)["d"]?.outcomes).toEqual({ "stream-stall": 1 })
      }))
  }
})

describe("ChaosUpstream: requests and routes", () => {
  const post = (url: string, body: string, headers: Record<string, string> = {}) =>
    Effect.promise(async () => {
      const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body })
      return { status: response.status, json: (await response.json()) as unknown }
    })

  live("a malformed request is a 400 in the route's own error format", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosUpstream.make({ deployments: [quick("d")] })
      const openAi = yield* post(`${chaos.openAiBaseUrl("d")}/chat/completions`, JSON.stringify({ model: "m" }))
      expect(openAi.status).toBe(400)
      const openAiError = yield* OpenAiWire.decodeError(openAi.json)
      expect(openAiError.error).toMatchObject({ type: "invalid_request_error" })
      expect(openAiError.error.message).toMatch(/messages/)
      const notJson = yield* post(`${chaos.openAiBaseUrl("d")}/chat/completions`, "{ nope")
      expect(notJson.status).toBe(400)
      const anthropic = yield* post(
        `${chaos.anthropicBaseUrl("d")}/v1/messages`,
        JSON.stringify({ model: "m", messages: [] }),
        { "anthropic-version": "2023-06-01" }
      )
      expect(anthropic.status).toBe(400)
      const anthropicError = yield* AnthropicWire.decodeError(anthropic.json)
      expect(anthropicError.error).toMatchObject({ type: "invalid_request_error" })
      expect(anthropicError.error.message).toMatch(/max_tokens/)
      const unknown = yield* post(`${chaos.openAiBaseUrl("nope")}/chat/completions`, JSON.stringify({ model: "m", messages: [] }))
      expect(unknown.status).toBe(404)
      expect((yield* chaos.calls)["d"]?.outcomes).toEqual({ "bad-request": 3 })
    }))

  live("setScript changes the behaviour of the running upstream", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosUpstream.make({ deployments: [quick("d")] })
      const provider = yield* providerOn(chaos, "openai", "d")
      const call = Effect.either(provider.chat(request, contextFor("d")))
      expect((yield* call)._tag).toBe("Right")
      yield* chaos.setScript("d", [{ _tag: "Outage", from: 0, to: Infinity, error: "overloaded" }])
      const down = yield* call
      expect(down._tag === "Left" && down.left).toMatchObject({ _tag: "ProviderUnavailableError", status: 529 })
      // A window written from "now": down for the next 150 ms only.
      yield* chaos.setScript("d", [{ _tag: "Outage", from: 0, to: 150 }], { from: "now" })
      expect((yield* call)._tag).toBe("Left")
      yield* Effect.sleep("200 millis")
      expect((yield* call)._tag).toBe("Right")
      const missing = yield* Effect.flip(chaos.setScript("nope", []))
      expect(missing._tag).toBe("NoSuchElementException")
      const log = yield* chaos.log
      expect(log.map((r) => r.outcome)).toEqual(["success", "overloaded", "unavailable", "success"])
      expect(log.map((r) => r.down)).toEqual([false, true, true, false])
    }))
})

describe("ChaosUpstream: end to end", () => {
  live("the ResilientClient answers from the backup while the primary is scripted down", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosUpstream.make({
        deployments: [
          quick("primary", { keys: { p1: "sk-p" }, script: [{ _tag: "Outage", from: 0, to: Infinity }] }),
          quick("backup", { keys: { b1: "sk-b" } })
        ]
      })
      const config = yield* ClientConfig.decode({
        deployments: [
          {
            name: "primary",
            provider: "openai",
            baseUrl: chaos.openAiBaseUrl("primary"),
            model: "gpt-4o",
            keys: [{ name: "p1", env: "P_KEY" }],
            policy: { retry: false }
          },
          {
            name: "backup",
            provider: "anthropic",
            baseUrl: chaos.anthropicBaseUrl("backup"),
            model: "claude-sonnet",
            keys: [{ name: "b1", env: "B_KEY" }],
            policy: { retry: false }
          }
        ],
        cascade: ["primary", "backup"]
      })
      const client = yield* ResilientClient.make(config).pipe(
        Effect.provide(HttpProviders.layer()),
        Effect.provide(StateStore.layerMemory),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["P_KEY", "sk-p"], ["B_KEY", "sk-b"]])))
      )
      const result = yield* client.chat(request)
      expect(result).toMatchObject({ source: "fallback-provider", deployment: "backup", keyName: "b1" })
      expect(result.response.text).toBe("answer from backup")
      const streamed = yield* Stream.runCollect(client.stream(request))
      expect(textOf(streamed)).toBe("word1 word2 word3")
      const stats = yield* chaos.calls
      expect(stats["primary"]?.callsWhileDown).toBeGreaterThanOrEqual(1)
      expect(stats["primary"]?.successes).toBe(0)
      expect(stats["backup"]).toMatchObject({ successes: 2, byKey: { b1: 2 } })
    }))

  live("the official openai client talks to the chaos upstream (chat, stream, and a typed 429)", () =>
    Effect.gen(function*() {
      const chaos = yield* ChaosUpstream.make({
        deployments: [
          quick("gpt", { keys: { k1: "sk-one" } }),
          quick("limited", { script: [{ _tag: "RateLimitStorm", from: 0, to: Infinity, rate: 1, retryAfterMs: 3000 }] })
        ]
      })
      const openai = new OpenAI({ apiKey: "sk-one", baseURL: chaos.openAiBaseUrl("gpt"), maxRetries: 0 })
      const completion = yield* Effect.promise(() =>
        openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
      )
      expect(completion.object).toBe("chat.completion")
      expect(completion.choices[0]?.message.content).toBe("answer from gpt")
      expect(completion.usage?.completion_tokens).toBeGreaterThan(0)

      const text = yield* Effect.promise(async () => {
        const stream = await openai.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }],
          stream: true,
          stream_options: { include_usage: true }
        })
        let out = ""
        let usage = 0
        for await (const chunk of stream) {
          out += chunk.choices[0]?.delta.content ?? ""
          usage += chunk.usage?.completion_tokens ?? 0
        }
        return { out, usage }
      })
      expect(text.out).toBe("word1 word2 word3")
      expect(text.usage).toBeGreaterThan(0)

      const limited = new OpenAI({ apiKey: "sk-any", baseURL: chaos.openAiBaseUrl("limited"), maxRetries: 0 })
      const error = yield* Effect.promise(() =>
        limited.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] }).then(
          () => undefined,
          (e: unknown) => e
        )
      )
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      expect(error).toMatchObject({ status: 429, code: "rate_limit_exceeded", type: "requests" })
      expect(error instanceof OpenAI.APIError && error.headers.get("retry-after")).toBe("3")
    }))
})
