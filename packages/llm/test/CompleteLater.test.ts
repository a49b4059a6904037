import { Errors } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Chat from "../src/Chat.js"
import * as ClientConfig from "../src/ClientConfig.js"
import type * as CompleteLater from "../src/CompleteLater.js"
import type * as ResilientClient from "../src/ResilientClient.js"
import { clientOn, reply, type Script, scriptedProviders, twoDeployments } from "./support/scripted.js"

const ask = (content: string): Chat.ChatRequest => ({ model: "any", messages: [{ role: "user", content }] })

/** Both deployments down until `recover()`; then the primary answers `real answer to <question>`. */
const outage = () => {
  let up = false
  const down = new Errors.ProviderUnavailableError({ status: 503 })
  const primary: Script = (_, request) =>
    up ? Effect.succeed(reply(`real answer to ${JSON.stringify(request.messages[0]?.content)}`)) : Effect.fail(down)
  const backup: Script = () => Effect.fail(down)
  const { calls, layer } = scriptedProviders({ primary, backup })
  return { calls, layer, recover: () => void (up = true) }
}

/** Lets the queue's worker run until `deployment` has had `n` calls; virtual time stands still meanwhile. */
const callsReach = (calls: Record<string, number>, deployment: string, n: number) =>
  Effect.gen(function*() {
    for (let round = 0; round < 100 && (calls[deployment] ?? 0) < n; round++) yield* Effect.yieldNow()
    expect(calls[deployment]).toBe(n)
  })

// No retries and no breaker: each attempt is one call, and nothing opens between them.
const plain = { retry: false, circuitBreaker: false }
const config = (completeLater: Record<string, unknown> = {}) => twoDeployments({ completeLater }, plain)

/** A client whose completions are also collected through `onCompleted`. */
const clientWithCallback = (
  layer: ReturnType<typeof scriptedProviders>["layer"],
  extras: ResilientClient.Extras = {},
  completeLater: Record<string, unknown> = {}
) =>
  Effect.gen(function*() {
    const called: Array<CompleteLater.Completion> = []
    const client = yield* clientOn(layer, config(completeLater), {
      ...extras,
      completeLater: { onCompleted: (c) => Effect.sync(() => void called.push(c)), ...extras.completeLater }
    })
    const queue = client.completeLater
    if (queue === undefined) return yield* Effect.dieMessage("completeLater is configured")
    return { client, queue, called }
  })

