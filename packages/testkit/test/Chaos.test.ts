import { Errors, StateStore } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as ClientConfig from "@resilient-ai/llm/ClientConfig"
import * as Provider from "@resilient-ai/llm/Provider"
import * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Chunk from "effect/Chunk"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Chaos from "../src/Chaos.js"

const boom = new Errors.ProviderUnavailableError({ status: 503, detail: "chaos" })

/** `n` runs of `strategy` around a counted effect: which runs were injected, and how many ran the effect. */
const runs = (n: number, strategy: Chaos.Strategy<unknown, unknown>) =>
  Effect.gen(function*() {
    const ran = yield* Ref.make(0)
    const exits = yield* Effect.forEach(
      Array.from({ length: n }),
      () => Effect.exit(strategy(Effect.as(Ref.update(ran, (k) => k + 1), "real")))
    )
    return { exits, ran: yield* Ref.get(ran) }
  })

const seeded = <A, E, R>(seed: number, self: Effect.Effect<A, E, R>) => Effect.withRandom(self, Random.make(seed))

describe("Chaos strategies", () => {
  it.effect("a fault fails about its injection rate of runs with the typed error, without running the effect", () =>
    Effect.gen(function*() {
      const { exits, ran } = yield* seeded(42, runs(2_000, Chaos.fault({ injectionRate: 0.25, error: boom })))
      const failed = exits.filter(Exit.isFailure)
      expect(failed.length).toBeGreaterThan(2_000 * 0.25 - 80)
      expect(failed.length).toBeLessThan(2_000 * 0.25 + 80)
      expect(ran).toBe(2_000 - failed.length)
      for (const e of failed) expect(e).toEqual(Exit.fail(boom))
    }))

  it.effect("the same seed injects the same runs; another seed other runs", () =>
    Effect.gen(function*() {
      const pattern = (seed: number) =>
        Effect.map(seeded(seed, runs(200, Chaos.fault({ injectionRate: 0.5, error: boom }))), ({ exits }) =>
          exits.map((e) => (Exit.isFailure(e) ? "x" : ".")).join(""))
      expect(yield* pattern(7)).toBe(yield* pattern(7))
      expect(yield* pattern(7)).not.toBe(yield* pattern(8))
    }))

  it.effect("rate 0 never injects, rate 1 always does, and neither draws from Random", () =>
    Effect.gen(function*() {
      // The draw after the runs is a fresh generator's first: the runs drew nothing.
      const firstDraw = yield* seeded(5, Random.next)
      const never = yield* seeded(5, Effect.zip(runs(50, Chaos.fault({ injectionRate: 0, error: boom })), Random.next))
      expect(never[0].ran).toBe(50)
      expect(never[1]).toBe(firstDraw)
      const always = yield* seeded(5, Effect.zip(runs(50, Chaos.fault({ injectionRate: 1, error: boom })), Random.next))
      expect(always[0].ran).toBe(0)
      expect(always[1]).toBe(firstDraw)
    }))

  it.effect("a defect dies with the given defect", () =>
    Effect.gen(function*() {
      const defect = new Error("chaos: a bug")
      const exit = yield* Effect.exit(Chaos.defect({ injectionRate: 1, defect })(Effect.succeed("real")))
      expect(exit).toEqual(Exit.die(defect))
    }))

  it.effect("latency delays the run on the Clock by exactly the latency (TestClock)", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(Chaos.latency({ injectionRate: 1, latency: "2 seconds" })(Effect.succeed("real")))
      yield* TestClock.adjust("1999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toBe("real")
    }))

  it.effect("an outcome replaces the run's result, success or failure, without running it", () =>
    Effect.gen(function*() {
      const replaced = yield* runs(3, Chaos.outcome({ injectionRate: 1, outcome: Effect.succeed("canned") }))
      expect(replaced.ran).toBe(0)
      expect(replaced.exits).toEqual([Exit.succeed("canned"), Exit.succeed("canned"), Exit.succeed("canned")])
      const failed = yield* runs(1, Chaos.outcome({ injectionRate: 1, outcome: Effect.fail("nope") }))
      expect(failed.exits).toEqual([Exit.fail("nope")])
    }))

  it.effect("a Ref switches a strategy at run time, read on every run", () =>
    Effect.gen(function*() {
      const on = yield* Ref.make(false)
      const strategy = Chaos.fault({ injectionRate: 1, enabled: on, error: boom })
      expect((yield* runs(5, strategy)).ran).toBe(5)
      yield* Ref.set(on, true)
      expect((yield* runs(5, strategy)).ran).toBe(0)
      yield* Ref.set(on, false)
      expect((yield* runs(5, strategy)).ran).toBe(5)
    }))

  it.effect("a Config flag switches it; a flag that is missing or unreadable is off", () =>
    Effect.gen(function*() {
      const strategy = Chaos.fault({ injectionRate: 1, enabled: Config.boolean("CHAOS"), error: boom })
      const withEnv = (value: string | undefined) =>
        Effect.withConfigProvider(
          runs(3, strategy),
          ConfigProvider.fromMap(new Map(value === undefined ? [] : [["CHAOS", value]]))
        )
      expect((yield* withEnv("true")).ran).toBe(0)
      expect((yield* withEnv("false")).ran).toBe(3)
      expect((yield* withEnv(undefined)).ran).toBe(3)
      expect((yield* withEnv("perhaps")).ran).toBe(3)
    }))

  it.effect("strategies compose: latency and a fault on the same effect", () =>
    Effect.gen(function*() {
      const chaotic = Effect.succeed("real").pipe(
        Chaos.fault({ injectionRate: 1, error: boom }),
        Chaos.latency({ injectionRate: 1, latency: "1 second" })
      )
      const fiber = yield* Effect.fork(Effect.exit(chaotic))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toEqual(Exit.fail(boom))
    }))
})

