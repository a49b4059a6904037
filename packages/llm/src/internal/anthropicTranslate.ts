import { Errors } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as AnthropicWire from "../AnthropicWire.js"
import type * as Chat from "../Chat.js"
import { anthropicExtra, extend, type Fields, unknownFields, unsupported } from "./translateCommon.js"

const PROVIDER = "anthropic"

export const DEFAULT_MAX_TOKENS = 4096

export interface RequestOptions {
  readonly defaultMaxTokens?: number | undefined
  readonly model?: string | undefined
}

// -----------------------------------------------------------------------------
// request: Chat → Anthropic
// -----------------------------------------------------------------------------

/**
 * OpenAI-only request fields that change what the answer is. Anthropic
 * cannot honour them, so a request carrying them cannot fall back to it.
 * Every other OpenAI-only field (seed, user, penalties, logit_bias, store,
 * metadata, service_tier, stream_options, prediction, …) is dropped.
 */
const contractFields: ReadonlyArray<readonly [string, (value: unknown) => boolean, string]> = [
  ["n", (v) => typeof v === "number" && v !== 1, "several choices (n > 1)"],
  ["logprobs", (v) => v === true, "log probabilities"],
  ["top_logprobs", (v) => typeof v === "number" && v > 0, "log probabilities"],
  ["response_format", (v) => Predicate.isRecord(v) && v["type"] !== "text", "JSON mode / structured outputs"],
  ["modalities", (v) => Array.isArray(v) && v.includes("audio"), "audio output"],
  ["audio", Predicate.isNotNullable, "audio output"],
  ["functions", Predicate.isNotNullable, "the deprecated functions (use tools)"],
  ["function_call", Predicate.isNotNullable, "the deprecated function_call (use tool_choice)"],
  ["web_search_options", Predicate.isNotNullable, "web search"]
]

const checkOpenAiOnly = (fields: Fields | undefined): Effect.Effect<void, Errors.BadRequestError> => {
  for (const [key, unsupportedValue, what] of contractFields) {
    if (fields !== undefined && key in fields && unsupportedValue(fields[key])) {
      return unsupported(PROVIDER, `${key}: ${what} cannot be served by Anthropic`)
    }
  }
  return Effect.void
}

const decodeJson = Schema.decodeUnknownEither(Schema.parseJson())

/** Tool call arguments (JSON text) → Anthropic `input` (an object). Empty text means no arguments. */
export const parseArguments = (text: string, path: string): Effect.Effect<Fields, Errors.BadRequestError> => {
  if (text.trim() === "") return Effect.succeed({})
  const parsed = decodeJson(text)
  if (Either.isLeft(parsed)) {
    return unsupported(PROVIDER, `${path}: tool call arguments are not valid JSON: ${parsed.left.message}`)
  }
  return Predicate.isRecord(parsed.right)
    ? Effect.succeed(parsed.right)
    : unsupported(PROVIDER, `${path}: tool call arguments must be a JSON object`)
}

const clamp = (value: number, min: number, max: number): number => Math.min(Math.max(value, min), max)

const textBlock = (part: Chat.TextPart): AnthropicWire.TextBlock =>
  extend({ type: "text" as const, text: part.text }, part.extra?.anthropic)

const imageBlock = (part: Chat.ImagePart): AnthropicWire.ImageBlock =>
  extend({
    type: "image" as const,
    source: part.source._tag === "Url"
      ? { type: "url" as const, url: part.source.url }
      : { type: "base64" as const, media_type: part.source.mediaType, data: part.source.data }
  }, part.extra?.anthropic)

/** Anthropic rejects empty text blocks, so they are left out. */
const partBlocks = (parts: ReadonlyArray<Chat.ContentPart>): Array<AnthropicWire.ContentBlock> =>
  parts.flatMap((part): Array<AnthropicWire.ContentBlock> =>
    part._tag === "Image" ? [imageBlock(part)] : part.text === "" ? [] : [textBlock(part)]
  )

type Turn = {
  readonly role: "user" | "assistant"
  readonly content: string | ReadonlyArray<AnthropicWire.ContentBlock>
}

