// Chaos around the providers of a client: 30 % of gpt-4o's calls fail with a 503 (the client retries them)
// until the flag is switched off. Simulated providers and virtual time here; in production tests, your HttpProviders.
import { Errors, StateStore } from "@resilient-ai/core"
import { ClientConfig, ResilientClient } from "@resilient-ai/llm"
import { Chaos, FaultScript, SimulatedProviders, VirtualTime } from "@resilient-ai/testkit"
import { ConfigProvider, Effect, Exit, Layer, Random, Ref } from "effect"

const config = ClientConfig.decode({
  deployments: [
    { name: "gpt-4o", provider: "openai", model: "gpt-4o", keys: [{ name: "openai-main", env: "OPENAI_API_KEY" }] },
    { name: "claude", provider: "anthropic", model: "claude-sonnet-4-5", keys: [{ name: "anthropic-main", env: "ANTHROPIC_API_KEY" }] }
  ],
  cascade: ["gpt-4o", "claude"]
})

const program = Effect.gen(function*() {
  const chaosOn = yield* Ref.make(true)
  const providers = Chaos.layerProviders({
    deployments: ["gpt-4o"],
    fault: {
      injectionRate: 0.3,
      enabled: chaosOn,
      error: (target) => new Errors.ProviderUnavailableError({ deployment: target.name, status: 503 })
    }
  }).pipe(
    Layer.provide(SimulatedProviders.layer({
      deployments: [
        { name: "gpt-4o", latency: FaultScript.fixed(800), script: [] },
        { name: "claude", latency: FaultScript.fixed(900), script: [] }
      ]
    }))
  )
  const client = yield* Effect.flatMap(config, (c) => ResilientClient.make(c, {})).pipe(
    Effect.provide(Layer.merge(providers, StateStore.layerMemory))
  )
  // Calls that reached a provider, per phase: the retries the injected 503s cost.
  const calls = { on: 0, off: 0 }
  for (let i = 0; i < 40; i++) {
    if (i === 20) yield* Ref.set(chaosOn, false)
    const result = yield* client.chat({ model: "gpt-4o", messages: [{ role: "user", content: `Question ${i}` }] })
    calls[i < 20 ? "on" : "off"] += result.attempts
  }
  return `20 answers in ${calls.on} calls with chaos on, 20 in ${calls.off} with it off`
}).pipe(
  Effect.scoped,
  // A seeded Random: the same calls fail on every run.
  Effect.withRandom(Random.make(1)),
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OPENAI_API_KEY", "sk-sim"], ["ANTHROPIC_API_KEY", "sk-sim"]])))
)

const { exit } = VirtualTime.runExit(program)
if (Exit.isSuccess(exit)) console.log(exit.value)
else console.error(exit.cause)
