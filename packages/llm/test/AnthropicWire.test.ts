import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as AnthropicWire from "../src/AnthropicWire.js"

const roundTrip = <A, I>(schema: Schema.Schema<A, I>, body: unknown): string => {
  const decoded = Schema.decodeUnknownSync(schema, AnthropicWire.parseOptions)(body)
  return JSON.stringify(Schema.encodeSync(schema, AnthropicWire.parseOptions)(decoded))
}

const request = {
  model: "claude-sonnet-4-5",
  max_tokens: 1024,
  system: [{ type: "text", text: "You are terse.", cache_control: { type: "ephemeral" } }],
  messages: [
    {
      role: "user",
      content: [
        { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
        { type: "image", source: { type: "url", url: "https://example.com/cat.png" } },
        { type: "document", source: { type: "text", media_type: "text/plain", data: "doc" } },
        { type: "text", text: "Weather in Paris?" }
      ]
    },
    {
      role: "assistant",
      content: [
        { type: "thinking", thinking: "Let me look it up.", signature: "sig" },
        { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }
      ]
    },
    {
      role: "user",
      content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "18°C", is_error: false }]
    }
  ],
  tools: [
    {
      name: "get_weather",
      description: "Weather",
      input_schema: { type: "object", properties: { city: { type: "string" } } },
      cache_control: { type: "ephemeral" }
    },
    { type: "web_search_20250305", name: "web_search", max_uses: 3 }
  ],
  tool_choice: { type: "auto", disable_parallel_tool_use: true },
  stop_sequences: ["\n\nHuman:"],
  temperature: 0.5,
  top_k: 40,
  metadata: { user_id: "u-1" },
  thinking: { type: "enabled", budget_tokens: 2048 },
  stream: false
}

const message = {
  id: "msg_01",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5-20250929",
  content: [
    { type: "thinking", thinking: "…", signature: "sig" },
    { type: "redacted_thinking", data: "opaque" },
    { type: "text", text: "Let me check.", citations: null },
    { type: "server_tool_use", id: "srvtoolu_1", name: "web_search", input: { query: "weather" } },
    { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }
  ],
  stop_reason: "tool_use",
  stop_sequence: null,
  usage: {
    input_tokens: 12,
    cache_creation_input_tokens: 100,
    cache_read_input_tokens: 2000,
    output_tokens: 40,
    service_tier: "standard",
    server_tool_use: { web_search_requests: 1 }
  },
  container: null
}

const events = [
  { type: "message_start", message: { ...message, content: [], stop_reason: null, usage: { input_tokens: 12, output_tokens: 1 } } },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  { type: "ping" },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hi" } },
  { type: "content_block_delta", index: 0, delta: { type: "citations_delta", citation: { type: "char_location" } } },
  { type: "content_block_stop", index: 0 },
  { type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "toolu_1", name: "f", input: {} } },
  { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{\"a\":" } },
  { type: "content_block_stop", index: 1 },
  { type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 30 } },
  { type: "message_stop" },
  { type: "error", error: { type: "overloaded_error", message: "Overloaded" } },
  { type: "some_future_event", payload: 1 }
]

