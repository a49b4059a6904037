/**
 * `streamText` through the cascade, by the LLM client's mid-stream rules
 * (docs/semantics.md rules 26 and 28, `ResilientClient.streamThrough`):
 *
 * - An attempt opens the deployment's stream and reads it, under the
 *   attempt's time limit, up to its first content part, buffering what came
 *   before (`response-metadata`, `text-start`...). A failure until then is an
 *   ordinary failure of the attempt: retried, counted, fallen back from.
 *   With `midStreamPolicy: "terminate"` the first part of any kind ends
 *   that phase, as the LLM client's first chunk of any kind does.
 * - From the first content part on, every part goes to the caller as it
 *   comes, and the request belongs to that stream: a failure is a
 *   `StreamInterruptedError`, which the breaker counts (the attempt is one
 *   `Policy` call that lasts until the stream ends) and nothing falls back
 *   from, so no answer is ever mixed from two models.
 * - An `error` part (an error event inside a 200 stream) is a failure at the
 *   point where it comes.
 *
 * The chain runs in a fiber of the stream's scope: a caller that stops
 * reading interrupts it.
 */
import * as AiError from "@effect/ai/AiError"
import * as Response from "@effect/ai/Response"
import { Errors } from "@resilient-ai/core"
import { StreamGuard } from "@resilient-ai/llm"
import type { ClientConfig, ErrorMapping } from "@resilient-ai/llm"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as AiErrors from "../AiErrors.js"
import * as AnswerCache from "./answerCache.js"
import * as Chain from "./chain.js"
import type { Handle } from "./deployments.js"

/** Where the attempts of one streamed call hand their parts. */
interface Sink<P> {
  readonly offerAll: (parts: ReadonlyArray<P>) => Effect.Effect<unknown>
  /** The stream that was handed on broke. */
  cut: Errors.StreamInterruptedError | undefined
}

/** What a streamed call answers: the usage of its finish part, and the parts of a static reply not yet handed on. */
export interface Streamed<P> {
  readonly usage: Response.Usage | undefined
  readonly parts: ReadonlyArray<P>
}

/** What this module reads of a part; the toolkit's own part types pass through untouched. */
interface AnyPart {
  readonly type: Response.StreamPart<{}>["type"] | "tool-call" | "tool-result"
}

/** Parts that open something and say nothing yet: buffered until the first content part. */
const opening: ReadonlySet<string> = new Set(["response-metadata", "text-start", "reasoning-start", "tool-params-start"])

const isUsage = Schema.is(Response.Usage)

/** The usage a finish part reports. */
const usageOf = (part: AnyPart): Response.Usage | undefined =>
  part.type === "finish" && Predicate.hasProperty(part, "usage") && isUsage(part.usage) ? part.usage : undefined

/** The payload of an `error` part (`undefined` for any other part). */
const errorPayloadOf = (part: AnyPart): { readonly payload: unknown } | undefined =>
  part.type === "error" ? { payload: Predicate.hasProperty(part, "error") ? part.error : undefined } : undefined

/** An `error` part's payload as our error, from the deployment and key it came on. */
const errorPartOf = (h: Handle, origin: ErrorMapping.Origin, payload: unknown) =>
  Effect.map(Clock.currentTimeMillis, (now) => AiErrors.fromStreamErrorPart(h.config.provider, payload, { now, ...origin }))

/**
 * One streamed attempt: opened and read to its first content part under the
 * attempt's time limit, then handed on to the end. Its own scope closes the
 * deployment's stream (and socket) whether it ends, fails or is retried.
 */
