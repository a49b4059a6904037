import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as ResilientLanguageModel from "../src/ResilientLanguageModel.js"
import { answered, ok, runWith, status, textOf, withModel } from "./support/layer.js"

const calls = (received: ReadonlyArray<{ readonly path: string }>) => received.filter((r) => r.path !== "/v1/models").length

/** The effect-ai cache's lookups that found no fresh entry (each starts a flight or joins the one in flight), from its metric. */
const misses = Effect.map(Metric.snapshot, (pairs) =>
  pairs
    .filter((p) =>
      p.metricKey.name === "resilient_ai_cache_lookups_total" &&
      p.metricKey.tags.some((t) => t.key === "cache" && t.value === "effect-ai") &&
      p.metricKey.tags.some((t) => t.key === "outcome" && t.value === "miss")
    )
    .reduce((n, p) => n + ("count" in p.metricState ? Number(p.metricState.count) : 0), 0))

/** Yields to the other fibers until `done` holds, at most `turns` times: whether it came to hold. */
const eventually = (done: Effect.Effect<boolean>, turns = 1_000) =>
  Effect.gen(function*() {
    for (let i = 0; i < turns; i++) {
      if (yield* done) return true
      yield* Effect.yieldNow()
    }
    return yield* done
  })

describe("the response cache in front of the chain (rule 18)", () => {
  it.scopedLive("an identical generateText is answered from the cache, with no HTTP call; another prompt is not", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        () => ok("hi"),
        Effect.gen(function*() {
          const first = yield* LanguageModel.generateText({ prompt: "hello" })
          const firstAnswer = yield* answered
          const second = yield* LanguageModel.generateText({ prompt: "hello" })
          const secondAnswer = yield* answered
          yield* LanguageModel.generateText({ prompt: "something else" })
          return { texts: [first.text, second.text], firstAnswer, secondAnswer }
        }),
        {},
        { cache: { timeToLive: "1 minute" } }
      )
      expect(result.texts).toEqual(["hi", "hi"])
      expect(result.firstAnswer).toMatchObject({ source: "primary", deployment: "gpt", attempts: 1 })
      expect(result.secondAnswer).toMatchObject({ source: "cache", deployment: undefined, attempts: 0, costUsd: 0 })
      expect(calls(received)).toBe(2)
    }))

  it.scopedLive("generateObject: a hit is decoded with the call's schema; another schema is another entry", () =>
    Effect.gen(function*() {
      const Weather = Schema.Struct({ city: Schema.String, celsius: Schema.Number })
      const City = Schema.Struct({ city: Schema.String })
      const { received, result } = yield* withModel(
        () => ok(JSON.stringify({ city: "Oslo", celsius: 4 })),
        Effect.gen(function*() {
          const first = yield* LanguageModel.generateObject({ prompt: "weather?", schema: Weather, objectName: "weather" })
          const second = yield* LanguageModel.generateObject({ prompt: "weather?", schema: Weather, objectName: "weather" })
          const secondAnswer = yield* answered
          const other = yield* LanguageModel.generateObject({ prompt: "weather?", schema: City, objectName: "weather" })
          return { values: [first.value, second.value, other.value], secondAnswer }
        }),
        {},
        { cache: {} }
      )
      expect(result.values).toEqual([{ city: "Oslo", celsius: 4 }, { city: "Oslo", celsius: 4 }, { city: "Oslo" }])
      expect(result.secondAnswer).toMatchObject({ method: "generateObject", source: "cache" })
      expect(calls(received)).toBe(2)
    }))

  it.scopedLive("streamText is served from the cache as parts, and a streamed answer fills the cache for generateText", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        (path) => (path === "/v1/responses" ? { _tag: "Stream", deltas: ["Hel", "lo"] } : ok("unused")),
        Effect.gen(function*() {
          const streamed = Chunk.toReadonlyArray(yield* Stream.runCollect(LanguageModel.streamText({ prompt: "hello" })))
          const fromCache = Chunk.toReadonlyArray(yield* Stream.runCollect(LanguageModel.streamText({ prompt: "hello" })))
          const streamAnswer = yield* answered
          const text = yield* LanguageModel.generateText({ prompt: "hello" })
          const textAnswer = yield* answered
          return { streamed, fromCache, streamAnswer, text: text.text, textAnswer }
        }),
        { cascade: ["gpt"] },
        { cache: {} }
      )
      expect(textOf(result.streamed)).toBe("Hello")
      expect(textOf(result.fromCache)).toBe("Hello")
      // The answer's content, handed on as one block per text, with the metadata and finish of the streamed answer.
      expect(result.fromCache.map((p) => p.type)).toEqual(["response-metadata", "text-start", "text-delta", "text-end", "finish"])
      expect(result.streamAnswer).toMatchObject({ method: "streamText", source: "cache" })
      expect(result.text).toBe("Hello")
      expect(result.textAnswer).toMatchObject({ source: "cache" })
      expect(calls(received)).toBe(1)
    }))

  it.scopedLive("identical calls in flight share one upstream call (single-flight)", () =>
    Effect.gen(function*() {
      const { received, result } = yield* withModel(
        () => ok("slow", 200),
        Effect.all([
          LanguageModel.generateText({ prompt: "hello" }),
          LanguageModel.generateText({ prompt: "hello" }),
          LanguageModel.generateText({ prompt: "hello" })
        ], { concurrency: "unbounded" }),
        {},
        { cache: {} }
      )
      expect(result.map((r) => r.text)).toEqual(["slow", "slow", "slow"])
      expect(calls(received)).toBe(1)
    }))

  it.scopedLive("a streamText that stops reading does not hold up an identical call waiting on the same flight", () =>
    Effect.gen(function*() {
      // 40 deltas, more than the stream's buffer of 16: the flight must not block on a reader that is gone.
      const deltas = Array.from({ length: 40 }, (_, i) => `w${i} `)
      const { received, result } = yield* withModel(
        (path) => (path === "/v1/responses" ? { _tag: "Stream", deltas } : ok("unused")),
        Effect.all([
          // Reads slowly, then stops after two parts.
          LanguageModel.streamText({ prompt: "hello" }).pipe(
            Stream.tap(() => Effect.sleep("200 millis")),
            Stream.take(2),
            Stream.runCollect
          ),
          Effect.sleep("30 millis").pipe(
            Effect.zipRight(Stream.runCollect(LanguageModel.streamText({ prompt: "hello" }))),
            Effect.map((parts) => textOf(parts)),
            Effect.timeout("3 seconds"),
            Effect.either
          )
        ], { concurrency: "unbounded" }),
        { cascade: ["gpt"] },
        { cache: {} }
      )
      expect(Chunk.size(result[0])).toBe(2)
      expect(result[1]).toEqual(Either.right(deltas.join("")))
      expect(calls(received)).toBe(1)
    }))

  it.scopedLive("stale-if-error: after expiry, an outage of every deployment is answered by the expired entry", () =>
    Effect.gen(function*() {
      let down = false
      const { received, result } = yield* withModel(
        () => (down ? status(503) : ok("remembered")),
        Effect.gen(function*() {
          yield* LanguageModel.generateText({ prompt: "hello" })
          yield* Effect.sleep("150 millis")
          down = true
          const stale = yield* LanguageModel.generateText({ prompt: "hello" })
          const answer = yield* answered
          const other = yield* Effect.flip(LanguageModel.generateText({ prompt: "never asked before" }))
          return { stale: stale.text, answer, other: other._tag }
        }),
        { gptPolicy: { retry: false } },
        { cache: { timeToLive: "50 millis", maxStale: "1 minute" } }
      )
      expect(result.stale).toBe("remembered")
      expect(result.answer).toMatchObject({ source: "stale-cache" })
      // The chain was tried first: both deployments, then the stale entry.
      expect(result.answer.fallbacks.map((f) => [f.from, f.to])).toEqual([["gpt", "claude"], ["claude", "stale-cache"]])
      expect(result.other).toBe("HttpResponseError")
      expect(calls(received)).toBe(1 + 3 + 3)
    }))

  it.scopedLive("with a static reply at the end, a stale entry answers before the static reply, and a static reply is never stored", () =>
    Effect.gen(function*() {
      let down = false
      const { result } = yield* runWith(
        (config) => ResilientLanguageModel.layerWithStaticReply(config, {}, { cache: { timeToLive: "50 millis" } }),
        () => (down ? status(503) : ok("remembered")),
        ResilientLanguageModel.alwaysAnswers(Effect.gen(function*() {
          yield* LanguageModel.generateText({ prompt: "hello" })
          yield* Effect.sleep("150 millis")
          down = true
          const stale = yield* LanguageModel.generateText({ prompt: "hello" })
          const staleAnswer = yield* answered
          yield* LanguageModel.generateText({ prompt: "new question" })
          const staticAnswer = yield* answered
          down = false
          const fresh = yield* LanguageModel.generateText({ prompt: "new question" })
          const freshAnswer = yield* answered
          return { stale: stale.text, staleAnswer, staticAnswer, fresh: fresh.text, freshAnswer }
        })),
        { gptPolicy: { retry: false } }
      )
      expect(result.stale).toBe("remembered")
      expect(result.staleAnswer.source).toBe("stale-cache")
      expect(result.staticAnswer.source).toBe("static")
      // The static reply was not stored: the next call, with the providers back, reaches them.
      expect(result.fresh).toBe("remembered")
      expect(result.freshAnswer.source).toBe("primary")
    }))
  for (const midStreamPolicy of ["restart-if-no-output", "continue-with-prefix"] as const) {
    it.scopedLive(`an identical streamText that joined a flight cut after the first caller's parts is not given that cut (${midStreamPolicy})`, () =>
      Effect.gen(function*() {
        // gpt's first stream sends its first delta, is held open until the test releases it, then is cut; its next
        // ones are whole. Each gpt call notes whether that cut had happened when it arrived. Claude continues a cut one.
        let release!: () => void
        const held = new Promise<void>((resolve) => (release = resolve))
        let cut = false
        const gptAfterCut: Array<boolean> = []
        const { result } = yield* withModel(
          (path, _key, n, request) => {
            if (path === "/v1/responses") {
              gptAfterCut.push(cut)
              return {
                _tag: "Stream",
                deltas: ["Hel", "lo", " world"],
                ...(n === 0 ? { cutAfter: 1, holdUntil: held, onCut: () => (cut = true) } : {})
              }
            }
            return request.body["stream"] === true
              ? { _tag: "Stream", deltas: midStreamPolicy === "continue-with-prefix" ? ["lo", " world"] : ["Hello", " world"] }
              : ok("from claude")
          },
          Effect.gen(function*() {
            const firstPart = yield* Deferred.make<void>()
            const first = yield* Effect.fork(Effect.either(Stream.runCollect(
              LanguageModel.streamText({ prompt: "hello" }).pipe(
                Stream.tap((part) => (part.type === "text-delta" ? Deferred.succeed(firstPart, undefined) : Effect.void))
              )
            )))
            // The first caller has "Hel"; the flight it started is held open upstream: the second starts while it runs.
            yield* Deferred.await(firstPart)
            const before = yield* misses
            const second = yield* Effect.fork(Effect.either(Stream.runCollect(LanguageModel.streamText({ prompt: "hello" }))))
            // The second's lookup misses while that flight is in flight: it joins it, with no call of its own.
            const missed = yield* eventually(Effect.map(misses, (n) => n > before))
            const whileHeld = {
              missed,
              cut,
              firstReading: first.unsafePoll() === null,
              secondWaiting: second.unsafePoll() === null,
              gptCalls: gptAfterCut.length
            }
            release()
            return { whileHeld, first: yield* Fiber.join(first), second: yield* Fiber.join(second) }
          }),
          { config: { midStreamPolicy }, gptPolicy: { retry: false } },
          { cache: { timeToLive: "1 minute" } }
        )
        expect(result.whileHeld).toEqual({ missed: true, cut: false, firstReading: true, secondWaiting: true, gptCalls: 1 })
        // The first caller had "Hel": with continue-with-prefix claude continues it, else the cut is its answer.
        if (midStreamPolicy === "continue-with-prefix") expect(Either.map(result.first, textOf)).toEqual(Either.right("Hello world"))
        else expect(Either.isLeft(result.first)).toBe(true)
        // The second received nothing of the cut stream. Before: it failed with the first caller's cut.
        expect(Either.map(result.second, textOf)).toEqual(Either.right("Hello world"))
        // Its own call came only once the flight it joined was cut: a request that had not joined would have made it at once.
        expect(gptAfterCut).toEqual([false, true])
      }))
  }
})
