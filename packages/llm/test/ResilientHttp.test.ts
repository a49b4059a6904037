import { describe, expect, it } from "@effect/vitest"
import { StateStore } from "@resilient-ai/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ResilientClient from "../src/ResilientClient.js"
import * as ResilientHttp from "../src/ResilientHttp.js"
import { completion, json, upstream } from "./support/loopback.js"

const configOn = (url: string, transport: Record<string, unknown>) =>
  JSON.stringify({
    deployments: [{
      name: "local",
      provider: "openai",
      baseUrl: url,
      model: "m",
      keys: [],
      policy: { retry: false, circuitBreaker: false }
    }],
    cascade: ["local"],
    transport
  })

const chatThrough = (json: string) =>
  Effect.flatMap(ResilientClient.ResilientClient, (client) =>
    client.chat({ model: "m", messages: [{ role: "user", content: "hi" }] })).pipe(
      Effect.provide(ResilientHttp.layerFromJson(json, { transport: { proxyFromEnvironment: false } }).pipe(
        Layer.provide(StateStore.layerMemory)
      ))
    )

describe("ResilientHttp: the transport's time limits come from the config file", () => {
  it.live("transport.firstByteTimeout from the file cuts a provider that sends no headers", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* upstream(() => {}) // never answers
      const error = yield* Effect.flip(chatThrough(configOn(url, { firstByteTimeout: "150 millis" })))
      expect(error).toMatchObject({ _tag: "TimeoutError" })
      expect(error._tag === "TimeoutError" && Duration.toMillis(error.timeout)).toBe(150)
    })))

  it.live("with limits the answer stays within, the call through the layer answers", () =>
    Effect.scoped(Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => json(res, 200, completion("late but fine")))
      const result = yield* chatThrough(configOn(url, { firstByteTimeout: "5 seconds", stallTimeout: "5 seconds" }))
      expect(result.response.text).toBe("late but fine")
    })))

  it.effect("a bad limit in the file fails the layer, naming its path", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(chatThrough(configOn("http://127.0.0.1:9", { firstTokenTimeout: "0 seconds" })))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({
        error: { _tag: "InvalidConfigError", path: "transport.firstTokenTimeout" }
      })
    }))
})
