import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import { Errors } from "@resilient-ai/core"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Sse from "../src/Sse.js"
import * as StreamGuard from "../src/StreamGuard.js"

// --- wire fixtures ----------------------------------------------------------

const oa = (delta: Record<string, unknown>, finish: string | null = null): Sse.Event => ({
  data: JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1718040725,
    model: "gpt-4o",
    choices: [{ index: 0, delta, finish_reason: finish }]
  })
})
const oaRole = oa({ role: "assistant", content: "" })
const oaText = (text: string) => oa({ content: text })
const oaDone: Sse.Event = { data: "[DONE]" }

const an = (event: string, payload: Record<string, unknown>): Sse.Event => ({
  event,
  data: JSON.stringify({ type: event, ...payload })
})
const anStart = an("message_start", { message: { id: "msg_1", role: "assistant", content: [] } })
const anPing = an("ping", {})
const anDelta = (text: string) => an("content_block_delta", { index: 0, delta: { type: "text_delta", text } })
const anStop = an("message_stop", {})
const anOverloaded: Sse.Event = {
  event: "error",
  data: JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
}

/** Each element after its delay (virtual time), then the stream ends. */
const script = <A>(...steps: ReadonlyArray<readonly [number, A]>): Stream.Stream<A> =>
  Stream.fromIterable(steps).pipe(Stream.mapEffect(([delay, a]) => Effect.as(Effect.sleep(Duration.millis(delay)), a)))

const run = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function*() {
    const seen = yield* Ref.make<ReadonlyArray<A>>([])
    const fiber = yield* Effect.fork(
      Effect.either(Stream.runForEach(stream, (a) => Ref.update(seen, (xs) => [...xs, a])))
    )
    return { fiber, seen }
  })

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isSome)

const origin = { provider: "anthropic", deployment: "claude@us", keyName: "k1" }

// --- timeouts -----------------------------------------------------------------

describe("StreamGuard: first-token timeout", () => {
  it.effect("fires at exactly X when no chunk arrives, as TimeoutError{phase: first-token}", () =>
    Effect.gen(function*() {
      const guarded = StreamGuard.forKind("openai", { firstTokenTimeout: "5 seconds", origin })(Stream.never)
      const { fiber } = yield* run(guarded)
      yield* TestClock.adjust(4999)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      const result = yield* Fiber.join(fiber)
      expect(Either.isLeft(result)).toBe(true)
      const error = Either.flip(result).pipe(Either.getOrThrow)
      expect(error).toBeInstanceOf(Errors.TimeoutError)
      expect(error._tag === "TimeoutError" && error.phase).toBe("first-token")
      expect(error._tag === "TimeoutError" && Duration.toMillis(error.timeout)).toBe(5000)
      expect(error._tag === "TimeoutError" && error.keyName).toBe("k1")
    }))

  it.effect("meta chunks (message_start, ping, a role-only delta) do not count as the first token", () =>
    Effect.gen(function*() {
      const upstream = Stream.concat(script([0, anStart] as const, [1000, anPing] as const, [3000, anPing] as const), Stream.never)
      const { fiber, seen } = yield* run(StreamGuard.forKind("anthropic", { firstTokenTimeout: "5 seconds" })(upstream))
      yield* TestClock.adjust(4999)
      expect(yield* isDone(fiber)).toBe(false)
      expect((yield* Ref.get(seen)).length).toBe(3)
      yield* TestClock.adjust(1)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error._tag === "TimeoutError" && error.phase).toBe("first-token")
    }))

  it.effect("a content chunk before X ends the first-token wait", () =>
    Effect.gen(function*() {
      const upstream = script([0, oaRole] as const, [4999, oaText("Hi")] as const, [60_000, oaDone] as const)
      const { fiber, seen } = yield* run(StreamGuard.forKind("openai", { firstTokenTimeout: "5 seconds" })(upstream))
      yield* TestClock.adjust(70_000)
      expect(yield* Fiber.join(fiber)).toEqual(Either.right(undefined))
      expect(yield* Ref.get(seen)).toEqual([oaRole, oaText("Hi")])
    }))

  it.effect("the timeout interrupts the upstream: its finalizer runs when the timer fires", () =>
    Effect.gen(function*() {
      const closedAt = yield* Ref.make(Option.none<number>())
      const upstream = Stream.never.pipe(
        Stream.ensuring(Effect.flatMap(TestClock.currentTimeMillis, (t) => Ref.set(closedAt, Option.some(t))))
      )
      const { fiber } = yield* run(StreamGuard.forKind("openai", { firstTokenTimeout: "2 seconds" })(upstream))
      yield* TestClock.adjust(2000)
      yield* Fiber.join(fiber)
      expect(yield* Ref.get(closedAt)).toEqual(Option.some(2000))
    }))
})

