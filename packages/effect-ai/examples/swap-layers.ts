// An existing @effect/ai program made resilient by changing only its layers.
import { LanguageModel } from "@effect/ai"
import { FetchHttpClient } from "@effect/platform"
import { StateStore } from "@resilient-ai/core"
import { ResilientLanguageModel } from "@resilient-ai/effect-ai"
import { ClientConfig } from "@resilient-ai/llm"
import { ConfigProvider, Effect, Layer, Option } from "effect"

// The program, as written for OpenAiLanguageModel.layer: not one line changes.
const program = Effect.gen(function*() {
  const response = yield* LanguageModel.generateText({ prompt: "Hello!" })
  return response.text
})

// Two deployments, tried in order, then a static reply. Both point at a port where nothing
// listens, so this demo shows the last step; give them real URLs (or none) and keys in production.
const config = ClientConfig.decode({
  deployments: [
    {
      name: "gpt-4o", provider: "openai", model: "gpt-4o", baseUrl: "http://127.0.0.1:9/v1",
      keys: [{ name: "openai-1", env: "OPENAI_API_KEY" }, { name: "openai-2", env: "OPENAI_API_KEY_2" }],
      policy: { retry: false, circuitBreaker: { openDuration: "30 seconds" } }
    },
    {
      name: "claude", provider: "anthropic", model: "claude-sonnet-4-5", baseUrl: "http://127.0.0.1:9",
      keys: [{ name: "anthropic-1", env: "ANTHROPIC_API_KEY" }], policy: { retry: false }
    }
  ],
  cascade: ["gpt-4o", "claude"]
})

// Before: OpenAiLanguageModel.layer({ model: "gpt-4o" }) + OpenAiClient.layerConfig({ apiKey }) + an HttpClient.
// After: our layer in their place.
const ResilientModel = Layer.unwrapEffect(Effect.map(config, (c) => ResilientLanguageModel.layerWithStaticReply(c))).pipe(
  Layer.provide(FetchHttpClient.layer),
  Layer.provide(StateStore.layerMemory)
)

// The demo's keys; an app reads them from its environment.
const demoKeys = ConfigProvider.fromMap(
  new Map([["OPENAI_API_KEY", "sk-demo-1"], ["OPENAI_API_KEY_2", "sk-demo-2"], ["ANTHROPIC_API_KEY", "sk-ant-demo"]])
)

const main = Effect.gen(function*() {
  // With a static reply at the end the program cannot fail with an AiError: its type says so.
  const text = yield* ResilientLanguageModel.alwaysAnswers(program)
  const answer = yield* ResilientLanguageModel.lastAnswer
  const path = Option.match(answer, { onNone: () => "", onSome: (a) => a.fallbacks.map((f) => `${f.from} → ${f.to}`).join(", ") })
  console.log(`${text} (${path})`)
})

Effect.runPromise(main.pipe(Effect.provide(ResilientModel), Effect.withConfigProvider(demoKeys)))
