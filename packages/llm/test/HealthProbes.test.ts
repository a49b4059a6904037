import { Errors, StateStore } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import type * as Chat from "../src/Chat.js"
import * as ClientConfig from "../src/ClientConfig.js"
import * as Provider from "../src/Provider.js"
import * as ResilientClient from "../src/ResilientClient.js"

const answer = (text: string): Chat.ChatResponse => ({ id: "r", model: "m", text, toolCalls: [], finishReason: "stop" })

/** Every deployment answers its calls and probes as `healthy` says; calls and probes are logged apart. */
const providers = (healthy: Record<string, boolean>) => {
  const calls: Array<string> = []
  const probes: Array<string> = []
  const revoked = new Errors.AuthError({ status: 401, detail: "key revoked" })
  const down = new Errors.ProviderUnavailableError({ status: 503 })
  const layer = Layer.succeed(Provider.Providers, {
    forTarget: (target) => ({
      kind: target.kind,
      chat: (_, context) =>
        Effect.suspend((): Effect.Effect<Provider.ProviderAnswer, Errors.ResilienceError> => {
          calls.push(`${context.deployment}/${context.keyName}`)
          if (target.name === "primary") return Effect.fail(down)
          return healthy[target.name] === false ? Effect.fail(revoked) : Effect.succeed({ response: answer(target.name), rateLimit: undefined })
        }),
      stream: () => Effect.fail(new Errors.BadRequestError({ detail: "no streams here" })),
      probe: (context) =>
        Effect.suspend(() => {
          probes.push(`${context.deployment}/${context.keyName}`)
          return healthy[target.name] === false ? Effect.fail(revoked) : Effect.void
        })
    })
  })
  return { calls, probes, layer }
}

const env = ConfigProvider.fromMap(new Map([["P", "sk-p"], ["S", "sk-s"], ["T", "sk-t"]]))

/** `probe`: the fallbacks' probe setting, when not the default. */
const config = (probe?: unknown) => ({
  deployments: [
    { name: "primary", provider: "openai", model: "p", keys: [{ name: "p1", env: "P" }], policy: { retry: false } },
    {
      name: "secondary",
      provider: "anthropic",
      model: "s",
      keys: [{ name: "s1", env: "S" }],
      policy: { retry: false },
      ...(probe === undefined ? {} : { probe })
    },
    {
      name: "tertiary",
      provider: "openai",
      model: "t",
      keys: [{ name: "t1", env: "T" }],
      policy: { retry: false },
      ...(probe === undefined ? {} : { probe })
    }
  ],
  cascade: ["primary", "secondary", "tertiary"]
})

const clientOn = (layer: Layer.Layer<Provider.Providers>, c: unknown) =>
  Effect.flatMap(ClientConfig.decode(c), (decoded) => ResilientClient.make(decoded)).pipe(
    Effect.provide(layer),
    Effect.provide(StateStore.layerMemory),
    Effect.withConfigProvider(env)
  )

const settle = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(self)
    yield* TestClock.adjust("1 second")
    return yield* Fiber.join(fiber)
  })

describe("ResilientClient: health probes (rule 30)", () => {
  it.scoped("a fallback whose key was revoked is known dead before the outage: the chain skips it, saying why", () =>
    Effect.gen(function*() {
      const { calls, layer, probes } = providers({ secondary: false })
      const client = yield* clientOn(layer, config())
      // Idle fallbacks are probed every 30 s by default; the primary is not.
      yield* TestClock.adjust("65 seconds")
      expect(probes.filter((p) => p.startsWith("primary"))).toEqual([])
      expect(probes.filter((p) => p.startsWith("secondary"))).toEqual(["secondary/s1"])
      expect(probes.filter((p) => p.startsWith("tertiary")).length).toBe(2)
      const result = yield* settle(client.chat({ model: "any", messages: [{ role: "user", content: "hi" }] }))
      expect(result).toMatchObject({ source: "fallback-provider", deployment: "tertiary" })
      expect(result.skipped).toEqual([{ deployment: "secondary", reason: "its health probe says it cannot serve: every key is disabled" }])
      // The dead secondary got no real call.
      expect(calls).toEqual(["primary/p1", "tertiary/t1"])
      const status = yield* client.deployments[1]!.probe!.status
      // The second probe found no key to use: the pool refused it without a call.
      expect(status).toMatchObject({ probes: 2, lastOutcome: "NoKeyAvailableError", unfit: "every key is disabled" })
    }))

  it.scoped("without probes the outage's first request tries the dead fallback; probe: false turns them off", () =>
    Effect.gen(function*() {
      const { calls, layer, probes } = providers({ secondary: false })
      const client = yield* clientOn(layer, config(false))
      yield* TestClock.adjust("65 seconds")
      expect(probes).toEqual([])
      expect(client.deployments.map((d) => d.probe)).toEqual([undefined, undefined, undefined])
      const result = yield* settle(client.chat({ model: "any", messages: [{ role: "user", content: "hi" }] }))
      expect(result.deployment).toBe("tertiary")
      expect(calls).toEqual(["primary/p1", "secondary/s1", "tertiary/t1"])
    }))

  it.scoped("a deployment in use is not probed", () =>
    Effect.gen(function*() {
      const { layer, probes } = providers({})
      const client = yield* clientOn(layer, config({ every: "10 seconds", idleFor: "30 seconds" }))
      yield* TestClock.adjust("5 seconds")
      // The primary is down: the secondary answers at 5 s.
      expect((yield* settle(client.chat({ model: "any", messages: [{ role: "user", content: "hi" }] }))).deployment).toBe("secondary")
      yield* TestClock.adjust("30 seconds")
      // At 36 s: the secondary, used at 5 s, was busy at 10, 20 and 30 s; the idle tertiary was probed each time.
      expect(probes).toEqual(["tertiary/t1", "tertiary/t1", "tertiary/t1"])
      yield* TestClock.adjust("5 seconds")
      expect(probes.filter((p) => p.startsWith("secondary"))).toEqual(["secondary/s1"])
    }))

  it.scoped("when every step is unfit none is skipped: the chain tries them all", () =>
    Effect.gen(function*() {
      const { layer } = providers({ primary: false, secondary: false, tertiary: false })
      const probed = config({ every: "10 seconds" })
      const client = yield* clientOn(layer, {
        ...probed,
        deployments: probed.deployments.map((d) => ({ ...d, probe: { every: "10 seconds" } }))
      })
      yield* TestClock.adjust("15 seconds")
      expect(client.deployments.map((d) => d.probe?.unfit())).toEqual(Array(3).fill("every key is disabled"))
      const exit = yield* Effect.exit(settle(client.chat({ model: "any", messages: [{ role: "user", content: "hi" }] })))
      // The failed chain's cause keeps every step's error: each was tried (its pool had no key left).
      const tags = Exit.isFailure(exit) ? [...Cause.failures(exit.cause)].map((e) => e._tag) : []
      expect(tags).toEqual(["NoKeyAvailableError", "NoKeyAvailableError", "NoKeyAvailableError"])
    }))

  it.effect("a bad probe setting names its path in the file", () =>
    Effect.gen(function*() {
      const { layer } = providers({})
      const exit = yield* Effect.exit(Effect.scoped(clientOn(layer, config({ every: "0 seconds" }))))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({
        error: { _tag: "InvalidConfigError", path: "deployments.1.probe.every" }
      })
    }))
})
