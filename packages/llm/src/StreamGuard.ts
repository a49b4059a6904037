/**
 * Guards for a stream of provider chunks (usually the `Sse.Event`s of a
 * chat completion):
 *
 * - **first-token timeout**: no *content* chunk within the limit, counted
 *   from the moment the guarded stream starts running, fails with
 *   `TimeoutError { phase: "first-token" }`. Put the guard around the whole
 *   call (request included) to bound the time to first token;
 * - **stall timeout**: once a first chunk (of any kind) has arrived, a gap
 *   longer than the limit between two chunks fails with
 *   `TimeoutError { phase: "stall" }`. Keep-alives (`ping`) count as
 *   chunks: the connection is alive. Before the first chunk only the
 *   first-token limit applies;
 * - **error events inside a 200 stream** (Anthropic `event: error` with
 *   `overloaded_error`, an OpenAI-compatible `{"error":{...}}` data chunk)
 *   are mapped through `ErrorMapping`'s one table;
 * - **a stream that ends without its terminator** (OpenAI `data: [DONE]`,
 *   Anthropic `message_stop`) fails with a `ConnectionError` (the answer was
 *   cut); whatever follows the terminator is not read.
 *
 * Both timers run on effect's `Clock`, so `TestClock` drives them.
 *
 * **Before and after the first content chunk.** A failure before the first
 * content chunk keeps its own tag: nothing reached the caller, so the retry
 * and fallback policies may act on it. A failure after it becomes
 * `StreamInterruptedError { chunksReceived }` (the number of content chunks
 * delivered) with the original tag and message in `detail`
 * (`"ProviderUnavailableError: Overloaded"`), and keeps the original's
 * `status` and origin: the caller already has part of an answer, and only
 * the mid-stream policy ({@link MidStreamPolicy}) may decide what happens
 * next. Upstream failures (reading the body) are treated the same way.
 *
 * What is "content" is the protocol's call: for OpenAI-compatible streams a
 * choice whose delta carries text, a refusal, reasoning or a tool call (the
 * first chunk with only `role: "assistant"` is not); for Anthropic a
 * `content_block_delta`.
 *
 * @since 0.1.0
 */
import { Errors, Timeout } from "@resilient-ai/core"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Stream from "effect/Stream"
import * as ErrorMapping from "./ErrorMapping.js"
import { parseEventData } from "./internal/json.js"
import { scopedStream } from "./internal/scopedStream.js"
import type * as Sse from "./Sse.js"

// ---------------------------------------------------------------------------
// mid-stream policy
// ---------------------------------------------------------------------------

/**
 * What the resilient client does when a stream fails (the guard only tells
 * the cases apart; the client applies the policy):
 *
 * - `"terminate"`: once the stream is open (the 200 arrived) any failure
 *   ends the call with that error: no retry, no fallback, even before the
 *   first content chunk. For callers that must never pay for two generations.
 * - `"restart-if-no-output"` (the default): a failure before the first
 *   content chunk keeps its tag and is retried or falls back like any failed
 *   attempt (the caller saw nothing); after it, the `StreamInterruptedError`
 *   ends the call, so the caller never receives two answers spliced together.
 * - `"continue-with-prefix"`: before the first content chunk as
 *   `"restart-if-no-output"`; after it, the client asks again (same or next
 *   deployment) with the output received so far as an assistant prefix and
 *   streams only the continuation, so the caller sees one answer. Needs a
 *   provider that continues a prefilled assistant turn (Anthropic does;
 *   OpenAI-compatible support varies, e.g. DeepSeek's prefix completion).
 *
 * @since 0.1.0
 * @category policy
 */
export type MidStreamPolicy = "terminate" | "restart-if-no-output" | "continue-with-prefix"

/**
 * @since 0.1.0
 * @category policy
 */
export const defaultMidStreamPolicy: MidStreamPolicy = "restart-if-no-output"

// ---------------------------------------------------------------------------
// protocols
// ---------------------------------------------------------------------------

/**
 * What one chunk is to the guard.
 *
 * @since 0.1.0
 * @category models
 */
