/**
 * The response cache in front of the chain (rule 18), for @effect/ai calls:
 * core's `ResponseCache` (fresh hits, single-flight, stale-if-error), the
 * one the LLM client uses, keyed and filled the @effect/ai way.
 *
 * - The key is the method, the prompt (as @effect/ai's own JSON encoding of
 *   it), and for `generateObject` the object's name and the JSON Schema of
 *   its schema. `streamText` and `generateText` share entries: a streamed
 *   answer serves a later `generateText` and the other way round.
 * - A call with a toolkit is not cached: a hit would skip its tool handlers,
 *   whose effects are the program's. A prompt or schema that has no JSON
 *   form is not cached either.
 * - An entry keeps the answer's content without tool parts: text,
 *   reasoning, files, sources, metadata, the finish part. A stream's parts
 *   are gathered into that content; a hit is handed to a stream as parts
 *   again (as `Chunks.fromResponse` does for the LLM client). An object is
 *   kept encoded and decoded with the caller's schema on a hit.
 * - Static replies and stale entries are never stored (`degraded`).
 */
import * as Prompt from "@effect/ai/Prompt"
import * as Response from "@effect/ai/Response"
import { ResponseCache } from "@resilient-ai/core"
import type { Errors } from "@resilient-ai/core"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as JSONSchema from "effect/JSONSchema"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Answered, Method } from "../ResilientLanguageModel.js"

/** What a cached answer keeps: every part that is not about tools. */
export type CachedPart =
  | Response.TextPart
  | Response.ReasoningPart
  | Response.FilePart
  | Response.DocumentSourcePart
  | Response.UrlSourcePart
  | Response.ResponseMetadataPart
  | Response.FinishPart

/** A cached part handed to a stream. */
export type CachedStreamPart =
  | Response.TextStartPart
  | Response.TextDeltaPart
  | Response.TextEndPart
  | Response.ReasoningStartPart
  | Response.ReasoningDeltaPart
  | Response.ReasoningEndPart
  | Response.FilePart
  | Response.DocumentSourcePart
  | Response.UrlSourcePart
  | Response.ResponseMetadataPart
  | Response.FinishPart

/** One cache entry. */
export interface Entry {
  readonly content: ReadonlyArray<CachedPart>
  /** `generateObject`'s object, encoded with its schema. */
  readonly object?: unknown
  /** A static reply or a stale entry: handed to the caller, never stored. */
  readonly degraded: boolean
}

/** What identifies a call's answer. */
export interface Key {
  readonly method: "text" | "object"
  readonly prompt: string
  readonly objectName: string | undefined
  readonly schema: unknown
}

/** @since 0.1.0 */
export interface Options {
  /** How long an answer is fresh. Default 1 hour. */
  readonly timeToLive?: Duration.DurationInput
  /** Answers kept in memory (least recently used go first). */
  readonly maxEntries?: number
  /** How long after expiry an answer may still serve when every step failed (stale-if-error). Default 1 day. */
  readonly maxStale?: Duration.DurationInput
}

export type Service = ResponseCache.Service<Key, Entry>

const fields: ReadonlyArray<keyof Key> = ["method", "prompt", "objectName", "schema"]

export const make = (options: Options): Effect.Effect<Service, Errors.InvalidConfigError, Scope.Scope> =>
  ResponseCache.make<Key, Entry>({
    name: "effect-ai",
    fields,
    cacheable: (entry) => !entry.degraded,
    ...options
  })

const encodePrompt = Schema.encodeEither(Prompt.FromJson)

/** The key of a call; `undefined` when it is not cached (a toolkit, a prompt or schema without a JSON form). */
export const keyOf = (request: {
  readonly prompt: Prompt.RawInput
  readonly toolkit?: unknown
  readonly objectName?: string | undefined
  readonly schema?: Schema.Schema.Any
}): Key | undefined => {
  if (request.toolkit !== undefined) return undefined
  const prompt = Either.flatMap(
    Either.try(() => Prompt.make(request.prompt)),
    (p) => encodePrompt(p)
  )
  if (Either.isLeft(prompt)) return undefined
  if (request.schema === undefined) return { method: "text", prompt: prompt.right, objectName: undefined, schema: null }
  const schema = request.schema
  const json = Either.try(() => JSONSchema.make(schema))
  return Either.isLeft(json)
    ? undefined
    : { method: "object", prompt: prompt.right, objectName: request.objectName, schema: json.right }
}

const kept: ReadonlySet<string> = new Set(["text", "reasoning", "file", "source", "response-metadata", "finish"])
const isKept = (part: { readonly type: string }): part is CachedPart => kept.has(part.type)

/** An answer's content as an entry's. */
export const contentOf = (content: ReadonlyArray<{ readonly type: string }>): ReadonlyArray<CachedPart> =>
  content.filter(isKept)

const isTextDelta = (p: { readonly type: string }): p is Response.TextDeltaPart => p.type === "text-delta"
const isReasoningDelta = (p: { readonly type: string }): p is Response.ReasoningDeltaPart => p.type === "reasoning-delta"
const passesThrough = (p: { readonly type: string }): p is Exclude<CachedPart, Response.TextPart | Response.ReasoningPart> =>
  p.type === "file" || p.type === "source" || p.type === "response-metadata" || p.type === "finish"

