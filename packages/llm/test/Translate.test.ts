import type { Errors } from "@resilient-ai/core"
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type OpenAI from "openai"
import { ChatCompletionStream } from "openai/lib/ChatCompletionStream"
import * as AnthropicWire from "../src/AnthropicWire.js"
import * as Chat from "../src/Chat.js"
import * as Chunks from "../src/Chunks.js"
import * as OpenAiWire from "../src/OpenAiWire.js"
import * as Translate from "../src/Translate.js"

const NOW_SECONDS = 1_700_000_000

/** OpenAI wire body → neutral request. */
const fromOpenAi = (body: unknown) =>
  Effect.flatMap(Effect.orDie(OpenAiWire.decodeRequest(body)), Translate.fromOpenAiRequest)

/** OpenAI wire body → Anthropic wire body, the fallback path. */
const openAiToAnthropic = (body: unknown, options?: Translate.AnthropicRequestOptions) =>
  Effect.flatMap(fromOpenAi(body), (chat) => Translate.toAnthropicRequest(chat, options))

const chat = (fields: Partial<Chat.ChatRequest>): Chat.ChatRequest => ({
  model: "m",
  messages: [{ role: "user", content: "hi" }],
  ...fields
})

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
  }
} as const

/** A request with system, several turns, images, tools, parallel tool calls and their results, stop and temperature. */
const openAiRequest: OpenAI.ChatCompletionCreateParamsNonStreaming = {
  model: "gpt-4o",
  messages: [
    { role: "system", content: "You are a weather bot." },
    {
      role: "user",
      content: [
        { type: "text", text: "Compare these two skies." },
        { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        { type: "image_url", image_url: { url: "https://example.com/sky.jpg", detail: "high" } }
      ]
    },
    { role: "assistant", content: "Which cities?" },
    { role: "user", content: "Paris and Rome." },
    {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "call_paris", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } },
        { id: "call_rome", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Rome\"}" } }
      ]
    },
    { role: "tool", tool_call_id: "call_paris", content: "18°C, clear" },
    { role: "tool", tool_call_id: "call_rome", content: "24°C, cloudy" },
    { role: "user", content: "Which is warmer?" }
  ],
  tools: [weatherTool],
  tool_choice: "auto",
  max_completion_tokens: 500,
  temperature: 1.4,
  top_p: 1,
  stop: ["END"],
  seed: 7,
  user: "u-42"
}

const anthropicMessage = {
  id: "msg_01",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5-20250929",
  content: [
    { type: "thinking", thinking: "Two lookups.", signature: "sig" },
    { type: "text", text: "Let me check both." },
    { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
    { type: "tool_use", id: "toolu_2", name: "get_weather", input: { city: "Rome" } }
  ],
  stop_reason: "tool_use",
  stop_sequence: null,
  usage: { input_tokens: 30, cache_creation_input_tokens: 50, cache_read_input_tokens: 1000, output_tokens: 80 }
}

/** Text, then a tool call whose input arrives in pieces, then the final counts. */
const anthropicEvents = [
  {
    type: "message_start",
    message: {
      id: "msg_02",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 20, cache_read_input_tokens: 100, cache_creation_input_tokens: 0, output_tokens: 1 }
    }
  },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  { type: "ping" },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Checking" } },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " the weather." } },
  { type: "content_block_stop", index: 0 },
  {
    type: "content_block_start",
    index: 1,
    content_block: { type: "tool_use", id: "toolu_9", name: "get_weather", input: {} }
  },
  { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "" } },
  { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{\"city\": " } },
  { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "\"Paris\"}" } },
  { type: "content_block_stop", index: 1 },
  { type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 42 } },
  { type: "message_stop" }
]

const anthropicStream = (events: ReadonlyArray<unknown>) =>
  Stream.mapEffect(Stream.fromIterable(events), AnthropicWire.decodeStreamEvent)

const collect = <A, E, R>(stream: Stream.Stream<A, E, R>) => Effect.map(Stream.runCollect(stream), Chunk.toReadonlyArray)

const chunkOf = (created: number, choice: Record<string, unknown> | undefined, usage?: Record<string, unknown>) => ({
  id: "msg_02",
  object: "chat.completion.chunk",
  created,
  model: "claude-sonnet-4-5",
  choices: choice === undefined ? [] : [{ index: 0, logprobs: null, finish_reason: null, ...choice }],
  ...(usage === undefined ? {} : { usage })
})

