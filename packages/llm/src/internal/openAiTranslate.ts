import { Errors } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as Chat from "../Chat.js"
import type * as OpenAiWire from "../OpenAiWire.js"
import { extend, openAiExtra, parseDataUrl, unknownFields, unsupported } from "./translateCommon.js"

const PROVIDER = "openai"

// -----------------------------------------------------------------------------
// request: OpenAI → Chat
// -----------------------------------------------------------------------------

/** Request fields the neutral model carries; every other one goes to `extra.openai`. */
const mappedRequestFields = [
  "model",
  "messages",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "stop",
  "stream",
  "tools",
  "tool_choice",
  "parallel_tool_calls"
]

const textPartFrom = (part: OpenAiWire.TextPart): Chat.TextPart => ({
  _tag: "Text",
  text: part.text,
  ...openAiExtra(unknownFields(part, ["type", "text"]))
})

const imageSourceFrom = (url: string, path: string): Effect.Effect<Chat.ImageSource, Errors.BadRequestError> => {
  const data = parseDataUrl(url)
  if (data === "not-base64") {
    return unsupported(PROVIDER, `${path}: only base64 data URLs are supported ("data:<media type>;base64,…")`)
  }
  return Effect.succeed(data === undefined ? { _tag: "Url", url } : { _tag: "Base64", ...data })
}

const userPartFrom = (
  part: OpenAiWire.UserContentPart,
  path: string
): Effect.Effect<Chat.ContentPart, Errors.BadRequestError> => {
  switch (part.type) {
    case "text":
      return Effect.succeed(textPartFrom(part))
    case "image_url":
      return Effect.map(
        imageSourceFrom(part.image_url.url, `${path}.image_url.url`),
        (source): Chat.ImagePart => ({
          _tag: "Image",
          source,
          ...(part.image_url.detail === undefined ? {} : { detail: part.image_url.detail }),
          ...openAiExtra(unknownFields(part, ["type", "image_url"]))
        })
      )
    case "input_audio":
    case "file":
      return unsupported(PROVIDER, `${path}: content parts of type "${part.type}" are not supported`)
  }
}

/** OpenAI's tool calls, function and custom, as the neutral model keeps them: in two lists. */
interface ToolCallsFrom {
  readonly toolCalls: ReadonlyArray<Chat.ToolCall>
  readonly customToolCalls: ReadonlyArray<Chat.CustomToolCall>
}

const toolCallsFrom = (calls: ReadonlyArray<OpenAiWire.ToolCall>): ToolCallsFrom => {
  const toolCalls: Array<Chat.ToolCall> = []
  const customToolCalls: Array<Chat.CustomToolCall> = []
  for (const call of calls) {
    if (call.type === "function") {
      toolCalls.push({
        id: call.id,
        name: call.function.name,
        arguments: call.function.arguments,
        ...openAiExtra(unknownFields(call, ["id", "type", "function"]))
      })
    } else {
      customToolCalls.push({
        id: call.id,
        name: call.custom.name,
        input: call.custom.input,
        ...openAiExtra(unknownFields(call, ["id", "type", "custom"]))
      })
    }
  }
  return { toolCalls, customToolCalls }
}

const toolCallsTo = (
  toolCalls: ReadonlyArray<Chat.ToolCall>,
  customToolCalls: ReadonlyArray<Chat.CustomToolCall> | undefined
): ReadonlyArray<OpenAiWire.ToolCall> => [
  ...toolCalls.map((call): OpenAiWire.FunctionToolCall =>
    extend({ id: call.id, type: "function" as const, function: { name: call.name, arguments: call.arguments } }, call.extra?.openai)
  ),
  ...(customToolCalls ?? []).map((call) =>
    extend({ id: call.id, type: "custom" as const, custom: { name: call.name, input: call.input } }, call.extra?.openai)
  )
]

