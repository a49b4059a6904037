import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as StaticReply from "../src/StaticReply.js"

describe("StaticReply", () => {
  it.effect.each([
    ["hello!", "greeting"],
    ["Good morning", "greeting"],
    ["hello, can you summarise this contract for me?", "general"],
    ["URGENT: the checkout is down", "urgent"],
    ["summarise this page", "general"],
    ["is this a downgrade?", "general"]
  ] as const)("%j is answered by the %s intent", ([text, intent]) =>
    Effect.gen(function*() {
      const replies = yield* StaticReply.make()
      expect(replies.reply(text).intent).toBe(intent)
    }))

  it.effect("intents are data: the first match wins, the default answers the rest", () =>
    Effect.gen(function*() {
      const replies = yield* StaticReply.make({
        intents: [
          { name: "billing", keywords: ["invoice", "refund"], reply: "Billing is on it." },
          { name: "refunds", keywords: ["refund"], reply: "never reached" },
          { name: "other", reply: "Later, please." }
        ],
        defaultIntent: "other"
      })
      expect(replies.reply("I want a refund")).toEqual({ intent: "billing", text: "Billing is on it." })
      expect(replies.reply("what is the weather")).toEqual({ intent: "other", text: "Later, please." })
    }))

  it.effect("a default intent that does not exist, or a bad pattern, is a config error naming the field", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.exit(StaticReply.make({ intents: [{ name: "a", reply: "x" }], defaultIntent: "b" }))
      expect(Exit.isFailure(missing) && missing.cause).toMatchObject({ error: { path: "defaultIntent" } })
      const bad = yield* Effect.exit(
        StaticReply.make({ intents: [{ name: "a", patterns: ["(unclosed"], reply: "x" }], defaultIntent: "a" })
      )
      expect(Exit.isFailure(bad) && bad.cause).toMatchObject({ error: { path: "intents.0.patterns.0" } })
    }))
})