const turnOf = (message: Chat.Message, path: string): Effect.Effect<Turn, Errors.BadRequestError> => {
  switch (message.role) {
    case "user":
      return Effect.succeed({
        role: "user",
        content: typeof message.content === "string" ? message.content : partBlocks(message.content)
      })
    case "tool":
      return Effect.succeed({
        role: "user",
        content: [
          extend({
            type: "tool_result" as const,
            tool_use_id: message.toolCallId,
            content: typeof message.content === "string" ? message.content : partBlocks(message.content),
            ...(message.isError === undefined ? {} : { is_error: message.isError })
          }, message.extra?.anthropic)
        ]
      })
    case "assistant":
      return Effect.gen(function*() {
        if ((message.customToolCalls ?? []).length > 0) {
          return yield* unsupported(PROVIDER, `${path}.customToolCalls: Anthropic has no custom tools`)
        }
        const toolUses = yield* Effect.forEach(message.toolCalls ?? [], (call, j) =>
          Effect.map(
            parseArguments(call.arguments, `${path}.toolCalls[${j}].arguments`),
            (input): AnthropicWire.ToolUseBlock =>
              extend({ type: "tool_use" as const, id: call.id, name: call.name, input }, call.extra?.anthropic)
          ))
        const content = message.content ?? ""
        if (typeof content === "string" && toolUses.length === 0) return { role: "assistant", content }
        if (typeof content !== "string" && content.some((part) => part._tag === "Image")) {
          return yield* unsupported(PROVIDER, `${path}.content: assistant messages cannot contain images`)
        }
        const text = typeof content === "string"
          ? (content === "" ? [] : [{ type: "text" as const, text: content }])
          : partBlocks(content)
        return { role: "assistant", content: [...text, ...toolUses] }
      })
  }
}

const blocksOf = (content: Turn["content"]): ReadonlyArray<AnthropicWire.ContentBlock> =>
  typeof content !== "string" ? content : content === "" ? [] : [{ type: "text", text: content }]

/**
 * Consecutive turns of the same role become one message: Anthropic wants
 * user and assistant to alternate, and all results of one round of tool
 * calls in one user message.
 */
/** A text block with no text but whitespace, which Anthropic refuses. */
const isBlankText = (block: AnthropicWire.ContentBlock): boolean =>
  block.type === "text" && typeof block.text === "string" && block.text.trim() === ""

/**
 * Anthropic refuses a message with empty content ("all messages must have
 * non-empty content except for the optional final assistant message"): blank
 * text blocks are dropped, and so is a turn left with nothing, except a final
 * assistant turn (a prefill).
 */
const withoutEmptyTurns = (turns: ReadonlyArray<Turn>): ReadonlyArray<Turn> =>
  turns.flatMap((turn, i): ReadonlyArray<Turn> => {
    const content = typeof turn.content === "string" ? turn.content : turn.content.filter((b) => !isBlankText(b))
    const empty = typeof content === "string" ? content.trim() === "" : content.length === 0
    if (empty && !(i === turns.length - 1 && turn.role === "assistant")) return []
    return [content === turn.content ? turn : { role: turn.role, content }]
  })

const mergeTurns = (all: ReadonlyArray<Turn>): Array<AnthropicWire.MessageParam> => {
  const turns = withoutEmptyTurns(all)
  const out: Array<Turn> = []
  for (const turn of turns) {
    const last = out[out.length - 1]
    if (last !== undefined && last.role === turn.role) {
      out[out.length - 1] = { role: turn.role, content: [...blocksOf(last.content), ...blocksOf(turn.content)] }
    } else {
      out.push(turn)
    }
  }
  return out
}

const toolOf = (tool: Chat.ToolDefinition): AnthropicWire.Tool =>
  extend({
    name: tool.name,
    ...(tool.description === undefined ? {} : { description: tool.description }),
    input_schema: tool.parameters ?? { type: "object", properties: {} }
  }, tool.extra?.anthropic)

const toolChoiceOf = (
  choice: Chat.ToolChoice | undefined,
  parallel: boolean | undefined
): AnthropicWire.ToolChoice | undefined => {
  const noParallel = parallel === false ? { disable_parallel_tool_use: true } : {}
  if (choice === undefined) return parallel === false ? { type: "auto", ...noParallel } : undefined
  switch (choice) {
    case "auto":
      return { type: "auto", ...noParallel }
    case "none":
      return { type: "none" }
    case "required":
      return { type: "any", ...noParallel }
    default:
      return { type: "tool", name: choice.name, ...noParallel }
  }
}