const assistantFrom = (
  message: OpenAiWire.AssistantMessage,
  path: string
): Effect.Effect<Chat.AssistantMessage, Errors.BadRequestError> =>
  Effect.gen(function*() {
    if (message.function_call !== undefined && message.function_call !== null) {
      return yield* unsupported(PROVIDER, `${path}.function_call: the deprecated function_call is not supported`)
    }
    const content = message.content
    const calls = message.tool_calls === undefined ? undefined : toolCallsFrom(message.tool_calls)
    return {
      role: "assistant",
      ...(content === undefined || content === null
        ? {}
        : {
          content: typeof content === "string"
            ? content
            : content.map((part): Chat.TextPart =>
              part.type === "text"
                ? textPartFrom(part)
                : { _tag: "Text", text: part.refusal }
            )
        }),
      ...(calls === undefined || calls.toolCalls.length === 0 ? {} : { toolCalls: calls.toolCalls }),
      ...(calls === undefined || calls.customToolCalls.length === 0 ? {} : { customToolCalls: calls.customToolCalls }),
      ...openAiExtra(unknownFields(message, ["role", "content", "tool_calls", "function_call"]))
    }
  })

const messageFrom = (
  message: OpenAiWire.Message,
  path: string
): Effect.Effect<Chat.Message, Errors.BadRequestError> => {
  switch (message.role) {
    case "user": {
      const content = message.content
      const extra = openAiExtra(unknownFields(message, ["role", "content"]))
      return typeof content === "string"
        ? Effect.succeed({ role: "user", content, ...extra })
        : Effect.map(
          Effect.forEach(content, (part, j) => userPartFrom(part, `${path}.content[${j}]`)),
          (parts): Chat.UserMessage => ({ role: "user", content: parts, ...extra })
        )
    }
    case "assistant":
      return assistantFrom(message, path)
    case "tool":
      return Effect.succeed({
        role: "tool",
        toolCallId: message.tool_call_id,
        content: typeof message.content === "string" ? message.content : message.content.map(textPartFrom),
        ...openAiExtra(unknownFields(message, ["role", "content", "tool_call_id"]))
      })
    case "function":
      return unsupported(PROVIDER, `${path}: the deprecated "function" role is not supported; use tool messages`)
    case "system":
    case "developer":
      return unsupported(PROVIDER, `${path}: system messages belong in ChatRequest.system`)
  }
}

const toolFrom = (tool: OpenAiWire.Tool, path: string): Effect.Effect<Chat.ToolDefinition, Errors.BadRequestError> => {
  if (tool.type !== "function") return unsupported(PROVIDER, `${path}: custom tools are not supported`)
  const fn = tool.function
  return Effect.succeed({
    name: fn.name,
    ...(fn.description === undefined ? {} : { description: fn.description }),
    ...(fn.parameters === undefined ? {} : { parameters: fn.parameters }),
    ...openAiExtra(unknownFields(fn, ["name", "description", "parameters"]))
  })
}

const toolChoiceFrom = (choice: OpenAiWire.ToolChoice): Effect.Effect<Chat.ToolChoice, Errors.BadRequestError> => {
  if (typeof choice === "string") return Effect.succeed(choice)
  if (choice.type === "function") return Effect.succeed({ name: choice.function.name })
  return unsupported(PROVIDER, `tool_choice: "${choice.type}" tool choices are not supported`)
}

/**
 * All system and developer messages become `system`, in order: one message
 * keeps its shape (text or parts), several become one list of text parts.
 */
const systemFrom = (
  contents: ReadonlyArray<string | ReadonlyArray<OpenAiWire.TextPart>>
): ChatRequestSystem | undefined => {
  const [first] = contents
  if (first === undefined) return undefined
  if (contents.length === 1) return typeof first === "string" ? first : first.map(textPartFrom)
  return contents.flatMap((content) =>
    typeof content === "string" ? [{ _tag: "Text" as const, text: content }] : content.map(textPartFrom)
  )
}

type ChatRequestSystem = NonNullable<Chat.ChatRequest["system"]>

const nonNull = <A>(value: A | null | undefined): value is A => value !== undefined && value !== null

