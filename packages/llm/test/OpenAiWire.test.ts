import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type OpenAI from "openai"
import * as OpenAiWire from "../src/OpenAiWire.js"

const roundTrip = <A, I>(schema: Schema.Schema<A, I>, body: unknown): string => {
  const decoded = Schema.decodeUnknownSync(schema, OpenAiWire.parseOptions)(body)
  return JSON.stringify(Schema.encodeSync(schema, OpenAiWire.parseOptions)(decoded))
}

// Real shapes, typed by the official `openai` client so they cannot drift from it.

const request: OpenAI.ChatCompletionCreateParamsNonStreaming = {
  model: "gpt-4o",
  messages: [
    { role: "developer", content: "Be terse." },
    { role: "system", content: [{ type: "text", text: "Answer in French." }] },
    {
      role: "user",
      name: "alice",
      content: [
        { type: "text", text: "What is in this image?" },
        { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
        { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
        { type: "file", file: { file_id: "file-abc" } }
      ]
    },
    {
      role: "assistant",
      content: null,
      refusal: null,
      tool_calls: [
        { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } },
        { id: "call_2", type: "custom", custom: { name: "sql", input: "select 1" } }
      ]
    },
    { role: "tool", tool_call_id: "call_1", content: [{ type: "text", text: "18°C" }] },
    { role: "function", name: "legacy", content: null }
  ],
  max_completion_tokens: 256,
  max_tokens: null,
  temperature: 0.2,
  top_p: 1,
  n: 1,
  stop: ["\n\n"],
  seed: 42,
  user: "user-1",
  logprobs: false,
  top_logprobs: null,
  response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object" } } },
  tools: [
    {
      type: "function",
      function: { name: "get_weather", description: "Weather", parameters: { type: "object" }, strict: true }
    },
    { type: "custom", custom: { name: "sql", format: { type: "text" } } }
  ],
  tool_choice: { type: "function", function: { name: "get_weather" } },
  parallel_tool_calls: false,
  stream: false,
  metadata: { tenant: "acme" },
  store: false
}

const completion: OpenAI.ChatCompletion = {
  id: "chatcmpl-123",
  object: "chat.completion",
  created: 1738960610,
  model: "gpt-4o-2024-08-06",
  system_fingerprint: "fp_50cad350e4",
  service_tier: "default",
  choices: [
    {
      index: 0,
      message: {
        role: "assistant",
        content: null,
        refusal: null,
        annotations: [],
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }
        ]
      },
      logprobs: null,
      finish_reason: "tool_calls"
    }
  ],
  usage: {
    prompt_tokens: 82,
    completion_tokens: 17,
    total_tokens: 99,
    prompt_tokens_details: { cached_tokens: 64, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0
    }
  }
}

const chunks: ReadonlyArray<OpenAI.ChatCompletionChunk> = [
  {
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt-4o",
    choices: [{ index: 0, delta: { role: "assistant", content: "", refusal: null }, logprobs: null, finish_reason: null }]
  },
  {
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt-4o",
    choices: [{
      index: 0,
      delta: {
        tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }]
      },
      finish_reason: null
    }]
  },
  {
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt-4o",
    choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }]
  },
  {
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt-4o",
    choices: [],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 }
  }
]