describe("StreamGuard: stall timeout", () => {
  it.effect("a gap longer than the limit after output fails at exactly lastChunk + limit, as a StreamInterruptedError", () =>
    Effect.gen(function*() {
      const upstream = Stream.concat(
        script([100, oaRole] as const, [100, oaText("a")] as const, [2999, oaText("b")] as const),
        Stream.never
      )
      const { fiber, seen } = yield* run(StreamGuard.forKind("openai", { stallTimeout: "3 seconds" })(upstream))
      yield* TestClock.adjust(3199) // "b" arrives 1 ms before the limit: in time, and restarts the timer
      expect((yield* Ref.get(seen)).length).toBe(3)
      yield* TestClock.adjust(2999)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error).toBeInstanceOf(Errors.StreamInterruptedError)
      expect(error._tag === "StreamInterruptedError" && error.chunksReceived).toBe(2)
      expect(error._tag === "StreamInterruptedError" && error.detail).toBe("TimeoutError: stall timed out after 3s")
    }))

  it.effect("a stall before any content keeps its tag: TimeoutError{phase: stall}", () =>
    Effect.gen(function*() {
      const upstream = Stream.concat(script([0, anStart] as const), Stream.never)
      const guarded = StreamGuard.forKind("anthropic", { firstTokenTimeout: "10 seconds", stallTimeout: "2 seconds" })(
        upstream
      )
      const { fiber } = yield* run(guarded)
      yield* TestClock.adjust(1999)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error._tag === "TimeoutError" && error.phase).toBe("stall")
    }))

  it.effect("before the first chunk only the first-token limit applies", () =>
    Effect.gen(function*() {
      const guarded = StreamGuard.forKind("anthropic", { firstTokenTimeout: "10 seconds", stallTimeout: "2 seconds" })(
        Stream.never
      )
      const { fiber } = yield* run(guarded)
      yield* TestClock.adjust(9999)
      expect(yield* isDone(fiber)).toBe(false)
      yield* TestClock.adjust(1)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error._tag === "TimeoutError" && error.phase).toBe("first-token")
    }))

  it.effect("keep-alive pings reset the stall timer", () =>
    Effect.gen(function*() {
      const upstream = script(
        [0, anStart] as const,
        [500, anDelta("a")] as const,
        [1900, anPing] as const,
        [1900, anPing] as const,
        [1900, anDelta("b")] as const,
        [10, anStop] as const
      )
      const { fiber, seen } = yield* run(StreamGuard.forKind("anthropic", { stallTimeout: "2 seconds" })(upstream))
      yield* TestClock.adjust(10_000)
      expect(yield* Fiber.join(fiber)).toEqual(Either.right(undefined))
      expect((yield* Ref.get(seen)).length).toBe(6)
    }))
})

// --- error events -------------------------------------------------------------

