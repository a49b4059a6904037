import type * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as HttpClient from "@effect/platform/HttpClient"
import { describe, expectTypeOf, it } from "@effect/vitest"
import type { Errors, StateStore } from "@resilient-ai/core"
import type { ClientConfig } from "@resilient-ai/llm"
import * as Effect from "effect/Effect"
import * as ResilientLanguageModel from "../src/ResilientLanguageModel.js"

/** An @effect/ai program as it is written today, against the provider's `LanguageModel`. */
const program: Effect.Effect<string, AiError.AiError, LanguageModel.LanguageModel> = Effect.map(
  LanguageModel.generateText({ prompt: "Hello!" }),
  (response) => response.text
)

const config: ClientConfig.ClientConfig = {
  deployments: [{ name: "gpt", provider: "openai", model: "gpt-4o", keys: [] }],
  cascade: ["gpt"]
}

describe("types", () => {
  it("an unchanged program runs with our layer: its error channel is still AiError (plus the layer's config error)", () => {
    const provided = Effect.provide(program, ResilientLanguageModel.layer(config))
    expectTypeOf(provided).toEqualTypeOf<
      Effect.Effect<string, AiError.AiError | Errors.InvalidConfigError, HttpClient.HttpClient | StateStore.StateStore>
    >()
  })

  it("after a static reply the program's error channel is never", () => {
    const answered = ResilientLanguageModel.alwaysAnswers(program)
    expectTypeOf(answered).toEqualTypeOf<
      Effect.Effect<string, never, LanguageModel.LanguageModel | ResilientLanguageModel.AlwaysAnswers>
    >()
    // Only a layer that ends in a static reply provides what `alwaysAnswers` needs.
    const provided = Effect.provide(answered, ResilientLanguageModel.layerWithStaticReply(config))
    expectTypeOf(provided).toEqualTypeOf<
      Effect.Effect<string, Errors.InvalidConfigError, HttpClient.HttpClient | StateStore.StateStore>
    >()
    const withoutStatic = Effect.provide(answered, ResilientLanguageModel.layer(config))
    expectTypeOf(withoutStatic).toEqualTypeOf<
      Effect.Effect<string, Errors.InvalidConfigError, ResilientLanguageModel.AlwaysAnswers | HttpClient.HttpClient | StateStore.StateStore>
    >()
  })
})
