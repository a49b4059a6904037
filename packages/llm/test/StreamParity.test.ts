import { Errors, StateStore } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
import type * as Chat from "../src/Chat.js"
import * as ClientConfig from "../src/ClientConfig.js"
import * as Provider from "../src/Provider.js"
import * as ResilientClient from "../src/ResilientClient.js"

/**
 * What one call to a deployment does, whether it is asked for a whole answer
 * or a stream: answer "ab" (its content after `firstMs`, a chunk every
 * `everyMs`), fail as it opens, or (a stream only) break after its first chunk.
 */
type Outcome =
  | { readonly _tag: "ok"; readonly firstMs?: number; readonly everyMs?: number; readonly chunks?: number }
  | { readonly _tag: "fail"; readonly error: Errors.ResilienceError }
  | { readonly _tag: "cut" }

const ok: Outcome = { _tag: "ok" }
const fail = (error: Errors.ResilienceError): Outcome => ({ _tag: "fail", error })
const down = fail(new Errors.ProviderUnavailableError({ status: 503 }))

const usage = { inputTokens: 10, outputTokens: 2 }

/** Scripted providers that serve `chat` and `stream` from one script per deployment; every call is logged. */
const scripted = (scripts: Record<string, ReadonlyArray<Outcome>>) => {
  const calls: Array<string> = []
  const next = new Map<string, number>()
  const outcomeFor = (context: Provider.CallContext): Outcome => {
    calls.push(`${context.deployment}/${context.keyName ?? "-"}`)
    const i = next.get(context.deployment) ?? 0
    next.set(context.deployment, i + 1)
    return scripts[context.deployment]?.[i] ?? ok
  }
  const texts = (outcome: { readonly chunks?: number }) => Array.from({ length: outcome.chunks ?? 2 }, (_, i) => String.fromCharCode(97 + i))
  const layer = Layer.succeed(Provider.Providers, {
    forTarget: (target) => ({
      kind: target.kind,
      chat: (_, context) => {
        const outcome = outcomeFor(context)
        if (outcome._tag === "fail") return Effect.fail(outcome.error)
        if (outcome._tag === "cut") return Effect.die("a whole answer cannot be cut")
        const text = texts(outcome).join("")
        const ms = (outcome.firstMs ?? 0) + (outcome.everyMs ?? 0) * (texts(outcome).length - 1)
        return Effect.delay(
          Effect.succeed({
            response: { id: "r", model: context.model, text, toolCalls: [], finishReason: "stop" as const, usage },
            rateLimit: undefined
          }),
          Duration.millis(ms)
        )
      },
      stream: (_, context) => {
        const outcome = outcomeFor(context)
        if (outcome._tag === "fail") return Effect.fail(outcome.error)
        const chunk = (c: Omit<Chat.ChatChunk, "id" | "model">): Chat.ChatChunk => ({ id: "r", model: context.model, ...c })
        if (outcome._tag === "cut") {
          return Effect.succeed({
            chunks: Stream.concat(
              Stream.make(chunk({ role: "assistant" }), chunk({ text: "partial" })),
              // The cut comes 10 ms after the content: time for an identical request to join the flight.
              Stream.fromEffect(Effect.delay(
                Effect.fail(new Errors.StreamInterruptedError({ chunksReceived: 2, deployment: context.deployment })),
                Duration.millis(10)
              ))
            ),
            rateLimit: undefined
          })
        }
        const contents = texts(outcome).map((text, i) =>
          Stream.fromEffect(
            Effect.delay(Effect.succeed(chunk({ text })), Duration.millis(i === 0 ? outcome.firstMs ?? 0 : outcome.everyMs ?? 0))
          )
        )
        return Effect.succeed({
          chunks: Stream.concatAll(Chunk.fromIterable([
            Stream.make(chunk({ role: "assistant" })),
            ...contents,
            Stream.make(chunk({ finishReason: "stop", usage }))
          ])),
          rateLimit: undefined
        })
      }
    })
  })
  return { calls, layer }
}

const env = ConfigProvider.fromMap(new Map([["K1", "sk-one"], ["K2", "sk-two"], ["K3", "sk-three"]]))