describe("rule 32: degraded answers complete themselves", () => {
  it.scoped("a static reply is queued and completed by a model once the cascade recovers: the callback, the stream and the cache get it", () =>
    Effect.gen(function*() {
      const { calls, layer, recover } = outage()
      const { client, queue, called } = yield* clientWithCallback(layer, { cache: { timeToLive: "1 hour" } })
      const streamed = yield* Effect.fork(Stream.runCollect(Stream.take(queue.completions, 1)))
      yield* Effect.yieldNow()

      const degraded = yield* client.chatOrStatic(ask("opening hours?"))
      expect(degraded.source).toBe("static")
      expect(degraded.completion).toEqual({ requestId: expect.stringMatching(/^[0-9a-f]{64}$/), status: "queued" })
      const requestId = degraded.completion?.requestId

      // The completion's first attempt meets the outage too; the next, 1 s later, the recovered primary.
      yield* callsReach(calls, "primary", 2)
      recover()
      yield* TestClock.adjust("999 millis")
      expect(called).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(called).toHaveLength(1)
      expect(called[0]).toMatchObject({
        requestId,
        request: ask("opening hours?"),
        degradedAt: 0,
        completedAt: 1_000,
        result: { source: "primary", deployment: "primary", response: { text: `real answer to "opening hours?"` } }
      })
      expect(Chunk.toReadonlyArray(yield* Fiber.join(streamed))).toEqual(called)
      expect(yield* queue.status).toMatchObject({ completed: 1, failed: 0, queued: 0, inProgress: 0 })

      // The answer filled the cache: the same question is a hit, with no call.
      const before = { ...calls }
      const again = yield* client.chatOrStatic(ask("opening hours?"))
      expect(again).toMatchObject({ source: "cache", response: { text: `real answer to "opening hours?"` } })
      expect(again.completion).toBeUndefined()
      expect(calls).toEqual(before)
    }))

  it.scoped("an expired cache entry served during an outage (stale-cache) is queued too; a fresh hit is not", () =>
    Effect.gen(function*() {
      let up = true
      const primary: Script = (n) => (up ? Effect.succeed(reply(`answer ${n}`)) : Effect.fail(new Errors.ProviderUnavailableError({ status: 503 })))
      const { calls, layer } = scriptedProviders({ primary, backup: () => Effect.fail(new Errors.ProviderUnavailableError({ status: 503 })) })
      const { client, queue, called } = yield* clientWithCallback(layer, { cache: { timeToLive: "1 minute", maxStale: "1 hour" } })
      expect((yield* client.chat(ask("q"))).response.text).toBe("answer 1")
      expect((yield* client.chat(ask("q"))).completion).toBeUndefined() // a fresh hit

      yield* TestClock.adjust("2 minutes")
      up = false
      const stale = yield* client.chat(ask("q"))
      expect(stale.source).toBe("stale-cache")
      expect(stale.completion?.status).toBe("queued")
      yield* callsReach(calls, "primary", 3)
      up = true
      yield* TestClock.adjust("1 second")
      expect(called.map((c) => c.result.response.text)).toEqual(["answer 4"])
      expect(yield* queue.status).toMatchObject({ completed: 1 })
    }))

  it.scoped("a request marked idempotent: false or fallbackAfterTimeout: false is never queued (completing it would send it again)", () =>
    Effect.gen(function*() {
      const { layer } = outage()
      const { client, queue } = yield* clientWithCallback(layer)
      for (const options of [{ idempotent: false }, { fallbackAfterTimeout: false }]) {
        const result = yield* client.chatOrStatic(ask("pay once"), options)
        expect(result.source).toBe("static")
        expect(result.completion).toBeUndefined()
      }
      expect(yield* queue.status).toMatchObject({ queued: 0, inProgress: 0, completed: 0, failed: 0 })
    }))

  it.scoped("identical degraded requests share one completion; a full queue refuses, and the caller still gets the static reply", () =>
    Effect.gen(function*() {
      const { layer } = outage()
      const { client, queue } = yield* clientWithCallback(layer, {}, { capacity: 1 })
      const first = yield* client.chatOrStatic(ask("a"))
      const same = yield* client.chatOrStatic(ask("a"))
      expect(same.completion).toEqual({ requestId: first.completion?.requestId, status: "duplicate" })
      yield* Effect.yieldNow() // the worker holds "a"
      expect((yield* client.chatOrStatic(ask("b"))).completion?.status).toBe("queued")
      const refused = yield* client.chatOrStatic(ask("c"))
      expect(refused.source).toBe("static")
      expect(refused.completion?.status).toBe("refused")
      expect(yield* queue.status).toMatchObject({ inProgress: 1, queued: 1, refused: 1 })
    }))

  it.scoped("a completion goes through the whole cascade: with the primary still down, the backup answers it", () =>
    Effect.gen(function*() {
      let backupUp = false
      const down = new Errors.ProviderUnavailableError({ status: 503 })
      const { calls, layer } = scriptedProviders({
        primary: () => Effect.fail(down),
        backup: () => (backupUp ? Effect.succeed(reply("from backup")) : Effect.fail(down))
      })
      const { client, called } = yield* clientWithCallback(layer)
      yield* client.chatOrStatic(ask("q"))
      yield* callsReach(calls, "backup", 2)
      backupUp = true
      yield* TestClock.adjust("1 second")
      expect(called.map((c) => [c.result.source, c.result.deployment, c.result.response.text])).toEqual([
        ["fallback-provider", "backup", "from backup"]
      ])
    }))

  it.scoped("the worker gives up after maxAttempts on the schedule of the config file (baseDelay, maxDelay)", () =>
    Effect.gen(function*() {
      const { calls, layer } = outage()
      const { client, queue } = yield* clientWithCallback(layer, {}, { maxAttempts: 3, baseDelay: "10 seconds", maxDelay: "15 seconds" })
      yield* client.chatOrStatic(ask("q"))
      const primaryAfter = (n: number) => callsReach(calls, "primary", n)
      yield* primaryAfter(2) // the request, then the completion's first attempt
      yield* TestClock.adjust("9999 millis")
      yield* primaryAfter(2)
      yield* TestClock.adjust("1 millis")
      yield* primaryAfter(3)
      yield* TestClock.adjust("15 seconds") // 20 s capped at 15
      yield* primaryAfter(4)
      yield* TestClock.adjust("1 hour")
      yield* primaryAfter(4)
      expect(yield* queue.status).toMatchObject({ failed: 1, completed: 0 })
    }))
})

describe("completeLater in the config file", () => {
  it.effect("off unless set; on with {}; a bad value names its path", () =>
    Effect.gen(function*() {
      const { layer } = outage()
      expect((yield* Effect.scoped(clientOn(layer, twoDeployments({}, plain)))).completeLater).toBeUndefined()
      expect((yield* Effect.scoped(clientOn(layer, config()))).completeLater).toBeDefined()
      const error = yield* Effect.flip(ClientConfig.decode(config({ capacity: 0 })))
      expect(error.message).toContain("completeLater.capacity")
    }))
})
