/**
 * Translation between the provider wire formats and the neutral {@link Chat}
 * model, both ways, so a request in OpenAI format can fall back to an
 * Anthropic deployment and its answer come back in OpenAI format:
 *
 * ```ts
 * const chat = yield* Translate.fromOpenAiRequest(body)
 * const anthropicBody = yield* Translate.toAnthropicRequest(chat, { model: "claude-sonnet-4-5" })
 * // … call Anthropic, decode with AnthropicWire …
 * const answer = yield* Translate.toOpenAiResponse(Translate.fromAnthropicResponse(message))
 * ```
 *
 * A translation that cannot be made fails with a `BadRequestError` whose
 * `detail` names the field (`messages[2].toolCalls[0].arguments: …`); it
 * never throws.
 *
 * Decisions, in one place:
 * - **System prompt.** Every OpenAI `system` and `developer` message becomes
 *   `ChatRequest.system`, in order (a mid-conversation one moves to the
 *   front); back to OpenAI it is one leading `system` message; to Anthropic
 *   the top-level `system` (text blocks keep their `cache_control`).
 * - **Max tokens.** `max_completion_tokens`, else the deprecated
 *   `max_tokens`; written back as `max_completion_tokens`. Anthropic requires
 *   `max_tokens`: `options.defaultMaxTokens`, else 4096.
 * - **Sampling.** OpenAI's temperature is 0–2, Anthropic's 0–1: it is
 *   clamped to 1 (not scaled; 0.7 stays 0.7). `top_p = 1` is a no-op and is
 *   not sent to Anthropic, whose newer models reject `temperature` together
 *   with `top_p`.
 * - **Tool calls.** Arguments stay JSON text in the neutral model (an
 *   OpenAI round trip is exact); they are parsed where Anthropic needs an
 *   object: invalid JSON or a non-object is a `BadRequestError`, empty text
 *   means `{}`. Consecutive tool results (and any user message right after
 *   them) merge into one user message: Anthropic wants the roles to alternate.
 * - **Provider-only fields.** Each side's unmapped fields travel in
 *   `extra.<provider>` and are written back only to that provider. OpenAI
 *   fields that change what the answer is (`n > 1`, `logprobs`,
 *   `top_logprobs`, a non-text `response_format`, audio output, the
 *   deprecated `functions`/`function_call`, `web_search_options`) make
 *   {@link toAnthropicRequest} fail; the others (`seed`, `user`, penalties,
 *   `logit_bias`, `stream_options`, …) are dropped.
 * - **Not representable** (a `BadRequestError` on the way in): OpenAI audio
 *   and file parts, custom tools and tool calls, the deprecated `function`
 *   role; Anthropic server tools, documents and images by file id.
 *   Anthropic thinking blocks are dropped.
 * - **Usage.** `inputTokens` is the whole prompt: Anthropic's
 *   `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`;
 *   cache reads ↔ `prompt_tokens_details.cached_tokens`, cache writes ↔
 *   `prompt_tokens_details.cache_write_tokens`.
 * - **Finish reasons.** `end_turn`/`stop_sequence` → `stop`, `max_tokens` →
 *   `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`,
 *   `pause_turn` → `other`; `other` is written to OpenAI as `stop`.
 *
 * @since 0.1.0
 */
import type { Errors } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as AnthropicWire from "./AnthropicWire.js"
import type * as Chat from "./Chat.js"
import * as anthropicStream from "./internal/anthropicStream.js"
import * as anthropicStreamOut from "./internal/anthropicStreamOut.js"
import * as anthropic from "./internal/anthropicTranslate.js"
import * as openAi from "./internal/openAiTranslate.js"
import { nowSeconds } from "./internal/translateCommon.js"
import type * as OpenAiWire from "./OpenAiWire.js"

// -----------------------------------------------------------------------------
// OpenAI
// -----------------------------------------------------------------------------

