// Two providers with fallback, in an Effect app. Keys come from OPENAI_API_KEY and ANTHROPIC_API_KEY.
import { StateStore } from "@resilient-ai/core"
import { ClientConfig, HttpProviders, HttpTransport, ResilientClient } from "@resilient-ai/llm"
import { Effect, Layer } from "effect"

const config = ClientConfig.decode({
  deployments: [
    {
      name: "gpt-4o", provider: "openai", model: "gpt-4o", keys: [{ name: "openai-main", env: "OPENAI_API_KEY" }],
      policy: { attemptTimeout: "30 seconds", retry: { maxRetries: 2 }, circuitBreaker: { openDuration: "30 seconds" } }
    },
    { name: "claude", provider: "anthropic", model: "claude-sonnet-4-5", keys: [{ name: "anthropic-main", env: "ANTHROPIC_API_KEY" }] }
  ],
  cascade: ["gpt-4o", "claude"]
})

const ClientLive = Layer.unwrapEffect(Effect.map(config, (c) => ResilientClient.layer(c))).pipe(
  Layer.provide(HttpProviders.layer()),
  Layer.provide(HttpTransport.layer()),
  Layer.provide(StateStore.layerMemory)
)

const program = Effect.gen(function*() {
  const client = yield* ResilientClient.ResilientClient
  const result = yield* client.chat({ model: "gpt-4o", messages: [{ role: "user", content: "Hello!" }] })
  yield* Effect.log(`${result.source} (${result.deployment}, ${result.attempts} attempts): ${result.response.text}`)
})

Effect.runPromise(Effect.provide(program, ClientLive))
