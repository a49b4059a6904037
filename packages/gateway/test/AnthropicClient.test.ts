import Anthropic from "@anthropic-ai/sdk"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { harness, post } from "./support/harness.js"

const messages = [{ role: "user" as const, content: "hi" }]
/** Models over both deployments, in both orders. */
const both = { gateway: { models: { "openai-first": ["primary", "backup"], "anthropic-first": ["backup", "primary"] }, aliases: {} } }

describe("the official @anthropic-ai/sdk client against /v1/messages (real HTTP on 127.0.0.1)", () => {
  it.live("a message: an OpenAI deployment answers an Anthropic client, and the headers say who answered", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness(both)
      const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: "unused", maxRetries: 0 })
      const { data, response } = yield* Effect.promise(() =>
        anthropic.messages.create({ model: "openai-first", max_tokens: 100, messages }).withResponse()
      )
      expect(data.type).toBe("message")
      expect(data.role).toBe("assistant")
      expect(data.content).toEqual([{ type: "text", text: "answer from primary" }])
      expect(data.stop_reason).toBe("end_turn")
      expect(data.usage.output_tokens).toBeGreaterThan(0)
      expect(response.headers.get("x-resilient-deployment")).toBe("primary")
      expect(response.headers.get("x-resilient-source")).toBe("primary")
    })))

  it.live("a stream: Anthropic's events, the text in order, then message_stop", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness(both)
      const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: "unused", maxRetries: 0 })
      const events = yield* Effect.promise(async () => {
        const stream = await anthropic.messages.create({ model: "openai-first", max_tokens: 100, messages, stream: true })
        const seen: Array<Anthropic.RawMessageStreamEvent> = []
        for await (const event of stream) seen.push(event)
        return seen
      })
      expect(events[0]?.type).toBe("message_start")
      expect(events[events.length - 1]?.type).toBe("message_stop")
      const text = events.flatMap((e) =>
        e.type === "content_block_delta" && e.delta.type === "text_delta" ? [e.delta.text] : []
      ).join("")
      expect(text).toBe("word1 word2 word3")
      const delta = events.find((e) => e.type === "message_delta")
      expect(delta?.type === "message_delta" && delta.delta.stop_reason).toBe("end_turn")
    })))

  it.live("an error: an unknown model is a NotFoundError (404) in Anthropic's error shape", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness(both)
      const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: "unused", maxRetries: 0 })
      const error = yield* Effect.flip(
        Effect.tryPromise(() => anthropic.messages.create({ model: "claude-9", max_tokens: 10, messages }))
      )
      expect(error.error).toBeInstanceOf(Anthropic.NotFoundError)
      expect((error.error as InstanceType<typeof Anthropic.NotFoundError>).status).toBe(404)
      const raw = yield* post(`${gateway.url}/v1/messages`, "{nope")
      expect(raw.status).toBe(400)
      expect(raw.json).toMatchObject({ type: "error", error: { type: "invalid_request_error" } })
      const bad = yield* post(`${gateway.url}/v1/messages`, JSON.stringify({ model: "openai-first", messages }))
      expect(bad.status).toBe(400)
      expect((bad.json as { error: { message: string } }).error.message).toContain("max_tokens")
    })))

  it.live("fallbacks both ways: the Anthropic deployment down → the OpenAI one answers; the OpenAI one down → the Anthropic one", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness(both)
      const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: "unused", maxRetries: 0 })
      yield* chaos.setScript("backup", [{ _tag: "Outage", from: 0, to: Infinity }])
      const toOpenAi = yield* Effect.promise(() =>
        anthropic.messages.create({ model: "anthropic-first", max_tokens: 100, messages }).withResponse()
      )
      expect(toOpenAi.data.content).toEqual([{ type: "text", text: "answer from primary" }])
      expect(toOpenAi.response.headers.get("x-resilient-source")).toBe("fallback-provider")
      expect(toOpenAi.response.headers.get("x-resilient-deployment")).toBe("primary")

      yield* chaos.setScript("backup", [])
      yield* chaos.setScript("primary", [{ _tag: "Outage", from: 0, to: Infinity }])
      const text = yield* Effect.promise(async () => {
        const stream = await anthropic.messages.create({ model: "openai-first", max_tokens: 100, messages, stream: true })
        let out = ""
        for await (const e of stream) if (e.type === "content_block_delta" && e.delta.type === "text_delta") out += e.delta.text
        return out
      })
      expect(text).toBe("word1 word2 word3")
      expect((yield* chaos.calls)["backup"]?.streams).toBe(1)
    })))

  it.live("every deployment down: 503 in Anthropic's shape, with Retry-After", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({
        ...both,
        primary: { script: [{ _tag: "Outage", from: 0, to: Infinity }] },
        backup: { script: [{ _tag: "Outage", from: 0, to: Infinity }] }
      })
      const response = yield* post(`${gateway.url}/v1/messages`, JSON.stringify({ model: "openai-first", max_tokens: 10, messages }))
      expect(response.status).toBe(503)
      expect(response.json).toMatchObject({ type: "error", error: { type: "overloaded_error" } })
      expect(response.headers.get("retry-after")).toBe("1")
    })))
})
