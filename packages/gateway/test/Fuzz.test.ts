import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import { harness } from "./support/harness.js"

const role = fc.constantFrom("user", "assistant", "system", "developer", "tool", "function", "robot")
const part = fc.record(
  {
    type: fc.constantFrom("text", "image_url", "input_audio", "file", "refusal", "x"),
    text: fc.oneof(fc.string(), fc.integer()),
    image_url: fc.oneof(fc.record({ url: fc.webUrl() }), fc.string())
  },
  { requiredKeys: ["type"] }
)
const message = fc.record(
  {
    role,
    content: fc.oneof(fc.string(), fc.array(part, { maxLength: 3 }), fc.constant(null), fc.integer()),
    tool_call_id: fc.string(),
    tool_calls: fc.array(fc.record({ id: fc.string(), type: fc.constant("function"), function: fc.record({ name: fc.string(), arguments: fc.string() }) }), {
      maxLength: 2
    }),
    name: fc.string()
  },
  { requiredKeys: ["role"] }
)
/** Requests near the valid ones: right field names, values of any shape. */
const nearlyValid = fc.record(
  {
    model: fc.oneof(fc.constantFrom("primary", "backup", "gpt-4o-mini", "nope"), fc.string(), fc.integer()),
    messages: fc.oneof(fc.array(message, { maxLength: 4 }), fc.string(), fc.constant(null)),
    temperature: fc.oneof(fc.double(), fc.string()),
    max_tokens: fc.oneof(fc.integer(), fc.constant(null), fc.string()),
    max_completion_tokens: fc.integer(),
    stream: fc.oneof(fc.boolean(), fc.string()),
    stream_options: fc.oneof(fc.record({ include_usage: fc.boolean() }), fc.string()),
    n: fc.integer({ min: -1, max: 3 }),
    stop: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 6 })),
    tools: fc.array(fc.record({ type: fc.constantFrom("function", "custom"), function: fc.record({ name: fc.string() }) }), {
      maxLength: 2
    }),
    tool_choice: fc.oneof(fc.constantFrom("auto", "none", "required"), fc.string(), fc.object()),
    response_format: fc.oneof(fc.record({ type: fc.string() }), fc.string())
  },
  { requiredKeys: [] }
)
/** A valid request with up to two of its fields replaced by fuzzed ones. */
const mutated = fc.tuple(
  fc.record({
    model: fc.constantFrom("primary", "backup", "gpt-4o-mini"),
    max_tokens: fc.integer({ min: 1, max: 100 }),
    messages: fc.array(fc.record({ role: fc.constantFrom("user", "system"), content: fc.string({ minLength: 1 }) }), {
      minLength: 1,
      maxLength: 3
    })
  }),
  nearlyValid
).chain(([base, fuzz]) =>
  fc.subarray(Object.keys(fuzz), { maxLength: 2 }).map((keys) =>
    JSON.stringify({ ...base, ...Object.fromEntries(keys.map((k) => [k, (fuzz as Record<string, unknown>)[k]])) })
  )
)
const body = fc.oneof(mutated, mutated, nearlyValid.map((r) => JSON.stringify(r)), fc.json(), fc.string(), fc.constantFrom("", "{", "null"))

describe("fuzzed request bodies", () => {
  it.live("no body gets a 5xx from a healthy upstream, every answer is JSON or an SSE stream, and the gateway keeps serving", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness()
      const statuses = new Map<number, number>()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(body, fc.constantFrom("/v1/chat/completions", "/v1/messages"), async (text, path) => {
            const response = await fetch(`${gateway.url}${path}`, {
              method: "POST",
              body: text,
              headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" }
            })
            const answer = await response.text()
            statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
            expect(response.status).toBeLessThan(500)
            if (response.headers.get("content-type")?.includes("text/event-stream")) {
              expect(answer).toMatch(/^(data|event): /)
            } else {
              expect(() => JSON.parse(answer)).not.toThrow()
            }
          }),
          { numRuns: 300, seed: 20261204 }
        )
      )
      // The run reached both the refusals and real answers.
      expect(statuses.get(400) ?? 0).toBeGreaterThan(0)
      expect(statuses.get(200) ?? 0).toBeGreaterThan(0)
      const ok = yield* Effect.promise(() =>
        fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          body: JSON.stringify({ model: "primary", messages: [{ role: "user", content: "hi" }] })
        })
      )
      expect(ok.status).toBe(200)
    })), 60_000)
})
