import { describe, expect, it } from "@effect/vitest"
import { FaultScript } from "@resilient-ai/testkit"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import { get, harness, post } from "./support/harness.js"

const body = (model: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...extra })

const down = [{ _tag: "Outage", from: 0, to: Infinity, error: "unavailable" }] as const

describe("one client serves every model; streams say who answered", () => {
  it.live("two models share the primary's bulkhead: a request of one model fills it, the other model's request falls back", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({
        primary: { latency: FaultScript.fixed(600) },
        primaryPolicy: { bulkhead: { maxConcurrent: 1, maxQueue: 0 } },
        gateway: { models: { solo: ["primary"], fast: ["primary", "backup"] }, aliases: {} }
      })
      expect(gateway.models.routes.map((r) => [r.model, r.cascade])).toEqual([["solo", ["primary"]], ["fast", ["primary", "backup"]]])
      const slow = yield* Effect.fork(post(`${gateway.url}/v1/chat/completions`, body("solo")))
      yield* Effect.sleep("150 millis")
      const other = yield* post(`${gateway.url}/v1/chat/completions`, body("fast"))
      expect(other.status).toBe(200)
      expect(other.headers.get("x-resilient-deployment")).toBe("backup")
      expect(other.headers.get("x-resilient-fallbacks")).toBe("1")
      expect((yield* slow).headers.get("x-resilient-deployment")).toBe("primary")
      expect((yield* chaos.calls)["primary"]?.calls).toBe(1)
    })))

  it.live("a stream carries who-answered headers: the primary down, the backup answers, one fallback", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({ primary: { script: down } })
      const response = yield* post(`${gateway.url}/v1/chat/completions`, body("primary", { stream: true }))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toContain("text/event-stream")
      expect({
        source: response.headers.get("x-resilient-source"),
        deployment: response.headers.get("x-resilient-deployment"),
        key: response.headers.get("x-resilient-key-name"),
        attempts: response.headers.get("x-resilient-attempts"),
        fallbacks: response.headers.get("x-resilient-fallbacks")
      }).toEqual({ source: "fallback-provider", deployment: "backup", key: "backup-1", attempts: "3", fallbacks: "1" })
      expect(response.text.trimEnd().endsWith("data: [DONE]")).toBe(true)
    })))

  it.live("the OpenAI SDK's raw stream response has the headers of the primary that answered", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL } = yield* harness()
      const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const { data, response } = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "primary", stream: true, messages: [{ role: "user", content: "hi" }] }).withResponse()
      )
      let text = ""
      yield* Effect.promise(async () => {
        for await (const chunk of data) text += chunk.choices[0]?.delta.content ?? ""
      })
      expect(text.length).toBeGreaterThan(0)
      expect(response.headers.get("x-resilient-source")).toBe("primary")
      expect(response.headers.get("x-resilient-deployment")).toBe("primary")
      expect(response.headers.get("x-resilient-key-name")).toBe("primary-1")
      expect(response.headers.get("x-resilient-attempts")).toBe("1")
    })))

  it.live("/status gives the cache's size and counters; a stream answered from the cache says source cache", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({ gateway: { cache: { timeToLive: "1 minute", maxEntries: 100 } } })
      const before = yield* get(`${gateway.url}/status`)
      expect((before.json as { cache: unknown }).cache).toMatchObject({ entries: 0, hits: 0 })
      yield* post(`${gateway.url}/v1/chat/completions`, body("primary"))
      const cached = yield* post(`${gateway.url}/v1/chat/completions`, body("primary", { stream: true }))
      expect(cached.headers.get("x-resilient-source")).toBe("cache")
      expect(cached.headers.get("x-resilient-attempts")).toBe("0")
      // Another model's identical request is not answered by this model's entry.
      const other = yield* post(`${gateway.url}/v1/chat/completions`, body("backup"))
      expect(other.headers.get("x-resilient-deployment")).toBe("backup")
      const after = yield* get(`${gateway.url}/status`)
      expect((after.json as { cache: unknown }).cache).toMatchObject({ entries: 2, hits: 1, misses: 2 })
      expect((yield* chaos.calls)["primary"]?.calls).toBe(1)
    })))

  it.live("/status says cache: null when no cache is configured", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness()
      expect((yield* get(`${gateway.url}/status`)).json).toMatchObject({ cache: null })
    })))
})
