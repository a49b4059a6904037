/**
 * One client, several cascades: `ChatOptions.cascade` picks the deployments
 * of each request; `streamStarted` says who answers a stream when its first
 * chunk arrives.
 */
import { Errors, StateStore } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Chat from "../src/Chat.js"
import * as ClientConfig from "../src/ClientConfig.js"
import * as Provider from "../src/Provider.js"
import type * as ResilientClient from "../src/ResilientClient.js"
import { make } from "../src/ResilientClient.js"

type Behaviour = "ok" | "down"

/** Providers answering (whole or as two chunks) or failing with 503, per deployment; each call is logged. */
const providers = (behaviour: Record<string, Behaviour>) => {
  const calls: Array<string> = []
  const fails = (name: string) => behaviour[name] !== "ok"
  const down = new Errors.ProviderUnavailableError({ status: 503 })
  const layer = Layer.succeed(Provider.Providers, {
    forTarget: (target) => ({
      kind: target.kind,
      chat: (_request, context) =>
        Effect.suspend(() => {
          calls.push(`${context.deployment}/${context.keyName ?? "-"}`)
          return fails(target.name) ? Effect.fail(down) : Effect.succeed({
            response: { id: "r", model: target.model, text: `from ${target.name}`, toolCalls: [], finishReason: "stop" as const },
            rateLimit: undefined
          })
        }),
      stream: (_request, context) =>
        Effect.suspend(() => {
          calls.push(`${context.deployment}/${context.keyName ?? "-"}`)
          const chunk = (c: Partial<Chat.ChatChunk>): Chat.ChatChunk => ({ id: "s", model: target.model, ...c })
          return fails(target.name) ? Effect.fail(down) : Effect.succeed({
            chunks: Stream.make(chunk({ text: "from " }), chunk({ text: target.name, finishReason: "stop" })),
            rateLimit: undefined
          })
        }),
      probe: () => Effect.void
    })
  })
  return { calls, layer }
}

const config = {
  deployments: ["a", "b", "c"].map((name) => ({
    name,
    provider: "openai",
    model: `model-${name}`,
    keys: [{ name: `${name}-key`, env: "KEY" }],
    policy: { retry: false }
  })),
  cascade: ["a", "b", "c"]
}

const request: Chat.ChatRequest = { model: "public", messages: [{ role: "user", content: "hi" }] }

const withClient = <A, E>(
  behaviour: Record<string, Behaviour>,
  use: (client: ResilientClient.Service, calls: Array<string>) => Effect.Effect<A, E, Scope.Scope>
) => {
  const { calls, layer } = providers(behaviour)
  return Effect.flatMap(ClientConfig.decode(config), (decoded) => make(decoded)).pipe(
    Effect.flatMap((client) => use(client, calls)),
    Effect.scoped,
    Effect.provide(layer),
    Effect.provide(StateStore.layerMemory),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["KEY", "sk-test"]])))
  )
}

const settled = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(self)
    yield* TestClock.adjust("1 minute")
    return yield* Fiber.join(fiber)
  })

describe("ResilientClient: a cascade per request (ChatOptions.cascade, rule 35)", () => {
  it.effect("each request tries the deployments its options name, in their order", () =>
    withClient({ a: "ok", b: "ok", c: "ok" }, (client, calls) =>
      Effect.gen(function*() {
        const byDefault = yield* client.chat(request)
        const named = yield* client.chat(request, { cascade: ["c", "a"] })
        expect(byDefault.deployment).toBe("a")
        expect(named).toMatchObject({ deployment: "c", source: "primary", keyName: "c-key" })
        expect(calls).toEqual(["a/a-key", "c/c-key"])
      })))

  it.effect("a request's cascade falls back within itself only", () =>
    withClient({ a: "ok", b: "down", c: "ok" }, (client, calls) =>
      Effect.gen(function*() {
        const result = yield* settled(client.chat(request, { cascade: ["b", "c"] }))
        expect(result).toMatchObject({ deployment: "c", source: "fallback-provider" })
        expect(result.fallbacks).toEqual([{ from: "b", to: "c", tag: "ProviderUnavailableError" }])
        expect(calls).toEqual(["b/b-key", "c/c-key"])
      })))

  it.effect("cascades share one breaker per deployment: opened through one cascade, it refuses the other's requests", () =>
    withClient({ a: "down", b: "ok", c: "ok" }, (client, calls) =>
      Effect.gen(function*() {
        // The default breaker opens after 5 consecutive failures (no retries, no clock move: it stays open).
        for (let i = 0; i < 5; i++) yield* client.chat(request, { cascade: ["a", "b"] })
        const before = calls.filter((c) => c.startsWith("a/")).length
        expect(before).toBe(5)
        const other = yield* client.chat(request, { cascade: ["a", "c"] })
        expect(other.deployment).toBe("c")
        expect(calls.filter((c) => c.startsWith("a/")).length).toBe(before)
        expect(other.fallbacks).toEqual([{ from: "a", to: "c", tag: "CircuitOpenError" }])
      })))

  it.effect("a cascade naming an unknown deployment is a BadRequestError naming it, and nothing is called", () =>
    withClient({ a: "ok", b: "ok", c: "ok" }, (client, calls) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(client.chat(request, { cascade: ["a", "nope"] }))
        expect(exit).toStrictEqual(Exit.fail(new Errors.BadRequestError({ detail: `no deployment is named "nope"` })))
        const streamed = yield* Effect.exit(Stream.runDrain(client.stream(request, { cascade: [] })))
        expect(Exit.isFailure(streamed) && JSON.stringify(streamed.cause)).toContain("the cascade names no deployment")
        expect(calls).toEqual([])
      })))
})

describe("ResilientClient: streamStarted says who answers before the stream ends", () => {
  it.effect("the primary's stream: source, deployment, key and attempts with the first chunk, then every chunk", () =>
    withClient({ a: "ok", b: "ok", c: "ok" }, (client) =>
      Effect.gen(function*() {
        const started = yield* client.streamStarted(request)
        expect(started.start).toEqual({ source: "primary", deployment: "a", keyName: "a-key", attempts: 1, fallbacks: [] })
        const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(started.chunks))
        expect(chunks.map((c) => c.text).join("")).toBe("from a")
      })))

  it.effect("a fallback: the start names the deployment that answers and the fallbacks taken to it", () =>
    withClient({ a: "down", b: "down", c: "ok" }, (client) =>
      Effect.gen(function*() {
        const started = yield* settled(client.streamStarted(request))
        expect(started.start).toEqual({
          source: "fallback-provider",
          deployment: "c",
          keyName: "c-key",
          attempts: 3,
          fallbacks: [
            { from: "a", to: "b", tag: "ProviderUnavailableError" },
            { from: "b", to: "c", tag: "ProviderUnavailableError" }
          ]
        })
        const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(started.chunks))
        expect(chunks.map((c) => c.text).join("")).toBe("from c")
      })))

  it.effect("every deployment down: streamStarted fails with the error, before any chunk", () =>
    withClient({ a: "down", b: "down", c: "down" }, (client) =>
      Effect.gen(function*() {
        const exit = yield* settled(Effect.exit(client.streamStarted(request, { cascade: ["a", "b"] })))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(JSON.stringify(exit)).toContain("ProviderUnavailableError")
      })))
})
