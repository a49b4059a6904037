import { describe, expect, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { BadRequestError, InvalidConfigError, ProviderUnavailableError } from "../src/Errors.js"
import { canonicalJson } from "../src/internal/responseCacheKey.js"
import * as ResponseCache from "../src/ResponseCache.js"

interface Req {
  readonly model: string
  readonly messages: ReadonlyArray<{ readonly role: string; readonly content: string }>
  readonly [field: string]: unknown
}

const request = (content: string, extra: Record<string, unknown> = {}): Req => ({
  model: "gpt-4o",
  messages: [{ role: "user", content }],
  ...extra
})

const hour = 3_600_000

/** A computation that counts its runs and answers `answer-<n>`. */
const counting = Effect.map(Ref.make(0), (runs) => ({
  runs,
  compute: Effect.map(Ref.updateAndGet(runs, (n) => n + 1), (n) => `answer-${n}`)
}))

const failing = (error: ProviderUnavailableError | BadRequestError) => Effect.fail(error)

describe("ResponseCache: key", () => {
  it("canonical JSON is the JSON of the value with every object's keys sorted, however many keys and in whatever order", () => {
    // The reference: `Array.prototype.sort` on the keys, written out by hand (an object rebuilt
    // from sorted keys would put integer-like keys first again).
    const reference = (u: unknown): string =>
      Array.isArray(u)
        ? `[${u.map(reference).join(",")}]`
        : typeof u === "object" && u !== null
        ? `{${Object.keys(u).sort().map((k) => `${JSON.stringify(k)}:${reference((u as Record<string, unknown>)[k])}`).join(",")}}`
        : JSON.stringify(u)
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        expect(canonicalJson(value)).toBe(reference(value))
      }),
      { numRuns: 500 }
    )
    // Past the insertion sort's 16 keys, in reverse order.
    const wide = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${String(39 - i).padStart(2, "0")}`, i]))
    expect(canonicalJson(wide)).toBe(reference(wide))
  })

  it("ignores fields that do not change the answer, and the order of object keys at every depth", () => {
    const a = {
      model: "gpt-4o",
      temperature: 0,
      messages: [{ role: "user", content: "hi" }],
      response_format: { type: "json_schema", json_schema: { name: "x", strict: true } }
    }
    const b = {
      user: "alice",
      stream: true,
      metadata: { trace: "123" },
      response_format: { json_schema: { strict: true, name: "x" }, type: "json_schema" },
      messages: [{ content: "hi", role: "user" }],
      temperature: 0,
      model: "gpt-4o"
    }
    expect(ResponseCache.hashRequest(b)).toBe(ResponseCache.hashRequest(a))
  })

  it.each([
    ["model", { model: "gpt-4o-mini" }],
    ["messages", { messages: [{ role: "user", content: "bye" }] }],
    ["system", { system: "be brief" }],
    ["tools", { tools: [{ type: "function", function: { name: "f" } }] }],
    ["tool_choice", { tool_choice: "required" }],
    ["temperature", { temperature: 0.7 }],
    ["top_p", { top_p: 0.5 }],
    ["max_tokens", { max_tokens: 10 }],
    ["max_completion_tokens", { max_completion_tokens: 10 }],
    ["response_format", { response_format: { type: "json_object" } }],
    ["seed", { seed: 42 }],
    ["stop", { stop: ["\n"] }],
    ["n", { n: 2 }],
    ["presence_penalty", { presence_penalty: 1 }],
    ["frequency_penalty", { frequency_penalty: 1 }]
  ])("a listed field changes the key: %s", (_, change) => {
    const base = request("hi")
    expect(ResponseCache.hashRequest({ ...base, ...change })).not.toBe(ResponseCache.hashRequest(base))
  })

  it("is the SHA-256 of the canonical JSON, so every process computes the same key", () => {
    const req = { temperature: 0, model: "m", messages: [{ role: "user", content: "hi" }], user: "u" }
    const canonical = `{"messages":[{"content":"hi","role":"user"}],"model":"m","temperature":0}`
    expect(canonicalJson({ messages: req.messages, model: "m", temperature: 0 })).toBe(canonical)
    const expected = createHash("sha256").update(`v1\n${canonical}`).digest("hex")
    expect(ResponseCache.hashRequest(req)).toBe(expected)
    // Pinned: a change of the canonical form must be deliberate (it empties shared caches).
    expect(expected).toBe("14c4ec072627ab127e178acf1de8cfb514ed84e4767f7ac971a0091d51c2687f")
  })

  it("an undefined field is the same as an absent one; null is not", () => {
    const base = request("hi")
    expect(ResponseCache.hashRequest({ ...base, temperature: undefined })).toBe(ResponseCache.hashRequest(base))
    expect(ResponseCache.hashRequest({ ...base, temperature: null })).not.toBe(ResponseCache.hashRequest(base))
  })

  it("a request with none of the fields is hashed whole instead of colliding with every other", () => {
    expect(ResponseCache.hashRequest({ prompt: "a" })).not.toBe(ResponseCache.hashRequest({ prompt: "b" }))
    expect(ResponseCache.hashRequest("a")).not.toBe(ResponseCache.hashRequest("b"))
  })

  it.scoped("`fields` chooses what makes up the key", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ fields: ["model"] })
      expect(cache.keyOf(request("a"))).toBe(cache.keyOf(request("b")))
      expect(cache.keyOf(request("a"))).not.toBe(cache.keyOf({ ...request("a"), model: "other" }))
    }))

  it.scoped("a custom `key` is used as is", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ key: (r) => `k:${r.messages[0]?.content}` })
      const got = yield* cache.get(request("a"), Effect.succeed("x"))
      expect(got.key).toBe("k:a")
      expect(Option.isSome(yield* cache.lookup(request("a", { model: "other" })))).toBe(true)
    }))

  it.scoped("requests that differ only in unlisted fields share an entry", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const { compute, runs } = yield* counting
      yield* cache.get(request("hi", { user: "alice", stream: false }), compute)
      const second = yield* cache.get(request("hi", { user: "bob", stream: true }), compute)
      expect(second.source).toBe("hit")
      expect(yield* Ref.get(runs)).toBe(1)
    }))
})

describe("ResponseCache: freshness and capacity", () => {
  it.scoped("an entry is fresh until exactly timeToLive: a hit at ttl - 1 ms, a miss at ttl", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour" })
      const { compute, runs } = yield* counting
      const first = yield* cache.get(request("hi"), compute)
      expect(first).toMatchObject({ value: "answer-1", source: "computed", ageMs: 0 })
      yield* TestClock.adjust(hour - 1)
      const hit = yield* cache.get(request("hi"), compute)
      expect(hit).toMatchObject({ value: "answer-1", source: "hit", ageMs: hour - 1 })
      yield* TestClock.adjust(1)
      const miss = yield* cache.get(request("hi"), compute)
      expect(miss).toMatchObject({ value: "answer-2", source: "computed", ageMs: 0 })
      expect(yield* Ref.get(runs)).toBe(2)
      const status = yield* cache.status
      expect(status).toMatchObject({ hits: 1, misses: 2, entries: 1 })
    }))

  it.scoped("timeToLive Duration.infinity: an entry stays fresh for ever, a hit after ten years", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: Duration.infinity })
      const { compute, runs } = yield* counting
      expect((yield* cache.get(request("hi"), compute)).source).toBe("computed")
      yield* TestClock.adjust(10 * 365 * 24 * hour)
      expect(yield* cache.get(request("hi"), compute)).toMatchObject({ value: "answer-1", source: "hit" })
      expect(yield* Ref.get(runs)).toBe(1)
    }))

  it("an entry that never expires survives a JSON store: Infinity is written \"Infinity\", not null", () => {
    const schema = ResponseCache.entrySchema(Schema.String)
    const entry: ResponseCache.Entry<string> = { value: "v", storedAt: 5, expiresAt: Number.POSITIVE_INFINITY, staleUntil: Number.POSITIVE_INFINITY }
    const json = JSON.stringify(Schema.encodeSync(schema)(entry))
    expect(JSON.parse(json)).toEqual({ value: "v", storedAt: 5, expiresAt: "Infinity", staleUntil: "Infinity" })
    expect(Schema.decodeUnknownSync(schema)(JSON.parse(json))).toEqual(entry)
    const finite: ResponseCache.Entry<string> = { value: "v", storedAt: 5, expiresAt: 10, staleUntil: 20 }
    expect(JSON.parse(JSON.stringify(Schema.encodeSync(schema)(finite)))).toEqual(finite)
  })

  it.scoped("evicts the least recently used entry, and a read counts as a use", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ maxEntries: 2 })
      yield* cache.get(request("a"), Effect.succeed("A"))
      yield* cache.get(request("b"), Effect.succeed("B"))
      // "a" is older, but this read makes "b" the least recently used.
      expect((yield* cache.get(request("a"), Effect.succeed("A2"))).source).toBe("hit")
      yield* cache.get(request("c"), Effect.succeed("C"))
      expect(Option.map(yield* cache.lookup(request("a")), (c) => c.value)).toEqual(Option.some("A"))
      expect(yield* cache.lookup(request("b"))).toEqual(Option.none())
      expect(Option.map(yield* cache.lookup(request("c")), (c) => c.value)).toEqual(Option.some("C"))
      expect((yield* cache.status).entries).toBe(2)
    }))

  it.scoped("errors are never cached: the next call computes again", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const calls = yield* Ref.make(0)
      const flaky = Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) =>
        n === 1 ? Effect.fail(new ProviderUnavailableError({ status: 503 })) : Effect.succeed("ok"))
      const first = yield* Effect.exit(cache.get(request("hi"), flaky))
      expect(Exit.isFailure(first)).toBe(true)
      const second = yield* cache.get(request("hi"), flaky)
      expect(second).toMatchObject({ value: "ok", source: "computed" })
      expect(yield* Ref.get(calls)).toBe(2)
    }))

  it.scoped("`cacheable` keeps a response out of the cache", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ cacheable: (r) => r !== "truncated" })
      yield* cache.get(request("hi"), Effect.succeed("truncated"))
      expect(yield* cache.lookup(request("hi"))).toEqual(Option.none())
    }))

  it.scoped("set, invalidate and invalidateAll", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      yield* cache.set(request("a"), "A")
      yield* cache.set(request("b"), "B")
      expect((yield* cache.get(request("a"), Effect.succeed("fresh"))).value).toBe("A")
      yield* cache.invalidate(request("a"))
      expect(yield* cache.lookup(request("a"))).toEqual(Option.none())
      expect(Option.isSome(yield* cache.lookup(request("b")))).toBe(true)
      yield* cache.invalidateAll
      expect((yield* cache.status).entries).toBe(0)
    }))
})

describe("ResponseCache: stale-if-error", () => {
  const unavailable = new ProviderUnavailableError({ status: 503 })

  it.scoped("a fallbackable error is answered with the expired entry, marked stale, with its age", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour", maxStale: "24 hours" })
      yield* cache.set(request("hi"), "old")
      yield* TestClock.adjust(2 * hour)
      const got = yield* cache.get(request("hi"), failing(unavailable))
      expect(got).toMatchObject({ value: "old", source: "stale", ageMs: 2 * hour })
      expect((yield* cache.status).staleServed).toBe(1)
    }))

  it.scoped("up to maxStale after expiry, not at it", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour", maxStale: "2 hours" })
      yield* cache.set(request("hi"), "old")
      yield* TestClock.adjust(3 * hour - 1)
      expect((yield* cache.get(request("hi"), failing(unavailable))).source).toBe("stale")
      yield* TestClock.adjust(1)
      const error = yield* Effect.flip(cache.get(request("hi"), failing(unavailable)))
      expect(error).toBe(unavailable)
      expect(yield* cache.lookupStale(request("hi"))).toEqual(Option.none())
    }))

  it.scoped("a non-fallbackable error is not masked by a stale entry", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour" })
      yield* cache.set(request("hi"), "old")
      yield* TestClock.adjust(2 * hour)
      const bad = new BadRequestError({ status: 400 })
      expect(yield* Effect.flip(cache.get(request("hi"), failing(bad)))).toBe(bad)
    }))

  it.scoped("a defect is not masked by a stale entry", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour" })
      yield* cache.set(request("hi"), "old")
      yield* TestClock.adjust(2 * hour)
      const exit = yield* Effect.exit(cache.get(request("hi"), Effect.dieMessage("boom")))
      expect(Exit.isFailure(exit) && !Exit.isInterrupted(exit)).toBe(true)
    }))

  it.scoped("`serveStaleOn` chooses the errors; maxStale 0 turns stale serving off", () =>
    Effect.gen(function*() {
      const custom = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour", serveStaleOn: () => true })
      const off = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour", maxStale: 0 })
      yield* custom.set(request("hi"), "old")
      yield* off.set(request("hi"), "old")
      yield* TestClock.adjust(hour)
      expect((yield* custom.get(request("hi"), failing(new BadRequestError({})))).source).toBe("stale")
      expect(Exit.isFailure(yield* Effect.exit(off.get(request("hi"), failing(unavailable))))).toBe(true)
    }))

  it.scoped("maxStale Duration.infinity: an entry expired ten years ago still answers when the computation fails, in memory or in a store", () =>
    Effect.gen(function*() {
      const decade = 10 * 365 * 24 * hour
      const memory = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour", maxStale: Duration.infinity })
      const stored = yield* ResponseCache.make<Req, string>({
        timeToLive: "1 hour",
        maxStale: Duration.infinity,
        store: ResponseCache.makeMemoryStore<string>(10)
      })
      for (const cache of [memory, stored]) yield* cache.set(request("hi"), "old")
      yield* TestClock.adjust(decade)
      for (const cache of [memory, stored]) {
        expect(yield* cache.get(request("hi"), failing(unavailable))).toMatchObject({ value: "old", source: "stale", ageMs: decade })
        expect(yield* cache.lookup(request("hi"))).toEqual(Option.none())
      }
    }))

  it.scoped("lookup answers fresh entries only; lookupStale also expired ones, with their age", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>({ timeToLive: "1 hour" })
      yield* cache.set(request("hi"), "old")
      expect(Option.map(yield* cache.lookupStale(request("hi")), (c) => c.source)).toEqual(Option.some("hit"))
      yield* TestClock.adjust(hour + 5)
      expect(yield* cache.lookup(request("hi"))).toEqual(Option.none())
      const stale = yield* cache.lookupStale(request("hi"))
      expect(Option.getOrThrow(stale)).toMatchObject({ value: "old", source: "stale", ageMs: hour + 5 })
    }))
})

describe("ResponseCache: single-flight", () => {
  const slow = (runs: Ref.Ref<number>, value: string) =>
    Effect.zipRight(Ref.update(runs, (n) => n + 1), Effect.as(Effect.sleep("1 second"), value))

  it.scoped("10 concurrent identical requests make one upstream call and all get its answer", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const runs = yield* Ref.make(0)
      const fibers = yield* Effect.forEach(
        Array.from({ length: 10 }, () => request("hi")),
        (r) => Effect.fork(cache.get(r, slow(runs, "shared"))),
        { concurrency: "unbounded" }
      )
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      expect(yield* Ref.get(runs)).toBe(1)
      expect(results.map((r) => r.value)).toEqual(Array.from({ length: 10 }, () => "shared"))
      expect(yield* cache.status).toMatchObject({ misses: 10, coalesced: 9, inFlight: 0, entries: 1 })
    }))

  it.scoped("an interrupted waiter, even the one that started the call, does not cancel the others", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const runs = yield* Ref.make(0)
      const first = yield* Effect.fork(cache.get(request("hi"), slow(runs, "v")))
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(cache.get(request("hi"), slow(runs, "v")))
      yield* TestClock.adjust("500 millis")
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("500 millis")
      expect((yield* Fiber.join(second)).value).toBe("v")
      expect(yield* Ref.get(runs)).toBe(1)
      expect(Option.isSome(yield* cache.lookup(request("hi")))).toBe(true)
    }))

  it.scoped("when every waiter leaves, the shared call is interrupted and fills nothing", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const interrupted = yield* Ref.make(false)
      const compute = Effect.as(Effect.sleep("1 second"), "late").pipe(
        Effect.onInterrupt(() => Ref.set(interrupted, true))
      )
      const a = yield* Effect.fork(cache.get(request("hi"), compute))
      const b = yield* Effect.fork(cache.get(request("hi"), compute))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(a)
      expect(yield* Ref.get(interrupted)).toBe(false)
      yield* Fiber.interrupt(b)
      expect(yield* Ref.get(interrupted)).toBe(true)
      yield* TestClock.adjust("1 second")
      expect(yield* cache.status).toMatchObject({ inFlight: 0, entries: 0 })
    }))

  it.scoped("different requests do not share a call", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const runs = yield* Ref.make(0)
      const a = yield* Effect.fork(cache.get(request("a"), slow(runs, "A")))
      const b = yield* Effect.fork(cache.get(request("b"), slow(runs, "B")))
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(a)).value).toBe("A")
      expect((yield* Fiber.join(b)).value).toBe("B")
      expect(yield* Ref.get(runs)).toBe(2)
    }))

  it.scoped("waiters of a failed call all get its error, and nothing is cached", () =>
    Effect.gen(function*() {
      const cache = yield* ResponseCache.make<Req, string>()
      const runs = yield* Ref.make(0)
      const compute = Effect.zipRight(
        Ref.update(runs, (n) => n + 1),
        Effect.zipRight(Effect.sleep("1 second"), Effect.fail(new BadRequestError({ status: 400 })))
      )
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(cache.get(request("hi"), compute)))
      yield* TestClock.adjust("1 second")
      for (const f of fibers) {
        const exit = yield* Fiber.await(f)
        expect(Exit.isFailure(exit)).toBe(true)
      }
      expect(yield* Ref.get(runs)).toBe(1)
      expect((yield* cache.status).entries).toBe(0)
    }))

  it.effect("closing the cache's scope interrupts the calls in flight", () =>
    Effect.gen(function*() {
      const interrupted = yield* Ref.make(false)
      const compute = Effect.as(Effect.sleep("1 hour"), "x").pipe(Effect.onInterrupt(() => Ref.set(interrupted, true)))
      yield* Effect.scoped(Effect.gen(function*() {
        const cache = yield* ResponseCache.make<Req, string>()
        yield* Effect.forkDaemon(cache.get(request("hi"), compute))
        yield* TestClock.adjust("1 second")
      }))
      expect(yield* Ref.get(interrupted)).toBe(true)
    }))
})

describe("ResponseCache: config", () => {
  it.scoped.each([
    ["timeToLive", { timeToLive: 0 }],
    ["timeToLive", { timeToLive: "soon" as Duration.DurationInput }],
    ["maxEntries", { maxEntries: 0 }],
    ["maxStale", { maxStale: -1 }],
    ["key", { key: (r: Req) => r.model, fields: ["model"] }],
    ["maxEntries", { maxEntries: 5, store: ResponseCache.makeMemoryStore<string>(5) }]
  ] as const)("a bad %s fails with InvalidConfigError naming it", ([path, options]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ResponseCache.make<Req, string>(options))
      expect(error).toBeInstanceOf(InvalidConfigError)
      expect(error.path).toBe(path)
    }))
})