export type Classification<E> =
  | { readonly _tag: "Content" }
  | { readonly _tag: "Meta" }
  | { readonly _tag: "Terminator"; readonly emit: boolean }
  | { readonly _tag: "Error"; readonly error: E }

/**
 * Output for the caller: starts the stall timer and ends the first-token wait.
 *
 * @since 0.1.0
 * @category classification
 */
export const content: Classification<never> = { _tag: "Content" }

/**
 * Anything else that is passed through (role-only deltas, `message_start`, `ping`, usage).
 *
 * @since 0.1.0
 * @category classification
 */
export const meta: Classification<never> = { _tag: "Meta" }

/**
 * The end of a complete stream; `emit` says whether the chunk itself is passed on.
 *
 * @since 0.1.0
 * @category classification
 */
export const terminator = (emit: boolean): Classification<never> => ({ _tag: "Terminator", emit })

/**
 * The chunk is an error event.
 *
 * @since 0.1.0
 * @category classification
 */
export const error = <E>(e: E): Classification<E> => ({ _tag: "Error", error: e })

/**
 * What a classifier knows besides the chunk.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClassifyContext {
  readonly origin: ErrorMapping.Origin
  /** Epoch milliseconds on the effect `Clock`, when the chunk arrived. */
  readonly now: number
}

/**
 * How a wire protocol marks content, its end and its errors.
 *
 * @since 0.1.0
 * @category models
 */
export interface Protocol<A, E> {
  /** How the terminator looks on the wire, for messages (`"data: [DONE]"`); absent when the protocol has none. */
  readonly terminator?: string
  readonly classify: (chunk: A, context: ClassifyContext) => Classification<E>
}

/**
 * The errors a provider protocol raises from the chunks themselves.
 *
 * @since 0.1.0
 * @category models
 */
export type ProtocolError = ErrorMapping.MappedError | Errors.MalformedResponseError

const nonEmptyString = (u: unknown): boolean => typeof u === "string" && u !== ""
const nonEmptyArray = (u: unknown): boolean => Array.isArray(u) && u.length > 0

const notJson = (data: string, context: ClassifyContext): Errors.MalformedResponseError =>
  ErrorMapping.malformed(`stream data is not JSON: ${ErrorMapping.truncate(data, 60)}`, context.origin)

const hasOpenAiContent = (chunk: unknown): boolean => {
  const choices = Predicate.isRecord(chunk) ? chunk["choices"] : undefined
  if (!Array.isArray(choices)) return false
  return choices.some((choice: unknown) => {
    if (!Predicate.isRecord(choice)) return false
    if (nonEmptyString(choice["text"])) return true // legacy completions
    const delta = choice["delta"]
    if (!Predicate.isRecord(delta)) return false
    return nonEmptyString(delta["content"]) ||
      nonEmptyString(delta["refusal"]) ||
      nonEmptyString(delta["reasoning_content"]) || // DeepSeek
      nonEmptyString(delta["reasoning"]) || // OpenRouter, vLLM
      nonEmptyArray(delta["tool_calls"]) ||
      Predicate.isRecord(delta["function_call"])
  })
}

/**
 * OpenAI-compatible chat completion streams: `data: [DONE]` ends them (and
 * is not passed on); a data chunk with an `error` member, or an
 * `event: error`, is an error; a chunk that is not JSON is a
 * `MalformedResponseError`.
 *
 * @since 0.1.0
 * @category protocols
 */
export const openAi: Protocol<Sse.Event, ProtocolError> = {
  terminator: "data: [DONE]",
  classify: (event, context) => {
    const options = { ...context.origin, now: context.now }
    if (event.event === "error") return error(ErrorMapping.fromStreamError("openai", event.data, options))
    if (event.data.trim() === "[DONE]") return terminator(false)
    const json = parseEventData(event.data)
    if (Option.isNone(json)) return error(notJson(event.data, context))
    const e = Predicate.isRecord(json.value) ? json.value["error"] : undefined
    if (e !== undefined && e !== null) return error(ErrorMapping.fromStreamError("openai", event.data, options))
    return hasOpenAiContent(json.value) ? content : meta
  }
}