const config = (policy: Record<string, unknown> = {}) => ({
  deployments: [
    {
      name: "primary",
      provider: "openai",
      model: "p",
      keys: [{ name: "p1", env: "K1" }, { name: "p2", env: "K2" }],
      policy: {
        retry: { maxRetries: 1, jitter: "none", baseDelay: "100 millis" },
        circuitBreaker: { trigger: { kind: "consecutive", failures: 3 }, openDuration: "10 seconds" },
        ...policy
      }
    },
    { name: "backup", provider: "openai", model: "b", keys: [{ name: "b1", env: "K3" }], policy: { retry: false } }
  ],
  cascade: ["primary", "backup"]
})

const request: Chat.ChatRequest = { model: "any", messages: [{ role: "user", content: "hi" }] }

const clientOn = (providers: Layer.Layer<Provider.Providers>, c: unknown, extras: ResilientClient.Extras = {}) =>
  Effect.flatMap(ClientConfig.decode(c), (decoded) => ResilientClient.make(decoded, extras)).pipe(
    Effect.provide(providers),
    Effect.provide(StateStore.layerMemory),
    Effect.withConfigProvider(env)
  )

/** A client of `config()` with a response cache. */
const cachedClientOn = (providers: Layer.Layer<Provider.Providers>) => clientOn(providers, config(), { cache: { timeToLive: "1 minute" } })

/** Runs `self` while the test clock moves on by `by`. */
const inTime = <A, E>(self: Effect.Effect<A, E>, by: Duration.DurationInput = "5 seconds") =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(self)
    yield* TestClock.adjust(by)
    return yield* Fiber.join(fiber)
  })

const streamText = (client: ResilientClient.Service, options?: ResilientClient.ChatOptions) =>
  Effect.map(Stream.runCollect(client.stream(request, options)), (chunks) => Chunk.toReadonlyArray(chunks).map((c) => c.text ?? "").join(""))

