/**
 * A streamed answer and the whole answer are two shapes of one thing: this
 * module folds chunks into the `ChatResponse` a non-streamed call would have
 * returned, and unfolds a whole answer (from the cache, a static reply) into
 * chunks. The client records a stream's outcome, usage and cost from the
 * fold, so a stream is judged as a call is (docs/semantics.md rule 26).
 *
 * @since 0.1.0
 */
import type * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Chat from "./Chat.js"

/**
 * Takes the chunks of one stream in order; `response` is the answer so far.
 * Mutable, one per stream: it sits in the loop that hands each chunk on.
 *
 * @since 0.1.0
 * @category models
 */
export interface Collector {
  readonly add: (chunk: Chat.ChatChunk) => void
  /** The answer the chunks added so far make; `finishReason` "stop" when none came. */
  readonly response: () => Chat.ChatResponse
}

interface PartialCall {
  id: string
  name: string
  arguments: string
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const collector = (): Collector => {
  let id = ""
  let model = ""
  let created: number | undefined
  let text = ""
  let refusal: string | undefined
  let finishReason: Chat.FinishReason | undefined
  let usage: Chat.Usage | undefined
  let extra: Chat.Extra | undefined
  // By the delta's `index`: the model's order of starting them, not the order pieces arrive in.
  const calls: Array<PartialCall | undefined> = []
  return {
    add: (chunk) => {
      if (id === "") id = chunk.id
      if (model === "") model = chunk.model
      created ??= chunk.created
      if (chunk.text !== undefined) text += chunk.text
      if (chunk.refusal !== undefined) refusal = (refusal ?? "") + chunk.refusal
      for (const delta of chunk.toolCalls ?? []) {
        const call = calls[delta.index] ?? { id: "", name: "", arguments: "" }
        calls[delta.index] = call
        if (delta.id !== undefined) call.id = delta.id
        if (delta.name !== undefined) call.name += delta.name
        if (delta.arguments !== undefined) call.arguments += delta.arguments
      }
      if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
      if (chunk.usage !== undefined) usage = chunk.usage
      if (chunk.extra !== undefined) extra = { ...extra, ...chunk.extra }
    },
    response: () => ({
      id,
      model,
      ...(created === undefined ? {} : { created }),
      text,
      toolCalls: calls.flatMap((call) => (call === undefined ? [] : [{ ...call }])),
      finishReason: finishReason ?? "stop",
      ...(refusal === undefined ? {} : { refusal }),
      ...(usage === undefined ? {} : { usage }),
      ...(extra === undefined ? {} : { extra })
    })
  }
}

/**
 * The whole answer a stream makes.
 *
 * @since 0.1.0
 * @category folding
 */
export const collect = <E, R>(chunks: Stream.Stream<Chat.ChatChunk, E, R>): Effect.Effect<Chat.ChatResponse, E, R> =>
  Effect.suspend(() => {
    const answer = collector()
    // By the chunk of chunks: `runForEach` runs an `Effect.forEach` for each one.
    const addAll = (batch: Chunk.Chunk<Chat.ChatChunk>) => Effect.sync(() => { for (const chunk of batch) answer.add(chunk) })
    return Effect.map(Stream.runForEachChunk(chunks, addAll), () => answer.response())
  })

/**
 * A whole answer as a stream would have brought it: the opening chunk, the
 * content, then the finish reason with the usage.
 *
 * @since 0.1.0
 * @category unfolding
 */
export const fromResponse = (response: Chat.ChatResponse): ReadonlyArray<Chat.ChatChunk> => {
  const { id, model } = response
  const created = response.created === undefined ? {} : { created: response.created }
  const content: Chat.ChatChunk = {
    id,
    model,
    ...created,
    text: response.text,
    ...(response.refusal === undefined ? {} : { refusal: response.refusal }),
    ...(response.toolCalls.length === 0 ? {} : {
      toolCalls: response.toolCalls.map((call, index) => ({ index, id: call.id, name: call.name, arguments: call.arguments }))
    }),
    ...(response.extra === undefined ? {} : { extra: response.extra })
  }
  return [
    { id, model, ...created, role: "assistant" },
    content,
    { id, model, ...created, finishReason: response.finishReason, ...(response.usage === undefined ? {} : { usage: response.usage }) }
  ]
}