/**
 * Anthropic Messages streams: `message_stop` ends them (and is passed on);
 * `event: error` is an error (`overloaded_error` is a
 * `ProviderUnavailableError`); `content_block_delta` is content; `ping`,
 * `message_start`, `message_delta`, block starts and stops, and event types
 * added later are meta. The event name comes from the `event:` field, or
 * from the data's `type` when the field is missing.
 *
 * @since 0.1.0
 * @category protocols
 */
export const anthropic: Protocol<Sse.Event, ProtocolError> = {
  terminator: "event: message_stop",
  classify: (event, context) => {
    let name = event.event
    if (name === undefined) {
      const json = parseEventData(event.data)
      if (Option.isNone(json)) return error(notJson(event.data, context))
      const type = Predicate.isRecord(json.value) ? json.value["type"] : undefined
      name = typeof type === "string" ? type : ""
    }
    switch (name) {
      case "error":
        return error(ErrorMapping.fromStreamError("anthropic", event.data, { ...context.origin, now: context.now }))
      case "message_stop":
        return terminator(true)
      case "content_block_delta":
        return content
      default:
        return meta
    }
  }
}

/**
 * The protocol of a provider kind.
 *
 * @since 0.1.0
 * @category protocols
 */
export const protocolOf = (kind: ErrorMapping.ProviderKind): Protocol<Sse.Event, ProtocolError> =>
  kind === "openai" ? openAi : anthropic

/**
 * A protocol for already-decoded chunks: no terminator, no error events;
 * `isContent` (default: every chunk) says what counts as content. For the
 * timeouts alone.
 *
 * @since 0.1.0
 * @category protocols
 */
export const plain = <A>(isContent: (chunk: A) => boolean = () => true): Protocol<A, never> => ({
  classify: (chunk) => (isContent(chunk) ? content : meta)
})

// ---------------------------------------------------------------------------
// the guard
// ---------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export interface GuardOptions {
  /** Longest wait for the first content chunk, from the start of the stream. None by default. */
  readonly firstTokenTimeout?: Duration.DurationInput
  /** Longest gap between two chunks once the first arrived. None by default. */
  readonly stallTimeout?: Duration.DurationInput
  /**
   * Fail a stream that ends without the protocol's terminator. Default: true
   * when the protocol has one. Turn it off only for an upstream known to omit it.
   */
  readonly requireTerminator?: boolean
  /** Copied into the errors the guard raises. */
  readonly origin?: ErrorMapping.Origin
}

/**
 * The errors of a guarded stream: the upstream's, the protocol's, the two
 * timeouts, a cut stream, and any of them after the first content chunk.
 *
 * @since 0.1.0
 * @category models
 */
export type GuardError<E, PE> =
  | E
  | PE
  | Errors.TimeoutError
  | Errors.ConnectionError
  | Errors.StreamInterruptedError

const stringField = (u: unknown, key: string): string | undefined => {
  const v = Predicate.isRecord(u) ? u[key] : undefined
  return typeof v === "string" ? v : undefined
}

/**
 * What the next deployment is asked, after the text delivered so far as
 * its own turn, when a stream was cut and `midStreamPolicy` is
 * `continue-with-prefix`: the LLM client and the @effect/ai layer ask the
 * same.
 *
 * @since 0.1.0
 * @category continuation
 */
export const continuationInstruction =
  "Your previous answer was cut off. Continue it exactly where it stopped, without repeating anything."

/**
 * A failure after `chunksReceived` content chunks, as a
 * `StreamInterruptedError` that keeps the original tag and message in
 * `detail`, and its `status` and origin (else `origin`'s).
 *
 * @since 0.1.0
 * @category errors
 */
