import * as Response from "@effect/ai/Response"
import * as Tool from "@effect/ai/Tool"
import * as Toolkit from "@effect/ai/Toolkit"
import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import * as AnswerCache from "../src/internal/answerCache.js"

const finish = Response.makePart("finish", {
  reason: "stop",
  usage: new Response.Usage({ inputTokens: 1, outputTokens: 2, totalTokens: 3 })
})

describe("the cache's key and entries", () => {
  it("one prompt, written as a string or as messages, is one key; another prompt or method is another", () => {
    const text = AnswerCache.keyOf({ prompt: "hello" })
    expect(text).toBeDefined()
    expect(AnswerCache.keyOf({ prompt: [{ role: "user", content: "hello" }] })).toEqual(text)
    expect(AnswerCache.keyOf({ prompt: "hello!" })).not.toEqual(text)
    expect(AnswerCache.keyOf({ prompt: "hello", schema: Schema.Struct({ a: Schema.String }), objectName: "a" })).not.toEqual(text)
  })

  it("a generateObject key holds the schema's JSON Schema and the object's name", () => {
    const A = Schema.Struct({ a: Schema.String })
    const key = AnswerCache.keyOf({ prompt: "hello", schema: A, objectName: "a" })
    expect(AnswerCache.keyOf({ prompt: "hello", schema: Schema.Struct({ a: Schema.String }), objectName: "a" })).toEqual(key)
    expect(AnswerCache.keyOf({ prompt: "hello", schema: Schema.Struct({ a: Schema.Number }), objectName: "a" })).not.toEqual(key)
    expect(AnswerCache.keyOf({ prompt: "hello", schema: A, objectName: "b" })).not.toEqual(key)
  })

  it("a call with a toolkit is not cached: a hit would skip its handlers", () => {
    const toolkit = Toolkit.make(Tool.make("GetTime", { success: Schema.String }))
    expect(AnswerCache.keyOf({ prompt: "hello", toolkit })).toBeUndefined()
  })

  it("a stream's parts are gathered into one text part per block, and handed back as one block each", () => {
    const parts = [
      Response.makePart("text-start", { id: "a" }),
      Response.makePart("text-delta", { id: "a", delta: "Hel" }),
      Response.makePart("reasoning-start", { id: "r" }),
      Response.makePart("reasoning-delta", { id: "r", delta: "think" }),
      Response.makePart("text-delta", { id: "a", delta: "lo" }),
      Response.makePart("text-end", { id: "a" }),
      Response.makePart("reasoning-end", { id: "r" }),
      finish
    ]
    const content = AnswerCache.gather(parts)
    expect(content.map((p) => (p.type === "text" || p.type === "reasoning" ? [p.type, p.text] : [p.type]))).toEqual([
      ["text", "Hello"],
      ["reasoning", "think"],
      ["finish"]
    ])
    const streamed = AnswerCache.toStreamParts(content)
    expect(streamed.map((p) => p.type)).toEqual([
      "text-start",
      "text-delta",
      "text-end",
      "reasoning-start",
      "reasoning-delta",
      "reasoning-end",
      "finish"
    ])
    expect(AnswerCache.gather(streamed)).toEqual(content)
  })

  it("an answer's tool parts are not kept", () => {
    const call = Response.makePart("tool-call", { id: "c", name: "GetTime", params: {}, providerExecuted: false })
    expect(AnswerCache.contentOf([Response.makePart("text", { text: "hi" }), call, finish]).map((p) => p.type)).toEqual(["text", "finish"])
  })
})