describe("StreamGuard: error events inside a 200 stream", () => {
  it.effect("before the first content chunk the mapped error keeps its tag (a fallback may still happen)", () =>
    Effect.gen(function*() {
      const upstream = script([0, anStart] as const, [10, anPing] as const, [10, anOverloaded] as const)
      const { fiber, seen } = yield* run(StreamGuard.forKind("anthropic", { origin })(upstream))
      yield* TestClock.adjust(100)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error).toBeInstanceOf(Errors.ProviderUnavailableError)
      expect(error._tag === "ProviderUnavailableError" && error.status).toBe(529)
      expect(error._tag === "ProviderUnavailableError" && error.deployment).toBe("claude@us")
      expect((yield* Ref.get(seen)).length).toBe(2)
    }))

  it.effect("after the first content chunk it becomes StreamInterruptedError with the original tag in detail", () =>
    Effect.gen(function*() {
      const upstream = script(
        [0, anStart] as const,
        [10, anDelta("Hel")] as const,
        [10, anDelta("lo")] as const,
        [10, anOverloaded] as const,
        [10, anStop] as const
      )
      const { fiber, seen } = yield* run(StreamGuard.forKind("anthropic", { origin })(upstream))
      yield* TestClock.adjust(100)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error).toBeInstanceOf(Errors.StreamInterruptedError)
      if (error._tag !== "StreamInterruptedError") return
      expect(error.chunksReceived).toBe(2)
      expect(error.detail).toBe("ProviderUnavailableError: Overloaded")
      expect(error.status).toBe(529)
      expect(error.keyName).toBe("k1")
      expect(yield* Ref.get(seen)).toEqual([anStart, anDelta("Hel"), anDelta("lo")])
    }))

  it.effect("an error in the same chunk as content: the content is delivered first, then the interruption", () =>
    Effect.gen(function*() {
      const upstream = Stream.make(oaRole, oaText("a"), { data: JSON.stringify({ error: { message: "boom", type: "server_error" } }) })
      const { fiber, seen } = yield* run(StreamGuard.forKind("openai")(upstream))
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error._tag).toBe("StreamInterruptedError")
      expect(error._tag === "StreamInterruptedError" && error.detail).toBe("ProviderUnavailableError: boom")
      expect(yield* Ref.get(seen)).toEqual([oaRole, oaText("a")])
    }))

  it.effect("an OpenAI-compatible error chunk before content keeps its tag (rate limit with its hint)", () =>
    Effect.gen(function*() {
      const upstream = Stream.make(oaRole, {
        data: JSON.stringify({
          error: { message: "Rate limit reached. Please try again in 2s.", type: "tokens", code: "rate_limit_exceeded" }
        })
      })
      const error = Either.flip(yield* Effect.either(Stream.runDrain(StreamGuard.forKind("openai")(upstream)))).pipe(
        Either.getOrThrow
      )
      expect(error._tag).toBe("RateLimitError")
      expect(error._tag === "RateLimitError" && error.retryAfter && Duration.toMillis(error.retryAfter)).toBe(2000)
    }))

  it.effect("data that is not JSON is a MalformedResponseError", () =>
    Effect.gen(function*() {
      const error = Either.flip(
        yield* Effect.either(Stream.runDrain(StreamGuard.forKind("openai")(Stream.make({ data: "<html>oops" }))))
      ).pipe(Either.getOrThrow)
      expect(error._tag).toBe("MalformedResponseError")
    }))

  it.effect("an upstream failure keeps its tag before content and is an interruption after it", () =>
    Effect.gen(function*() {
      const cut = new Errors.ConnectionError({ detail: "read ECONNRESET", provider: "openai" })
      const before = yield* Effect.either(
        Stream.runDrain(StreamGuard.forKind("openai")(Stream.concat(Stream.make(oaRole), Stream.fail(cut))))
      )
      expect(before).toEqual(Either.left(cut))
      const after = Either.flip(
        yield* Effect.either(
          Stream.runDrain(StreamGuard.forKind("openai")(Stream.concat(Stream.make(oaRole, oaText("x")), Stream.fail(cut))))
        )
      ).pipe(Either.getOrThrow)
      expect(after._tag).toBe("StreamInterruptedError")
      expect(after._tag === "StreamInterruptedError" && after.detail).toBe("ConnectionError: read ECONNRESET")
      expect(after._tag === "StreamInterruptedError" && after.provider).toBe("openai")
    }))
})

