import * as Stream from "effect/Stream"
import type * as AnthropicWire from "../AnthropicWire.js"
import type * as Chat from "../Chat.js"
import { finishReasonTo, usageTo } from "./anthropicTranslate.js"

// Chat chunks → Anthropic stream events: what a server speaking the Messages API sends.

/** The content block being written, if any: text, or the tool call of neutral index `call`. */
type OpenBlock =
  | { readonly kind: "text"; readonly index: number }
  | { readonly kind: "tool"; readonly index: number; readonly call: number }

/**
 * The events of one message, in Anthropic's order: `message_start`, then a
 * content block per run of text and per tool call (`content_block_start`,
 * its deltas, `content_block_stop`), then `message_delta` with the stop
 * reason and the usage and `message_stop`, sent when the chunks end (the
 * usage of a neutral stream comes on its last chunk, after the finish
 * reason).
 */
export const makeEncoder = (): {
  /** The events a chunk adds. */
  readonly step: (chunk: Chat.ChatChunk) => ReadonlyArray<AnthropicWire.StreamEvent>
  /** The events after the last chunk. */
  readonly end: () => ReadonlyArray<AnthropicWire.StreamEvent>
} => {
  let started = false
  let open: OpenBlock | undefined
  let blocks = 0
  let finishReason: Chat.FinishReason | undefined
  let usage: Chat.Usage | undefined

  const close = (events: Array<AnthropicWire.StreamEvent>) => {
    if (open === undefined) return
    events.push({ type: "content_block_stop", index: open.index })
    open = undefined
  }

  const step = (chunk: Chat.ChatChunk): ReadonlyArray<AnthropicWire.StreamEvent> => {
    const events: Array<AnthropicWire.StreamEvent> = []
    if (!started) {
      started = true
      events.push({
        type: "message_start",
        message: {
          id: chunk.id,
          type: "message",
          role: "assistant",
          model: chunk.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          // The prompt's count arrives with the neutral stream's last chunk: `message_delta` carries it.
          usage: { input_tokens: 0, output_tokens: 0 }
        }
      })
    }
    if (chunk.text !== undefined && chunk.text !== "") {
      if (open?.kind !== "text") {
        close(events)
        open = { kind: "text", index: blocks++ }
        events.push({ type: "content_block_start", index: open.index, content_block: { type: "text", text: "" } })
      }
      events.push({ type: "content_block_delta", index: open.index, delta: { type: "text_delta", text: chunk.text } })
    }
    for (const delta of chunk.toolCalls ?? []) {
      if (open?.kind !== "tool" || open.call !== delta.index) {
        close(events)
        open = { kind: "tool", index: blocks++, call: delta.index }
        events.push({
          type: "content_block_start",
          index: open.index,
          content_block: { type: "tool_use", id: delta.id ?? "", name: delta.name ?? "", input: {} }
        })
      }
      if (delta.arguments !== undefined && delta.arguments !== "") {
        events.push({
          type: "content_block_delta",
          index: open.index,
          delta: { type: "input_json_delta", partial_json: delta.arguments }
        })
      }
    }
    if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
    if (chunk.usage !== undefined) usage = chunk.usage
    return events
  }

  const end = (): ReadonlyArray<AnthropicWire.StreamEvent> => {
    if (!started) return []
    const events: Array<AnthropicWire.StreamEvent> = []
    close(events)
    const counts = usageTo(usage ?? { inputTokens: 0, outputTokens: 0 })
    events.push(
      {
        type: "message_delta",
        delta: { stop_reason: finishReasonTo(finishReason ?? "stop"), stop_sequence: null },
        usage: counts
      },
      { type: "message_stop" }
    )
    return events
  }

  return { step, end }
}

/** {@link makeEncoder} over a stream, fresh for every run. */
export const toStream = <E, R>(
  chunks: Stream.Stream<Chat.ChatChunk, E, R>
): Stream.Stream<AnthropicWire.StreamEvent, E, R> =>
  Stream.suspend(() => {
    const { end, step } = makeEncoder()
    return Stream.concat(
      Stream.mapConcat(chunks, step),
      Stream.suspend(() => Stream.fromIterable(end()))
    )
  })