describe("Translate", () => {
  it("translation failures are typed in the error channel, and only where a translation can fail", () => {
    expectTypeOf(Translate.fromOpenAiRequest).returns.toEqualTypeOf<
      Effect.Effect<Chat.ChatRequest, Errors.BadRequestError>
    >()
    expectTypeOf(Translate.toAnthropicRequest).returns.toEqualTypeOf<
      Effect.Effect<AnthropicWire.MessagesRequest, Errors.BadRequestError>
    >()
    expectTypeOf(Translate.fromOpenAiResponse).returns.toEqualTypeOf<
      Effect.Effect<Chat.ChatResponse, Errors.MalformedResponseError>
    >()
    expectTypeOf(Translate.toOpenAiResponse).returns.toEqualTypeOf<Effect.Effect<OpenAiWire.ChatCompletion>>()
    expectTypeOf(Translate.fromAnthropicResponse).returns.toEqualTypeOf<Chat.ChatResponse>()
    expectTypeOf(Translate.fromAnthropicStream<"E", never>).returns.toEqualTypeOf<
      Stream.Stream<Chat.ChatChunk, "E" | Errors.StreamInterruptedError>
    >()
  })

  describe("OpenAI request → neutral request", () => {
    it.effect.each([
      ["one system message stays plain text", {
        messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }]
      }, { system: "Be brief.", messages: [{ role: "user", content: "hi" }] }],
      ["system and developer messages, wherever they are, join the system prompt in order", {
        messages: [
          { role: "developer", content: "A" },
          { role: "user", content: "hi" },
          { role: "system", content: [{ type: "text", text: "B" }] }
        ]
      }, {
        system: [{ _tag: "Text", text: "A" }, { _tag: "Text", text: "B" }],
        messages: [{ role: "user", content: "hi" }]
      }],
      ["max_completion_tokens wins over the deprecated max_tokens", {
        max_completion_tokens: 100,
        max_tokens: 50
      }, { maxTokens: 100 }],
      ["max_tokens is used when it is the only limit", { max_tokens: 50, max_completion_tokens: null }, {
        maxTokens: 50
      }],
      ["a single stop string becomes a list", { stop: "END" }, { stop: ["END"] }],
      ["null sampling fields are absent", { temperature: null, top_p: null, stop: null }, {}],
      ["temperature, top_p, stream and parallel_tool_calls map by name", {
        temperature: 0.3,
        top_p: 0.9,
        stream: true,
        parallel_tool_calls: false
      }, { temperature: 0.3, topP: 0.9, stream: true, parallelToolCalls: false }],
      ["a named function tool choice becomes { name }", {
        tool_choice: { type: "function", function: { name: "f" } }
      }, { toolChoice: { name: "f" } }],
      ["a mode tool choice stays as it is", { tool_choice: "required" }, { toolChoice: "required" }],
      ["a data URL image becomes base64 bytes with their media type, an http URL a URL source", {
        messages: [{
          role: "user",
          content: [
            { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j/4AAQ" } },
            { type: "image_url", image_url: { url: "http://example.com/a.gif", detail: "low" } }
          ]
        }]
      }, {
        messages: [{
          role: "user",
          content: [
            { _tag: "Image", source: { _tag: "Base64", mediaType: "image/jpeg", data: "/9j/4AAQ" } },
            { _tag: "Image", source: { _tag: "Url", url: "http://example.com/a.gif" }, detail: "low" }
          ]
        }]
      }],
      ["tool definitions keep their parameters; strict goes to extra.openai", {
        tools: [{ type: "function", function: { name: "f", parameters: { type: "object" }, strict: true } }]
      }, { tools: [{ name: "f", parameters: { type: "object" }, extra: { openai: { strict: true } } }] }],
      ["unmapped fields go to extra.openai, at the request and the message level", {
        seed: 1,
        n: 1,
        messages: [{ role: "user", content: "hi", name: "alice" }]
      }, {
        messages: [{ role: "user", content: "hi", extra: { openai: { name: "alice" } } }],
        extra: { openai: { seed: 1, n: 1 } }
      }]
    ] as const)("%s", ([_, body, expected]) =>
      Effect.gen(function*() {
        const result = yield* fromOpenAi({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], ...body })
        expect(result).toStrictEqual({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], ...expected })
      }))

    it.effect.each([
      ["an audio part", { role: "user", content: [{ type: "input_audio", input_audio: { data: "x", format: "wav" } }] }, "messages[0].content[0]"],
      ["a file part", { role: "user", content: [{ type: "file", file: { file_id: "f" } }] }, "messages[0].content[0]"],
      ["a percent-encoded data URL", {
        role: "user",
        content: [{ type: "image_url", image_url: { url: "data:image/svg+xml,%3Csvg%3E" } }]
      }, "messages[0].content[0].image_url.url"],
      ["the deprecated function_call", {
        role: "assistant",
        content: null,
        function_call: { name: "f", arguments: "{}" }
      }, "messages[0].function_call"],
      ["the deprecated function role", { role: "function", name: "f", content: "x" }, "messages[0]"]
    ] as const)("%s is a BadRequestError naming the field", ([_, message, path]) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(fromOpenAi({ model: "gpt-4o", messages: [message] }))
        expect(error._tag).toBe("BadRequestError")
        expect(error.detail).toContain(path)
      }))

    it.effect("custom tools and allowed_tools choices are BadRequestErrors", () =>
      Effect.gen(function*() {
        const base = { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }
        const custom = yield* Effect.flip(fromOpenAi({ ...base, tools: [{ type: "custom", custom: { name: "sql" } }] }))
        expect(custom.detail).toContain("tools[0]")
        const allowed = yield* Effect.flip(
          fromOpenAi({ ...base, tool_choice: { type: "allowed_tools", allowed_tools: { mode: "auto", tools: [] } } })
        )
        expect(allowed.detail).toContain("tool_choice")
      }))
  })

  describe("OpenAI → neutral → OpenAI", () => {
    it.effect("a full request comes back as it was", () =>
      Effect.gen(function*() {
        const result = yield* Effect.flatMap(fromOpenAi(openAiRequest), Translate.toOpenAiRequest)
        expect(result).toStrictEqual(openAiRequest)
      }))

    it.effect("the deprecated max_tokens comes back as max_completion_tokens, developer as system", () =>
      Effect.gen(function*() {
        const result = yield* Effect.flatMap(
          fromOpenAi({ model: "o3", messages: [{ role: "developer", content: "x" }, { role: "user", content: "y" }], max_tokens: 9 }),
          Translate.toOpenAiRequest
        )
        expect(result).toStrictEqual({
          model: "o3",
          messages: [{ role: "system", content: "x" }, { role: "user", content: "y" }],
          max_completion_tokens: 9
        })
      }))

    it.effect("a completion comes back with the same content, tool calls, finish reason and token counts", () =>
      Effect.gen(function*() {
        const completion: OpenAI.ChatCompletion = {
          id: "chatcmpl-1",
          object: "chat.completion",
          created: 1738960610,
          model: "gpt-4o",
          system_fingerprint: "fp_1",
          choices: [{
            index: 0,
            message: {
              role: "assistant",
              content: null,
              refusal: null,
              tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{\"a\": 1}" } }]
            },
            logprobs: null,
            finish_reason: "tool_calls"
          }],
          usage: {
            prompt_tokens: 100,
            completion_tokens: 20,
            total_tokens: 120,
            prompt_tokens_details: { cached_tokens: 64 },
            completion_tokens_details: { reasoning_tokens: 5 }
          }
        }
        const neutral = yield* Effect.flatMap(OpenAiWire.decodeResponse(completion), Translate.fromOpenAiResponse)
        expect(neutral).toStrictEqual({
          id: "chatcmpl-1",
          model: "gpt-4o",
          created: 1738960610,
          text: "",
          toolCalls: [{ id: "call_1", name: "f", arguments: "{\"a\": 1}" }],
          finishReason: "tool_calls",
          usage: { inputTokens: 100, outputTokens: 20, cachedInputTokens: 64, reasoningTokens: 5 },
          extra: { openai: { system_fingerprint: "fp_1" } }
        })
        expect(yield* Translate.toOpenAiResponse(neutral)).toStrictEqual({
          system_fingerprint: "fp_1",
          ...completion
        })
      }))

    it.effect("an answer with a custom tool call (valid by the spec) decodes to customToolCalls and goes back out as it came", () =>
      Effect.gen(function*() {
        const completion = {
          id: "chatcmpl-c",
          object: "chat.completion",
          created: 1,
          model: "gpt-5",
          choices: [{
            index: 0,
            message: {
              role: "assistant",
              content: null,
              refusal: null,
              tool_calls: [
                { id: "call_1", type: "function", function: { name: "f", arguments: "{}" } },
                { id: "call_2", type: "custom", custom: { name: "sql", input: "select 1" } }
              ]
            },
            logprobs: null,
            finish_reason: "tool_calls"
          }]
        }
        const neutral = yield* Effect.flatMap(OpenAiWire.decodeResponse(completion), Translate.fromOpenAiResponse)
        expect(neutral.toolCalls).toEqual([{ id: "call_1", name: "f", arguments: "{}" }])
        expect(neutral.customToolCalls).toEqual([{ id: "call_2", name: "sql", input: "select 1" }])
        expect(yield* Translate.toOpenAiResponse(neutral)).toStrictEqual(completion)
        // Anthropic has no custom tools: the answer cannot be put in its format, and says why.
        const error = yield* Effect.flip(Translate.toAnthropicResponse(neutral))
        expect(error.detail).toContain("customToolCalls")
      }))

    it.effect("a custom tool call in the history round-trips through the neutral request", () =>
      Effect.gen(function*() {
        const body = {
          model: "gpt-5",
          messages: [
            { role: "user", content: "count" },
            { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "custom", custom: { name: "sql", input: "select 1" } }] },
            { role: "tool", tool_call_id: "c1", content: "1" }
          ]
        }
        const neutral = yield* Effect.flatMap(OpenAiWire.decodeRequest(body), Translate.fromOpenAiRequest)
        expect(neutral.messages[1]).toEqual({ role: "assistant", customToolCalls: [{ id: "c1", name: "sql", input: "select 1" }] })
        expect(yield* Translate.toOpenAiRequest(neutral)).toStrictEqual(body)
        const refused = yield* Effect.flip(Translate.toAnthropicRequest(neutral))
        expect(refused.detail).toContain("messages[1].customToolCalls")
      }))

    it.effect("n > 1: every choice comes back, and logprobs, annotations, audio and unknown fields are kept at their level", () =>
      Effect.gen(function*() {
        const logprobs = { content: [{ token: "Hi", logprob: -0.1, bytes: [72, 105], top_logprobs: [] }], refusal: null }
        const choice = (index: number, text: string) => ({
          index,
          message: {
            role: "assistant",
            content: text,
            refusal: null,
            annotations: [{ type: "url_citation", url_citation: { start_index: 0, end_index: 2, url: "https://x", title: "x" } }],
            audio: { id: `a${index}`, expires_at: 9, data: "AAAA", transcript: text }
          },
          logprobs,
          finish_reason: index === 2 ? "length" : "stop",
          future_choice_field: index
        })
        const completion = {
          id: "chatcmpl-n",
          object: "chat.completion",
          created: 1,
          model: "gpt-4o",
          choices: [choice(0, "Hi"), choice(1, "Hello"), choice(2, "Hey")],
          usage: { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 },
          service_tier: "default",
          future_top_level: { a: 1 }
        }
        const neutral = yield* Effect.flatMap(OpenAiWire.decodeResponse(completion), Translate.fromOpenAiResponse)
        // The first choice is the answer's own fields, as before.
        expect(neutral).toMatchObject({ text: "Hi", finishReason: "stop" })
        expect(Chat.choicesOf(neutral).map((c) => [c.index, c.text, c.finishReason])).toEqual([
          [0, "Hi", "stop"],
          [1, "Hello", "stop"],
          [2, "Hey", "length"]
        ])
        expect(neutral.choiceExtra).toEqual({ openai: { logprobs, future_choice_field: 0 } })
        expect(neutral.messageExtra?.openai).toEqual({
          annotations: completion.choices[0]?.message.annotations,
          audio: completion.choices[0]?.message.audio
        })
        expect(neutral.otherChoices?.[1]?.messageExtra?.openai?.["audio"]).toEqual(completion.choices[2]?.message.audio)
        expect(neutral.extra).toEqual({ openai: { service_tier: "default", future_top_level: { a: 1 } } })
        // Nothing is lost: sent in OpenAI's format again, the body is the one that came.
        expect(yield* Translate.toOpenAiResponse(neutral)).toStrictEqual(completion)
      }))

    it.effect("a completion without choices is a MalformedResponseError", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Translate.fromOpenAiResponse({
          id: "x",
          object: "chat.completion",
          created: 1,
          model: "gpt-4o",
          choices: []
        }))
        expect(error._tag).toBe("MalformedResponseError")
      }))

    it.effect("stream chunks come back as they were", () =>
      Effect.gen(function*() {
        const chunks: ReadonlyArray<OpenAI.ChatCompletionChunk> = [
          {
            id: "c",
            object: "chat.completion.chunk",
            created: 5,
            model: "gpt-4o",
            choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]
          },
          {
            id: "c",
            object: "chat.completion.chunk",
            created: 5,
            model: "gpt-4o",
            choices: [{
              index: 0,
              delta: {
                tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } }]
              },
              logprobs: null,
              finish_reason: null
            }]
          },
          {
            id: "c",
            object: "chat.completion.chunk",
            created: 5,
            model: "gpt-4o",
            choices: [{
              index: 0,
              delta: { tool_calls: [{ index: 0, function: { arguments: "{}" } }] },
              logprobs: null,
              finish_reason: null
            }]
          },
          {
            id: "c",
            object: "chat.completion.chunk",
            created: 5,
            model: "gpt-4o",
            choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "tool_calls" }]
          },
          {
            id: "c",
            object: "chat.completion.chunk",
            created: 5,
            model: "gpt-4o",
            choices: [],
            usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }
          }
        ]
        const decoded = yield* Effect.forEach(chunks, OpenAiWire.decodeChunk)
        const back = yield* Effect.forEach(decoded, (c) => Translate.toOpenAiChunk(Translate.fromOpenAiChunk(c)))
        expect(back).toStrictEqual(chunks)
      }))
  })

  describe("OpenAI request → Anthropic request", () => {
    it.effect("system, turns, images, tools, parallel tool calls and results, stop and temperature", () =>
      Effect.gen(function*() {
        const result = yield* openAiToAnthropic(openAiRequest, { model: "claude-sonnet-4-5" })
        expect(result).toStrictEqual({
          model: "claude-sonnet-4-5",
          max_tokens: 500,
          messages: [
            {
              role: "user",
              content: [
                { type: "text", text: "Compare these two skies." },
                { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
                { type: "image", source: { type: "url", url: "https://example.com/sky.jpg" } }
              ]
            },
            { role: "assistant", content: "Which cities?" },
            { role: "user", content: "Paris and Rome." },
            {
              role: "assistant",
              content: [
                { type: "tool_use", id: "call_paris", name: "get_weather", input: { city: "Paris" } },
                { type: "tool_use", id: "call_rome", name: "get_weather", input: { city: "Rome" } }
              ]
            },
            {
              role: "user",
              content: [
                { type: "tool_result", tool_use_id: "call_paris", content: "18°C, clear" },
                { type: "tool_result", tool_use_id: "call_rome", content: "24°C, cloudy" },
                { type: "text", text: "Which is warmer?" }
              ]
            }
          ],
          system: "You are a weather bot.",
          stop_sequences: ["END"],
          temperature: 1,
          tools: [{
            name: "get_weather",
            description: "Current weather",
            input_schema: weatherTool.function.parameters
          }],
          tool_choice: { type: "auto" }
        })
        expect(yield* AnthropicWire.decodeRequest(result)).toStrictEqual(result)
      }))

    it.effect.each([
      ["auto", undefined, { type: "auto" }],
      ["none", undefined, { type: "none" }],
      ["required", undefined, { type: "any" }],
      [{ name: "f" }, undefined, { type: "tool", name: "f" }],
      ["auto", false, { type: "auto", disable_parallel_tool_use: true }],
      ["required", false, { type: "any", disable_parallel_tool_use: true }],
      [{ name: "f" }, false, { type: "tool", name: "f", disable_parallel_tool_use: true }],
      ["none", false, { type: "none" }],
      [undefined, false, { type: "auto", disable_parallel_tool_use: true }],
      [undefined, true, undefined],
      [undefined, undefined, undefined]
    ] as const)("tool choice %j with parallel tool calls %j → %j", ([toolChoice, parallel, expected]) =>
      Effect.gen(function*() {
        const result = yield* Translate.toAnthropicRequest(chat({
          tools: [{ name: "f" }],
          ...(toolChoice === undefined ? {} : { toolChoice }),
          ...(parallel === undefined ? {} : { parallelToolCalls: parallel })
        }))
        expect(result.tool_choice).toStrictEqual(expected)
        expect(result.tools).toStrictEqual([{ name: "f", input_schema: { type: "object", properties: {} } }])
      }))

    it.effect.each([
      [0, 0],
      [0.7, 0.7],
      [1, 1],
      [1.5, 1],
      [2, 1]
    ] as const)("temperature %d is sent to Anthropic as %d (clamped to its 0–1 range)", ([temperature, expected]) =>
      Effect.gen(function*() {
        expect((yield* Translate.toAnthropicRequest(chat({ temperature }))).temperature).toBe(expected)
      }))

    it.effect.each([
      [{}, {}, 4096],
      [{}, { defaultMaxTokens: 1000 }, 1000],
      [{ maxTokens: 64 }, { defaultMaxTokens: 1000 }, 64]
    ] as const)("max tokens %j with options %j → max_tokens %d", ([fields, options, expected]) =>
      Effect.gen(function*() {
        expect((yield* Translate.toAnthropicRequest(chat(fields), options)).max_tokens).toBe(expected)
      }))

    it.effect("top_p 1 is not sent (a no-op that newer models reject beside temperature); other values are", () =>
      Effect.gen(function*() {
        expect("top_p" in (yield* Translate.toAnthropicRequest(chat({ topP: 1 })))).toBe(false)
        expect((yield* Translate.toAnthropicRequest(chat({ topP: 0.9 }))).top_p).toBe(0.9)
      }))

    it.effect("empty turns are dropped (Anthropic refuses empty content), a final assistant prefill is kept", () =>
      Effect.gen(function*() {
        const result = yield* Translate.toAnthropicRequest(chat({
          messages: [
            { role: "user", content: "hi" },
            { role: "assistant", content: "" },
            { role: "user", content: [{ _tag: "Text", text: "  " }, { _tag: "Text", text: "again" }] },
            { role: "assistant", content: "   " },
            { role: "user", content: "and again" },
            { role: "assistant", content: "" }
          ]
        }))
        expect(result.messages).toEqual([
          { role: "user", content: [{ type: "text", text: "hi" }, { type: "text", text: "again" }, { type: "text", text: "and again" }] },
          { role: "assistant", content: "" }
        ])
      }))

    it.effect("temperature and top_p together: only temperature is sent (current Claude models refuse both)", () =>
      Effect.gen(function*() {
        const both = yield* Translate.toAnthropicRequest(chat({ temperature: 0.3, topP: 0.9 }))
        expect(both.temperature).toBe(0.3)
        expect("top_p" in both).toBe(false)
      }))

    it.effect.each([
      ["n", { n: 2 }],
      ["logprobs", { logprobs: true }],
      ["top_logprobs", { top_logprobs: 3 }],
      ["response_format", { response_format: { type: "json_object" } }],
      ["response_format", { response_format: { type: "json_schema", json_schema: { name: "x" } } }],
      ["modalities", { modalities: ["text", "audio"] }],
      ["audio", { audio: { voice: "alloy", format: "wav" } }],
      ["functions", { functions: [{ name: "f" }] }],
      ["web_search_options", { web_search_options: {} }]
    ] as const)("OpenAI %s that changes the answer cannot fall back to Anthropic: BadRequestError", ([field, body]) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          openAiToAnthropic({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], ...body })
        )
        expect(error._tag).toBe("BadRequestError")
        expect(error.provider).toBe("anthropic")
        expect(error.detail).toContain(field)
      }))

    it.effect("OpenAI fields that do not change the answer are dropped", () =>
      Effect.gen(function*() {
        const result = yield* openAiToAnthropic({
          model: "gpt-4o",
          messages: [{ role: "user", content: "hi", name: "alice" }],
          n: 1,
          logprobs: false,
          response_format: { type: "text" },
          seed: 3,
          user: "u",
          stream_options: { include_usage: true },
          presence_penalty: 0.5,
          tools: [{ type: "function", function: { name: "f", strict: true } }]
        })
        expect(result).toStrictEqual({
          model: "gpt-4o",
          max_tokens: 4096,
          messages: [{ role: "user", content: "hi" }],
          tools: [{ name: "f", input_schema: { type: "object", properties: {} } }]
        })
      }))

    it.effect.each([
      ["{not json", "not valid JSON"],
      ["{\"a\":", "not valid JSON"],
      ["[1, 2]", "must be a JSON object"],
      ["42", "must be a JSON object"],
      ["null", "must be a JSON object"]
    ] as const)("malformed tool arguments %j are a BadRequestError (%s), not a throw", ([args, reason]) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Translate.toAnthropicRequest(chat({
          messages: [
            { role: "user", content: "hi" },
            { role: "assistant", toolCalls: [{ id: "c", name: "f", arguments: args }] }
          ]
        })))
        expect(error._tag).toBe("BadRequestError")
        expect(error.detail).toContain("messages[1].toolCalls[0].arguments")
        expect(error.detail).toContain(reason)
      }))

    it.effect("empty tool arguments mean no arguments", () =>
      Effect.gen(function*() {
        const result = yield* Translate.toAnthropicRequest(chat({
          messages: [{ role: "assistant", toolCalls: [{ id: "c", name: "f", arguments: " " }] }]
        }))
        expect(result.messages).toStrictEqual([
          { role: "assistant", content: [{ type: "tool_use", id: "c", name: "f", input: {} }] }
        ])
      }))

    it.effect("tool results keep is_error and image parts; empty text parts are left out", () =>
      Effect.gen(function*() {
        const result = yield* Translate.toAnthropicRequest(chat({
          messages: [
            { role: "assistant", content: [{ _tag: "Text", text: "" }], toolCalls: [{ id: "c", name: "f", arguments: "{}" }] },
            {
              role: "tool",
              toolCallId: "c",
              isError: true,
              content: [{ _tag: "Text", text: "failed" }, { _tag: "Image", source: { _tag: "Url", url: "https://x/y.png" } }]
            }
          ]
        }))
        expect(result.messages).toStrictEqual([
          { role: "assistant", content: [{ type: "tool_use", id: "c", name: "f", input: {} }] },
          {
            role: "user",
            content: [{
              type: "tool_result",
              tool_use_id: "c",
              content: [{ type: "text", text: "failed" }, { type: "image", source: { type: "url", url: "https://x/y.png" } }],
              is_error: true
            }]
          }
        ])
      }))
  })

  describe("provider-only fields", () => {
    it.effect("Anthropic cache_control survives Anthropic → neutral → Anthropic and is stripped for OpenAI", () =>
      Effect.gen(function*() {
        const body = {
          model: "claude-sonnet-4-5",
          max_tokens: 100,
          system: [{ type: "text", text: "Long instructions", cache_control: { type: "ephemeral" } }],
          messages: [{
            role: "user",
            content: [{ type: "text", text: "hi", cache_control: { type: "ephemeral", ttl: "1h" } }]
          }],
          tools: [{ name: "f", input_schema: { type: "object" }, cache_control: { type: "ephemeral" } }],
          top_k: 5,
          metadata: { user_id: "u" }
        }
        const neutral = yield* Effect.flatMap(AnthropicWire.decodeRequest(body), Translate.fromAnthropicRequest)
        expect(yield* Translate.toAnthropicRequest(neutral)).toStrictEqual(body)
        expect(yield* Translate.toOpenAiRequest(neutral)).toStrictEqual({
          model: "claude-sonnet-4-5",
          messages: [
            { role: "system", content: [{ type: "text", text: "Long instructions" }] },
            { role: "user", content: [{ type: "text", text: "hi" }] }
          ],
          tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
          max_completion_tokens: 100
        })
      }))
  })

  describe("Anthropic request → neutral request", () => {
    it.effect("tool results become tool messages, disable_parallel_tool_use becomes parallelToolCalls: false", () =>
      Effect.gen(function*() {
        const body = {
          model: "claude",
          max_tokens: 10,
          messages: [
            { role: "user", content: "weather?" },
            {
              role: "assistant",
              content: [
                { type: "thinking", thinking: "hm", signature: "s" },
                { type: "text", text: "Looking." },
                { type: "tool_use", id: "t1", name: "f", input: { a: 1 } }
              ]
            },
            {
              role: "user",
              content: [
                { type: "tool_result", tool_use_id: "t1", content: "ok", is_error: false },
                { type: "text", text: "thanks" }
              ]
            }
          ],
          tools: [{ name: "f", input_schema: { type: "object" } }],
          tool_choice: { type: "any", disable_parallel_tool_use: true },
          stop_sequences: ["X"]
        }
        const neutral = yield* Effect.flatMap(AnthropicWire.decodeRequest(body), Translate.fromAnthropicRequest)
        expect(neutral).toStrictEqual({
          model: "claude",
          messages: [
            { role: "user", content: "weather?" },
            {
              role: "assistant",
              content: [{ _tag: "Text", text: "Looking." }],
              toolCalls: [{ id: "t1", name: "f", arguments: "{\"a\":1}" }]
            },
            { role: "tool", toolCallId: "t1", content: "ok", isError: false },
            { role: "user", content: [{ _tag: "Text", text: "thanks" }] }
          ],
          tools: [{ name: "f", parameters: { type: "object" } }],
          toolChoice: "required",
          parallelToolCalls: false,
          maxTokens: 10,
          stop: ["X"]
        })
      }))

    it.effect.each([
      ["a server tool", { tools: [{ type: "web_search_20250305", name: "web_search" }] }, "tools[0]"],
      ["a document block", {
        messages: [{ role: "user", content: [{ type: "document", source: { type: "text", data: "d" } }] }]
      }, "messages[0].content[0]"],
      ["an image by file id", {
        messages: [{ role: "user", content: [{ type: "image", source: { type: "file", file_id: "f" } }] }]
      }, "messages[0].content[0].source"]
    ] as const)("%s is a BadRequestError", ([_, fields, path]) =>
      Effect.gen(function*() {
        const body = { model: "claude", max_tokens: 10, messages: [{ role: "user", content: "hi" }], ...fields }
        const error = yield* Effect.flip(
          Effect.flatMap(Effect.orDie(AnthropicWire.decodeRequest(body)), Translate.fromAnthropicRequest)
        )
        expect(error.detail).toContain(path)
      }))
  })

  describe("Anthropic response → OpenAI response", () => {
    it.effect("text, tool calls, finish reason and usage with cache reads and writes", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW_SECONDS * 1000)
        const message = yield* AnthropicWire.decodeResponse(anthropicMessage)
        const result = yield* Translate.toOpenAiResponse(Translate.fromAnthropicResponse(message))
        expect(result).toStrictEqual({
          id: "msg_01",
          object: "chat.completion",
          created: NOW_SECONDS,
          model: "claude-sonnet-4-5-20250929",
          choices: [{
            index: 0,
            message: {
              role: "assistant",
              content: "Let me check both.",
              refusal: null,
              tool_calls: [
                { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } },
                { id: "toolu_2", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Rome\"}" } }
              ]
            },
            logprobs: null,
            finish_reason: "tool_calls"
          }],
          usage: {
            prompt_tokens: 1080,
            completion_tokens: 80,
            total_tokens: 1160,
            prompt_tokens_details: { cached_tokens: 1000, cache_write_tokens: 50 }
          }
        })
        expect(yield* OpenAiWire.decodeResponse(result)).toStrictEqual(result)
      }))

    it.effect("a tool-only answer has null content, as OpenAI sends it", () =>
      Effect.gen(function*() {
        const message = yield* AnthropicWire.decodeResponse({
          ...anthropicMessage,
          content: anthropicMessage.content.filter((b) => b.type === "tool_use")
        })
        const result = yield* Translate.toOpenAiResponse(Translate.fromAnthropicResponse(message))
        expect(result.choices[0]?.message.content).toBeNull()
      }))

    it.effect.each([
      ["end_turn", "stop", "stop"],
      ["stop_sequence", "stop", "stop"],
      ["max_tokens", "length", "length"],
      ["model_context_window_exceeded", "length", "length"],
      ["tool_use", "tool_calls", "tool_calls"],
      ["refusal", "content_filter", "content_filter"],
      ["pause_turn", "other", "stop"],
      ["some_future_reason", "other", "stop"],
      [null, "other", "stop"]
    ] as const)("stop reason %s → neutral %s → OpenAI %s", ([stopReason, neutral, openAi]) =>
      Effect.gen(function*() {
        const message = yield* AnthropicWire.decodeResponse({ ...anthropicMessage, stop_reason: stopReason })
        const response = Translate.fromAnthropicResponse(message)
        expect(response.finishReason).toBe(neutral)
        expect((yield* Translate.toOpenAiResponse(response)).choices[0]?.finish_reason).toBe(openAi)
      }))

    it.effect("neutral → Anthropic response is the inverse for text, tool calls and usage", () =>
      Effect.gen(function*() {
        const message = yield* AnthropicWire.decodeResponse({
          ...anthropicMessage,
          content: anthropicMessage.content.filter((b) => b.type !== "thinking")
        })
        expect(yield* Translate.toAnthropicResponse(Translate.fromAnthropicResponse(message))).toStrictEqual(
          { ...anthropicMessage, content: anthropicMessage.content.filter((b) => b.type !== "thinking") }
        )
      }))
  })

  describe("Anthropic stream → OpenAI chunks", () => {
    it.effect("text and a tool call give OpenAI's deltas, then the finish reason, then the usage", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW_SECONDS * 1000)
        const result = yield* collect(Translate.toOpenAiStream(Translate.fromAnthropicStream(anthropicStream(anthropicEvents))))
        expect(result).toStrictEqual([
          chunkOf(NOW_SECONDS, { delta: { role: "assistant", content: "" } }),
          chunkOf(NOW_SECONDS, { delta: { content: "Checking" } }),
          chunkOf(NOW_SECONDS, { delta: { content: " the weather." } }),
          chunkOf(NOW_SECONDS, {
            delta: {
              tool_calls: [{ index: 0, id: "toolu_9", type: "function", function: { name: "get_weather", arguments: "" } }]
            }
          }),
          chunkOf(NOW_SECONDS, { delta: { tool_calls: [{ index: 0, function: { arguments: "{\"city\": " } }] } }),
          chunkOf(NOW_SECONDS, { delta: { tool_calls: [{ index: 0, function: { arguments: "\"Paris\"}" } }] } }),
          chunkOf(NOW_SECONDS, { delta: {}, finish_reason: "tool_calls" }),
          chunkOf(NOW_SECONDS, undefined, {
            prompt_tokens: 120,
            completion_tokens: 42,
            total_tokens: 162,
            prompt_tokens_details: { cached_tokens: 100, cache_write_tokens: 0 }
          })
        ])
        for (const chunk of result) expect(yield* OpenAiWire.decodeChunk(chunk)).toStrictEqual(chunk)
      }))

    it.effect("the official OpenAI client assembles the translated chunks into the expected message", () =>
      Effect.gen(function*() {
        const chunks = yield* collect(
          Translate.toOpenAiStream(Translate.fromAnthropicStream(anthropicStream(anthropicEvents)))
        )
        const completion = yield* Effect.promise(() => {
          const bytes = new TextEncoder().encode(chunks.map((c) => JSON.stringify(c)).join("\n") + "\n")
          const readable = new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(bytes)
              controller.close()
            }
          })
          return ChatCompletionStream.fromReadableStream(readable).finalChatCompletion()
        })
        expect(completion.choices[0]?.message).toMatchObject({
          role: "assistant",
          content: "Checking the weather.",
          tool_calls: [{ id: "toolu_9", type: "function", function: { name: "get_weather", arguments: "{\"city\": \"Paris\"}" } }]
        })
        expect(completion.choices[0]?.finish_reason).toBe("tool_calls")
        expect(completion.usage).toMatchObject({ prompt_tokens: 120, completion_tokens: 42, total_tokens: 162 })
      }))

    it.effect("several tool calls are numbered 0, 1 in order; one without input gets \"{}\"", () =>
      Effect.gen(function*() {
        const [start] = anthropicEvents
        const events = [
          start,
          { type: "content_block_start", index: 0, content_block: { type: "tool_use", id: "a", name: "now", input: {} } },
          { type: "content_block_stop", index: 0 },
          { type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "b", name: "f", input: {} } },
          { type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{}" } },
          { type: "content_block_stop", index: 1 }
        ]
        const chunks = yield* collect(Translate.fromAnthropicStream(anthropicStream(events)))
        expect(chunks.flatMap((c) => c.toolCalls ?? [])).toStrictEqual([
          { index: 0, id: "a", name: "now", arguments: "" },
          { index: 0, arguments: "{}" },
          { index: 1, id: "b", name: "f", arguments: "" },
          { index: 1, arguments: "{}" }
        ])
      }))

    it.effect("thinking deltas, pings and unknown events emit nothing", () =>
      Effect.gen(function*() {
        const [start] = anthropicEvents
        const events = [
          start,
          { type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "", signature: "" } },
          { type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "hmm" } },
          { type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "s" } },
          { type: "content_block_stop", index: 0 },
          { type: "ping" },
          { type: "some_future_event" }
        ]
        const chunks = yield* collect(Translate.fromAnthropicStream(anthropicStream(events)))
        expect(chunks).toStrictEqual([{ id: "msg_02", model: "claude-sonnet-4-5", role: "assistant", text: "" }])
      }))

    it.effect("message_delta's input counts, when present, replace message_start's", () =>
      Effect.gen(function*() {
        const [start] = anthropicEvents
        const events = [
          start,
          {
            type: "message_delta",
            delta: { stop_reason: "end_turn" },
            usage: { output_tokens: 7, input_tokens: 25, cache_read_input_tokens: 100 }
          },
          { type: "message_stop" }
        ]
        const chunks = yield* collect(Translate.fromAnthropicStream(anthropicStream(events)))
        expect(chunks.slice(1)).toStrictEqual([
          { id: "msg_02", model: "claude-sonnet-4-5", finishReason: "stop" },
          {
            id: "msg_02",
            model: "claude-sonnet-4-5",
            usage: { inputTokens: 125, outputTokens: 7, cachedInputTokens: 100, cacheWriteInputTokens: 0 }
          }
        ])
      }))

    it.effect("an error event fails the stream with StreamInterruptedError after the chunks before it", () =>
      Effect.gen(function*() {
        const events = [
          ...anthropicEvents.slice(0, 4),
          { type: "error", error: { type: "overloaded_error", message: "Overloaded" } },
          ...anthropicEvents.slice(4)
        ]
        const error = yield* Effect.flip(collect(Translate.fromAnthropicStream(anthropicStream(events))))
        expect(error._tag).toBe("StreamInterruptedError")
        if (error._tag === "StreamInterruptedError") {
          expect(error.chunksReceived).toBe(2)
          expect(error.detail).toBe("overloaded_error: Overloaded")
          expect(error.provider).toBe("anthropic")
        }
      }))
  })
})

