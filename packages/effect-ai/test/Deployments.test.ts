import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as AiErrors from "../src/AiErrors.js"
import { answered, ok, status, withModel } from "./support/layer.js"

const tooLong = status(400, {}, {
  message: "This model's maximum context length is 1000 tokens.",
  type: "invalid_request_error",
  code: "context_length_exceeded"
})

describe("health probes from the config (rule 30)", () => {
  it.scopedLive("an idle deployment is probed with its own key; once its keys are out the chain skips it and says why", () =>
    Effect.gen(function*() {
      let gptDown = false
      const { received, result } = yield* withModel(
        (path, key) =>
          path === "/v1/models" && key === "sk-ant-test-c"
            ? status(401, {}, { type: "authentication_error", message: "invalid x-api-key" })
            : gptDown
            ? status(503)
            : ok("from gpt"),
        Effect.gen(function*() {
          // Three probe periods of claude, idle from the start.
          yield* Effect.sleep("350 millis")
          yield* LanguageModel.generateText({ prompt: "hello" })
          const answer = yield* answered
          gptDown = true
          const error = yield* Effect.flip(LanguageModel.generateText({ prompt: "hello again" }))
          return { answer, error }
        }),
        {
          gptPolicy: { retry: false },
          deployments: { claude: { probe: { every: "100 millis", idleFor: "1 millis" } } }
        }
      )
      const probes = received.filter((r) => r.path === "/v1/models")
      expect(probes.length).toBeGreaterThanOrEqual(1)
      // Every probe carried claude's key, picked from its pool.
      expect(new Set(probes.map((r) => r.key))).toEqual(new Set(["sk-ant-test-c"]))
      expect(result.answer.skipped).toEqual([{ deployment: "claude", reason: "its health probe says it cannot serve: every key is disabled" }])
      // In the outage of gpt, claude is not called: its key is known to be revoked.
      expect(Option.map(AiErrors.resilienceErrorOf(result.error), (e) => e._tag)).toEqual(Option.some("ProviderUnavailableError"))
      expect(received.filter((r) => r.path === "/v1/messages")).toHaveLength(0)
    }))
})

describe("the context-window fallback from the config", () => {
  it.scopedLive("a ContextLengthError moves the call to a deployment with a larger window, outside the cascade", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path) => (path === "/v1/responses" ? tooLong : ok("a larger window")),
        Effect.zip(LanguageModel.generateText({ prompt: "a long prompt" }), answered),
        {
          cascade: ["gpt"],
          deployments: { gpt: { contextWindow: 1000 }, claude: { contextWindow: 200000, probe: false } }
        }
      )
      expect(result[0].text).toBe("a larger window")
      expect(result[1]).toMatchObject({ deployment: "claude", source: "fallback-provider" })
      expect(result[1].fallbacks).toEqual([{ from: "gpt", to: "claude", tag: "ContextLengthError" }])
      // Not retried on gpt: the prompt is too long there whatever the key.
      expect(received.filter((r) => r.path === "/v1/responses")).toHaveLength(1)
    }))

  it.scopedLive("a deployment whose window is not larger does not take a ContextLengthError", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path) => (path === "/v1/responses" ? tooLong : ok("unused")),
        Effect.flip(LanguageModel.generateText({ prompt: "a long prompt" })),
        {
          cascade: ["gpt"],
          deployments: { gpt: { contextWindow: 1000 }, claude: { contextWindow: 1000, probe: false } }
        }
      )
      expect(Option.map(AiErrors.resilienceErrorOf(result), (e) => e._tag)).toEqual(Option.some("ContextLengthError"))
      expect(received.filter((r) => r.path === "/v1/messages")).toHaveLength(0)
    }))

  it.scopedLive("contextFallback names the deployments that take over, in order", () =>
    Effect.gen(function*() {
      const { result } = yield* withModel(
        (path) => (path === "/v1/responses" ? tooLong : ok("named")),
        Effect.zip(LanguageModel.generateText({ prompt: "a long prompt" }), answered),
        {
          cascade: ["gpt"],
          config: { contextFallback: ["claude"] },
          deployments: { gpt: { contextWindow: 1000 }, claude: { contextWindow: 100000, probe: false } }
        }
      )
      expect(result[1]).toMatchObject({ deployment: "claude" })
    }))
})