const attemptOn = <P extends AnyPart, E, R>(
  sink: Sink<P>,
  /** `midStreamPolicy: "terminate"`: the first part of any kind, an opening one included, makes the call the stream's. */
  terminates: boolean,
  open: (h: Handle) => Stream.Stream<P, E, R>
): Chain.Attempt<Streamed<P>, E | Errors.ResilienceError, R> =>
(h, attempt) =>
  Effect.scoped(Effect.gen(function*() {
    const origin: ErrorMapping.Origin = {
      provider: h.config.provider,
      deployment: h.config.name,
      ...(attempt.key === undefined ? {} : { keyName: attempt.key.name })
    }
    let usage: Response.Usage | undefined
    const note = (part: P) => {
      usage = usageOf(part) ?? usage
    }
    const opened = yield* attempt.timeLimit(Effect.gen(function*() {
      const pull = yield* Stream.toPull(open(h))
      const buffered: Array<P> = []
      for (;;) {
        const next = yield* Effect.either(pull)
        if (Either.isLeft(next)) {
          if (Option.isNone(next.left)) return { pull, buffered, ended: true }
          return yield* Effect.fail(next.left.value)
        }
        for (const part of Chunk.toReadonlyArray(next.right)) {
          const failed = errorPayloadOf(part)
          if (failed !== undefined) return yield* Effect.flip(errorPartOf(h, origin, failed.payload))
          note(part)
          buffered.push(part)
        }
        if (buffered.some((p) => terminates || !opening.has(p.type))) return { pull, buffered, ended: false }
      }
    }))
    let handed = 0
    const handOn = (parts: ReadonlyArray<P>) => {
      handed += parts.length
      return sink.offerAll(parts)
    }
    yield* handOn(opened.buffered)
    if (opened.ended) return { usage, parts: [] }
    // From here on a failure is a cut of what the caller already has (rule 26).
    const cut = (cause: unknown) => {
      const interrupted = StreamGuard.interrupted(cause, handed, origin)
      sink.cut = interrupted
      return Effect.fail(interrupted)
    }
    for (;;) {
      const next = yield* Effect.either(opened.pull)
      if (Either.isRight(next)) {
        const parts = Chunk.toReadonlyArray(next.right)
        const failed = parts.findIndex((p) => p.type === "error")
        const good = failed === -1 ? parts : parts.slice(0, failed)
        good.forEach(note)
        yield* handOn(good)
        const bad = parts[failed]
        const payload = bad === undefined ? undefined : errorPayloadOf(bad)
        if (payload !== undefined) return yield* cut(yield* errorPartOf(h, origin, payload.payload))
        continue
      }
      if (Option.isNone(next.left)) return { usage, parts: [] }
      const e = next.left.value
      // A tool handler's own error is the program's, as `generateText` gives it: no cut, nothing the provider did.
      if (!AiError.isAiError(e)) return yield* (Errors.isResilienceError(e) ? cut(e) : Effect.fail(e))
      const now = yield* Clock.currentTimeMillis
      return yield* cut(AiErrors.toResilienceError(e, { now, ...origin }))
    }
  }))

/** How one `streamText` call is served. */
export interface StreamCall<P, E, R> {
  /** The deployment's stream; after a cut, `continued` is the text the caller already has (continue-with-prefix). */
  readonly open: (h: Handle, continued: string | undefined) => Stream.Stream<P, E, R>
  readonly staticReply: ((error: Errors.ResilienceError) => Option.Option<ReadonlyArray<NoInfer<P>>>) | undefined
  /** Our errors back to the program's (`AiError`). */
  readonly restore: (error: Exclude<E, AiError.AiError> | Errors.ResilienceError) => E
  /** Told who answered, in the caller's fiber, once the stream has been read to its end; `None` when it failed. */
  readonly answered: (answer: Option.Option<Chain.Answered>) => Effect.Effect<void>
  readonly cache: AnswerCache.Service | undefined
  readonly key: AnswerCache.Key | undefined
  /** The parts this module makes (a cache hit, the end of a cut block) as the call's part type. */
  readonly parts: (parts: ReadonlyArray<AnswerCache.CachedStreamPart>) => ReadonlyArray<NoInfer<P>>
  /**
   * The configuration's `midStreamPolicy` (default `restart-if-no-output`):
   * whether an opening part already makes the call the stream's
   * (`terminate`), and whether after a cut the next deployment continues
   * the text (`continue-with-prefix`).
   */
  readonly midStreamPolicy: ClientConfig.ClientConfig["midStreamPolicy"]
}

/** The text a stream's parts delivered, and the text blocks they left open. */
const delivered = (parts: ReadonlyArray<AnyPart>): { readonly text: string; readonly open: ReadonlyArray<string> } => {
  let text = ""
  const open = new Set<string>()
  for (const p of parts) {
    if (p.type === "text-start" && Predicate.hasProperty(p, "id") && typeof p.id === "string") open.add(p.id)
    if (p.type === "text-end" && Predicate.hasProperty(p, "id") && typeof p.id === "string") open.delete(p.id)
    if (p.type === "text-delta" && Predicate.hasProperty(p, "delta") && typeof p.delta === "string") text += p.delta
  }
  return { text, open: [...open] }
}

/**
 * `streamText` through the cache and the cascade. The caller's stream ends
 * with the chain: with its parts, a cached answer's or a static reply's, or
 * the chain's error as an `AiError` (`restore`). With continue-with-prefix
 * a cut is not the end while text was delivered: the open text blocks are
 * closed, and the chain runs again without the deployment that was cut,
 * asked to continue that text; its parts follow (not its
 * `response-metadata`: the caller already has the answer's), so the
 * program reads one answer. With no other deployment to ask, the cut is
 * the stream's error.
 */
