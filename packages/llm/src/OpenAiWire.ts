/**
 * The OpenAI chat completions wire format: request, response, streaming
 * chunk, usage and error body, checked against OpenAI's published OpenAPI
 * spec (`CreateChatCompletionRequest`, `CreateChatCompletionResponse`,
 * `CreateChatCompletionStreamResponse`, `CompletionUsage`, `ErrorResponse`).
 *
 * Every object keeps the fields it does not know: a relay must not drop what
 * OpenAI added after these schemas were written. Decode and encode with
 * {@link parseOptions} and a body comes back out byte-for-byte as it went in
 * (same keys, same order).
 *
 * The schemas type the fields this library reads and leaves the rest as
 * `unknown`. Where the spec and what OpenAI-compatible servers send
 * disagree, decoding is lenient (a missing `refusal`, a `null` usage
 * detail) and encoding of what we build follows the spec.
 *
 * @since 0.1.0
 */
import type * as Either from "effect/Either"
import type * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import type { ParseOptions } from "effect/SchemaAST"
import * as Schema from "effect/Schema"
import { JsonObject, open, opt, optNull } from "./internal/wire.js"

/**
 * Decode and encode with these options to keep a body's key order: with
 * them, decode → encode of any body is the identity.
 *
 * @since 0.1.0
 * @category options
 */
export const parseOptions: ParseOptions = { propertyOrder: "original" }