export const interrupted = (
  cause: unknown,
  chunksReceived: number,
  origin: ErrorMapping.Origin = {}
): Errors.StreamInterruptedError => {
  // By tag: an error built by a second copy of the core package is another class.
  if (Errors.isResilienceError(cause) && cause._tag === "StreamInterruptedError") return cause
  const tag = stringField(cause, "_tag") ?? "UnknownError"
  const text = stringField(cause, "detail") ?? stringField(cause, "message") ?? (typeof cause === "string" ? cause : "")
  const status = Predicate.isRecord(cause) && typeof cause["status"] === "number" ? cause["status"] : undefined
  const provider = stringField(cause, "provider") ?? origin.provider
  const deployment = stringField(cause, "deployment") ?? origin.deployment
  const keyName = stringField(cause, "keyName") ?? origin.keyName
  const detail = ErrorMapping.sanitize(text === "" ? tag : `${tag}: ${text}`)
  return new Errors.StreamInterruptedError({
    chunksReceived,
    ...(provider === undefined ? {} : { provider }),
    ...(deployment === undefined ? {} : { deployment }),
    ...(keyName === undefined ? {} : { keyName }),
    ...(status === undefined ? {} : { status }),
    ...(detail === undefined ? {} : { detail })
  })
}

/**
 * How a guarded stream's source becomes the chunks its protocol classifies
 * (`frame`, `flush`), and a passed chunk what the caller gets (`emit`), in
 * the guard's own stage. A provider's reader decodes SSE bytes into events
 * and events into chat chunks here instead of in a stage each: every stage
 * of an effect stream costs each pull ops of its own. Reading a 5-event
 * answer from its bytes took 688 Effect ops more than draining the bytes
 * alone with `Sse.decode`, the guard, an event decoder and the translation
 * in four stages; 244 in this one (`Sse.makeByteDecoder` and the wire's
 * reader inside the guard, whose scope is no longer a `flatMap` stage).
 *
 * @since 0.1.0
 * @category models
 */
export interface Framing<I, A, B, PE> {
  /** The chunks completed by a chunk pulled from the source. */
  readonly frame: (input: Chunk.Chunk<I>) => Iterable<A>
  /** The chunks still pending when the source ended. */
  readonly flush: () => Iterable<A>
  /** Appends what a passed chunk is for the caller to `out`; returns the error when it cannot be read. */
  readonly emit: (chunk: A, out: Array<B>) => PE | undefined
}

const unframed = <A>(): Framing<A, A, A, never> => ({
  frame: (input) => input,
  flush: () => [],
  emit: (chunk, out) => {
    out.push(chunk)
    return undefined
  }
})

/**
 * Guards a stream of chunks with a protocol and the timeouts of `options`.
 * Chunks are passed through in order (the terminator only if the protocol
 * says so); the state is fresh for every run of the stream.
 *
 * @since 0.1.0
 * @category guards
 */
export const guard = <A, PE>(
  protocol: Protocol<A, PE>,
  options: GuardOptions = {}
): <E, R>(self: Stream.Stream<A, E, R>) => Stream.Stream<A, GuardError<E, PE>, R> =>
  guardFramed(protocol, unframed<A>, options)

/**
 * {@link guard} over a source whose chunks `framing` (made afresh for every
 * run of the stream) turns into the protocol's chunks, and those into the
 * caller's. A chunk that `emit` cannot read fails the stream as an error
 * chunk of the protocol does.
 *
 * @since 0.1.0
 * @category guards
 */