export const toRequest = (
  request: Chat.ChatRequest,
  options: RequestOptions = {}
): Effect.Effect<AnthropicWire.MessagesRequest, Errors.BadRequestError> =>
  Effect.gen(function*() {
    yield* checkOpenAiOnly(request.extra?.openai)
    const turns = yield* Effect.forEach(request.messages, (message, i) => turnOf(message, `messages[${i}]`))
    const system = request.system
    const toolChoice = request.tools === undefined || request.tools.length === 0
      ? undefined
      : toolChoiceOf(request.toolChoice, request.parallelToolCalls)
    return extend({
      model: options.model ?? request.model,
      max_tokens: request.maxTokens ?? options.defaultMaxTokens ?? DEFAULT_MAX_TOKENS,
      messages: mergeTurns(turns),
      ...(system === undefined ? {} : { system: typeof system === "string" ? system : system.map(textBlock) }),
      ...(request.stop === undefined || request.stop.length === 0 ? {} : { stop_sequences: request.stop }),
      ...(request.temperature === undefined ? {} : { temperature: clamp(request.temperature, 0, 1) }),
      // Current Claude models refuse temperature and top_p together: temperature wins, top_p goes only alone.
      ...(request.topP === undefined || request.topP === 1 || request.temperature !== undefined ? {} : { top_p: request.topP }),
      ...(request.stream === undefined ? {} : { stream: request.stream }),
      ...(request.tools === undefined ? {} : { tools: request.tools.map(toolOf) }),
      ...(toolChoice === undefined ? {} : { tool_choice: toolChoice })
    }, request.extra?.anthropic)
  })

// -----------------------------------------------------------------------------
// request: Anthropic → Chat
// -----------------------------------------------------------------------------

const mappedRequestFields = [
  "model",
  "max_tokens",
  "messages",
  "system",
  "stop_sequences",
  "temperature",
  "top_p",
  "stream",
  "tools",
  "tool_choice"
]

const textPartFrom = (block: AnthropicWire.TextBlock): Chat.TextPart => ({
  _tag: "Text",
  text: block.text,
  ...anthropicExtra(unknownFields(block, ["type", "text"]))
})

const partFrom = (
  block: AnthropicWire.ContentBlock,
  path: string
): Effect.Effect<Chat.ContentPart, Errors.BadRequestError> => {
  if (AnthropicWire.isTextBlock(block)) return Effect.succeed(textPartFrom(block))
  if (AnthropicWire.isImageBlock(block)) {
    const source = block.source
    const extra = anthropicExtra(unknownFields(block, ["type", "source"]))
    switch (source.type) {
      case "base64":
        return Effect.succeed({
          _tag: "Image",
          source: { _tag: "Base64", mediaType: source.media_type, data: source.data },
          ...extra
        })
      case "url":
        return Effect.succeed({ _tag: "Image", source: { _tag: "Url", url: source.url }, ...extra })
      case "file":
        return unsupported(PROVIDER, `${path}.source: images by file id are not supported`)
    }
  }
  return unsupported(PROVIDER, `${path}: content blocks of type "${block.type}" are not supported here`)
}

const contentFrom = (
  content: string | ReadonlyArray<AnthropicWire.ContentBlock>,
  path: string
): Effect.Effect<Chat.Content, Errors.BadRequestError> =>
  typeof content === "string"
    ? Effect.succeed(content)
    : Effect.forEach(content, (block, j) => partFrom(block, `${path}[${j}]`))

/**
 * A user message's tool results become tool messages, and the blocks
 * between them user messages, in order.
 */