/**
 * An OpenAI chat completions request → the neutral request. Unmapped
 * fields go to `extra.openai`.
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const fromOpenAiRequest: (
  request: OpenAiWire.ChatCompletionRequest
) => Effect.Effect<Chat.ChatRequest, Errors.BadRequestError> = openAi.fromRequest

/**
 * The neutral request → an OpenAI chat completions request, with
 * `extra.openai` written back. Fails when a tool or assistant message has
 * image parts (OpenAI takes images only from users).
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const toOpenAiRequest: (
  request: Chat.ChatRequest
) => Effect.Effect<OpenAiWire.ChatCompletionRequest, Errors.BadRequestError> = openAi.toRequest

/**
 * An OpenAI chat completion → the neutral response, from the choice with
 * index 0 (the neutral model has one choice). No choice at all is a
 * `MalformedResponseError`.
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const fromOpenAiResponse: (
  response: OpenAiWire.ChatCompletion
) => Effect.Effect<Chat.ChatResponse, Errors.MalformedResponseError> = openAi.fromResponse

/**
 * The neutral response → an OpenAI chat completion. `created` is the
 * response's own, else now (from the `Clock`).
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const toOpenAiResponse = (response: Chat.ChatResponse): Effect.Effect<OpenAiWire.ChatCompletion> =>
  Effect.map(nowSeconds, (created) => openAi.toResponse(response, created))

/**
 * One OpenAI stream chunk → one neutral chunk (choice 0 only; a usage-only
 * chunk has no choice).
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const fromOpenAiChunk: (chunk: OpenAiWire.ChatCompletionChunk) => Chat.ChatChunk = openAi.fromChunk

/**
 * One neutral chunk → one OpenAI stream chunk with `created` (seconds), as
 * {@link toOpenAiChunk} makes it: for a stream that read the clock once.
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const toOpenAiChunkAt: (chunk: Chat.ChatChunk, created: number) => OpenAiWire.ChatCompletionChunk = openAi.toChunk

/**
 * One neutral chunk → one OpenAI stream chunk. A chunk with only `usage`
 * becomes OpenAI's closing usage chunk (`choices: []`). `created` is the
 * chunk's own, else `options.created`, else now.
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const toOpenAiChunk = (
  chunk: Chat.ChatChunk,
  options?: { readonly created?: number | undefined }
): Effect.Effect<OpenAiWire.ChatCompletionChunk> => {
  const created = options?.created
  return created === undefined
    ? Effect.map(nowSeconds, (now) => openAi.toChunk(chunk, now))
    : Effect.succeed(openAi.toChunk(chunk, created))
}

/**
 * A stream of neutral chunks → OpenAI chunks, all with one `created` (read
 * from the `Clock` when the stream starts). The closing usage chunk is
 * always sent; drop it when the client did not ask for
 * `stream_options.include_usage`.
 *
 * @since 0.1.0
 * @category OpenAI
 */
export const toOpenAiStream = <E, R>(
  chunks: Stream.Stream<Chat.ChatChunk, E, R>
): Stream.Stream<OpenAiWire.ChatCompletionChunk, E, R> =>
  Stream.unwrap(Effect.map(nowSeconds, (created) => Stream.map(chunks, (chunk) => openAi.toChunk(chunk, created))))

// -----------------------------------------------------------------------------
// Anthropic
// -----------------------------------------------------------------------------

/**
 * Options of {@link toAnthropicRequest}.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export interface AnthropicRequestOptions {
  /** `max_tokens` when the request sets none (Anthropic requires it). Default 4096. */
  readonly defaultMaxTokens?: number | undefined
  /** The model to ask for instead of the request's (the fallback deployment's model). */
  readonly model?: string | undefined
}

