import { Errors } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as AnthropicWire from "../AnthropicWire.js"
import type * as Chat from "../Chat.js"
import { finishReasonFrom, type UsageCounts, usageFrom } from "./anthropicTranslate.js"

const PROVIDER = "anthropic"

// Anthropic stream events → Chat chunks: a small synchronous state machine (a provider's reader runs it inside
// its stream guard's stage; `Translate.fromAnthropicStream` through `Stream.mapAccumEffect`).

interface OpenToolCall {
  /** The index of the call among the message's tool calls. */
  readonly index: number
  /** Whether any `input_json_delta` carried text. */
  readonly hasInput: boolean
}

export interface StreamState {
  readonly id: string
  readonly model: string
  /** Tool calls by content block index. */
  readonly toolCalls: ReadonlyMap<number, OpenToolCall>
  readonly usage: UsageCounts | undefined
  /** Chunks emitted so far. */
  readonly emitted: number
}

export const initialStreamState: StreamState = {
  id: "",
  model: "",
  toolCalls: new Map(),
  usage: undefined,
  emitted: 0
}

type Step = readonly [StreamState, ReadonlyArray<Chat.ChatChunk>]

const emit = (state: StreamState, chunks: ReadonlyArray<Omit<Chat.ChatChunk, "id" | "model">>): Step => [
  { ...state, emitted: state.emitted + chunks.length },
  chunks.map((chunk) => ({ id: state.id, model: state.model, ...chunk }))
]

const withToolCall = (state: StreamState, block: number, call: OpenToolCall): StreamState => ({
  ...state,
  toolCalls: new Map([...state.toolCalls, [block, call]])
})

const present = <A>(value: A | null | undefined, fallback: A | null | undefined): A | null | undefined =>
  value === undefined || value === null ? fallback : value

const nothing = (state: StreamState): Step => [state, []]

/**
 * One Anthropic event → the chunks it means, and the next state. Block
 * indexes become tool call indexes (0, 1, … among tool calls), a tool call
 * whose input stayed empty gets `"{}"` as arguments (OpenAI's spelling of
 * "no arguments"), and the usage is emitted once, at `message_stop`, from
 * `message_start`'s input counts and `message_delta`'s final counts.
 * Thinking deltas and unknown events are skipped; an `error` event fails.
 */
export const stepStreamEvent = (
  state: StreamState,
  event: AnthropicWire.StreamEvent
): Step | Errors.StreamInterruptedError => {
  if (AnthropicWire.isMessageStartEvent(event)) {
    const message = event.message
    return emit(
      { ...state, id: message.id, model: message.model, usage: message.usage },
      [{ role: "assistant", text: "" }]
    )
  }
  if (AnthropicWire.isContentBlockStartEvent(event)) {
    const block = event.content_block
    if (AnthropicWire.isTextBlock(block)) {
      return block.text === "" ? nothing(state) : emit(state, [{ text: block.text }])
    }
    if (AnthropicWire.isToolUseBlock(block)) {
      const index = state.toolCalls.size
      const input = Object.keys(block.input).length === 0 ? "" : JSON.stringify(block.input)
      return emit(
        withToolCall(state, event.index, { index, hasInput: input !== "" }),
        [{ toolCalls: [{ index, id: block.id, name: block.name, arguments: input }] }]
      )
    }
    return nothing(state)
  }
  if (AnthropicWire.isContentBlockDeltaEvent(event)) {
    const delta = event.delta
    if (AnthropicWire.isTextDelta(delta)) return emit(state, [{ text: delta.text }])
    const call = state.toolCalls.get(event.index)
    if (AnthropicWire.isInputJsonDelta(delta) && call !== undefined && delta.partial_json !== "") {
      return emit(
        withToolCall(state, event.index, { ...call, hasInput: true }),
        [{ toolCalls: [{ index: call.index, arguments: delta.partial_json }] }]
      )
    }
    return nothing(state)
  }
  if (AnthropicWire.isContentBlockStopEvent(event)) {
    const call = state.toolCalls.get(event.index)
    return call === undefined || call.hasInput
      ? nothing(state)
      : emit(
        withToolCall(state, event.index, { ...call, hasInput: true }),
        [{ toolCalls: [{ index: call.index, arguments: "{}" }] }]
      )
  }
  if (AnthropicWire.isMessageDeltaEvent(event)) {
    const usage = event.usage
    const before = state.usage
    const next: StreamState = {
      ...state,
      usage: {
        input_tokens: present(usage.input_tokens, before?.input_tokens),
        output_tokens: usage.output_tokens,
        cache_creation_input_tokens: present(usage.cache_creation_input_tokens, before?.cache_creation_input_tokens),
        cache_read_input_tokens: present(usage.cache_read_input_tokens, before?.cache_read_input_tokens)
      }
    }
    const reason = event.delta.stop_reason
    return reason === undefined || reason === null
      ? nothing(next)
      : emit(next, [{ finishReason: finishReasonFrom(reason) }])
  }
  if (AnthropicWire.isMessageStopEvent(event)) {
    return state.usage === undefined ? nothing(state) : emit(state, [{ usage: usageFrom(state.usage) }])
  }
  if (AnthropicWire.isErrorEvent(event)) {
    return new Errors.StreamInterruptedError({
      provider: PROVIDER,
      detail: `${event.error.type}: ${event.error.message}`,
      chunksReceived: state.emitted
    })
  }
  return nothing(state)
}

/** {@link stepStreamEvent} for `Stream.mapAccumEffect`. */
export const fromStreamEvent = (
  state: StreamState,
  event: AnthropicWire.StreamEvent
): Effect.Effect<Step, Errors.StreamInterruptedError> => {
  const step = stepStreamEvent(state, event)
  return Errors.isResilienceError(step) ? Effect.fail(step) : Effect.succeed(step)
}