const userMessagesFrom = (
  content: ReadonlyArray<AnthropicWire.ContentBlock>,
  path: string
): Effect.Effect<ReadonlyArray<Chat.Message>, Errors.BadRequestError> =>
  Effect.gen(function*() {
    const out: Array<Chat.Message> = []
    let parts: Array<Chat.ContentPart> = []
    const flush = () => {
      if (parts.length > 0) out.push({ role: "user", content: parts })
      parts = []
    }
    for (const [j, block] of content.entries()) {
      const at = `${path}.content[${j}]`
      if (AnthropicWire.isToolResultBlock(block)) {
        flush()
        out.push({
          role: "tool",
          toolCallId: block.tool_use_id,
          content: yield* contentFrom(block.content ?? "", `${at}.content`),
          ...(block.is_error === undefined ? {} : { isError: block.is_error }),
          ...anthropicExtra(unknownFields(block, ["type", "tool_use_id", "content", "is_error"]))
        })
      } else {
        parts.push(yield* partFrom(block, at))
      }
    }
    flush()
    return out
  })

/** Thinking blocks are dropped: the neutral model has no reasoning turns. */
const assistantFrom = (
  content: ReadonlyArray<AnthropicWire.ContentBlock>,
  path: string
): Effect.Effect<Chat.AssistantMessage, Errors.BadRequestError> =>
  Effect.gen(function*() {
    const parts: Array<Chat.TextPart> = []
    const toolCalls: Array<Chat.ToolCall> = []
    for (const [j, block] of content.entries()) {
      if (AnthropicWire.isTextBlock(block)) parts.push(textPartFrom(block))
      else if (AnthropicWire.isToolUseBlock(block)) toolCalls.push(toolCallFrom(block))
      else if (block.type !== "thinking" && block.type !== "redacted_thinking") {
        return yield* unsupported(PROVIDER, `${path}.content[${j}]: assistant blocks of type "${block.type}" are not supported`)
      }
    }
    return {
      role: "assistant",
      ...(parts.length === 0 ? {} : { content: parts }),
      ...(toolCalls.length === 0 ? {} : { toolCalls })
    }
  })

const toolCallFrom = (block: AnthropicWire.ToolUseBlock): Chat.ToolCall => ({
  id: block.id,
  name: block.name,
  arguments: JSON.stringify(block.input),
  ...anthropicExtra(unknownFields(block, ["type", "id", "name", "input"]))
})

const toolFrom = (tool: AnthropicWire.Tool, path: string): Effect.Effect<Chat.ToolDefinition, Errors.BadRequestError> =>
  tool.input_schema === undefined
    ? unsupported(PROVIDER, `${path}: server tools ("${tool.type ?? tool.name}") are not supported`)
    : Effect.succeed({
      name: tool.name,
      ...(tool.description === undefined ? {} : { description: tool.description }),
      parameters: tool.input_schema,
      ...anthropicExtra(unknownFields(tool, ["name", "description", "input_schema"]))
    })

const toolChoiceFrom = (choice: AnthropicWire.ToolChoice): Chat.ToolChoice => {
  switch (choice.type) {
    case "auto":
    case "none":
      return choice.type
    case "any":
      return "required"
    case "tool":
      return { name: choice.name }
  }
}

export const fromRequest = (
  request: AnthropicWire.MessagesRequest
): Effect.Effect<Chat.ChatRequest, Errors.BadRequestError> =>
  Effect.gen(function*() {
    const messages: Array<Chat.Message> = []
    for (const [i, message] of request.messages.entries()) {
      const path = `messages[${i}]`
      if (typeof message.content === "string") messages.push({ role: message.role, content: message.content })
      else if (message.role === "user") messages.push(...yield* userMessagesFrom(message.content, path))
      else messages.push(yield* assistantFrom(message.content, path))
    }
    const tools = request.tools === undefined
      ? undefined
      : yield* Effect.forEach(request.tools, (tool, i) => toolFrom(tool, `tools[${i}]`))
    const choice = request.tool_choice
    const system = request.system
    return {
      model: request.model,
      ...(system === undefined ? {} : { system: typeof system === "string" ? system : system.map(textPartFrom) }),
      messages,
      ...(tools === undefined ? {} : { tools }),
      ...(choice === undefined ? {} : { toolChoice: toolChoiceFrom(choice) }),
      ...(choice !== undefined && "disable_parallel_tool_use" in choice && choice.disable_parallel_tool_use === true
        ? { parallelToolCalls: false }
        : {}),
      maxTokens: request.max_tokens,
      ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
      ...(request.top_p === undefined ? {} : { topP: request.top_p }),
      ...(request.stop_sequences === undefined ? {} : { stop: request.stop_sequences }),
      ...(request.stream === undefined ? {} : { stream: request.stream }),
      ...anthropicExtra(unknownFields(request, mappedRequestFields))
    }
  })