describe("Translate.toAnthropicStream: neutral chunks as a Messages API server streams them", () => {
  const chunk = (c: Omit<Chat.ChatChunk, "id" | "model">): Chat.ChatChunk => ({ id: "msg_9", model: "m", ...c })
  const neutral: ReadonlyArray<Chat.ChatChunk> = [
    chunk({ role: "assistant" }),
    chunk({ text: "Let me " }),
    chunk({ text: "check." }),
    chunk({ toolCalls: [{ index: 0, id: "call_a", name: "weather", arguments: "{\"city\":" }] }),
    chunk({ toolCalls: [{ index: 0, arguments: "\"Paris\"}" }] }),
    chunk({ toolCalls: [{ index: 1, id: "call_b", name: "time", arguments: "{}" }] }),
    chunk({ finishReason: "tool_calls" }),
    chunk({ usage: { inputTokens: 120, outputTokens: 30, cachedInputTokens: 100 } })
  ]

  it.effect("each event is a valid Anthropic event, in Anthropic's order", () =>
    Effect.gen(function*() {
      const events = yield* collect(Translate.toAnthropicStream(Stream.fromIterable(neutral)))
      for (const event of events) yield* AnthropicWire.decodeStreamEvent(event)
      expect(events.map((e) => e.type)).toEqual([
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop"
      ])
      expect(events.at(-2)).toEqual({
        type: "message_delta",
        delta: { stop_reason: "tool_use", stop_sequence: null },
        usage: { input_tokens: 20, output_tokens: 30, cache_read_input_tokens: 100 }
      })
    }))

  it.effect("read back with fromAnthropicStream, it is the same answer", () =>
    Effect.gen(function*() {
      const roundTrip = yield* Chunks.collect(Translate.fromAnthropicStream(Translate.toAnthropicStream(Stream.fromIterable(neutral))))
      const original = yield* Chunks.collect(Stream.fromIterable(neutral))
      expect(roundTrip).toEqual(original)
      expect(roundTrip.toolCalls.map((c) => [c.name, c.arguments])).toEqual([["weather", "{\"city\":\"Paris\"}"], ["time", "{}"]])
    }))

  it.effect("an empty stream sends nothing; a stream without a finish reason ends its turn", () =>
    Effect.gen(function*() {
      expect(yield* collect(Translate.toAnthropicStream(Stream.empty))).toEqual([])
      const events = yield* collect(Translate.toAnthropicStream(Stream.make(chunk({ text: "hi" }))))
      expect(events.at(-2)).toMatchObject({ type: "message_delta", delta: { stop_reason: "end_turn" } })
    }))
})