// -----------------------------------------------------------------------------
// content parts
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const TextPart = open({ type: Schema.Literal("text"), text: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export interface TextPart extends Schema.Schema.Type<typeof TextPart> {}

/**
 * An image by URL: `https://…` or a `data:<media type>;base64,…` URL.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ImagePart = open({
  type: Schema.Literal("image_url"),
  image_url: open({ url: Schema.String, detail: opt(Schema.String) })
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
export const AudioPart = open({
  type: Schema.Literal("input_audio"),
  input_audio: open({ data: Schema.String, format: Schema.String })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const FilePart = open({
  type: Schema.Literal("file"),
  file: open({ filename: opt(Schema.String), file_data: opt(Schema.String), file_id: opt(Schema.String) })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const RefusalPart = open({ type: Schema.Literal("refusal"), refusal: Schema.String })

/**
 * @since 0.1.0
 * @category schemas
 */
export const UserContentPart = Schema.Union(TextPart, ImagePart, AudioPart, FilePart)

/**
 * @since 0.1.0
 * @category models
 */
export type UserContentPart = Schema.Schema.Type<typeof UserContentPart>

// -----------------------------------------------------------------------------
// tool calls and tools
// -----------------------------------------------------------------------------

/**
 * A call of a function tool; `arguments` is JSON text as the model wrote it
 * (possibly invalid).
 *
 * @since 0.1.0
 * @category schemas
 */
export const FunctionToolCall = open({
  id: Schema.String,
  type: Schema.Literal("function"),
  function: open({ name: Schema.String, arguments: Schema.String })
})

/**
 * @since 0.1.0
 * @category models
 */
export interface FunctionToolCall extends Schema.Schema.Type<typeof FunctionToolCall> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const CustomToolCall = open({
  id: Schema.String,
  type: Schema.Literal("custom"),
  custom: open({ name: Schema.String, input: Schema.String })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const ToolCall = Schema.Union(FunctionToolCall, CustomToolCall)

/**
 * @since 0.1.0
 * @category models
 */
export type ToolCall = Schema.Schema.Type<typeof ToolCall>

/**
 * @since 0.1.0
 * @category schemas
 */
export const FunctionTool = open({
  type: Schema.Literal("function"),
  function: open({
    name: Schema.String,
    description: opt(Schema.String),
    parameters: opt(JsonObject),
    strict: optNull(Schema.Boolean)
  })
})

/**
 * @since 0.1.0
 * @category models
 */
export interface FunctionTool extends Schema.Schema.Type<typeof FunctionTool> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const CustomTool = open({
  type: Schema.Literal("custom"),
  custom: open({ name: Schema.String, description: opt(Schema.String), format: opt(Schema.Unknown) })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const Tool = Schema.Union(FunctionTool, CustomTool)

/**
 * @since 0.1.0
 * @category models
 */
export type Tool = Schema.Schema.Type<typeof Tool>

/**
 * `none` | `auto` | `required`, a named function, a named custom tool, or an
 * allowed-tools list.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolChoice = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  open({ type: Schema.Literal("function"), function: open({ name: Schema.String }) }),
  open({ type: Schema.Literal("custom"), custom: open({ name: Schema.String }) }),
  open({
    type: Schema.Literal("allowed_tools"),
    allowed_tools: open({ mode: Schema.String, tools: Schema.Array(JsonObject) })
  })
)

/**
 * @since 0.1.0
 * @category models
 */
export type ToolChoice = Schema.Schema.Type<typeof ToolChoice>

// -----------------------------------------------------------------------------
// messages
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const SystemMessage = open({
  role: Schema.Literal("system"),
  content: Schema.Union(Schema.String, Schema.Array(TextPart)),
  name: opt(Schema.String)
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const DeveloperMessage = open({
  role: Schema.Literal("developer"),
  content: Schema.Union(Schema.String, Schema.Array(TextPart)),
  name: opt(Schema.String)
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const UserMessage = open({
  role: Schema.Literal("user"),
  content: Schema.Union(Schema.String, Schema.Array(UserContentPart)),
  name: opt(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface UserMessage extends Schema.Schema.Type<typeof UserMessage> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const AssistantMessage = open({
  role: Schema.Literal("assistant"),
  content: optNull(Schema.Union(Schema.String, Schema.Array(Schema.Union(TextPart, RefusalPart)))),
  refusal: optNull(Schema.String),
  name: opt(Schema.String),
  audio: optNull(open({ id: Schema.String })),
  tool_calls: opt(Schema.Array(ToolCall)),
  function_call: optNull(open({ name: Schema.String, arguments: Schema.String }))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface AssistantMessage extends Schema.Schema.Type<typeof AssistantMessage> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ToolMessage = open({
  role: Schema.Literal("tool"),
  content: Schema.Union(Schema.String, Schema.Array(TextPart)),
  tool_call_id: Schema.String
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolMessage extends Schema.Schema.Type<typeof ToolMessage> {}

/**
 * Deprecated by OpenAI; decoded so a relay can pass it on.
 *
 * @since 0.1.0
 * @category schemas
 */
export const FunctionMessage = open({
  role: Schema.Literal("function"),
  content: Schema.NullOr(Schema.String),
  name: Schema.String
})

/**
 * `ChatCompletionRequestMessage`, discriminated by `role`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Message = Schema.Union(
  DeveloperMessage,
  SystemMessage,
  UserMessage,
  AssistantMessage,
  ToolMessage,
  FunctionMessage
)

/**
 * @since 0.1.0
 * @category models
 */
export type Message = Schema.Schema.Type<typeof Message>

// -----------------------------------------------------------------------------
// request
// -----------------------------------------------------------------------------

/**
 * `CreateChatCompletionRequest`. Typed: the fields the translation reads;
 * every other field (`seed`, `user`, `metadata`, `store`, penalties, …)
 * passes through as `unknown`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatCompletionRequest = open({
  model: Schema.String,
  messages: Schema.Array(Message),
  max_tokens: optNull(Schema.Number),
  max_completion_tokens: optNull(Schema.Number),
  temperature: optNull(Schema.Number),
  top_p: optNull(Schema.Number),
  n: optNull(Schema.Number),
  stop: optNull(Schema.Union(Schema.String, Schema.Array(Schema.String))),
  stream: optNull(Schema.Boolean),
  stream_options: optNull(open({ include_usage: opt(Schema.Boolean), include_obfuscation: opt(Schema.Boolean) })),
  tools: opt(Schema.Array(Tool)),
  tool_choice: opt(ToolChoice),
  parallel_tool_calls: opt(Schema.Boolean),
  logprobs: optNull(Schema.Boolean),
  top_logprobs: optNull(Schema.Number),
  response_format: opt(open({ type: Schema.String }))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatCompletionRequest extends Schema.Schema.Type<typeof ChatCompletionRequest> {}

// -----------------------------------------------------------------------------
// usage, response, chunk, error
// -----------------------------------------------------------------------------

/**
 * `CompletionUsage`. `prompt_tokens` includes `cached_tokens`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Usage = open({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  total_tokens: Schema.Number,
  prompt_tokens_details: optNull(
    open({
      cached_tokens: opt(Schema.Number),
      cache_write_tokens: opt(Schema.Number),
      audio_tokens: opt(Schema.Number)
    })
  ),
  completion_tokens_details: optNull(
    open({
      reasoning_tokens: opt(Schema.Number),
      audio_tokens: opt(Schema.Number),
      accepted_prediction_tokens: opt(Schema.Number),
      rejected_prediction_tokens: opt(Schema.Number)
    })
  )
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Usage extends Schema.Schema.Type<typeof Usage> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "function_call")

/**
 * @since 0.1.0
 * @category models
 */
export type FinishReason = Schema.Schema.Type<typeof FinishReason>

/**
 * `ChatCompletionResponseMessage`. The spec requires `content` and
 * `refusal`; some OpenAI-compatible servers omit them, so decoding does not.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ResponseMessage = open({
  role: Schema.Literal("assistant"),
  content: optNull(Schema.String),
  refusal: optNull(Schema.String),
  tool_calls: opt(Schema.Array(ToolCall))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ResponseMessage extends Schema.Schema.Type<typeof ResponseMessage> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const Choice = open({
  index: Schema.Number,
  message: ResponseMessage,
  finish_reason: Schema.NullOr(FinishReason),
  logprobs: optNull(Schema.Unknown)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Choice extends Schema.Schema.Type<typeof Choice> {}

/**
 * `CreateChatCompletionResponse`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatCompletion = open({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Number,
  model: Schema.String,
  choices: Schema.Array(Choice),
  usage: optNull(Usage),
  system_fingerprint: optNull(Schema.String),
  service_tier: optNull(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatCompletion extends Schema.Schema.Type<typeof ChatCompletion> {}

/**
 * `ChatCompletionMessageToolCallChunk`: the first chunk of a call carries
 * `id`, `type` and `function.name`; later ones only `function.arguments`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolCallDelta = open({
  index: Schema.Number,
  id: opt(Schema.String),
  type: opt(Schema.Literal("function")),
  function: opt(open({ name: opt(Schema.String), arguments: opt(Schema.String) }))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolCallDelta extends Schema.Schema.Type<typeof ToolCallDelta> {}

/**
 * `ChatCompletionStreamResponseDelta`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Delta = open({
  role: opt(Schema.Literal("developer", "system", "user", "assistant", "tool")),
  content: optNull(Schema.String),
  refusal: optNull(Schema.String),
  tool_calls: opt(Schema.Array(ToolCallDelta))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Delta extends Schema.Schema.Type<typeof Delta> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ChunkChoice = open({
  index: Schema.Number,
  delta: Delta,
  finish_reason: optNull(FinishReason),
  logprobs: optNull(Schema.Unknown)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChunkChoice extends Schema.Schema.Type<typeof ChunkChoice> {}

/**
 * `CreateChatCompletionStreamResponse`: one `data:` line of the SSE stream.
 * With `stream_options.include_usage` the last chunk has `choices: []` and
 * the `usage`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatCompletionChunk = open({
  id: Schema.String,
  object: Schema.Literal("chat.completion.chunk"),
  created: Schema.Number,
  model: Schema.String,
  choices: Schema.Array(ChunkChoice),
  usage: optNull(Usage),
  system_fingerprint: optNull(Schema.String),
  service_tier: optNull(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ChatCompletionChunk extends Schema.Schema.Type<typeof ChatCompletionChunk> {}

/**
 * The `error` object of an error body. The spec requires `param` and
 * `code`; compatible servers often omit them.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorObject = open({
  message: Schema.String,
  type: optNull(Schema.String),
  param: optNull(Schema.String),
  code: optNull(Schema.Union(Schema.String, Schema.Number))
})

/**
 * `ErrorResponse`: the body of a non-2xx answer.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorResponse = open({ error: ErrorObject })

/**
 * @since 0.1.0
 * @category models
 */
export interface ErrorResponse extends Schema.Schema.Type<typeof ErrorResponse> {}

// -----------------------------------------------------------------------------
// codecs
// -----------------------------------------------------------------------------

/**
 * Decodes a request body (parsed JSON), keeping key order.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeRequest: (u: unknown) => Effect.Effect<ChatCompletionRequest, ParseResult.ParseError> =
  Schema.decodeUnknown(ChatCompletionRequest, parseOptions)

/**
 * Decodes a response body (parsed JSON), keeping key order.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeResponse: (u: unknown) => Effect.Effect<ChatCompletion, ParseResult.ParseError> =
  Schema.decodeUnknown(ChatCompletion, parseOptions)

/**
 * Decodes one streaming chunk (the parsed JSON of an SSE `data:` line).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeChunk: (u: unknown) => Effect.Effect<ChatCompletionChunk, ParseResult.ParseError> =
  Schema.decodeUnknown(ChatCompletionChunk, parseOptions)

/**
 * {@link decodeChunk} as an `Either`, for a reader that decodes a stream's
 * events synchronously (an effect per event costs a stream a few ops each).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeChunkEither: (u: unknown) => Either.Either<ChatCompletionChunk, ParseResult.ParseError> =
  Schema.decodeUnknownEither(ChatCompletionChunk, parseOptions)

/**
 * Decodes an error body.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeError: (u: unknown) => Effect.Effect<ErrorResponse, ParseResult.ParseError> =
  Schema.decodeUnknown(ErrorResponse, parseOptions)