export const fromRequest = (
  request: OpenAiWire.ChatCompletionRequest
): Effect.Effect<Chat.ChatRequest, Errors.BadRequestError> =>
  Effect.gen(function*() {
    const systems: Array<string | ReadonlyArray<OpenAiWire.TextPart>> = []
    const messages: Array<Chat.Message> = []
    for (const [i, message] of request.messages.entries()) {
      if (message.role === "system" || message.role === "developer") systems.push(message.content)
      else messages.push(yield* messageFrom(message, `messages[${i}]`))
    }
    const system = systemFrom(systems)
    const tools = request.tools === undefined
      ? undefined
      : yield* Effect.forEach(request.tools, (tool, i) => toolFrom(tool, `tools[${i}]`))
    const toolChoice = request.tool_choice === undefined ? undefined : yield* toolChoiceFrom(request.tool_choice)
    const maxTokens = nonNull(request.max_completion_tokens) ? request.max_completion_tokens : request.max_tokens
    const stop = request.stop
    return {
      model: request.model,
      ...(system === undefined ? {} : { system }),
      messages,
      ...(tools === undefined ? {} : { tools }),
      ...(toolChoice === undefined ? {} : { toolChoice }),
      ...(request.parallel_tool_calls === undefined ? {} : { parallelToolCalls: request.parallel_tool_calls }),
      ...(nonNull(maxTokens) ? { maxTokens } : {}),
      ...(nonNull(request.temperature) ? { temperature: request.temperature } : {}),
      ...(nonNull(request.top_p) ? { topP: request.top_p } : {}),
      ...(nonNull(stop) ? { stop: typeof stop === "string" ? [stop] : stop } : {}),
      ...(nonNull(request.stream) ? { stream: request.stream } : {}),
      ...openAiExtra(unknownFields(request, mappedRequestFields))
    }
  })

// -----------------------------------------------------------------------------
// request: Chat → OpenAI
// -----------------------------------------------------------------------------

const textPartTo = (part: Chat.TextPart): OpenAiWire.TextPart =>
  extend({ type: "text" as const, text: part.text }, part.extra?.openai)

const imageUrlOf = (source: Chat.ImageSource): string =>
  source._tag === "Url" ? source.url : `data:${source.mediaType};base64,${source.data}`

const partTo = (part: Chat.ContentPart): OpenAiWire.UserContentPart =>
  part._tag === "Text"
    ? textPartTo(part)
    : extend({
      type: "image_url" as const,
      image_url: { url: imageUrlOf(part.source), ...(part.detail === undefined ? {} : { detail: part.detail }) }
    }, part.extra?.openai)

const textOnly = (
  content: Chat.Content,
  path: string
): Effect.Effect<string | ReadonlyArray<OpenAiWire.TextPart>, Errors.BadRequestError> => {
  if (typeof content === "string") return Effect.succeed(content)
  return Effect.forEach(content, (part, j) =>
    part._tag === "Text"
      ? Effect.succeed(textPartTo(part))
      : unsupported(PROVIDER, `${path}[${j}]: OpenAI accepts images only in user messages`))
}

const messageTo = (message: Chat.Message, path: string): Effect.Effect<OpenAiWire.Message, Errors.BadRequestError> => {
  const extra = message.extra?.openai
  switch (message.role) {
    case "user":
      return Effect.succeed(
        extend({
          role: "user" as const,
          content: typeof message.content === "string" ? message.content : message.content.map(partTo)
        }, extra)
      )
    case "assistant":
      return Effect.gen(function*() {
        const toolCalls = toolCallsTo(message.toolCalls ?? [], message.customToolCalls)
        const content = message.content === undefined
          ? (toolCalls.length > 0 ? null : "")
          : yield* textOnly(message.content, `${path}.content`)
        return extend({
          role: "assistant" as const,
          content,
          ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
        }, extra)
      })
    case "tool":
      return Effect.map(textOnly(message.content, `${path}.content`), (content) =>
        extend({ role: "tool" as const, content, tool_call_id: message.toolCallId }, extra))
  }
}

const toolTo = (tool: Chat.ToolDefinition): OpenAiWire.FunctionTool => ({
  type: "function",
  function: extend({
    name: tool.name,
    ...(tool.description === undefined ? {} : { description: tool.description }),
    ...(tool.parameters === undefined ? {} : { parameters: tool.parameters })
  }, tool.extra?.openai)
})

const toolChoiceTo = (choice: Chat.ToolChoice): OpenAiWire.ToolChoice =>
  typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } }

export const toRequest = (
  request: Chat.ChatRequest
): Effect.Effect<OpenAiWire.ChatCompletionRequest, Errors.BadRequestError> =>
  Effect.gen(function*() {
    const system: Array<OpenAiWire.Message> = request.system === undefined
      ? []
      : [{
        role: "system",
        content: typeof request.system === "string" ? request.system : request.system.map(textPartTo)
      }]
    const messages = yield* Effect.forEach(request.messages, (message, i) => messageTo(message, `messages[${i}]`))
    return extend({
      model: request.model,
      messages: [...system, ...messages],
      ...(request.tools === undefined ? {} : { tools: request.tools.map(toolTo) }),
      ...(request.toolChoice === undefined ? {} : { tool_choice: toolChoiceTo(request.toolChoice) }),
      ...(request.parallelToolCalls === undefined ? {} : { parallel_tool_calls: request.parallelToolCalls }),
      ...(request.maxTokens === undefined ? {} : { max_completion_tokens: request.maxTokens }),
      ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
      ...(request.topP === undefined ? {} : { top_p: request.topP }),
      ...(request.stop === undefined ? {} : { stop: request.stop }),
      ...(request.stream === undefined ? {} : { stream: request.stream })
    }, request.extra?.openai)
  })

