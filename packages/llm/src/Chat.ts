/**
 * The provider-neutral chat model: what a request, a response and a stream
 * chunk mean, independent of how OpenAI or Anthropic spell them.
 * `Translate` maps each provider's wire format to and from it, so a request
 * in OpenAI format can fall back to an Anthropic deployment and its answer
 * come back in OpenAI format.
 *
 * Provider-specific fields the model has no place for travel in `extra`,
 * keyed by provider: `extra.openai` is written verbatim into OpenAI bodies
 * and dropped for Anthropic, `extra.anthropic` the other way round (for
 * example a text part's Anthropic `cache_control`).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const Fields = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * Fields for one provider only, written verbatim into that provider's body
 * at the level where they appear, and dropped when translating to another.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Extra = Schema.Struct({ openai: opt(Fields), anthropic: opt(Fields) })

/**
 * @since 0.1.0
 * @category models
 */
export interface Extra extends Schema.Schema.Type<typeof Extra> {}

// -----------------------------------------------------------------------------
// content
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const TextPart = Schema.TaggedStruct("Text", { text: Schema.String, extra: opt(Extra) })

/**
 * @since 0.1.0
 * @category models
 */
export interface TextPart extends Schema.Schema.Type<typeof TextPart> {}

/**
 * An image by URL (`https://…`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const UrlSource = Schema.TaggedStruct("Url", { url: Schema.String })

/**
 * Image bytes, base64-encoded, with their media type (`image/png`, …).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Base64Source = Schema.TaggedStruct("Base64", { mediaType: Schema.String, data: Schema.String })

/**
 * @since 0.1.0
 * @category schemas
 */
export const ImageSource = Schema.Union(UrlSource, Base64Source)

/**
 * @since 0.1.0
 * @category models
 */
export type ImageSource = Schema.Schema.Type<typeof ImageSource>

/**
 * An image. `detail` (`auto` | `low` | `high`) is OpenAI's resolution hint;
 * Anthropic has none and ignores it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ImagePart = Schema.TaggedStruct("Image", {
  source: ImageSource,
  detail: opt(Schema.String),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ImagePart extends Schema.Schema.Type<typeof ImagePart> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ContentPart = Schema.Union(TextPart, ImagePart)

/**
 * @since 0.1.0
 * @category models
 */
export type ContentPart = Schema.Schema.Type<typeof ContentPart>

/**
 * Plain text, or parts.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Content = Schema.Union(Schema.String, Schema.Array(ContentPart))

/**
 * @since 0.1.0
 * @category models
 */
export type Content = Schema.Schema.Type<typeof Content>

// -----------------------------------------------------------------------------
// messages
// -----------------------------------------------------------------------------

/**
 * A tool call made by the model. `arguments` is JSON text as the model wrote
 * it, kept as text so an OpenAI round trip is exact; it is parsed only where
 * a provider needs an object (Anthropic `tool_use.input`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolCall = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  arguments: Schema.String,
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolCall extends Schema.Schema.Type<typeof ToolCall> {}

/**
 * A call of an OpenAI custom tool (a tool whose input is free text, such as
 * a grammar-constrained SQL query, not JSON arguments). `input` is the text
 * the model wrote. No other provider has custom tools: a request or answer
 * with one cannot be translated to Anthropic.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CustomToolCall = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  input: Schema.String,
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface CustomToolCall extends Schema.Schema.Type<typeof CustomToolCall> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const UserMessage = Schema.Struct({ role: Schema.Literal("user"), content: Content, extra: opt(Extra) })

/**
 * @since 0.1.0
 * @category models
 */
export interface UserMessage extends Schema.Schema.Type<typeof UserMessage> {}

/**
 * A turn of the model: text, tool calls, or both. `customToolCalls` are
 * OpenAI custom tool calls (sent after the function calls).
 *
 * @since 0.1.0
 * @category schemas
 */
