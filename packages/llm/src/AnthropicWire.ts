/**
 * The Anthropic Messages API wire format: request, response, streaming
 * events, usage and error body.
 *
 * Every object keeps the fields it does not know (`cache_control`,
 * `citations`, `service_tier`, …), and the content blocks and stream events
 * of a type this module does not know decode as {@link UnknownBlock} /
 * {@link UnknownEvent} instead of failing: Anthropic adds block types
 * (server tools, documents, containers) and event types, and a relay must
 * pass them on. Decode and encode with {@link parseOptions} to keep key order.
 *
 * Because an unknown block's `type` is any other string, `block.type ===
 * "text"` does not narrow the union in TypeScript: use the guards
 * ({@link isTextBlock}, {@link isToolUseBlock}, …).
 *
 * @since 0.1.0
 */
import type * as Either from "effect/Either"
import type * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { ParseOptions } from "effect/SchemaAST"
import { JsonObject, open, opt, optNull, otherThan } from "./internal/wire.js"

/**
 * Decode and encode with these options to keep a body's key order.
 *
 * @since 0.1.0
 * @category options
 */
export const parseOptions: ParseOptions = { propertyOrder: "original" }

// -----------------------------------------------------------------------------
// content blocks
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const TextBlock = open({ type: Schema.Literal("text"), text: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export interface TextBlock extends Schema.Schema.Type<typeof TextBlock> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const Base64ImageSource = open({
  type: Schema.Literal("base64"),
  media_type: Schema.String,
  data: Schema.String
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const UrlImageSource = open({ type: Schema.Literal("url"), url: Schema.String })

/**
 * @since 0.1.0
 * @category schemas
 */
export const FileImageSource = open({ type: Schema.Literal("file"), file_id: Schema.String })

/**
 * @since 0.1.0
 * @category schemas
 */
export const ImageSource = Schema.Union(Base64ImageSource, UrlImageSource, FileImageSource)

/**
 * @since 0.1.0
 * @category models
 */
export type ImageSource = Schema.Schema.Type<typeof ImageSource>

/**
 * @since 0.1.0
 * @category schemas
 */
export const ImageBlock = open({ type: Schema.Literal("image"), source: ImageSource })

/**
 * @since 0.1.0
 * @category models
 */
export interface ImageBlock extends Schema.Schema.Type<typeof ImageBlock> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ToolUseBlock = open({
  type: Schema.Literal("tool_use"),
  id: Schema.String,
  name: Schema.String,
  input: JsonObject
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolUseBlock extends Schema.Schema.Type<typeof ToolUseBlock> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ThinkingBlock = open({ type: Schema.Literal("thinking"), thinking: Schema.String, signature: Schema.String })

/**
 * @since 0.1.0
 * @category schemas
 */
export const RedactedThinkingBlock = open({ type: Schema.Literal("redacted_thinking"), data: Schema.String })

const knownBlockTypes = ["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"] as const

/**
 * A block of a type this module does not know (`document`,
 * `server_tool_use`, `web_search_tool_result`, …), kept whole.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UnknownBlock = open({ type: otherThan(...knownBlockTypes) })

/**
 * @since 0.1.0
 * @category models
 */
export interface UnknownBlock extends Schema.Schema.Type<typeof UnknownBlock> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ToolResultBlock = open({
  type: Schema.Literal("tool_result"),
  tool_use_id: Schema.String,
  content: opt(Schema.Union(Schema.String, Schema.Array(Schema.Union(TextBlock, ImageBlock, UnknownBlock)))),
  is_error: opt(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ToolResultBlock extends Schema.Schema.Type<typeof ToolResultBlock> {}

/**
 * Any content block of a request or a response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ContentBlock = Schema.Union(
  TextBlock,
  ImageBlock,
  ToolUseBlock,
  ToolResultBlock,
  ThinkingBlock,
  RedactedThinkingBlock,
  UnknownBlock
)

/**
 * @since 0.1.0
 * @category models
 */
export type ContentBlock = Schema.Schema.Type<typeof ContentBlock>

const hasType = <A extends { readonly type: string }>(type: A["type"]) =>
(value: { readonly type: string }): value is A => value.type === type

/**
 * @since 0.1.0
 * @category guards
 */
export const isTextBlock: (block: { readonly type: string }) => block is TextBlock = hasType<TextBlock>("text")

/**
 * @since 0.1.0
 * @category guards
 */
export const isImageBlock: (block: { readonly type: string }) => block is ImageBlock = hasType<ImageBlock>("image")

/**
 * @since 0.1.0
 * @category guards
 */
export const isToolUseBlock: (block: { readonly type: string }) => block is ToolUseBlock = hasType<ToolUseBlock>(
  "tool_use"
)

/**
 * @since 0.1.0
 * @category guards
 */
export const isToolResultBlock: (block: { readonly type: string }) => block is ToolResultBlock = hasType<
  ToolResultBlock
>("tool_result")

// -----------------------------------------------------------------------------
// request
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const MessageParam = open({
  role: Schema.Literal("user", "assistant"),
  content: Schema.Union(Schema.String, Schema.Array(ContentBlock))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface MessageParam extends Schema.Schema.Type<typeof MessageParam> {}

/**
 * A client tool (`input_schema`) or a server tool (`type` such as
 * `web_search_20250305`, no `input_schema`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Tool = open({
  name: Schema.String,
  type: opt(Schema.String),
  description: opt(Schema.String),
  input_schema: opt(JsonObject)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Tool extends Schema.Schema.Type<typeof Tool> {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ToolChoice = Schema.Union(
  open({ type: Schema.Literal("auto"), disable_parallel_tool_use: opt(Schema.Boolean) }),
  open({ type: Schema.Literal("any"), disable_parallel_tool_use: opt(Schema.Boolean) }),
  open({ type: Schema.Literal("tool"), name: Schema.String, disable_parallel_tool_use: opt(Schema.Boolean) }),
  open({ type: Schema.Literal("none") })
)

/**
 * @since 0.1.0
 * @category models
 */
export type ToolChoice = Schema.Schema.Type<typeof ToolChoice>

/**
 * The body of `POST /v1/messages`. Typed: the fields the translation reads;
 * `metadata`, `thinking`, `service_tier`, … pass through as `unknown`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MessagesRequest = open({
  model: Schema.String,
  max_tokens: Schema.Number,
  messages: Schema.Array(MessageParam),
  system: opt(Schema.Union(Schema.String, Schema.Array(TextBlock))),
  stop_sequences: opt(Schema.Array(Schema.String)),
  temperature: opt(Schema.Number),
  top_p: opt(Schema.Number),
  top_k: opt(Schema.Number),
  stream: opt(Schema.Boolean),
  tools: opt(Schema.Array(Tool)),
  tool_choice: opt(ToolChoice),
  metadata: opt(open({ user_id: optNull(Schema.String) }))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface MessagesRequest extends Schema.Schema.Type<typeof MessagesRequest> {}

// -----------------------------------------------------------------------------
// response
// -----------------------------------------------------------------------------

/**
 * `input_tokens` counts only the input after the last cache breakpoint: the
 * whole prompt is `input_tokens + cache_creation_input_tokens +
 * cache_read_input_tokens`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Usage = open({
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cache_creation_input_tokens: optNull(Schema.Number),
  cache_read_input_tokens: optNull(Schema.Number)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Usage extends Schema.Schema.Type<typeof Usage> {}

/**
 * The stop reasons this version knows.
 *
 * @since 0.1.0
 * @category schemas
 */
export const KnownStopReason = Schema.Literal(
  "end_turn",
  "max_tokens",
  "stop_sequence",
  "tool_use",
  "pause_turn",
  "refusal",
  "model_context_window_exceeded"
)

/**
 * Open, as the block and event unions are: a reason Anthropic adds later
 * passes through as its string (the neutral model reads it as "other")
 * instead of failing a paid-for answer as malformed.
 *
 * @since 0.1.0
 * @category schemas
 */
export const StopReason = Schema.Union(KnownStopReason, Schema.String)

/**
 * @since 0.1.0
 * @category models
 */
export type StopReason = Schema.Schema.Type<typeof StopReason>

/**
 * The `Message` object: the body of a non-streaming answer.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Message = open({
  id: Schema.String,
  type: Schema.Literal("message"),
  role: Schema.Literal("assistant"),
  model: Schema.String,
  content: Schema.Array(ContentBlock),
  stop_reason: Schema.NullOr(StopReason),
  stop_sequence: optNull(Schema.String),
  usage: Usage
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Message extends Schema.Schema.Type<typeof Message> {}

// -----------------------------------------------------------------------------
// stream events
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const TextDelta = open({ type: Schema.Literal("text_delta"), text: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export interface TextDelta extends Schema.Schema.Type<typeof TextDelta> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isTextDelta: (value: { readonly type: string }) => value is TextDelta = hasType<TextDelta>("text_delta")

/**
 * @since 0.1.0
 * @category schemas
 */
export const InputJsonDelta = open({ type: Schema.Literal("input_json_delta"), partial_json: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export interface InputJsonDelta extends Schema.Schema.Type<typeof InputJsonDelta> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isInputJsonDelta: (value: { readonly type: string }) => value is InputJsonDelta = hasType<InputJsonDelta>("input_json_delta")

/**
 * `thinking_delta`, `signature_delta`, `citations_delta` and any later
 * kind, kept whole.
 *
 * @since 0.1.0
 * @category schemas
 */
export const OtherDelta = open({ type: otherThan("text_delta", "input_json_delta") })

/**
 * @since 0.1.0
 * @category schemas
 */
export const BlockDelta = Schema.Union(TextDelta, InputJsonDelta, OtherDelta)

/**
 * @since 0.1.0
 * @category models
 */
export type BlockDelta = Schema.Schema.Type<typeof BlockDelta>

/**
 * @since 0.1.0
 * @category schemas
 */
export const MessageStartEvent = open({ type: Schema.Literal("message_start"), message: Message })

/**
 * @since 0.1.0
 * @category models
 */
export interface MessageStartEvent extends Schema.Schema.Type<typeof MessageStartEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isMessageStartEvent: (value: { readonly type: string }) => value is MessageStartEvent = hasType<MessageStartEvent>("message_start")

/**
 * @since 0.1.0
 * @category schemas
 */
export const ContentBlockStartEvent = open({
  type: Schema.Literal("content_block_start"),
  index: Schema.Number,
  content_block: ContentBlock
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ContentBlockStartEvent extends Schema.Schema.Type<typeof ContentBlockStartEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isContentBlockStartEvent: (value: { readonly type: string }) => value is ContentBlockStartEvent = hasType<ContentBlockStartEvent>("content_block_start")

/**
 * @since 0.1.0
 * @category schemas
 */
export const ContentBlockDeltaEvent = open({
  type: Schema.Literal("content_block_delta"),
  index: Schema.Number,
  delta: BlockDelta
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ContentBlockDeltaEvent extends Schema.Schema.Type<typeof ContentBlockDeltaEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isContentBlockDeltaEvent: (value: { readonly type: string }) => value is ContentBlockDeltaEvent = hasType<ContentBlockDeltaEvent>("content_block_delta")

/**
 * @since 0.1.0
 * @category schemas
 */
export const ContentBlockStopEvent = open({ type: Schema.Literal("content_block_stop"), index: Schema.Number })

/**
 * @since 0.1.0
 * @category models
 */
export interface ContentBlockStopEvent extends Schema.Schema.Type<typeof ContentBlockStopEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isContentBlockStopEvent: (value: { readonly type: string }) => value is ContentBlockStopEvent = hasType<ContentBlockStopEvent>("content_block_stop")

/**
 * The last word on the message: `stop_reason` and the cumulative
 * `output_tokens` (and, on newer models, the input counts again).
 *
 * @since 0.1.0
 * @category schemas
 */
export const MessageDeltaEvent = open({
  type: Schema.Literal("message_delta"),
  delta: open({ stop_reason: optNull(StopReason), stop_sequence: optNull(Schema.String) }),
  usage: open({
    output_tokens: Schema.Number,
    input_tokens: optNull(Schema.Number),
    cache_creation_input_tokens: optNull(Schema.Number),
    cache_read_input_tokens: optNull(Schema.Number)
  })
})

/**
 * @since 0.1.0
 * @category models
 */
export interface MessageDeltaEvent extends Schema.Schema.Type<typeof MessageDeltaEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isMessageDeltaEvent: (value: { readonly type: string }) => value is MessageDeltaEvent = hasType<MessageDeltaEvent>("message_delta")

/**
 * @since 0.1.0
 * @category schemas
 */
export const MessageStopEvent = open({ type: Schema.Literal("message_stop") })

/**
 * @since 0.1.0
 * @category models
 */
export interface MessageStopEvent extends Schema.Schema.Type<typeof MessageStopEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isMessageStopEvent: (value: { readonly type: string }) => value is MessageStopEvent = hasType<MessageStopEvent>("message_stop")

/**
 * @since 0.1.0
 * @category schemas
 */
export const PingEvent = open({ type: Schema.Literal("ping") })

/**
 * `{ type, message }`: `overloaded_error`, `api_error`, `rate_limit_error`, ….
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorDetail = open({ type: Schema.String, message: Schema.String })

/**
 * An error inside a 200 stream.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorEvent = open({ type: Schema.Literal("error"), error: ErrorDetail })

/**
 * @since 0.1.0
 * @category models
 */
export interface ErrorEvent extends Schema.Schema.Type<typeof ErrorEvent> {}

/**
 * @since 0.1.0
 * @category guards
 */
export const isErrorEvent: (value: { readonly type: string }) => value is ErrorEvent = hasType<ErrorEvent>("error")

const knownEventTypes = [
  "message_start",
  "content_block_start",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
  "ping",
  "error"
] as const

/**
 * An event of a type this module does not know; Anthropic documents that
 * new event types may appear and should be ignored.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UnknownEvent = open({ type: otherThan(...knownEventTypes) })

/**
 * One SSE event of a streaming answer (the parsed JSON of its `data:`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const StreamEvent = Schema.Union(
  MessageStartEvent,
  ContentBlockStartEvent,
  ContentBlockDeltaEvent,
  ContentBlockStopEvent,
  MessageDeltaEvent,
  MessageStopEvent,
  PingEvent,
  ErrorEvent,
  UnknownEvent
)

/**
 * @since 0.1.0
 * @category models
 */
export type StreamEvent = Schema.Schema.Type<typeof StreamEvent>

/**
 * The body of a non-2xx answer: `{ type: "error", error: { type, message } }`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorResponse = open({ type: Schema.Literal("error"), error: ErrorDetail, request_id: optNull(Schema.String) })

/**
 * @since 0.1.0
 * @category models
 */
export interface ErrorResponse extends Schema.Schema.Type<typeof ErrorResponse> {}

// -----------------------------------------------------------------------------
// codecs
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeRequest: (u: unknown) => Effect.Effect<MessagesRequest, ParseResult.ParseError> =
  Schema.decodeUnknown(MessagesRequest, parseOptions)

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeResponse: (u: unknown) => Effect.Effect<Message, ParseResult.ParseError> = Schema.decodeUnknown(
  Message,
  parseOptions
)

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeStreamEvent: (u: unknown) => Effect.Effect<StreamEvent, ParseResult.ParseError> =
  Schema.decodeUnknown(StreamEvent, parseOptions)

/**
 * {@link decodeStreamEvent} as an `Either`, for a reader that decodes a
 * stream's events synchronously.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeStreamEventEither: (u: unknown) => Either.Either<StreamEvent, ParseResult.ParseError> =
  Schema.decodeUnknownEither(StreamEvent, parseOptions)

/**
 * @since 0.1.0
 * @category decoding
 */
export const decodeError: (u: unknown) => Effect.Effect<ErrorResponse, ParseResult.ParseError> =
  Schema.decodeUnknown(ErrorResponse, parseOptions)