// -----------------------------------------------------------------------------
// response and chunks
// -----------------------------------------------------------------------------

export const finishReasonFrom = (reason: OpenAiWire.FinishReason | null | undefined): Chat.FinishReason => {
  switch (reason) {
    case "stop":
    case "length":
    case "tool_calls":
    case "content_filter":
      return reason
    default:
      return "other"
  }
}

export const finishReasonTo = (reason: Chat.FinishReason): OpenAiWire.FinishReason =>
  reason === "other" ? "stop" : reason

export const usageFrom = (usage: OpenAiWire.Usage): Chat.Usage => {
  const cached = usage.prompt_tokens_details?.cached_tokens
  const cacheWrite = usage.prompt_tokens_details?.cache_write_tokens
  const reasoning = usage.completion_tokens_details?.reasoning_tokens
  return {
    inputTokens: usage.prompt_tokens,
    outputTokens: usage.completion_tokens,
    ...(cached === undefined ? {} : { cachedInputTokens: cached }),
    ...(cacheWrite === undefined ? {} : { cacheWriteInputTokens: cacheWrite }),
    ...(reasoning === undefined ? {} : { reasoningTokens: reasoning })
  }
}

export const usageTo = (usage: Chat.Usage): OpenAiWire.Usage => {
  const promptDetails = {
    ...(usage.cachedInputTokens === undefined ? {} : { cached_tokens: usage.cachedInputTokens }),
    ...(usage.cacheWriteInputTokens === undefined ? {} : { cache_write_tokens: usage.cacheWriteInputTokens })
  }
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
    ...(Object.keys(promptDetails).length === 0 ? {} : { prompt_tokens_details: promptDetails }),
    ...(usage.reasoningTokens === undefined
      ? {}
      : { completion_tokens_details: { reasoning_tokens: usage.reasoningTokens } })
  }
}

const envelopeFields = ["id", "object", "created", "model", "choices", "usage"]

/** A choice's `logprobs: null` is OpenAI's way of saying none were asked for: not worth keeping. */
const choiceFieldsOf = (choice: OpenAiWire.Choice) =>
  unknownFields(choice, choice.logprobs === null ? ["index", "message", "finish_reason", "logprobs"] : ["index", "message", "finish_reason"])

const choiceFrom = (choice: OpenAiWire.Choice): Chat.ChatChoice => {
  const message = choice.message
  const calls = toolCallsFrom(message.tool_calls ?? [])
  const messageFields = unknownFields(message, ["role", "content", "refusal", "tool_calls"])
  return {
    index: choice.index,
    text: message.content ?? "",
    toolCalls: calls.toolCalls,
    ...(calls.customToolCalls.length === 0 ? {} : { customToolCalls: calls.customToolCalls }),
    finishReason: finishReasonFrom(choice.finish_reason),
    ...(nonNull(message.refusal) ? { refusal: message.refusal } : {}),
    ...openAiExtra(choiceFieldsOf(choice)),
    ...(messageFields === undefined ? {} : { messageExtra: { openai: messageFields } })
  }
}

/**
 * Every choice comes back (all were paid for): the first as the answer's
 * own fields, the others in `otherChoices`; and every field the neutral
 * model has no place for in an `extra` of its level.
 */
export const fromResponse = (
  response: OpenAiWire.ChatCompletion
): Effect.Effect<Chat.ChatResponse, Errors.MalformedResponseError> => {
  const first = response.choices.find((c) => c.index === 0) ?? response.choices[0]
  if (first === undefined) {
    return Effect.fail(new Errors.MalformedResponseError({ provider: PROVIDER, detail: "the response has no choices" }))
  }
  const { extra: choiceExtra, index: _, messageExtra, ...answer } = choiceFrom(first)
  const others = response.choices.filter((c) => c !== first).map(choiceFrom)
  const usage = response.usage
  return Effect.succeed({
    id: response.id,
    model: response.model,
    created: response.created,
    ...answer,
    ...(nonNull(usage) ? { usage: usageFrom(usage) } : {}),
    ...(others.length === 0 ? {} : { otherChoices: others }),
    ...(choiceExtra === undefined ? {} : { choiceExtra }),
    ...(messageExtra === undefined ? {} : { messageExtra }),
    ...openAiExtra(unknownFields(response, envelopeFields))
  })
}

