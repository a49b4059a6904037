/**
 * A `ResilientClient` over providers whose answers a test scripts per
 * deployment, counting the calls each deployment gets, on the `TestClock`.
 */
import { type Errors, StateStore } from "@resilient-ai/core"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Chat from "../../src/Chat.js"
import * as ClientConfig from "../../src/ClientConfig.js"
import * as Provider from "../../src/Provider.js"
import * as ResilientClient from "../../src/ResilientClient.js"

/** What a deployment does with the n-th call it gets (from 1). */
export type Script = (call: number, request: Chat.ChatRequest) => Effect.Effect<Chat.ChatResponse, Errors.ResilienceError>

export const reply = (text: string): Chat.ChatResponse => ({
  id: "r",
  model: "m",
  text,
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 10, outputTokens: 5 }
})

/** Providers that follow `scripts`; `calls[deployment]` counts what each was sent. */
export const scriptedProviders = (scripts: Record<string, Script>) => {
  const calls: Record<string, number> = {}
  const layer = Layer.succeed(Provider.Providers, {
    forTarget: (target) => ({
      kind: target.kind,
      chat: (request) =>
        Effect.suspend(() => {
          const n = (calls[target.name] = (calls[target.name] ?? 0) + 1)
          const script = scripts[target.name]
          return script === undefined
            ? Effect.dieMessage(`no script for ${target.name}`)
            : Effect.map(script(n, request), (response) => ({ response, rateLimit: undefined }))
        }),
      stream: () => Effect.dieMessage("streams are not scripted here")
    })
  })
  return { calls, layer }
}

/** Two keyless deployments, `primary` then `backup`, one retry each unless `policy` says otherwise. */
export const twoDeployments = (extra: Record<string, unknown> = {}, policy: Record<string, unknown> = {}) => ({
  deployments: [
    { name: "primary", provider: "openai", model: "p", keys: [], policy: { retry: { maxRetries: 1, jitter: "none" }, ...policy } },
    { name: "backup", provider: "anthropic", model: "b", keys: [], policy: { retry: false, ...policy } }
  ],
  cascade: ["primary", "backup"],
  ...extra
})

/** A client built from `config` (decoded as a file would be) over `providers`, for the scope of the test. */
export const clientOn = (
  providers: Layer.Layer<Provider.Providers>,
  config: unknown,
  extras?: ResilientClient.Extras
) =>
  Effect.flatMap(ClientConfig.decode(config), (decoded) => ResilientClient.make(decoded, extras)).pipe(
    Effect.provide(providers),
    Effect.provide(StateStore.layerMemory),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
  )
