import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as AiErrors from "../src/AiErrors.js"
import * as ResilientLanguageModel from "../src/ResilientLanguageModel.js"
import { answered, ok, runWith, status, withModel } from "./support/layer.js"

describe("ResilientLanguageModel", () => {
  it.scopedLive("a 429 with Retry-After on key A moves the next call to key B, with no call to A before its Retry-After", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path, key) => (path === "/v1/responses" && key === "sk-test-a" ? status(429, { "retry-after": "30" }) : ok("hi")),
        Effect.gen(function*() {
          const first = yield* LanguageModel.generateText({ prompt: "hello" })
          const firstAnswer = yield* answered
          const second = yield* LanguageModel.generateText({ prompt: "hello again" })
          const secondAnswer = yield* answered
          return { texts: [first.text, second.text], firstAnswer, secondAnswer }
        })
      )
      expect(result.texts).toEqual(["hi", "hi"])
      // The retry went to key B at once (another key was healthy); the second call never tried A.
      expect(received.map((r) => r.key)).toEqual(["sk-test-a", "sk-test-b", "sk-test-b"])
      expect(result.firstAnswer).toMatchObject({ deployment: "gpt", keyName: "key-b", source: "backup-key", attempts: 2 })
      expect(result.secondAnswer).toMatchObject({ deployment: "gpt", keyName: "key-b", source: "primary", attempts: 1 })
    }))

  it.scopedLive("an outage of the OpenAI model falls back to the Anthropic model for generateText", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path) => (path === "/v1/responses" ? status(503) : ok("from claude")),
        Effect.zip(LanguageModel.generateText({ prompt: "hello" }), answered)
      )
      expect(result[0].text).toBe("from claude")
      expect(result[1]).toMatchObject({ deployment: "claude", provider: "anthropic", source: "fallback-provider", keyName: "key-c" })
      expect(result[1].fallbacks).toEqual([{ from: "gpt", to: "claude", tag: "ProviderUnavailableError" }])
      // Two attempts on gpt (one retry), then Anthropic with its own key header.
      expect(received.map((r) => [r.path, r.key])).toEqual([
        ["/v1/responses", "sk-test-a"],
        ["/v1/responses", "sk-test-b"],
        ["/v1/messages", "sk-ant-test-c"]
      ])
    }))

  it.scopedLive("an outage of the OpenAI model falls back to the Anthropic model for generateObject with a schema", () =>
    Effect.gen(function*() {
      const Weather = Schema.Struct({ city: Schema.String, celsius: Schema.Number })
      const { result } = yield* withModel(
        (path) => (path === "/v1/responses" ? status(500) : ok(JSON.stringify({ city: "Oslo", celsius: 4 }))),
        Effect.zip(LanguageModel.generateObject({ prompt: "weather?", schema: Weather, objectName: "weather" }), answered)
      )
      expect(result[0].value).toEqual({ city: "Oslo", celsius: 4 })
      expect(result[1]).toMatchObject({ method: "generateObject", deployment: "claude", source: "fallback-provider" })
    }))

  it.scopedLive("a reply that does not decode with the schema is a malformed response: retried, then fallen back from", () =>
    Effect.gen(function*() {
      const Weather = Schema.Struct({ city: Schema.String, celsius: Schema.Number })
      const { received, result } = yield* withModel(
        (path) => ok(path === "/v1/responses" ? "not json" : JSON.stringify({ city: "Oslo", celsius: 4 })),
        Effect.zip(LanguageModel.generateObject({ prompt: "weather?", schema: Weather }), answered)
      )
      expect(result[0].value).toEqual({ city: "Oslo", celsius: 4 })
      expect(result[1].fallbacks.map((f) => f.tag)).toEqual(["MalformedResponseError"])
      expect(received.filter((r) => r.path === "/v1/responses")).toHaveLength(2)
    }))

  it.scopedLive("an open breaker fails fast with no HTTP call, and the program still sees an AiError", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        () => status(503),
        Effect.gen(function*() {
          const errors = []
          for (let i = 0; i < 3; i++) errors.push(yield* Effect.flip(LanguageModel.generateText({ prompt: "hello" })))
          return errors
        }),
        {
          gptPolicy: { retry: false, circuitBreaker: { trigger: { kind: "consecutive", failures: 2 }, openDuration: "1 minute" } },
          cascade: ["gpt"]
        }
      )
      // Calls 1 and 2 reached the upstream and opened the breaker; call 3 did not.
      expect(received).toHaveLength(2)
      expect(result.map((e) => e._tag)).toEqual(["HttpResponseError", "HttpResponseError", "UnknownError"])
      expect(result.map((e) => Option.map(AiErrors.resilienceErrorOf(e), (ours) => ours._tag))).toEqual([
        Option.some("ProviderUnavailableError"),
        Option.some("ProviderUnavailableError"),
        Option.some("CircuitOpenError")
      ])
    }))

  it.scopedLive("streamText falls back before the first part", () =>
    Effect.gen(function*() {
      const { result } = yield* withModel(
        (path) => (path === "/v1/responses" ? status(503) : { _tag: "Stream", deltas: ["Hel", "lo"] }),
        Effect.gen(function*() {
          const parts = yield* Stream.runCollect(LanguageModel.streamText({ prompt: "hello" }))
          return { parts: Chunk.toReadonlyArray(parts), answer: yield* answered }
        })
      )
      const text = result.parts.flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("")
      expect(text).toBe("Hello")
      expect(result.answer).toMatchObject({ method: "streamText", deployment: "claude", source: "fallback-provider" })
    }))

  it.scopedLive("a stream cut after its first part fails the call and is recorded against the breaker", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        () => ({ _tag: "Stream", deltas: ["Hel", "lo", " world"], cutAfter: 1 }),
        Effect.gen(function*() {
          const seen: Array<string> = []
          const outcomes = []
          for (let i = 0; i < 2; i++) {
            outcomes.push(
              yield* LanguageModel.streamText({ prompt: "hello" }).pipe(
                Stream.runForEach((p) => Effect.sync(() => p.type === "text-delta" && seen.push(p.delta))),
                Effect.flip
              )
            )
          }
          const third = yield* Effect.flip(LanguageModel.generateText({ prompt: "hello" }))
          return { seen, outcomes, third }
        }),
        {
          gptPolicy: { retry: false, circuitBreaker: { trigger: { kind: "consecutive", failures: 2 }, openDuration: "1 minute" } },
          cascade: ["gpt"]
        }
      )
      // Each stream handed on its first delta, then was cut: no fallback, no retry, nothing appended.
      expect(result.seen).toEqual(["Hel", "Hel"])
      expect(result.outcomes.map((e) => Option.map(AiErrors.resilienceErrorOf(e), (ours) => ours._tag))).toEqual([
        Option.some("StreamInterruptedError"),
        Option.some("StreamInterruptedError")
      ])
      // Two cuts opened the breaker: the next call fails fast without reaching the upstream.
      expect(Option.map(AiErrors.resilienceErrorOf(result.third), (e) => e._tag)).toEqual(Option.some("CircuitOpenError"))
      expect(received).toHaveLength(2)
    }))

  it.scopedLive("with a static reply at the end, an outage of every deployment is answered by intent, for text and streams", () =>
    Effect.gen(function*() {
      const { received, result } = yield* runWith(
        (config) => ResilientLanguageModel.layerWithStaticReply(config),
        () => status(503),
        ResilientLanguageModel.alwaysAnswers(Effect.gen(function*() {
          const text = yield* LanguageModel.generateText({ prompt: "hello" })
          const answer = yield* answered
          const parts = yield* Stream.runCollect(LanguageModel.streamText({ prompt: "this is urgent, the site is down" }))
          return { text: text.text, answer, streamed: Chunk.toReadonlyArray(parts).flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("") }
        })),
        { gptPolicy: { retry: false } }
      )
      expect(result.text).toMatch(/^Hello!/)
      expect(result.answer).toMatchObject({ source: "static", deployment: undefined })
      expect(result.answer.fallbacks.map((f) => [f.from, f.to])).toEqual([["gpt", "claude"], ["claude", "static"]])
      expect(result.streamed).toMatch(/contact our support team/)
      expect(received.length).toBeGreaterThan(0)
    }))

  it.scopedLive("generateObject answers the static object of its name, decoded with its schema", () =>
    Effect.gen(function*() {
      const Weather = Schema.Struct({ city: Schema.String, celsius: Schema.Number })
      const { result } = yield* runWith(
        (config) => ResilientLanguageModel.layerWithStaticReply(config, { objects: { weather: { city: "unknown", celsius: 0 } } }),
        () => status(503),
        LanguageModel.generateObject({ prompt: "weather?", schema: Weather, objectName: "weather" }),
        { gptPolicy: { retry: false } }
      )
      expect(result.value).toEqual({ city: "unknown", celsius: 0 })
    }))
})
