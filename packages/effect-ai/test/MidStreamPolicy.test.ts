import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { StreamGuard } from "@resilient-ai/llm"
import * as AiErrors from "../src/AiErrors.js"
import { answered, ok, textOf, withModel } from "./support/layer.js"

const continueWithPrefix = {
  config: { midStreamPolicy: "continue-with-prefix" },
  gptPolicy: { retry: false, circuitBreaker: { trigger: { kind: "consecutive", failures: 1 }, openDuration: "1 minute" } }
}

describe("streamText and midStreamPolicy (rule 28)", () => {
  it.scopedLive("after a cut, the next deployment continues the delivered text and the program reads one answer", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path, _key, _n, request) =>
          path === "/v1/responses"
            ? { _tag: "Stream", deltas: ["Hel", "lo", " world"], cutAfter: 1 }
            : request.body["stream"] === true
            ? { _tag: "Stream", deltas: ["lo", " world"] }
            : ok("from claude"),
        Effect.gen(function*() {
          const parts = Chunk.toReadonlyArray(yield* Stream.runCollect(LanguageModel.streamText({ prompt: "hello" })))
          const answer = yield* answered
          // The cut counted against gpt's breaker (rule 26): the next call does not reach it.
          const next = yield* LanguageModel.generateText({ prompt: "again" })
          return { parts, answer, nextAnswer: yield* answered, next: next.text }
        }),
        continueWithPrefix
      )
      expect(textOf(result.parts)).toBe("Hello world")
      const types = result.parts.map((p) => p.type)
      // The cut block is closed before the continuation opens its own; one metadata part, one finish.
      expect(types.filter((t) => t === "response-metadata")).toHaveLength(1)
      expect(types.filter((t) => t === "finish")).toHaveLength(1)
      expect(types.filter((t) => t === "text-start")).toHaveLength(types.filter((t) => t === "text-end").length)
      expect(types.indexOf("text-end")).toBeLessThan(types.lastIndexOf("text-start"))
      expect(result.answer).toMatchObject({ method: "streamText", deployment: "claude", source: "fallback-provider" })
      expect(result.answer.fallbacks).toEqual([{ from: "gpt", to: "claude", tag: "StreamInterruptedError" }])
      // Claude was asked to continue: the delivered text as its own turn, then the instruction.
      const continued = received.find((r) => r.path === "/v1/messages")
      expect(continued?.body["messages"]).toEqual([
        { role: "user", content: [{ type: "text", text: "hello" }] },
        { role: "assistant", content: [{ type: "text", text: "Hel" }] },
        { role: "user", content: [{ type: "text", text: StreamGuard.continuationInstruction }] }
      ])
      expect(result.next).toBe("from claude")
      expect(result.nextAnswer.fallbacks.map((f) => f.tag)).toEqual(["CircuitOpenError"])
    }))

  it.scopedLive("the deployment that was cut is not asked to continue itself: with no other, the cut is the stream's error", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        () => ({ _tag: "Stream", deltas: ["Hel", "lo"], cutAfter: 1 }),
        Effect.gen(function*() {
          const seen: Array<string> = []
          const error = yield* LanguageModel.streamText({ prompt: "hello" }).pipe(
            Stream.runForEach((p) => Effect.sync(() => p.type === "text-delta" && seen.push(p.delta))),
            Effect.flip
          )
          return { seen, error }
        }),
        { ...continueWithPrefix, cascade: ["gpt"] }
      )
      expect(result.seen).toEqual(["Hel"])
      expect(Option.map(AiErrors.resilienceErrorOf(result.error), (e) => e._tag)).toEqual(Option.some("StreamInterruptedError"))
      expect(received.filter((r) => r.path === "/v1/responses")).toHaveLength(1)
    }))

  it.scopedLive("without continue-with-prefix a cut after the first part is the stream's error: nothing is appended", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path) => (path === "/v1/responses" ? { _tag: "Stream", deltas: ["Hel", "lo"], cutAfter: 1 } : ok("unused")),
        Effect.flip(Stream.runDrain(LanguageModel.streamText({ prompt: "hello" }))),
        { gptPolicy: { retry: false } }
      )
      expect(Option.map(AiErrors.resilienceErrorOf(result), (e) => e._tag)).toEqual(Option.some("StreamInterruptedError"))
      expect(received.filter((r) => r.path === "/v1/messages")).toHaveLength(0)
    }))

  it.scopedLive("a cut after the opening parts only falls back by default, and is the stream's error with terminate", () =>
    Effect.gen(function*() {
      // The OpenAI stream is cut after its opening events (response metadata), before any text.
      const script = (path: string) =>
        path === "/v1/responses" ? { _tag: "Stream" as const, deltas: ["Hel", "lo"], cutAfter: 0 } : { _tag: "Stream" as const, deltas: ["Hello"] }
      const restart = yield* withModel(
        script,
        Effect.zip(Stream.runCollect(LanguageModel.streamText({ prompt: "hello" })), answered),
        { gptPolicy: { retry: false } }
      )
      expect(textOf(restart.result[0])).toBe("Hello")
      expect(restart.result[1]).toMatchObject({ deployment: "claude", source: "fallback-provider" })
      const terminate = yield* withModel(
        script,
        Effect.flip(Stream.runDrain(LanguageModel.streamText({ prompt: "hello" }))),
        { gptPolicy: { retry: false }, config: { midStreamPolicy: "terminate" } }
      )
      expect(Option.map(AiErrors.resilienceErrorOf(terminate.result), (e) => e._tag)).toEqual(Option.some("StreamInterruptedError"))
      expect(terminate.received.filter((r) => r.path === "/v1/messages")).toHaveLength(0)
    }))
})
