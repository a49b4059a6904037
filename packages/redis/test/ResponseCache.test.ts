/**
 * The response cache on Redis: one cache for every instance with the same
 * prefix, single-flight across them, and a claim that expires with a dead
 * holder.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Errors from "@resilient-ai/core/Errors"
import * as ResponseCache from "@resilient-ai/core/ResponseCache"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { Redis } from "ioredis"
import { startRedisServer } from "./redisServer.js"
import { type Instance, instances, realSleep, redisServerBinary, redisUrl } from "./stores.js"

const Answer = Schema.Struct({ text: Schema.String })
type Answer = typeof Answer.Type
interface Request {
  readonly prompt: string
}

const cacheOn = (instance: Instance, options: Partial<ResponseCache.Options<Request, Answer>> = {}) =>
  ResponseCache.make<Request, Answer>({
    name: "chat",
    key: (r) => r.prompt,
    timeToLive: "1 minute",
    store: instance.redis.responseCacheStore("chat", Answer),
    ...options
  })

/** An upstream call that takes `millis` and counts itself. */
const upstream = (calls: { n: number }, millis: number, text = "hello") =>
  Effect.suspend(() => {
    calls.n++
    return Effect.as(realSleep(millis), { text })
  })

describe.skipIf(redisUrl === "")("the response cache on Redis", () => {
  it.scopedLive("an answer computed through one instance is a hit through the other", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const cacheA = yield* cacheOn(a!)
      const cacheB = yield* cacheOn(b!)
      const calls = { n: 0 }
      const first = yield* cacheA.get({ prompt: "hi" }, upstream(calls, 1))
      const second = yield* cacheB.get({ prompt: "hi" }, upstream(calls, 1, "other"))
      expect(first.source).toBe("computed")
      expect(second).toMatchObject({ source: "hit", value: { text: "hello" } })
      expect(calls.n).toBe(1)
      expect((yield* cacheB.status).entries).toBe(1)
    }))

  it.scopedLive("identical concurrent requests on three instances share one upstream call; the waiters get its answer", () =>
    Effect.gen(function*() {
      const three = yield* instances(3)
      const caches = yield* Effect.forEach(three, (i) => cacheOn(i))
      const calls = { n: 0 }
      const answers = yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => caches[i % 3]!),
        (cache) => cache.get({ prompt: "same" }, upstream(calls, 150)),
        { concurrency: "unbounded" }
      )
      expect(calls.n).toBe(1)
      expect(answers.map((a) => a.value.text)).toEqual(Array.from({ length: 12 }, () => "hello"))
      expect(answers.filter((a) => a.source === "computed").length).toBeGreaterThanOrEqual(1)
      // The processes that did not compute answered with what the holder stored.
      expect(answers.filter((a) => a.source === "hit").length).toBeGreaterThanOrEqual(1)
    }))

  it.scopedLive("a holder that died holds the others up only until its claim expires", () =>
    Effect.gen(function*() {
      const [a] = yield* instances(1)
      const cache = yield* cacheOn(a!, { claimFor: "300 millis" })
      // A claim from a process that died mid-computation: nobody will store its answer.
      const admin = new Redis(redisUrl)
      yield* Effect.addFinalizer(() => Effect.promise(() => admin.quit()))
      yield* Effect.promise(() => admin.set(`${a!.prefix}cache:chat:{dead}:claim`, "someone", "PX", 300))
      const calls = { n: 0 }
      const started = performance.now()
      const answer = yield* cache.get({ prompt: "dead" }, upstream(calls, 1))
      const waited = performance.now() - started
      expect(answer.source).toBe("computed")
      expect(calls.n).toBe(1)
      expect(waited).toBeGreaterThanOrEqual(250)
      expect(waited).toBeLessThan(2000)
    }))

  it.scopedLive("a holder whose call failed lets go at once: the next instance computes, and failures are not stored", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const cacheA = yield* cacheOn(a!, { claimFor: "10 seconds", maxStale: 0 })
      const cacheB = yield* cacheOn(b!, { claimFor: "10 seconds", maxStale: 0 })
      const calls = { n: 0 }
      const failing = Effect.zipRight(realSleep(100), Effect.fail(new Errors.ProviderUnavailableError({ status: 503 })))
      const started = performance.now()
      const [fromA, fromB] = yield* Effect.all([
        Effect.either(cacheA.get({ prompt: "x" }, failing)),
        Effect.zipRight(realSleep(20), cacheB.get({ prompt: "x" }, upstream(calls, 1)))
      ], { concurrency: "unbounded" })
      expect(fromA._tag).toBe("Left")
      expect(fromB.source).toBe("computed")
      expect(calls.n).toBe(1)
      // Not the claim's 10 s: B took over as soon as A let go.
      expect(performance.now() - started).toBeLessThan(2000)
    }))

  it.scopedLive("an expired entry is not another holder's answer: a waiter gets what the holder computes, not the stale entry", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const cacheA = yield* cacheOn(a!, { timeToLive: "100 millis", maxStale: "1 hour" })
      const cacheB = yield* cacheOn(b!, { timeToLive: "100 millis", maxStale: "1 hour" })
      const calls = { n: 0 }
      yield* cacheA.get({ prompt: "again" }, upstream(calls, 1, "old"))
      yield* realSleep(200)
      // Expired, kept for stale-if-error: A computes it again and holds the claim while B asks.
      const [fromA, fromB] = yield* Effect.all([
        cacheA.get({ prompt: "again" }, upstream(calls, 300, "new")),
        Effect.zipRight(realSleep(50), cacheB.get({ prompt: "again" }, upstream(calls, 300, "new")))
      ], { concurrency: "unbounded" })
      expect(fromA.value.text).toBe("new")
      expect(fromB).toMatchObject({ value: { text: "new" } })
      expect(fromB.source).not.toBe("stale")
      expect(calls.n).toBe(2)
    }))

  it.scopedLive("an answer the store cannot encode still lets the claim go: the next instance computes at once", () =>
    Effect.gen(function*() {
      const [a, b] = yield* instances(2)
      const cacheA = yield* cacheOn(a!, { claimFor: "10 seconds" })
      const cacheB = yield* cacheOn(b!, { claimFor: "10 seconds" })
      const calls = { n: 0 }
      // An answer its schema cannot encode (the upstream broke its own contract): never stored.
      const unencodable = Effect.as(realSleep(100), JSON.parse("{\"text\": 42}") as Answer)
      const started = performance.now()
      const [, fromB] = yield* Effect.all([
        cacheA.get({ prompt: "bad" }, unencodable),
        Effect.zipRight(realSleep(20), cacheB.get({ prompt: "bad" }, upstream(calls, 1)))
      ], { concurrency: "unbounded" })
      expect(fromB.source).toBe("computed")
      // Not the claim's 10 s: B took over as soon as A's computation ended.
      expect(performance.now() - started).toBeLessThan(2000)
    }))
})

