// The two-provider client of @resilient-ai/llm with simulated providers in place of HTTP:
// the primary is down for its first 10 minutes, and an hour of traffic runs in virtual time.
import { StateStore } from "@resilient-ai/core"
import { ClientConfig, ResilientClient } from "@resilient-ai/llm"
import { FaultScript, SimulatedProviders, VirtualTime } from "@resilient-ai/testkit"
import { ConfigProvider, Effect, Exit, Layer } from "effect"

const config = ClientConfig.decode({
  deployments: [
    { name: "gpt-4o", provider: "openai", model: "gpt-4o", keys: [{ name: "openai-main", env: "OPENAI_API_KEY" }] },
    { name: "claude", provider: "anthropic", model: "claude-sonnet-4-5", keys: [{ name: "anthropic-main", env: "ANTHROPIC_API_KEY" }] }
  ],
  cascade: ["gpt-4o", "claude"]
})

// In production this is HttpProviders.layer() over HttpTransport.layer(); here, a fault script.
const Simulated = SimulatedProviders.layer({
  seed: 1,
  deployments: [
    { name: "gpt-4o", latency: FaultScript.lognormal(800, 2_500), script: [{ _tag: "Outage", from: 0, to: 10 * 60_000 }] },
    { name: "claude", latency: FaultScript.lognormal(900, 3_000), script: [] }
  ]
})

const ClientSimulated = Layer.unwrapEffect(Effect.map(config, (c) => ResilientClient.layer(c))).pipe(
  Layer.provide(Simulated),
  Layer.provide(StateStore.layerMemory)
)

const program = Effect.gen(function*() {
  const client = yield* ResilientClient.ResilientClient
  const answeredBy: Record<string, number> = {}
  for (let minute = 0; minute < 60; minute++) {
    const result = yield* client.chat({ model: "gpt-4o", messages: [{ role: "user", content: "Hello!" }] })
    const who = result.deployment ?? result.source
    answeredBy[who] = (answeredBy[who] ?? 0) + 1
    yield* Effect.sleep("1 minute")
  }
  return answeredBy
}).pipe(
  Effect.provide(ClientSimulated),
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OPENAI_API_KEY", "sk-sim"], ["ANTHROPIC_API_KEY", "sk-sim"]])))
)

const { exit, endedAt } = VirtualTime.runExit(program)
if (Exit.isSuccess(exit)) console.log(`answered by ${JSON.stringify(exit.value)} in ${Math.round(endedAt / 60_000)} virtual minutes`)
else console.error(exit.cause)