// -----------------------------------------------------------------------------
// layerProviders
// -----------------------------------------------------------------------------

const answer = (text: string, model: string): Chat.ChatResponse => ({
  id: "r",
  model,
  text,
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 10, outputTokens: 5 }
})

/** Providers that always answer, naming the deployment; calls are counted per deployment. */
const healthy = (calls: Record<string, number>) =>
  Layer.succeed(Provider.Providers, {
    forTarget: (target) => ({
      kind: target.kind,
      chat: (_request, context) =>
        Effect.sync(() => {
          calls[target.name] = (calls[target.name] ?? 0) + 1
          return { response: answer(`from ${target.name}`, context.model), rateLimit: undefined }
        }),
      stream: (_request, context) =>
        Effect.succeed({
          chunks: Stream.fromIterable([{ id: "s", model: context.model, text: `streamed from ${target.name}`, finishReason: "stop" as const }]),
          rateLimit: undefined
        }),
      probe: () => Effect.void
    })
  })

const target = (name: string): Provider.Target => ({ name, kind: "openai", baseUrl: undefined, model: name })
const request: Chat.ChatRequest = { model: "default", messages: [{ role: "user", content: "hi" }] }
const context = (name: string): Provider.CallContext => ({ deployment: name, model: name, key: undefined, keyName: undefined })

describe("Chaos.layerProviders", () => {
  it.effect("injects into the named deployments only, for chat and a stream's opening", () =>
    Effect.gen(function*() {
      const providers = yield* Provider.Providers
      const a = providers.forTarget(target("a"))
      const b = providers.forTarget(target("b"))
      expect(yield* Effect.flip(a.chat(request, context("a")))).toBe(boom)
      expect(yield* Effect.flip(a.stream(request, context("a")))).toBe(boom)
      expect((yield* b.chat(request, context("b"))).response.text).toBe("from b")
    }).pipe(
      Effect.provide(
        Chaos.layerProviders({ deployments: ["a"], fault: { injectionRate: 1, error: () => boom } }).pipe(
          Layer.provide(healthy({}))
        )
      )
    ))

  it.effect("an outcome replaces a chat answer, and a stream's chunks with that answer's", () =>
    Effect.gen(function*() {
      const a = (yield* Provider.Providers).forTarget(target("a"))
      expect((yield* a.chat(request, context("a"))).response.text).toBe("canned for a")
      const chunks = yield* Stream.runCollect(Provider.chunksOf(a.stream(request, context("a"))))
      expect(Chunk.toReadonlyArray(chunks).map((c) => c.text ?? "").join("")).toBe("canned for a")
    }).pipe(
      Effect.provide(
        Chaos.layerProviders({ outcome: { injectionRate: 1, response: (_r, t) => answer(`canned for ${t.name}`, t.model) } }).pipe(
          Layer.provide(healthy({}))
        )
      )
    ))

  it.effect("the resilient client falls back when chaos takes its primary down, and uses it again when switched off", () =>
    Effect.gen(function*() {
      const calls: Record<string, number> = {}
      const chaosOn = yield* Ref.make(true)
      const config = yield* ClientConfig.decode({
        deployments: [
          { name: "primary", provider: "openai", model: "gpt-4o", keys: [{ name: "p", env: "P_KEY" }], policy: { retry: false } },
          { name: "secondary", provider: "openai", model: "gpt-4o-mini", keys: [{ name: "s", env: "S_KEY" }], policy: { retry: false } }
        ],
        cascade: ["primary", "secondary"]
      })
      const layer = Chaos.layerProviders({
        deployments: ["primary"],
        fault: { injectionRate: 1, enabled: chaosOn, error: (t) => new Errors.ProviderUnavailableError({ deployment: t.name, status: 503 }) }
      }).pipe(Layer.provide(healthy(calls)))
      const ask = Effect.scoped(Effect.flatMap(ResilientClient.make(config), (client) => client.chat(request)))
      const during = yield* Effect.provide(ask, Layer.merge(layer, StateStore.layerMemory))
      expect(during.response.text).toBe("from secondary")
      expect(calls).toEqual({ secondary: 1 })
      yield* Ref.set(chaosOn, false)
      const after = yield* Effect.provide(ask, Layer.merge(layer, StateStore.layerMemory))
      expect(after.response.text).toBe("from primary")
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["P_KEY", "sk-p"], ["S_KEY", "sk-s"]])))))
})
