import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import { harness } from "./support/harness.js"

const messages = [{ role: "user" as const, content: "hi" }]

describe("the official openai client against the gateway (real HTTP on 127.0.0.1)", () => {
  it.live("a completion: the primary answers, and the headers say who answered", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL } = yield* harness()
      const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const { data, response } = yield* Effect.promise(() =>
        openai.chat.completions.create({ model: "primary", messages }).withResponse()
      )
      expect(data.object).toBe("chat.completion")
      expect(data.choices[0]?.message.content).toBe("answer from primary")
      expect(data.choices[0]?.finish_reason).toBe("stop")
      expect(data.usage?.completion_tokens).toBeGreaterThan(0)
      expect(response.headers.get("x-resilient-source")).toBe("primary")
      expect(response.headers.get("x-resilient-deployment")).toBe("primary")
      expect(response.headers.get("x-resilient-key-name")).toBe("primary-1")
      expect(response.headers.get("x-resilient-attempts")).toBe("1")
      expect(response.headers.get("x-resilient-fallbacks")).toBe("0")
    })))

  it.live("an alias routes to its model", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL } = yield* harness()
      const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const answer = yield* Effect.promise(() => openai.chat.completions.create({ model: "gpt-4o-mini", messages }))
      expect(answer.choices[0]?.message.content).toBe("answer from primary")
    })))

  it.live("a stream: chunks in order, the usage chunk only when asked, then the end", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL } = yield* harness()
      const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const read = (includeUsage: boolean) =>
        Effect.promise(async () => {
          const stream = await openai.chat.completions.create({
            model: "primary",
            messages,
            stream: true,
            ...(includeUsage ? { stream_options: { include_usage: true } } : {})
          })
          const chunks: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
          for await (const chunk of stream) chunks.push(chunk)
          return chunks
        })
      const withUsage = yield* read(true)
      expect(withUsage.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("word1 word2 word3")
      expect(withUsage.every((c) => c.object === "chat.completion.chunk")).toBe(true)
      expect(withUsage.some((c) => c.choices[0]?.finish_reason === "stop")).toBe(true)
      const last = withUsage[withUsage.length - 1]
      expect(last?.choices).toEqual([])
      expect(last?.usage?.completion_tokens).toBeGreaterThan(0)
      // Only the closing chunk carries the usage.
      expect(withUsage.filter((c) => c.usage !== undefined && c.usage !== null)).toHaveLength(1)

      const without = yield* read(false)
      expect(without.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("word1 word2 word3")
      expect(without.some((c) => c.usage !== undefined && c.usage !== null)).toBe(false)
      expect(without.every((c) => c.choices.length === 1)).toBe(true)
    })))

  it.live("an error: an unknown model is a NotFoundError (404) in OpenAI's error shape", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL } = yield* harness()
      const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const error = yield* Effect.flip(Effect.tryPromise(() => openai.chat.completions.create({ model: "gpt-9", messages })))
      expect(error.error).toBeInstanceOf(OpenAI.NotFoundError)
      const apiError = error.error as InstanceType<typeof OpenAI.NotFoundError>
      expect(apiError.status).toBe(404)
      expect(apiError.code).toBe("model_not_found")
      expect(apiError.param).toBe("model")
      expect(apiError.message).toContain("gpt-9")
    })))

  it.live("a fallback while the chaos primary is down: the Anthropic backup answers, in OpenAI's format", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL, chaos } = yield* harness()
      yield* chaos.setScript("primary", [{ _tag: "Outage", from: 0, to: Infinity }])
      const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const { data, response } = yield* Effect.promise(() =>
        openai.chat.completions.create({ model: "primary", messages }).withResponse()
      )
      expect(data.choices[0]?.message.content).toBe("answer from backup")
      expect(response.headers.get("x-resilient-source")).toBe("fallback-provider")
      expect(response.headers.get("x-resilient-deployment")).toBe("backup")
      expect(response.headers.get("x-resilient-key-name")).toBe("backup-1")
      expect(response.headers.get("x-resilient-fallbacks")).toBe("1")
      // The primary was tried (first attempt and one retry), then the backup once.
      expect(response.headers.get("x-resilient-attempts")).toBe("3")
      const calls = yield* chaos.calls
      expect(calls["primary"]?.outcomes.unavailable).toBe(2)
      expect(calls["backup"]?.successes).toBe(1)

      // A stream falls back the same way, before its first chunk.
      const streamed = yield* Effect.promise(async () => {
        const stream = await openai.chat.completions.create({ model: "primary", messages, stream: true })
        let text = ""
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
        return text
      })
      expect(streamed).toBe("word1 word2 word3")
      expect((yield* chaos.calls)["backup"]?.streams).toBe(1)
    })))
})