export const guardFramed =
  <I, A, B, PE>(protocol: Protocol<A, PE>, framing: () => Framing<I, A, B, PE>, options: GuardOptions = {}) =>
  <E, R>(self: Stream.Stream<I, E, R>): Stream.Stream<B, GuardError<E, PE>, R> => {
    const origin = options.origin ?? {}
    const firstToken = options.firstTokenTimeout === undefined ? undefined : Duration.decode(options.firstTokenTimeout)
    const stall = options.stallTimeout === undefined ? undefined : Duration.decode(options.stallTimeout)
    const requireTerminator = (options.requireTerminator ?? true) && protocol.terminator !== undefined
    type Failure = GuardError<E, PE>

    return scopedStream(Effect.gen(function*() {
      const pull = yield* Stream.toPull(self)
      const startedAt = yield* Clock.currentTimeMillis
      const { emit, flush, frame } = framing()
      let lastChunkAt: number | undefined
      let contents = 0
      let finished = false
      let sourceEnded = false
      let pending: Option.Option<Failure> = Option.none()

      const settle = (e: Failure): Failure => (contents > 0 ? interrupted(e, contents, origin) : e)

      const timeoutError = (phase: "first-token" | "stall", timeout: Duration.Duration): Errors.TimeoutError =>
        new Errors.TimeoutError({ phase, timeout, ...origin })

      const process = (chunks: Iterable<A>, now: number): Chunk.Chunk<B> => {
        const out: Array<B> = []
        for (const a of chunks) {
          lastChunkAt = now
          const c = protocol.classify(a, { origin, now })
          if (c._tag === "Error") {
            pending = Option.some(c.error)
            break
          }
          if (c._tag !== "Terminator" || c.emit) {
            const unreadable = emit(a, out)
            if (unreadable !== undefined) {
              pending = Option.some(unreadable)
              break
            }
          }
          if (c._tag === "Content") contents++
          else if (c._tag === "Terminator") {
            finished = true
            break
          }
        }
        return Chunk.unsafeFromArray(out)
      }

      const endOfStream = (): Effect.Effect<never, Option.Option<Failure>> =>
        requireTerminator && !finished
          ? Effect.fail(Option.some<Failure>(
            new Errors.ConnectionError({
              ...origin,
              detail: `stream ended without its terminator (${protocol.terminator ?? "none"})`
            })
          ))
          : Effect.fail(Option.none())

      const timed = (now: number): Effect.Effect<Chunk.Chunk<I>, Option.Option<Failure>, R> => {
        let limit: { readonly phase: "first-token" | "stall"; readonly at: number; readonly timeout: Duration.Duration } | undefined
        if (firstToken !== undefined && contents === 0) {
          limit = { phase: "first-token", at: startedAt + Duration.toMillis(firstToken), timeout: firstToken }
        }
        if (stall !== undefined && lastChunkAt !== undefined) {
          const at = lastChunkAt + Duration.toMillis(stall)
          if (limit === undefined || at < limit.at) limit = { phase: "stall", at, timeout: stall }
        }
        if (limit === undefined) return pull
        const { at, phase, timeout } = limit
        return Timeout.failWith(Duration.millis(Math.max(0, at - now)), () => Option.some<Failure>(timeoutError(phase, timeout)))(pull)
      }

      // The source ended: what its framing still held, then the end (checked on the next pull).
      const flushed: Effect.Effect<Chunk.Chunk<B>, Option.Option<Failure>> = Effect.suspend(() => {
        sourceEnded = true
        return Effect.map(Clock.currentTimeMillis, (now) => process(flush(), now))
      })

      const step: Effect.Effect<Chunk.Chunk<B>, Option.Option<Failure>, R> = Effect.suspend(
        (): Effect.Effect<Chunk.Chunk<B>, Option.Option<Failure>, R> => {
          if (Option.isSome(pending)) return Effect.fail(pending)
          if (finished) return Effect.fail(Option.none())
          if (sourceEnded) return endOfStream()
          return Clock.currentTimeMillis.pipe(
            Effect.flatMap(timed),
            Effect.matchEffect({
              onFailure: (o) => (Option.isNone(o) ? flushed : Effect.fail(o)),
              onSuccess: (chunk) =>
                Chunk.isEmpty(chunk) ? Effect.succeed(Chunk.empty<B>()) : Effect.map(Clock.currentTimeMillis, (now) => process(frame(chunk), now))
            })
          )
        }
      ).pipe(Effect.mapError(Option.map(settle)))

      return Stream.repeatEffectChunkOption(step)
    }))
  }

/**
 * {@link guard} with the protocol of a provider kind.
 *
 * @since 0.1.0
 * @category guards
 */
export const forKind = (
  kind: ErrorMapping.ProviderKind,
  options: GuardOptions = {}
): <E, R>(self: Stream.Stream<Sse.Event, E, R>) => Stream.Stream<Sse.Event, GuardError<E, ProtocolError>, R> =>
  guard(protocolOf(kind), options)