// --- terminators ----------------------------------------------------------------

describe("StreamGuard: terminators", () => {
  it.effect("OpenAI: [DONE] ends the stream, is not passed on, and nothing after it is read", () =>
    Effect.gen(function*() {
      const upstream = Stream.concat(Stream.make(oaRole, oaText("a"), oaDone, oaText("ignored")), Stream.never)
      const out = yield* Stream.runCollect(StreamGuard.forKind("openai")(upstream))
      expect(Chunk.toArray(out)).toEqual([oaRole, oaText("a")])
    }))

  it.effect("Anthropic: message_stop ends the stream and is passed on", () =>
    Effect.gen(function*() {
      const upstream = Stream.concat(Stream.make(anStart, anDelta("a"), anStop), Stream.die("not read"))
      const out = yield* Stream.runCollect(StreamGuard.forKind("anthropic")(upstream))
      expect(Chunk.toArray(out)).toEqual([anStart, anDelta("a"), anStop])
    }))

  it.effect("Anthropic events without an event field are named by their data's type", () =>
    Effect.gen(function*() {
      const bare = (e: Sse.Event): Sse.Event => ({ data: e.data })
      const out = yield* Stream.runCollect(
        StreamGuard.forKind("anthropic")(Stream.make(bare(anStart), bare(anDelta("a")), bare(anStop), anPing))
      )
      expect(Chunk.size(out)).toBe(3)
    }))

  it.effect("a stream cut after content without its terminator is a StreamInterruptedError", () =>
    Effect.gen(function*() {
      const error = Either.flip(
        yield* Effect.either(Stream.runDrain(StreamGuard.forKind("openai", { origin })(Stream.make(oaRole, oaText("a"), oaText("b")))))
      ).pipe(Either.getOrThrow)
      expect(error._tag).toBe("StreamInterruptedError")
      if (error._tag !== "StreamInterruptedError") return
      expect(error.chunksReceived).toBe(2)
      expect(error.detail).toBe("ConnectionError: stream ended without its terminator (data: [DONE])")
      expect(error.deployment).toBe("claude@us")
    }))

  it.effect("a stream cut before any content without its terminator is a ConnectionError", () =>
    Effect.gen(function*() {
      const error = Either.flip(yield* Effect.either(Stream.runDrain(StreamGuard.forKind("anthropic")(Stream.make(anStart, anPing)))))
        .pipe(Either.getOrThrow)
      expect(error._tag).toBe("ConnectionError")
      expect(error._tag === "ConnectionError" && error.detail).toBe(
        "stream ended without its terminator (event: message_stop)"
      )
    }))

  it.effect("requireTerminator: false accepts a stream that just ends", () =>
    Effect.gen(function*() {
      const out = yield* Stream.runCollect(
        StreamGuard.forKind("openai", { requireTerminator: false })(Stream.make(oaRole, oaText("a")))
      )
      expect(Chunk.size(out)).toBe(2)
    }))
})