describe.skipIf(!redisServerBinary)("the response cache on a Redis that stalls", () => {
  it.scopedLive("a claim won just as its only caller left is let go: the next instance does not wait for claimFor", () =>
    Effect.gen(function*() {
      // A server of its own: writes are paused on it, which would slow every other test's.
      const server = yield* Effect.acquireRelease(Effect.promise(() => startRedisServer()), (s) => Effect.promise(() => s.dispose()))
      const [a, b] = yield* instances(2, { url: server.url })
      const cacheA = yield* cacheOn(a!, { claimFor: "5 seconds" })
      const cacheB = yield* cacheOn(b!, { claimFor: "5 seconds" })
      const admin = yield* Effect.acquireRelease(Effect.sync(() => new Redis(server.url)), (r) => Effect.promise(() => r.quit()))
      const calls = { n: 0 }
      // The claim's SET NX waits on the server while the only caller leaves; Redis takes it once writes resume.
      yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "300", "WRITE"))
      const leaving = yield* Effect.fork(cacheA.get({ prompt: "gone" }, upstream(calls, 10, "a")))
      yield* realSleep(100)
      yield* Fiber.interrupt(leaving)
      yield* realSleep(400)
      expect(yield* Effect.promise(() => admin.exists(`${a!.prefix}cache:chat:{gone}:claim`))).toBe(0)
      const started = performance.now()
      const fromB = yield* cacheB.get({ prompt: "gone" }, upstream(calls, 10, "b"))
      expect(fromB).toMatchObject({ source: "computed", value: { text: "b" } })
      expect(performance.now() - started).toBeLessThan(1000)
    }), 20_000)
})