/** A stream's parts gathered into an answer's content: the deltas of each text or reasoning block joined, in the order the blocks started. */
export const gather = (parts: ReadonlyArray<{ readonly type: string }>): ReadonlyArray<CachedPart> => {
  interface Block {
    readonly kind: "text" | "reasoning"
    text: string
  }
  const out: Array<CachedPart | Block> = []
  const blocks = new Map<string, Block>()
  for (const p of parts) {
    if (isTextDelta(p) || isReasoningDelta(p)) {
      const kind = isTextDelta(p) ? "text" : "reasoning"
      const block = blocks.get(`${kind}:${p.id}`)
      if (block === undefined) {
        const opened: Block = { kind, text: p.delta }
        blocks.set(`${kind}:${p.id}`, opened)
        out.push(opened)
      } else {
        block.text += p.delta
      }
    } else if (passesThrough(p)) {
      out.push(p)
    }
  }
  return out.map((p) => ("kind" in p ? Response.makePart(p.kind, { text: p.text }) : p))
}

/** An entry's content as stream parts. */
export const toStreamParts = (content: ReadonlyArray<CachedPart>): ReadonlyArray<CachedStreamPart> =>
  content.flatMap((p, i): ReadonlyArray<CachedStreamPart> => {
    const id = `cache-${i}`
    switch (p.type) {
      case "text":
        return [
          Response.makePart("text-start", { id }),
          Response.makePart("text-delta", { id, delta: p.text }),
          Response.makePart("text-end", { id })
        ]
      case "reasoning":
        return [
          Response.makePart("reasoning-start", { id }),
          Response.makePart("reasoning-delta", { id, delta: p.text }),
          Response.makePart("reasoning-end", { id })
        ]
      default:
        return [p]
    }
  })

/** How one method's answers become entries and back. */
export interface Codec<A, R> {
  /** The entry of an answer; `degraded` when it must not be stored. */
  readonly toEntry: (value: A, degraded: boolean) => Effect.Effect<Entry, never, R>
  /** The answer of an entry; `None` when it cannot be read back (an object that no longer decodes). */
  readonly fromEntry: (entry: Entry) => Effect.Effect<Option.Option<A>, never, R>
}

/** The cache's stale entry as the chain's step before the static reply (`Fallback.orCache`). */
export type StaleStep<A> = Effect.Effect<Option.Option<{ readonly value: A; readonly ageMs: number; readonly stale: boolean }>>

const degradedSources: ReadonlySet<string> = new Set(["static", "cache", "stale-cache"])

/**
 * A call through the cache: a fresh entry answers; else `run` (the chain,
 * with the cache's stale entry as its step before a static reply) computes,
 * shared with identical calls in flight, and a good answer is stored. A
 * call without a cache or a key runs the chain alone.
 */
export const through = <A, E, R>(
  cache: Service | undefined,
  key: Key | undefined,
  method: Method,
  codec: Codec<NoInfer<A>, R>,
  run: (stale: StaleStep<A> | undefined) => Effect.Effect<{ readonly value: A; readonly answered: Answered }, E, R>
): Effect.Effect<{ readonly value: A; readonly answered: Answered }, E, R> => {
  if (cache === undefined || key === undefined) return run(undefined)
  return Effect.flatMap(Effect.context<R>(), (context) => {
    const stale: StaleStep<A> = Effect.flatMap(cache.lookupStale(key), (hit) =>
      Option.isNone(hit)
        ? Effect.succeed(Option.none())
        : Effect.map(
          Effect.provide(codec.fromEntry(hit.value.value), context),
          Option.map((value) => ({ value, ageMs: hit.value.ageMs, stale: hit.value.source === "stale" }))
        ))
    let computed: { readonly value: A; readonly answered: Answered } | undefined
    let ranHere = false
    const compute = Effect.suspend(() => {
      ranHere = true
      return Effect.flatMap(run(stale), (answer) => {
        computed = answer
        return codec.toEntry(answer.value, degradedSources.has(answer.answered.source))
      })
    })
    // A flight cut after its parts reached the caller that started it: a caller that joined it received none of
    // them, so that cut is not its answer (it may still fall back, rule 28): it runs the chain for itself.
    const got = Effect.catchIf(
      Effect.map(cache.get(key, compute), (cached) => ({ cached })),
      (e) => !ranHere && Predicate.isTagged(e, "StreamInterruptedError"),
      () => Effect.map(run(stale), (own) => ({ own }))
    )
    return Effect.flatMap(Clock.currentTimeMillis, (start) =>
      Effect.flatMap(got, (result) => {
        if ("own" in result) return Effect.succeed(result.own)
        const cached = result.cached
        if (cached.source === "computed" && computed !== undefined) return Effect.succeed(computed)
        return Effect.flatMap(codec.fromEntry(cached.value), (value) =>
          Option.isNone(value)
            ? run(stale)
            : Effect.map(Clock.currentTimeMillis, (now) => ({
              value: value.value,
              answered: {
                method,
                source: cached.source === "stale" ? "stale-cache" : "cache",
                deployment: undefined,
                provider: undefined,
                model: undefined,
                keyName: undefined,
                attempts: 0,
                fallbacks: [],
                errors: [],
                costUsd: 0,
                latencyMs: now - start,
                skipped: []
              }
            })))
      }))
  })
}