describe("StreamGuard: what counts as content", () => {
  const classify = (e: Sse.Event) => StreamGuard.openAi.classify(e, { origin: {}, now: 0 })._tag

  it("OpenAI: text, refusal, reasoning and tool calls are content; role-only, empty and usage chunks are not", () => {
    expect(classify(oaRole)).toBe("Meta")
    expect(classify(oa({ content: null }))).toBe("Meta")
    expect(classify(oa({}, "stop"))).toBe("Meta")
    expect(classify({ data: JSON.stringify({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 2 } }) })).toBe(
      "Meta"
    )
    expect(classify(oaText("x"))).toBe("Content")
    expect(classify(oa({ refusal: "I can't" }))).toBe("Content")
    expect(classify(oa({ reasoning_content: "hmm" }))).toBe("Content")
    expect(classify(oa({ tool_calls: [{ index: 0, id: "call_1", function: { name: "f", arguments: "" } }] }))).toBe(
      "Content"
    )
    expect(classify(oaDone)).toBe("Terminator")
  })

  it("Anthropic: only content_block_delta is content", () => {
    const tag = (e: Sse.Event) => StreamGuard.anthropic.classify(e, { origin: {}, now: 0 })._tag
    expect([anStart, anPing, anDelta("a"), anStop, anOverloaded, an("content_block_start", {})].map(tag)).toEqual([
      "Meta",
      "Meta",
      "Content",
      "Terminator",
      "Error",
      "Meta"
    ])
  })

  it.effect("plain: timeouts for already-decoded chunks, with a content predicate and no terminator", () =>
    Effect.gen(function*() {
      const guarded = StreamGuard.guard(StreamGuard.plain((n: number) => n > 0), { firstTokenTimeout: "1 second" })(
        Stream.concat(Stream.make(0), Stream.never)
      )
      const { fiber } = yield* run(guarded)
      yield* TestClock.adjust(1000)
      const error = Either.flip(yield* Fiber.join(fiber)).pipe(Either.getOrThrow)
      expect(error._tag === "TimeoutError" && error.phase).toBe("first-token")
    }))

  it("the guarded stream's error type names every tag it can fail with", () => {
    const guarded = StreamGuard.forKind("openai")(Stream.fail(new Errors.ConnectionError({})) as Stream.Stream<Sse.Event, Errors.ConnectionError>)
    expectTypeOf(guarded).toEqualTypeOf<
      Stream.Stream<Sse.Event, StreamGuard.GuardError<Errors.ConnectionError, StreamGuard.ProtocolError>>
    >()
    expectTypeOf<Stream.Stream.Error<typeof guarded>["_tag"]>().toEqualTypeOf<
      | "ConnectionError"
      | "RateLimitError"
      | "QuotaExhaustedError"
      | "AuthError"
      | "ContextLengthError"
      | "ContentFilterError"
      | "BadRequestError"
      | "ProviderUnavailableError"
      | "MalformedResponseError"
      | "TimeoutError"
      | "StreamInterruptedError"
    >()
  })
})

describe("StreamGuard.MidStreamPolicy", () => {
  it("defaults to restart-if-no-output", () => {
    expect(StreamGuard.defaultMidStreamPolicy).toBe("restart-if-no-output")
    expectTypeOf<StreamGuard.MidStreamPolicy>().toEqualTypeOf<
      "terminate" | "restart-if-no-output" | "continue-with-prefix"
    >()
  })

  it("interrupted keeps an existing StreamInterruptedError and names unknown failures", () => {
    const existing = new Errors.StreamInterruptedError({ chunksReceived: 3 })
    expect(StreamGuard.interrupted(existing, 5)).toBe(existing)
    expect(StreamGuard.interrupted("boom", 1, { deployment: "d" })).toMatchObject({
      _tag: "StreamInterruptedError",
      chunksReceived: 1,
      detail: "UnknownError: boom",
      deployment: "d"
    })
  })

  it("interrupted keeps a StreamInterruptedError built by a second copy of the core package (matched by tag)", async () => {
    // A query string makes vite load the module a second time: another class, as a second installed copy would be.
    const path = "../../core/src/Errors.js?second-copy"
    const copy: typeof Errors = await import(/* @vite-ignore */ path)
    const foreign = new copy.StreamInterruptedError({ chunksReceived: 3, detail: "ConnectionError: reset" })
    expect(foreign instanceof Errors.StreamInterruptedError).toBe(false)
    expect(StreamGuard.interrupted(foreign, 5)).toBe(foreign)
  })
})