describe("OpenAiWire", () => {
  it.effect("decodes a request shaped by the official client, every message role and part type", () =>
    Effect.gen(function*() {
      const decoded = yield* OpenAiWire.decodeRequest(request)
      expect(decoded.messages.map((m) => m.role)).toEqual(["developer", "system", "user", "assistant", "tool", "function"])
      expect(decoded).toEqual(request)
    }))

  it.effect("decodes a completion shaped by the official client", () =>
    Effect.gen(function*() {
      const decoded = yield* OpenAiWire.decodeResponse(completion)
      expect(decoded.choices[0]?.finish_reason).toBe("tool_calls")
      expect(decoded.usage?.prompt_tokens_details?.cached_tokens).toBe(64)
      expect(decoded).toEqual(completion)
    }))

  it.effect("decodes stream chunks shaped by the official client, including the usage-only closing chunk", () =>
    Effect.gen(function*() {
      const decoded = yield* Effect.forEach(chunks, OpenAiWire.decodeChunk)
      expect(decoded).toEqual(chunks)
      expect(decoded[3]?.choices).toEqual([])
    }))

  it.effect("decodes error bodies, with and without param and code", () =>
    Effect.gen(function*() {
      const full = {
        error: { message: "Rate limit reached", type: "requests", param: null, code: "rate_limit_exceeded" }
      }
      expect(yield* OpenAiWire.decodeError(full)).toEqual(full)
      const sparse = { error: { message: "boom", type: "server_error" } }
      expect(yield* OpenAiWire.decodeError(sparse)).toEqual(sparse)
    }))

  it.each([
    ["a completion without choices", OpenAiWire.ChatCompletion, { ...completion, choices: undefined }],
    ["a completion of the wrong object", OpenAiWire.ChatCompletion, { ...completion, object: "chat.completion.chunk" }],
    ["an unknown finish reason", OpenAiWire.ChatCompletion, {
      ...completion,
      choices: [{ ...completion.choices[0], finish_reason: "done" }]
    }],
    ["a request without messages", OpenAiWire.ChatCompletionRequest, { model: "gpt-4o" }],
    ["a user message without content", OpenAiWire.ChatCompletionRequest, {
      model: "gpt-4o",
      messages: [{ role: "user" }]
    }],
    ["a tool call with object arguments", OpenAiWire.ChatCompletionRequest, {
      model: "gpt-4o",
      messages: [{
        role: "assistant",
        tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: { a: 1 } } }]
      }]
    }]
  ] as const)("rejects %s", (_, schema, body) => {
    expect(Either.isLeft(Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)(body))).toBe(true)
  })

  describe("unknown fields pass through, byte for byte", () => {
    it("in a request: top level, messages, content parts, tool calls, tools", () => {
      const body = {
        model: "gpt-5",
        future_top_level: { nested: [1, 2, 3] },
        messages: [
          { role: "system", content: "x", future_message_field: true },
          {
            role: "user",
            content: [
              { type: "text", text: "hi", prompt_cache_breakpoint: { ttl: "1h" } },
              { type: "image_url", image_url: { url: "https://x/y.png", future_image_field: 1 } }
            ]
          },
          {
            role: "assistant",
            content: null,
            tool_calls: [{
              id: "c",
              type: "function",
              function: { name: "f", arguments: "{}", future_fn_field: "z" },
              future_call_field: 2
            }]
          },
          { role: "tool", tool_call_id: "c", content: "ok", future_tool_field: null }
        ],
        tools: [{ type: "function", function: { name: "f", future_fn_field: 3 }, future_tool_field: 4 }],
        verbosity: "low"
      }
      expect(roundTrip(OpenAiWire.ChatCompletionRequest, body)).toBe(JSON.stringify(body))
    })

    it("in a response: top level, choices, message, usage details", () => {
      const body = {
        id: "chatcmpl-9",
        future_top_level: "a",
        object: "chat.completion",
        created: 1,
        model: "gpt-5",
        choices: [{
          future_choice_field: { deep: true },
          index: 0,
          message: {
            role: "assistant",
            content: "hello",
            refusal: null,
            annotations: [{ type: "url_citation", url_citation: { url: "https://x", title: "x" } }],
            future_message_field: [1]
          },
          logprobs: null,
          finish_reason: "stop"
        }],
        usage: {
          prompt_tokens: 1,
          completion_tokens: 2,
          total_tokens: 3,
          prompt_tokens_details: { cached_tokens: 0, future_detail: 7 },
          future_usage_field: 5
        },
        moderation: null
      }
      expect(roundTrip(OpenAiWire.ChatCompletion, body)).toBe(JSON.stringify(body))
    })

    it("in a chunk: top level, choices, delta, tool call deltas", () => {
      const body = {
        id: "chatcmpl-9",
        object: "chat.completion.chunk",
        created: 1,
        model: "gpt-5",
        obfuscation: "abc",
        choices: [{
          index: 0,
          delta: {
            content: "he",
            future_delta_field: 1,
            tool_calls: [{ index: 0, function: { arguments: "{", future: 1 }, future_call: 2 }]
          },
          finish_reason: null,
          future_choice_field: true
        }],
        usage: null
      }
      expect(roundTrip(OpenAiWire.ChatCompletionChunk, body)).toBe(JSON.stringify(body))
    })

    it("in an error body", () => {
      const body = { error: { message: "m", type: "t", param: null, code: null, future: 1 }, request_id: "r" }
      expect(roundTrip(OpenAiWire.ErrorResponse, body)).toBe(JSON.stringify(body))
    })
  })
})