describe("ResilientClient: a stream gets what chat gets (one code path)", () => {
  it.scoped("the same faults through chat and through stream: the same answers, calls, and what every policy learned", () =>
    Effect.gen(function*() {
      const script: ReadonlyArray<Outcome> = [
        down,
        ok,
        fail(new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(30), status: 429 })),
        ok,
        fail(new Errors.AuthError({ status: 401 })),
        ok,
        down,
        down,
        down,
        down,
        ok
      ]
      const run = (mode: "chat" | "stream") =>
        Effect.gen(function*() {
          const { calls, layer } = scripted({ primary: script })
          // A token limiter and a bulkhead too: their state shows the usage read from each answer, and the permits given back.
          const client = yield* clientOn(layer, config({ rateLimiter: { tokensPerMinute: 100_000 }, bulkhead: { maxConcurrent: 4 } }))
          const answers: Array<string> = []
          for (let i = 0; i < 8; i++) {
            const answer = mode === "chat" ? Effect.map(client.chat(request), (r) => r.response.text) : streamText(client)
            const result = yield* Effect.either(inTime(answer))
            answers.push(Either.isRight(result) ? result.right : result.left._tag)
          }
          const policies = yield* Effect.forEach(client.deployments, (d) => d.policy.status)
          return { answers, calls, policies }
        }).pipe(Effect.provide(TestContext.TestContext))
      const chat = yield* run("chat")
      const streamed = yield* run("stream")
      expect(chat.answers).toEqual(["ab", "ab", "ab", "ab", "ab", "ab", "ab", "ab"])
      // The key and the breaker learned something on the way: the comparison is not of two blank slates.
      expect(chat.calls).toContain("backup/b1")
      expect(chat.policies[0]?.keyPool?.keys.map((k) => k.state)).not.toEqual(["healthy", "healthy"])
      expect(streamed).toEqual(chat)
    }))

  it.scoped("a stream cut after its first chunk counts as a breaker failure, recorded when it ends", () =>
    Effect.gen(function*() {
      const { layer } = scripted({ primary: [{ _tag: "cut" }] })
      const client = yield* clientOn(layer, config({ circuitBreaker: { trigger: { kind: "consecutive", failures: 1 } } }))
      const received: Array<string> = []
      const error = yield* Effect.flip(inTime(Stream.runForEach(client.stream(request), (c) => Effect.sync(() => received.push(c.text ?? "")))))
      expect(received.join("")).toBe("partial")
      expect(error._tag).toBe("StreamInterruptedError")
      const breaker = (yield* client.deployments[0]!.policy.status).circuitBreaker
      expect(breaker?.state).toBe("open")
    }))

  it.scoped("a stream holds its bulkhead permit until the upstream stream ends", () =>
    Effect.gen(function*() {
      const { layer } = scripted({ primary: [{ _tag: "ok", firstMs: 100, everyMs: 1000, chunks: 4 }] })
      const client = yield* clientOn(layer, config({ bulkhead: { maxConcurrent: 1 } }))
      const bulkhead = client.deployments[0]!.policy.bulkhead!
      const seen: Array<number> = []
      const fiber = yield* Effect.fork(Stream.runCollect(Stream.tap(client.stream(request), () =>
        Effect.map(bulkhead.status, (s) => {
          seen.push(s.running)
        }))))
      yield* TestClock.adjust("10 seconds")
      const chunks = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(chunks.map((c) => c.text ?? "").join("")).toBe("abcd")
      // Seen as the opening chunk and the first three contents reached us (the last ones may be read after the upstream ended).
      expect(seen.slice(0, 4)).toEqual([1, 1, 1, 1])
      expect((yield* bulkhead.status).running).toBe(0)
    }))

  it.scoped("the attempt timeout bounds a stream until its first content: a long stream is not cut, a late start falls back", () =>
    Effect.gen(function*() {
      const { calls, layer } = scripted({
        primary: [{ _tag: "ok", firstMs: 200, everyMs: 2000, chunks: 4 }, { _tag: "ok", firstMs: 3000 }]
      })
      const client = yield* clientOn(layer, config({ attemptTimeout: "1 second", retry: false }))
      // 6.2 s of output under a 1 s attempt timeout.
      expect(yield* inTime(streamText(client), "10 seconds")).toBe("abcd")
      // The first content would come after 3 s: the attempt times out at 1 s and the backup answers.
      expect(yield* inTime(streamText(client), "10 seconds")).toBe("ab")
      expect(calls).toEqual(["primary/p1", "primary/p2", "backup/b1"])
    }))

  it.scoped("an answer from the cache is handed on as a stream", () =>
    Effect.gen(function*() {
      const { calls, layer } = scripted({})
      const client = yield* cachedClientOn(layer)
      const first = yield* inTime(client.chat(request))
      expect(first.source).toBe("primary")
      const chunks = Chunk.toReadonlyArray(yield* inTime(Stream.runCollect(client.stream(request))))
      expect(chunks.map((c) => c.text ?? "").join("")).toBe("ab")
      expect(chunks.at(-1)).toMatchObject({ finishReason: "stop", usage })
      expect(calls).toEqual(["primary/p1"])
    }))

  it.scoped("a caller that stops reading ends its request: the provider's stream is closed when the reader stops, not read to its end", () =>
    Effect.gen(function*() {
      const read: Array<number> = []
      let closedAt: number | undefined
      const providers = Layer.succeed(Provider.Providers, {
        forTarget: (target) => ({
          kind: target.kind,
          chat: () => Effect.die("not asked"),
          stream: (_, context) =>
            Effect.succeed({
              // 40 chunks, one every 10 ms; what the reader never asked for must not be produced.
              chunks: Stream.ensuring(
                Stream.mapEffect(Stream.range(0, 39), (i) =>
                  Effect.as(Effect.delay(Effect.sync(() => read.push(i)), Duration.millis(10)), {
                    id: "r",
                    model: context.model,
                    text: String(i)
                  })),
                Effect.flatMap(TestClock.currentTimeMillis, (now) => Effect.sync(() => void (closedAt = now)))
              ),
              rateLimit: undefined
            })
        })
      })
      const client = yield* clientOn(providers, config())
      for (const take of [(c: ResilientClient.Service) => c.stream(request), (c: ResilientClient.Service) => c.streamOrStatic(request)]) {
        read.length = 0
        closedAt = undefined
        const started = yield* TestClock.currentTimeMillis
        const first = yield* Effect.fork(Stream.runCollect(Stream.take(take(client), 3)))
        yield* TestClock.adjust("1 second")
        expect(Chunk.toReadonlyArray(yield* Fiber.join(first)).map((c) => c.text)).toEqual(["0", "1", "2"])
        // The attempt reads one chunk ahead of its caller at most, and stops with it.
        expect(read.length).toBeLessThanOrEqual(4)
        expect(closedAt).toBeDefined()
        expect((closedAt ?? Infinity) - started).toBeLessThanOrEqual(40)
      }
    }))

  it.scoped("a caller that stops reading does not hold up an identical request waiting on the same flight", () =>
    Effect.gen(function*() {
      // 40 chunks, more than the stream's buffer of 16: the flight must not block on a reader that is gone.
      const { calls, layer } = scripted({ primary: [{ _tag: "ok", chunks: 40, everyMs: 10 }] })
      const client = yield* cachedClientOn(layer)
      const first = yield* Effect.fork(Stream.runCollect(Stream.take(client.stream(request), 3)))
      const second = yield* Effect.fork(Effect.either(streamText(client)))
      yield* TestClock.adjust("10 seconds")
      expect(Chunk.size(yield* Fiber.join(first))).toBe(3)
      const whole = yield* Fiber.join(second)
      expect(whole).toEqual(Either.right(Array.from({ length: 40 }, (_, i) => String.fromCharCode(97 + i)).join("")))
      expect(calls).toEqual(["primary/p1"])
    }))

  it.scoped("an identical request waiting on a flight that was cut after the first caller's chunks is not given that cut: it received nothing, and is answered by a call of its own", () =>
    Effect.gen(function*() {
      const { calls, layer } = scripted({ primary: [{ _tag: "cut" }] })
      const client = yield* cachedClientOn(layer)
      const first = yield* Effect.fork(Effect.either(streamText(client)))
      const second = yield* Effect.fork(Effect.either(streamText(client)))
      yield* TestClock.adjust("10 seconds")
      const cut = yield* Fiber.join(first)
      expect(Either.isLeft(cut) && cut.left._tag).toBe("StreamInterruptedError")
      expect(yield* Fiber.join(second)).toEqual(Either.right("ab"))
      // It did wait on the first request's flight (the cut came 10 ms after the content)...
      expect((yield* client.cacheStatus ?? Effect.die("no cache")).coalesced).toBe(1)
      // ...then made its own call: the primary again (its other key), which answers this time.
      expect(calls).toEqual(["primary/p1", "primary/p2"])
    }))

  it.scoped("a whole-answer request that joined a stream's flight cut after the streamer's chunks is answered by a call of its own", () =>
    Effect.gen(function*() {
      const { calls, layer } = scripted({ primary: [{ _tag: "cut" }] })
      const client = yield* cachedClientOn(layer)
      const streamed = yield* Effect.fork(Effect.either(streamText(client)))
      // The stream's flight is under way (its content handed on, its cut 10 ms away) when the whole-answer request comes.
      yield* TestClock.adjust("1 millis")
      const whole = yield* Effect.fork(Effect.either(client.chat(request)))
      yield* TestClock.adjust("10 seconds")
      const cut = yield* Fiber.join(streamed)
      expect(Either.isLeft(cut) && cut.left._tag).toBe("StreamInterruptedError")
      expect(Either.map(yield* Fiber.join(whole), (r) => r.response.text)).toEqual(Either.right("ab"))
      expect((yield* client.cacheStatus ?? Effect.die("no cache")).coalesced).toBe(1)
      expect(calls).toEqual(["primary/p1", "primary/p2"])
    }))

  it.scoped("a streamed attempt is traced as chat's is: a ResilientClient.attempt span under a ResilientClient.stream span", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const spans = Layer.succeed(Provider.Providers, {
        forTarget: (target) => ({
          kind: target.kind,
          chat: () => Effect.die("not called"),
          stream: (_, context) =>
            Effect.map(Effect.option(Effect.currentSpan), (current) => {
              const span = Option.getOrUndefined(current)
              const parent = span === undefined ? undefined : Option.getOrUndefined(span.parent)
              seen.push(`${span?.name ?? "none"} < ${parent?._tag === "Span" ? parent.name : "none"}`)
              return { chunks: Stream.make({ id: "r", model: context.model, text: "ab", finishReason: "stop" as const }), rateLimit: undefined }
            })
        })
      })
      const client = yield* clientOn(spans, config())
      expect(yield* streamText(client)).toBe("ab")
      expect(seen).toEqual(["ResilientClient.attempt < ResilientClient.stream"])
    }))
})