export const AssistantMessage = Schema.Struct({
  role: Schema.Literal("assistant"),
  content: opt(Content),
  toolCalls: opt(Schema.Array(ToolCall)),
  customToolCalls: opt(Schema.Array(CustomToolCall)),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface AssistantMessage extends Schema.Schema.Type<typeof AssistantMessage> {}

/**
 * The result of one tool call. `isError` is Anthropic's `is_error`; OpenAI
 * has no such flag and drops it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolMessage = Schema.Struct({
  role: Schema.Literal("tool"),
  toolCallId: Schema.String,
  content: Content,
  isError: opt(Schema.Boolean),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolMessage extends Schema.Schema.Type<typeof ToolMessage> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const Message = Schema.Union(UserMessage, AssistantMessage, ToolMessage)

/**
 * @since 0.1.0
 * @category models
 */
export type Message = Schema.Schema.Type<typeof Message>

// -----------------------------------------------------------------------------
// tools
// -----------------------------------------------------------------------------

/**
 * A function the model may call; `parameters` is a JSON Schema object
 * (absent: no parameters).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolDefinition = Schema.Struct({
  name: Schema.String,
  description: opt(Schema.String),
  parameters: opt(Fields),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolDefinition extends Schema.Schema.Type<typeof ToolDefinition> {}

/**
 * `auto`: the model decides; `none`: no tool; `required`: at least one tool;
 * `{ name }`: that tool.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolChoice = Schema.Union(
  Schema.Literal("auto", "none", "required"),
  Schema.Struct({ name: Schema.String })
)

/**
 * @since 0.1.0
 * @category models
 */
export type ToolChoice = Schema.Schema.Type<typeof ToolChoice>

// -----------------------------------------------------------------------------
// request, response, chunk
// -----------------------------------------------------------------------------

/**
 * A chat request. `system` is the instructions, before all messages.
 * `temperature` is on OpenAI's scale (0–2); Anthropic clamps to 0–1.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatRequest = Schema.Struct({
  model: Schema.String,
  system: opt(Schema.Union(Schema.String, Schema.Array(TextPart))),
  messages: Schema.Array(Message),
  tools: opt(Schema.Array(ToolDefinition)),
  toolChoice: opt(ToolChoice),
  parallelToolCalls: opt(Schema.Boolean),
  maxTokens: opt(Schema.Number),
  temperature: opt(Schema.Number),
  topP: opt(Schema.Number),
  stop: opt(Schema.Array(Schema.String)),
  stream: opt(Schema.Boolean),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatRequest extends Schema.Schema.Type<typeof ChatRequest> {}

/**
 * Why the model stopped. `other`: a reason with no neutral name (Anthropic
 * `pause_turn`, a missing reason).
 *
 * @since 0.1.0
 * @category schemas
 */
export const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "other")

/**
 * @since 0.1.0
 * @category models
 */
export type FinishReason = Schema.Schema.Type<typeof FinishReason>

/**
 * Token counts. `inputTokens` is the whole prompt, cached part included
 * (OpenAI's convention; Anthropic's `input_tokens` excludes cache reads and
 * writes, so the translation adds them). `cachedInputTokens`: read from the
 * prompt cache; `cacheWriteInputTokens`: written to it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  cachedInputTokens: opt(Schema.Number),
  cacheWriteInputTokens: opt(Schema.Number),
  reasoningTokens: opt(Schema.Number)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Usage extends Schema.Schema.Type<typeof Usage> {}

/**
 * One answer of the model when it was asked for several (OpenAI's `n`):
 * the fields of {@link ChatResponse} that belong to a choice. `extra` holds
 * the choice's fields the model does not know (OpenAI `logprobs`),
 * `messageExtra` its message's (OpenAI `annotations`, `audio`), keyed by
 * provider as request fields are.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatChoice = Schema.Struct({
  index: Schema.Number,
  text: Schema.String,
  toolCalls: Schema.Array(ToolCall),
  customToolCalls: opt(Schema.Array(CustomToolCall)),
  finishReason: FinishReason,
  refusal: opt(Schema.String),
  extra: opt(Extra),
  messageExtra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatChoice extends Schema.Schema.Type<typeof ChatChoice> {}

/**
 * A whole answer. `created` is epoch seconds when the provider said
 * (OpenAI); `refusal` is OpenAI's refusal text.
 *
 * The top-level fields are the first choice. An answer to a request for
 * several (OpenAI's `n`) has the others in `otherChoices`, all paid for
 * ({@link choicesOf} gives them all alike). Nothing the provider sent is
 * dropped: `extra` holds the answer's unknown top-level fields
 * (`system_fingerprint`, `service_tier`, …), `choiceExtra` and
 * `messageExtra` those of the first choice and of its message (OpenAI
 * `logprobs`, `annotations`, `audio`), each keyed by provider, and written
 * back verbatim when the answer is sent in that provider's format.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatResponse = Schema.Struct({
  id: Schema.String,
  model: Schema.String,
  created: opt(Schema.Number),
  text: Schema.String,
  toolCalls: Schema.Array(ToolCall),
  customToolCalls: opt(Schema.Array(CustomToolCall)),
  finishReason: FinishReason,
  refusal: opt(Schema.String),
  usage: opt(Usage),
  otherChoices: opt(Schema.Array(ChatChoice)),
  choiceExtra: opt(Extra),
  messageExtra: opt(Extra),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatResponse extends Schema.Schema.Type<typeof ChatResponse> {}

/**
 * Every choice of an answer, the first included, in one shape.
 *
 * @since 0.1.0
 * @category accessors
 */
export const choicesOf = (response: ChatResponse): ReadonlyArray<ChatChoice> => [
  {
    index: 0,
    text: response.text,
    toolCalls: response.toolCalls,
    ...(response.customToolCalls === undefined ? {} : { customToolCalls: response.customToolCalls }),
    finishReason: response.finishReason,
    ...(response.refusal === undefined ? {} : { refusal: response.refusal }),
    ...(response.choiceExtra === undefined ? {} : { extra: response.choiceExtra }),
    ...(response.messageExtra === undefined ? {} : { messageExtra: response.messageExtra })
  },
  ...(response.otherChoices ?? [])
]

/**
 * A piece of one tool call in a stream: `index` names the call (0, 1, … in
 * the order the model started them); the first piece has `id` and `name`,
 * the following ones more `arguments` text.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolCallDelta = Schema.Struct({
  index: Schema.Number,
  id: opt(Schema.String),
  name: opt(Schema.String),
  arguments: opt(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolCallDelta extends Schema.Schema.Type<typeof ToolCallDelta> {}

/**
 * One step of a streamed answer. `role` marks the opening chunk; `usage`
 * arrives once, at the end, on a chunk of its own.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatChunk = Schema.Struct({
  id: Schema.String,
  model: Schema.String,
  created: opt(Schema.Number),
  role: opt(Schema.Literal("assistant")),
  text: opt(Schema.String),
  refusal: opt(Schema.String),
  toolCalls: opt(Schema.Array(ToolCallDelta)),
  finishReason: opt(FinishReason),
  usage: opt(Usage),
  extra: opt(Extra)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatChunk extends Schema.Schema.Type<typeof ChatChunk> {}
