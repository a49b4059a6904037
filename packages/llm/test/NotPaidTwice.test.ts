import { Errors } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Chat from "../src/Chat.js"
import type * as ResilientClient from "../src/ResilientClient.js"
import { clientOn, reply, type Script, scriptedProviders, twoDeployments } from "./support/scripted.js"

const request: Chat.ChatRequest = { model: "any", messages: [{ role: "user", content: "Book the flight" }] }

const timedOut = new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(30) })
const reset = new Errors.ConnectionError({ detail: "UND_ERR_SOCKET: other side closed" })
const refused = new Errors.ConnectionError({ detail: "connect ECONNREFUSED 10.0.0.1:443" })
const down = new Errors.ProviderUnavailableError({ status: 503 })

const failing = (error: Errors.ResilienceError): Script => () => Effect.fail(error)
const answering: Script = () => Effect.succeed(reply("booked by backup"))

/** One request whose primary fails with `error`: how it ended, and the calls each deployment got. */
const afterPrimaryFails = (error: Errors.ResilienceError, options: ResilientClient.ChatOptions, config: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const { calls, layer } = scriptedProviders({ primary: failing(error), backup: answering })
    const client = yield* clientOn(layer, twoDeployments(config, { retry: false }))
    const exit = yield* Effect.either(client.chat(request, options))
    return { outcome: exit._tag === "Right" ? exit.right.source : exit.left._tag, primary: calls["primary"] ?? 0, backup: calls["backup"] ?? 0 }
  })

describe("rule 31: a request that must not be paid twice", () => {
  it.scoped("by default a timeout falls back even with idempotent: false: the primary and the backup are each paid once", () =>
    Effect.gen(function*() {
      expect(yield* afterPrimaryFails(timedOut, { idempotent: false })).toEqual({ outcome: "fallback-provider", primary: 1, backup: 1 })
      expect(yield* afterPrimaryFails(reset, { idempotent: false })).toEqual({ outcome: "fallback-provider", primary: 1, backup: 1 })
    }))

  it.scoped("fallbackAfterTimeout: false — a timeout or a connection lost after sending ends the request there; the backup is not called", () =>
    Effect.gen(function*() {
      const never = { idempotent: false, fallbackAfterTimeout: false }
      expect(yield* afterPrimaryFails(timedOut, never)).toEqual({ outcome: "TimeoutError", primary: 1, backup: 0 })
      expect(yield* afterPrimaryFails(reset, never)).toEqual({ outcome: "ConnectionError", primary: 1, backup: 0 })
    }))

  it.scoped("fallbackAfterTimeout: false — an error that means nothing was billed (503, refused connection) still falls back", () =>
    Effect.gen(function*() {
      const never = { idempotent: false, fallbackAfterTimeout: false }
      expect(yield* afterPrimaryFails(down, never)).toEqual({ outcome: "fallback-provider", primary: 1, backup: 1 })
      expect(yield* afterPrimaryFails(refused, never)).toEqual({ outcome: "fallback-provider", primary: 1, backup: 1 })
    }))

  it.scoped("the config's fallbackAfterTimeout: false applies to every request; a request's own true wins", () =>
    Effect.gen(function*() {
      const config = { fallbackAfterTimeout: false }
      expect(yield* afterPrimaryFails(timedOut, {}, config)).toEqual({ outcome: "TimeoutError", primary: 1, backup: 0 })
      expect(yield* afterPrimaryFails(timedOut, { fallbackAfterTimeout: true }, config)).toEqual({
        outcome: "fallback-provider",
        primary: 1,
        backup: 1
      })
    }))

  it.scoped("chatOrStatic with fallbackAfterTimeout: false answers a timeout with a static reply, never another provider", () =>
    Effect.gen(function*() {
      const { calls, layer } = scriptedProviders({ primary: failing(timedOut), backup: answering })
      const client = yield* clientOn(layer, twoDeployments({}, { retry: false }))
      const result = yield* client.chatOrStatic(request, { idempotent: false, fallbackAfterTimeout: false })
      expect(result.source).toBe("static")
      expect(calls).toEqual({ primary: 1 })
    }))
})