const choiceTo = (choice: Chat.ChatChoice) => {
  const toolCalls = toolCallsTo(choice.toolCalls, choice.customToolCalls)
  const fields = choice.extra?.openai
  return extend({
    index: choice.index,
    message: extend({
      role: "assistant" as const,
      content: choice.text === "" && toolCalls.length > 0 ? null : choice.text,
      refusal: choice.refusal ?? null,
      ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
    }, choice.messageExtra?.openai),
    logprobs: fields?.["logprobs"] ?? null,
    finish_reason: finishReasonTo(choice.finishReason)
  }, fields)
}

export const toResponse = (response: Chat.ChatResponse, created: number): OpenAiWire.ChatCompletion =>
  extend({
    id: response.id,
    object: "chat.completion" as const,
    created: response.created ?? created,
    model: response.model,
    choices: Chat.choicesOf(response).map(choiceTo),
    ...(response.usage === undefined ? {} : { usage: usageTo(response.usage) })
  }, response.extra?.openai)

export const fromChunk = (chunk: OpenAiWire.ChatCompletionChunk): Chat.ChatChunk => {
  const choice = chunk.choices.find((c) => c.index === 0)
  const delta = choice?.delta
  const toolCalls = delta?.tool_calls?.map((call): Chat.ToolCallDelta => ({
    index: call.index,
    ...(call.id === undefined ? {} : { id: call.id }),
    ...(call.function?.name === undefined ? {} : { name: call.function.name }),
    ...(call.function?.arguments === undefined ? {} : { arguments: call.function.arguments })
  }))
  return {
    id: chunk.id,
    model: chunk.model,
    created: chunk.created,
    ...(delta?.role === "assistant" ? { role: "assistant" } : {}),
    ...(nonNull(delta?.content) ? { text: delta.content } : {}),
    ...(nonNull(delta?.refusal) ? { refusal: delta.refusal } : {}),
    ...(toolCalls === undefined ? {} : { toolCalls }),
    ...(nonNull(choice?.finish_reason) ? { finishReason: finishReasonFrom(choice.finish_reason) } : {}),
    ...(nonNull(chunk.usage) ? { usage: usageFrom(chunk.usage) } : {}),
    ...openAiExtra(unknownFields(chunk, envelopeFields))
  }
}

const hasChoice = (chunk: Chat.ChatChunk): boolean =>
  chunk.role !== undefined || chunk.text !== undefined || chunk.refusal !== undefined ||
  chunk.toolCalls !== undefined || chunk.finishReason !== undefined || chunk.usage === undefined

export const toChunk = (chunk: Chat.ChatChunk, created: number): OpenAiWire.ChatCompletionChunk => {
  const delta: OpenAiWire.Delta = {
    ...(chunk.role === undefined ? {} : { role: chunk.role }),
    ...(chunk.text === undefined ? {} : { content: chunk.text }),
    ...(chunk.refusal === undefined ? {} : { refusal: chunk.refusal }),
    ...(chunk.toolCalls === undefined ? {} : {
      tool_calls: chunk.toolCalls.map((call): OpenAiWire.ToolCallDelta => ({
        index: call.index,
        ...(call.id === undefined ? {} : { id: call.id, type: "function" as const }),
        ...(call.name === undefined && call.arguments === undefined ? {} : {
          function: {
            ...(call.name === undefined ? {} : { name: call.name }),
            ...(call.arguments === undefined ? {} : { arguments: call.arguments })
          }
        })
      }))
    })
  }
  return extend({
    id: chunk.id,
    object: "chat.completion.chunk" as const,
    created: chunk.created ?? created,
    model: chunk.model,
    choices: hasChoice(chunk)
      ? [{
        index: 0,
        delta,
        logprobs: null,
        finish_reason: chunk.finishReason === undefined ? null : finishReasonTo(chunk.finishReason)
      }]
      : [],
    ...(chunk.usage === undefined ? {} : { usage: usageTo(chunk.usage) })
  }, chunk.extra?.openai)
}