/**
 * `max_tokens` sent to Anthropic when neither the request nor the options
 * set one.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const defaultAnthropicMaxTokens: number = anthropic.DEFAULT_MAX_TOKENS

/**
 * The neutral request → an Anthropic Messages request, with
 * `extra.anthropic` written back and `extra.openai` checked (see the module
 * notes) and dropped.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const toAnthropicRequest: (
  request: Chat.ChatRequest,
  options?: AnthropicRequestOptions
) => Effect.Effect<AnthropicWire.MessagesRequest, Errors.BadRequestError> = anthropic.toRequest

/**
 * An Anthropic Messages request → the neutral request: tool results become
 * tool messages, `disable_parallel_tool_use` becomes `parallelToolCalls:
 * false`, unmapped fields (`top_k`, `metadata`, `thinking`, …) go to
 * `extra.anthropic`.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const fromAnthropicRequest: (
  request: AnthropicWire.MessagesRequest
) => Effect.Effect<Chat.ChatRequest, Errors.BadRequestError> = anthropic.fromRequest

/**
 * An Anthropic message → the neutral response: text blocks joined, tool_use
 * blocks as tool calls (input as JSON text), thinking and unknown blocks
 * dropped.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const fromAnthropicResponse: (message: AnthropicWire.Message) => Chat.ChatResponse = anthropic.fromResponse

/**
 * The neutral response → an Anthropic message (for simulated Anthropic
 * upstreams). Fails when a tool call's arguments are not a JSON object.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const toAnthropicResponse: (
  response: Chat.ChatResponse
) => Effect.Effect<AnthropicWire.Message, Errors.BadRequestError> = anthropic.toResponse

/**
 * What {@link fromAnthropicStreamEvent} remembers between events: the
 * message id and model, which content blocks are which tool calls, the
 * usage so far, and how many chunks it emitted.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export type AnthropicStreamState = anthropicStream.StreamState

/**
 * The state before the first event.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const initialAnthropicStreamState: AnthropicStreamState = anthropicStream.initialStreamState

/**
 * One Anthropic stream event → the next state and the neutral chunks it
 * means; shaped for `Stream.mapAccumEffect`. `message_start` opens the
 * message (`role`), text and `input_json_delta`s become text and tool call
 * deltas (tool calls numbered 0, 1, … in order), `message_delta` gives the
 * finish reason, and `message_stop` the usage (input counts from
 * `message_start`, final output count from `message_delta`). An `error`
 * event fails with `StreamInterruptedError`.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const fromAnthropicStreamEvent: (
  state: AnthropicStreamState,
  event: AnthropicWire.StreamEvent
) => Effect.Effect<readonly [AnthropicStreamState, ReadonlyArray<Chat.ChatChunk>], Errors.StreamInterruptedError> =
  anthropicStream.fromStreamEvent

/**
 * Neutral chunks → the events a server speaking Anthropic's Messages API
 * streams: `message_start`, a content block per run of text and per tool
 * call, then `message_delta` (stop reason, usage) and `message_stop` when
 * the chunks end. {@link fromAnthropicStream} reads them back.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const toAnthropicStream: <E, R>(
  chunks: Stream.Stream<Chat.ChatChunk, E, R>
) => Stream.Stream<AnthropicWire.StreamEvent, E, R> = anthropicStreamOut.toStream

/**
 * What {@link toAnthropicStream} runs over its chunks, for a writer that
 * encodes them in a stage of its own (the gateway's event stream): `step`
 * gives the events a chunk adds, `end` those after the last one. Stateful:
 * one per message.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const makeAnthropicStreamEncoder: () => {
  readonly step: (chunk: Chat.ChatChunk) => ReadonlyArray<AnthropicWire.StreamEvent>
  readonly end: () => ReadonlyArray<AnthropicWire.StreamEvent>
} = anthropicStreamOut.makeEncoder

/**
 * A stream of Anthropic events → neutral chunks.
 *
 * @since 0.1.0
 * @category Anthropic
 */
export const fromAnthropicStream = <E, R>(
  events: Stream.Stream<AnthropicWire.StreamEvent, E, R>
): Stream.Stream<Chat.ChatChunk, E | Errors.StreamInterruptedError, R> =>
  events.pipe(
    Stream.mapAccumEffect(initialAnthropicStreamState, fromAnthropicStreamEvent),
    Stream.flattenIterables
  )