describe("AnthropicWire", () => {
  it.effect("decodes a request with system blocks, images, tool use and results, server tools and unknown blocks", () =>
    Effect.gen(function*() {
      const decoded = yield* AnthropicWire.decodeRequest(request)
      expect(decoded).toEqual(request)
      const firstContent = decoded.messages[0]?.content
      expect(typeof firstContent === "string" ? [] : firstContent?.map((b) => b.type)).toEqual([
        "image",
        "image",
        "document",
        "text"
      ])
    }))

  it.effect("decodes a response with thinking, server tool and tool_use blocks; the guards tell them apart", () =>
    Effect.gen(function*() {
      const decoded = yield* AnthropicWire.decodeResponse(message)
      expect(decoded).toEqual(message)
      expect(decoded.content.filter(AnthropicWire.isTextBlock).map((b) => b.text)).toEqual(["Let me check."])
      expect(decoded.content.filter(AnthropicWire.isToolUseBlock).map((b) => b.id)).toEqual(["toolu_1"])
    }))

  it.effect("decodes every stream event type, and an unknown one", () =>
    Effect.gen(function*() {
      const decoded = yield* Effect.forEach(events, AnthropicWire.decodeStreamEvent)
      expect(decoded).toEqual(events)
      const guards = [
        AnthropicWire.isMessageStartEvent,
        AnthropicWire.isContentBlockStartEvent,
        AnthropicWire.isContentBlockDeltaEvent,
        AnthropicWire.isContentBlockStopEvent,
        AnthropicWire.isMessageDeltaEvent,
        AnthropicWire.isMessageStopEvent,
        AnthropicWire.isErrorEvent
      ]
      expect(decoded.map((e) => guards.findIndex((is) => is(e)))).toEqual([0, 1, -1, 2, 2, 3, 1, 2, 3, 4, 5, 6, -1])
    }))

  it.effect("decodes the error body", () =>
    Effect.gen(function*() {
      const body = {
        type: "error",
        error: { type: "overloaded_error", message: "Overloaded" },
        request_id: "req_011"
      }
      expect(yield* AnthropicWire.decodeError(body)).toEqual(body)
    }))

  it.each([
    ["a text block without text (a known type is not let through as unknown)", AnthropicWire.Message, {
      ...message,
      content: [{ type: "text" }]
    }],
    ["a tool_use block whose input is not an object", AnthropicWire.Message, {
      ...message,
      content: [{ type: "tool_use", id: "t", name: "f", input: "{}" }]
    }],
    ["a stop reason that is not a string", AnthropicWire.Message, { ...message, stop_reason: 42 }],
    ["a message without usage", AnthropicWire.Message, { ...message, usage: undefined }],
    ["a request without max_tokens", AnthropicWire.MessagesRequest, { ...request, max_tokens: undefined }],
    ["a system role message", AnthropicWire.MessagesRequest, {
      ...request,
      messages: [{ role: "system", content: "x" }]
    }],
    ["a text_delta without text", AnthropicWire.StreamEvent, {
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta" }
    }]
  ] as const)("rejects %s", (_, schema, body) => {
    expect(Either.isLeft(Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)(body))).toBe(true)
  })

  it("a stop reason Anthropic adds later decodes as its string, in a message and in a message_delta", () => {
    const decoded = Schema.decodeUnknownSync(AnthropicWire.Message)({ ...message, stop_reason: "some_future_reason" })
    expect(decoded.stop_reason).toBe("some_future_reason")
    const delta = Schema.decodeUnknownSync(AnthropicWire.StreamEvent)({
      type: "message_delta",
      delta: { stop_reason: "some_future_reason", stop_sequence: null },
      usage: { output_tokens: 3 }
    })
    expect(delta).toMatchObject({ delta: { stop_reason: "some_future_reason" } })
  })

  describe("unknown fields pass through, byte for byte", () => {
    it("in a request: top level, messages, blocks, image sources, tools, tool_choice", () => {
      const body = {
        ...request,
        future_top_level: { a: [1] },
        messages: request.messages.map((m, i) => ({ ...m, future_message_field: i })),
        tool_choice: { type: "tool", name: "get_weather", future_choice_field: true }
      }
      expect(roundTrip(AnthropicWire.MessagesRequest, body)).toBe(JSON.stringify(body))
    })

    it("in a response: top level, content blocks, usage", () => {
      expect(roundTrip(AnthropicWire.Message, message)).toBe(JSON.stringify(message))
    })

    it("in stream events", () => {
      for (const event of events) {
        const body = { ...event, future_event_field: { x: 1 } }
        expect(roundTrip(AnthropicWire.StreamEvent, body)).toBe(JSON.stringify(body))
      }
    })
  })
})