// -----------------------------------------------------------------------------
// response
// -----------------------------------------------------------------------------

export const finishReasonFrom = (reason: AnthropicWire.StopReason | null | undefined): Chat.FinishReason => {
  switch (reason) {
    case "end_turn":
    case "stop_sequence":
      return "stop"
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool_calls"
    case "refusal":
      return "content_filter"
    default:
      return "other"
  }
}

export const finishReasonTo = (reason: Chat.FinishReason): AnthropicWire.StopReason => {
  switch (reason) {
    case "stop":
    case "other":
      return "end_turn"
    case "length":
      return "max_tokens"
    case "tool_calls":
      return "tool_use"
    case "content_filter":
      return "refusal"
  }
}

export interface UsageCounts {
  readonly input_tokens?: number | null | undefined
  readonly output_tokens: number
  readonly cache_creation_input_tokens?: number | null | undefined
  readonly cache_read_input_tokens?: number | null | undefined
}

/** Anthropic's `input_tokens` excludes cache reads and writes; the neutral `inputTokens` is the whole prompt. */
export const usageFrom = (usage: UsageCounts): Chat.Usage => {
  const read = usage.cache_read_input_tokens
  const write = usage.cache_creation_input_tokens
  return {
    inputTokens: (usage.input_tokens ?? 0) + (read ?? 0) + (write ?? 0),
    outputTokens: usage.output_tokens,
    ...(read === undefined || read === null ? {} : { cachedInputTokens: read }),
    ...(write === undefined || write === null ? {} : { cacheWriteInputTokens: write })
  }
}

export const usageTo = (usage: Chat.Usage): AnthropicWire.Usage => ({
  input_tokens: Math.max(0, usage.inputTokens - (usage.cachedInputTokens ?? 0) - (usage.cacheWriteInputTokens ?? 0)),
  output_tokens: usage.outputTokens,
  ...(usage.cacheWriteInputTokens === undefined ? {} : { cache_creation_input_tokens: usage.cacheWriteInputTokens }),
  ...(usage.cachedInputTokens === undefined ? {} : { cache_read_input_tokens: usage.cachedInputTokens })
})

/** Thinking and unknown blocks are dropped: the neutral answer is text and tool calls. */
export const fromResponse = (message: AnthropicWire.Message): Chat.ChatResponse => ({
  id: message.id,
  model: message.model,
  text: message.content.filter(AnthropicWire.isTextBlock).map((block) => block.text).join(""),
  toolCalls: message.content.filter(AnthropicWire.isToolUseBlock).map(toolCallFrom),
  finishReason: finishReasonFrom(message.stop_reason),
  usage: usageFrom(message.usage),
  ...anthropicExtra(unknownFields(message, ["id", "type", "role", "model", "content", "stop_reason", "usage"]))
})

export const toResponse = (
  response: Chat.ChatResponse
): Effect.Effect<AnthropicWire.Message, Errors.BadRequestError> =>
  (response.customToolCalls ?? []).length > 0
    ? unsupported(PROVIDER, "customToolCalls: Anthropic has no custom tools")
    : Effect.map(
    Effect.forEach(response.toolCalls, (call, j) =>
      Effect.map(
        parseArguments(call.arguments, `toolCalls[${j}].arguments`),
        (input): AnthropicWire.ToolUseBlock =>
          extend({ type: "tool_use" as const, id: call.id, name: call.name, input }, call.extra?.anthropic)
      )),
    (toolUses) =>
      extend({
        id: response.id,
        type: "message" as const,
        role: "assistant" as const,
        model: response.model,
        content: [...(response.text === "" ? [] : [{ type: "text" as const, text: response.text }]), ...toolUses],
        stop_reason: finishReasonTo(response.finishReason),
        stop_sequence: null,
        usage: usageTo(response.usage ?? { inputTokens: 0, outputTokens: 0 })
      }, response.extra?.anthropic)
  )