export const through = <P extends AnyPart, E, R>(
  cascade: Chain.Cascade,
  streamCall: StreamCall<P, E, R>
): Stream.Stream<P, E, R> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<P, E>(16)
    // The chain may outlive this caller: with a cache, an identical call waits on the same flight. A caller that
    // stops reading shuts its buffer, so the flight's parts no longer wait for room there (16 of them would hold
    // it, and the call waiting on it, for ever); they are still gathered for the cache's entry.
    yield* Effect.addFinalizer(() => mailbox.shutdown)
    // What reached the caller, kept only for what reads it: the cache's entry, a continuation's prefix.
    const continueWithPrefix = streamCall.midStreamPolicy === "continue-with-prefix"
    const keeps = (streamCall.cache !== undefined && streamCall.key !== undefined) || continueWithPrefix
    const handed: Array<P> = []
    let answer: Chain.Answered | undefined
    const codec: AnswerCache.Codec<Streamed<P>, never> = {
      toEntry: (_, degraded) => Effect.succeed({ content: AnswerCache.gather(handed), degraded }),
      fromEntry: (entry) =>
        Effect.succeed(Option.some({ usage: undefined, parts: streamCall.parts(AnswerCache.toStreamParts(entry.content)) }))
    }
    const staticReply = streamCall.staticReply
    /** One run of the chain, its attempts handing parts on through `sink`. */
    const run = (sink: Sink<P>, continued: { readonly text: string; readonly cut: string } | undefined) =>
      AnswerCache.through<Streamed<P>, Exclude<E, AiError.AiError> | Errors.ResilienceError, R>(
        continued === undefined ? streamCall.cache : undefined,
        streamCall.key,
        "streamText",
        codec,
        (stale) =>
          Chain.run(cascade, {
            method: "streamText",
            usage: (s) => s.usage,
            streams: true,
            ...(continued === undefined ? {} : { exclude: continued.cut }),
            ...(stale === undefined ? {} : { stale }),
            // A continuation has text before it: a static reply after that would be a mixed answer.
            staticReply: staticReply === undefined || continued !== undefined
              ? undefined
              : (error) => Option.map(staticReply(error), (parts) => ({ usage: undefined, parts }))
          }, attemptOn(sink, streamCall.midStreamPolicy === "terminate", (h) => streamCall.open(h, continued?.text)))
      )
    const sink: Sink<P> = {
      offerAll: (parts) => {
        if (keeps) handed.push(...parts)
        return mailbox.offerAll(parts)
      },
      cut: undefined
    }
    const ended = (value: Streamed<P>, a: Chain.Answered) => {
      answer = a
      return Effect.zipRight(mailbox.offerAll(value.parts), mailbox.end)
    }
    /** After a cut with text delivered: the open blocks closed, then the next deployment's continuation. */
    const continuation = (cut: Errors.StreamInterruptedError) => {
      const so = delivered(handed)
      const next: Sink<P> = {
        offerAll: (parts) => mailbox.offerAll(parts.filter((p) => p.type !== "response-metadata")),
        cut: undefined
      }
      const from = cut.deployment ?? "chain"
      return Effect.zipRight(
        mailbox.offerAll(streamCall.parts(so.open.map((id) => Response.makePart("text-end", { id })))),
        Effect.matchCauseEffect(run(next, { text: so.text, cut: from }), {
          onFailure: (cause) => mailbox.failCause(Cause.map(cause, streamCall.restore)),
          onSuccess: ({ answered: a, value }) =>
            ended(value, {
              ...a,
              source: "fallback-provider",
              fallbacks: [{ from, to: a.deployment ?? "chain", tag: cut._tag }, ...a.fallbacks]
            })
        })
      )
    }
    yield* Effect.forkScoped(Effect.matchCauseEffect(run(sink, undefined), {
      onFailure: (cause) => {
        const cut = sink.cut
        const canContinue = cut !== undefined && continueWithPrefix && delivered(handed).text !== "" &&
          cascade.steps.some((h) => h.config.name !== cut.deployment)
        if (canContinue) return continuation(cut)
        // Once parts were handed on, a cut is the answer: nothing (a stale entry) may follow it.
        return mailbox.failCause(Cause.map(cut === undefined ? cause : Cause.fail(cut), streamCall.restore))
      },
      onSuccess: ({ answered: a, value }) =>
        sink.cut !== undefined ? mailbox.fail(streamCall.restore(sink.cut)) : ended(value, a)
    }))
    return Stream.concat(
      Mailbox.toStream(mailbox),
      Stream.execute(Effect.suspend(() => (answer === undefined ? Effect.void : streamCall.answered(Option.some(answer)))))
    ).pipe(
      // A call that failed has no answer to tell, as `generateText`'s does not: the last one told is not kept.
      Stream.tapErrorCause(() => streamCall.answered(Option.none()))
    )
  }))
