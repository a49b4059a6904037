import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Chat from "../src/Chat.js"
import * as Chunks from "../src/Chunks.js"

const response: Chat.ChatResponse = {
  id: "r1",
  model: "m",
  created: 1_700_000_000,
  text: "It is sunny.",
  toolCalls: [{ id: "c1", name: "weather", arguments: "{\"city\":\"Paris\"}" }, { id: "c2", name: "time", arguments: "{}" }],
  finishReason: "tool_calls",
  usage: { inputTokens: 10, outputTokens: 4 }
}

describe("Chunks", () => {
  it.effect("a whole answer unfolded into chunks folds back into the same answer", () =>
    Effect.gen(function*() {
      const chunks = Chunks.fromResponse(response)
      expect(chunks[0]).toMatchObject({ role: "assistant" })
      expect(chunks.at(-1)).toMatchObject({ finishReason: "tool_calls", usage: response.usage })
      expect(yield* Chunks.collect(Stream.fromIterable(chunks))).toEqual(response)
    }))

  it.effect("tool call pieces are joined by their index, whatever order their pieces come in", () =>
    Effect.gen(function*() {
      const c = (toolCalls: Chat.ChatChunk["toolCalls"]): Chat.ChatChunk => ({ id: "r", model: "m", ...(toolCalls === undefined ? {} : { toolCalls }) })
      const answer = yield* Chunks.collect(Stream.make(
        c([{ index: 1, id: "b", name: "second", arguments: "{\"x\":" }]),
        c([{ index: 0, id: "a", name: "first", arguments: "{}" }]),
        c([{ index: 1, arguments: "1}" }])
      ))
      expect(answer.toolCalls).toEqual([{ id: "a", name: "first", arguments: "{}" }, { id: "b", name: "second", arguments: "{\"x\":1}" }])
      // No finish reason came: the answer says "stop", as a stream that just ended would.
      expect(answer.finishReason).toBe("stop")
    }))
})
