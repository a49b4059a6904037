/**
 * A `LanguageModel` of @effect/ai made of our deployments: an existing
 * @effect/ai program becomes resilient by the layer it is provided with,
 * and its code does not change.
 *
 * Each deployment of the configuration (`@resilient-ai/llm`'s
 * `ClientConfig`) is an @effect/ai provider model (`OpenAiLanguageModel`,
 * `AnthropicLanguageModel`) wrapped in its `Policy` (retry honouring
 * Retry-After, breaker, key pool, rate limiter, bulkhead, timeouts, in the
 * order of rule 18). The `cascade` is the fallback chain across them; a
 * static reply may end it. `generateText`, `generateObject` and
 * `streamText` all go through it; a stream falls back until its first
 * content part and is judged when it ends (rules 26 and 28).
 *
 * Keys rotate through the provider clients' `transformClient` seam
 * (`KeyRotation`); provider `AiError`s are read as our errors by
 * `AiErrors`, and the program's error channel stays `AiError`: the
 * provider's own error when there was one, else an `UnknownError` whose
 * cause is ours (`AiErrors.resilienceErrorOf` reads it back).
 *
 * Who answered, after how many attempts and fallbacks, at what cost, is in
 * {@link lastAnswer}, not in @effect/ai's response types.
 *
 * In front of the chain, with the `cache` option, core's `ResponseCache`
 * (fresh hits, single-flight, stale-if-error before a static reply), as
 * the LLM client has it. Idle deployments are probed (rule 30) and skipped
 * while unfit; a `ContextLengthError` moves to a larger window.
 *
 * Configuration fields that apply here: every deployment field but
 * `capabilities`; `cascade`, `contextFallback`, `midStreamPolicy`,
 * `maxAttemptsPerRequest`, `maxCostUsdPerRequest`, `deadline`,
 * `maxWaitBeforeFallback`. A stream cut after its first part ends the
 * call, unless `midStreamPolicy` is `continue-with-prefix`: then the next
 * deployment continues the text the program already has.
 *
 * @since 0.1.0
 */
import * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Prompt from "@effect/ai/Prompt"
import * as Response from "@effect/ai/Response"
import type * as Tool from "@effect/ai/Tool"
import type * as HttpClient from "@effect/platform/HttpClient"
import { Errors, StaticReply } from "@resilient-ai/core"
import type { Fallback, RequestBudget, StateStore } from "@resilient-ai/core"
import { ClientConfig, StreamGuard } from "@resilient-ai/llm"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as AiErrors from "./AiErrors.js"
import * as AnswerCache from "./internal/answerCache.js"
import * as Chain from "./internal/chain.js"
import * as Deployments from "./internal/deployments.js"
import * as Streaming from "./internal/stream.js"

/**
 * The @effect/ai method a call came through.
 *
 * @since 0.1.0
 * @category models
 */
export type Method = "generateText" | "generateObject" | "streamText"

/**
 * Who answered a call and how.
 *
 * @since 0.1.0
 * @category models
 */
export interface Answered {
  readonly method: Method
  /** `primary`, `backup-key` (another key than the first one tried), `fallback-provider` or `static`. */
  readonly source: Fallback.Source
  readonly deployment: string | undefined
  readonly provider: "openai" | "anthropic" | undefined
  readonly model: string | undefined
  /** The key that answered, by name. */
  readonly keyName: string | undefined
  /** Calls that reached a provider, across retries, keys and fallbacks. */
  readonly attempts: number
  readonly fallbacks: ReadonlyArray<Fallback.FallbackTaken>
  /** Errors of failed attempts, by tag, deployment and key name. */
  readonly errors: ReadonlyArray<RequestBudget.MetError>
  /** From the answer's usage and the deployment's price. */
  readonly costUsd: number
  readonly latencyMs: number
  /** Deployments not called because their health probe found them unfit (rule 30). */
  readonly skipped: ReadonlyArray<Skipped>
}

/**
 * A deployment that was not called, and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface Skipped {
  readonly deployment: string
  readonly reason: string
}

/**
 * The static reply that ends the chain.
 *
 * @since 0.1.0
 * @category options
 */
export interface StaticReplyOptions {
  /** Replies by intent of the last user text, for `generateText` and `streamText`. Default `StaticReply.defaults`. */
  readonly replies?: StaticReply.Options
  /**
   * For `generateObject`: the encoded object to answer with, by `objectName`
   * (`"*"` for any name). A call whose name has none, or whose object does
   * not decode with its schema, fails with the chain's error.
   */
  readonly objects?: Readonly<Record<string, unknown>>
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  readonly staticReply?: StaticReplyOptions
  /**
   * The response cache in front of the chain (fresh hits, single-flight,
   * stale-if-error), as the LLM client's `Extras.cache`. Off unless set.
   * Calls with a toolkit are not cached: a hit would skip their handlers.
   */
  readonly cache?: CacheOptions
}

/**
 * The response cache's options.
 *
 * @since 0.1.0
 * @category options
 */
export interface CacheOptions {
  /** How long an answer is fresh. Default 1 hour. */
  readonly timeToLive?: Duration.DurationInput
  /** Answers kept in memory; the least recently used go first. */
  readonly maxEntries?: number
  /** How long after expiry an answer may still serve when every step failed (stale-if-error). Default 1 day. */
  readonly maxStale?: Duration.DurationInput
}

/**
 * The answer of the last call this fiber made through a resilient
 * `LanguageModel` (`None` before any, and after a call that failed).
 *
 * @since 0.1.0
 * @category metadata
 */
export const currentAnswer: FiberRef.FiberRef<Option.Option<Answered>> = globalValue(
  Symbol.for("@resilient-ai/effect-ai/ResilientLanguageModel/currentAnswer"),
  () => FiberRef.unsafeMake<Option.Option<Answered>>(Option.none())
)

/**
 * Who answered the last call of this fiber: for `generateText` and
 * `generateObject` once they return, for `streamText` once the stream has
 * been read to its end.
 *
 * @since 0.1.0
 * @category metadata
 */
export const lastAnswer: Effect.Effect<Option.Option<Answered>> = FiberRef.get(currentAnswer)

/**
 * Provided beside `LanguageModel` by a layer whose chain ends in a static
 * reply ({@link layerWithStaticReply}): what lets {@link alwaysAnswers}
 * remove `AiError` from a program's type.
 *
 * @since 0.1.0
 * @category tags
 */
export class AlwaysAnswers extends Context.Tag("@resilient-ai/effect-ai/ResilientLanguageModel/AlwaysAnswers")<
  AlwaysAnswers,
  { readonly staticReply: StaticReplyOptions }
>() {}

/**
 * A program run with a layer that ends in a static reply cannot fail with
 * an `AiError` from `generateText` or `streamText`: this says so in its
 * type. The only `AiError` that can still arise is a `generateObject` whose
 * `objectName` has no static object: a configuration gap, so it becomes a
 * defect. Requires {@link AlwaysAnswers}, so it type-checks only against
 * such a layer.
 *
 * @since 0.1.0
 * @category combinators
 */
export const alwaysAnswers = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, AiError.AiError>, R | AlwaysAnswers> =>
  Effect.zipRight(
    AlwaysAnswers,
    Effect.catchAll(self, (e) =>
      AiError.isAiError(e)
        ? Effect.dieMessage(`ResilientLanguageModel: no static reply for this call (${e._tag}: ${e.message})`)
        : Effect.fail(e as Exclude<E, AiError.AiError>))
  )

/** A finish part of a static reply: it spent no tokens. */
const staticFinish = () =>
  Response.makePart("finish", {
    reason: "stop",
    usage: new Response.Usage({ inputTokens: 0, outputTokens: 0, totalTokens: 0 })
  })

/** A static reply as stream parts: no tool parts, so they are parts of any toolkit's stream. */
const textParts = (
  text: string
): ReadonlyArray<Response.TextStartPart | Response.TextDeltaPart | Response.TextEndPart | Response.FinishPart> => [
  Response.makePart("text-start", { id: "static" }),
  Response.makePart("text-delta", { id: "static", delta: text }),
  Response.makePart("text-end", { id: "static" }),
  staticFinish()
]

/** A static reply as an answer's content; of any toolkit, as above. */
const textContent = (text: string): Array<Response.TextPart | Response.FinishPart> => [
  Response.makePart("text", { text }),
  staticFinish()
]

type Message = Prompt.Message | Prompt.MessageEncoded

const textOf = (message: Message): string =>
  typeof message.content === "string"
    ? message.content
    : message.content.map((p) => (p.type === "text" ? p.text : "")).join(" ")

/** The text of the prompt's last user message, for the static reply's intent: read from the raw input, never decoded (a decode could fail, and the static reply must not). */
const lastUserText = (prompt: Prompt.RawInput): string => {
  if (typeof prompt === "string") return prompt
  const messages: ReadonlyArray<Message> = Prompt.isPrompt(prompt) ? prompt.content : Array.from(prompt)
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]
    if (m !== undefined && m.role === "user") return textOf(m)
  }
  return ""
}

/**
 * Our errors back to `AiError` for the program; its own errors (a tool
 * handler's) as they are. Every method of `LanguageModel` has `AiError` in
 * its error type (`LanguageModel.ExtractError`), so what comes out is an `E`:
 * the one cast of the module, because that type is a conditional type
 * TypeScript cannot see through.
 */
const restore = (method: Method) => <E>(e: Exclude<E, AiError.AiError> | Errors.ResilienceError): E =>
  (Errors.isResilienceError(e) ? AiErrors.toAiError(e, method) : e) as E

/** The call's answer, and who gave it in {@link currentAnswer}. */
const told = <A, E, R>(
  self: Effect.Effect<{ readonly value: A; readonly answered: Answered }, E, R>
): Effect.Effect<A, E, R> =>
  Effect.matchCauseEffect(self, {
    onFailure: (cause) => Effect.zipRight(FiberRef.set(currentAnswer, Option.none()), Effect.failCause(cause)),
    onSuccess: ({ answered, value }) => Effect.as(FiberRef.set(currentAnswer, Option.some(answered)), value)
  })

/** A text answer as a cache entry and back. */
const textCodec = <Tools extends Record<string, Tool.Any>>(): AnswerCache.Codec<LanguageModel.GenerateTextResponse<Tools>, never> => ({
  toEntry: (response, degraded) => Effect.succeed({ content: AnswerCache.contentOf(response.content), degraded }),
  fromEntry: (entry) => Effect.succeed(Option.some(new LanguageModel.GenerateTextResponse<Tools>(Array.from(entry.content))))
})

/** The prompt that asks the next deployment to continue `text`, which the caller already has (continue-with-prefix). */
const continuationPrompt = (prompt: Prompt.RawInput, text: string): Prompt.Prompt =>
  Prompt.merge(Prompt.make(prompt), [
    { role: "assistant", content: text },
    { role: "user", content: StreamGuard.continuationInstruction }
  ])

/** The static object for a `generateObject` call, decoded with its schema; `None` when there is none or it does not decode. */
const staticObject = <A, I, R>(
  objects: Readonly<Record<string, unknown>> | undefined,
  objectName: string | undefined,
  schema: Schema.Schema<A, I, R>
): Effect.Effect<Option.Option<{ readonly value: A; readonly json: string }>, never, R> => {
  const encoded = objects === undefined ? undefined : objects[objectName ?? "*"] ?? objects["*"]
  if (encoded === undefined) return Effect.succeed(Option.none())
  return Effect.option(Effect.map(Schema.decodeUnknown(schema)(encoded), (value) => ({ value, json: JSON.stringify(encoded) })))
}

/**
 * Builds the resilient `LanguageModel`: one key pool and one `Policy` per
 * deployment (pools shared by name), one @effect/ai provider model each.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: ClientConfig.ClientConfig,
  options: Options = {}
): Effect.Effect<
  LanguageModel.Service,
  Errors.InvalidConfigError,
  HttpClient.HttpClient | StateStore.StateStore | Scope.Scope
> =>
  Effect.gen(function*() {
    const handles = yield* Deployments.make(config)
    const cascade: Chain.Cascade = {
      steps: Deployments.inOrder(handles, config.cascade),
      largerWindows: ClientConfig.contextFallbackOrder(config).flatMap((d) =>
        Deployments.inOrder(handles, [d.name]).map((handle) => ({
          handle,
          takesOver: ClientConfig.takesOverContextLength(config, d)
        }))
      ),
      limits: {
        ...(config.maxAttemptsPerRequest === undefined ? {} : { maxAttempts: config.maxAttemptsPerRequest }),
        ...(config.maxCostUsdPerRequest === undefined ? {} : { maxCostUsd: config.maxCostUsdPerRequest }),
        ...(config.deadline === undefined ? {} : { deadline: config.deadline })
      },
      maxWaitBeforeFallback: config.maxWaitBeforeFallback === undefined
        ? 1_000
        : Duration.toMillis(Duration.decode(config.maxWaitBeforeFallback))
    }
    const cache = options.cache === undefined ? undefined : yield* Effect.mapError(
      AnswerCache.make(options.cache),
      (e) => Errors.withConfigPaths(e, Errors.configPathUnder("cache"))
    )
    const statics = options.staticReply
    const replies = statics === undefined ? undefined : yield* StaticReply.make(statics.replies)
    /** The static reply's text for a prompt, when the layer has one. */
    const staticText = (prompt: Prompt.RawInput): Option.Option<string> =>
      replies === undefined ? Option.none() : Option.some(replies.reply(lastUserText(prompt)).text)

    const generateText: LanguageModel.Service["generateText"] = (request) =>
      told(Effect.mapError(
        AnswerCache.through(cache, AnswerCache.keyOf(request), "generateText", textCodec(), (stale) =>
          Chain.run(cascade, {
            method: "generateText",
            usage: (r) => r.usage,
            streams: false,
            ...(stale === undefined ? {} : { stale }),
            staticReply: replies === undefined
              ? undefined
              : () => Option.map(staticText(request.prompt), (text) => new LanguageModel.GenerateTextResponse(textContent(text)))
          }, (h) => h.model.generateText(request))),
        restore("generateText")
      ))

    const generateObject: LanguageModel.Service["generateObject"] = (request) => {
      const encode = Schema.encode(request.schema)
      const decode = Schema.decodeUnknown(request.schema)
      const codec = <Tools extends Record<string, Tool.Any>>(): AnswerCache.Codec<
        LanguageModel.GenerateObjectResponse<Tools, Schema.Schema.Type<typeof request.schema>>,
        Schema.Schema.Context<typeof request.schema>
      > => ({
        toEntry: (response, degraded) =>
          Effect.map(Effect.either(encode(response.value)), (object) => ({
            content: AnswerCache.contentOf(response.content),
            object: Either.getOrUndefined(object),
            degraded: degraded || Either.isLeft(object)
          })),
        fromEntry: (entry) =>
          Effect.map(
            Effect.option(decode(entry.object)),
            Option.map((value) => new LanguageModel.GenerateObjectResponse<Tools, typeof value>(value, Array.from(entry.content)))
          )
      })
      return Effect.flatMap(staticObject(statics?.objects, request.objectName, request.schema), (object) =>
        told(Effect.mapError(
          AnswerCache.through(cache, AnswerCache.keyOf(request), "generateObject", codec(), (stale) =>
            Chain.run(cascade, {
              method: "generateObject",
              usage: (r) => r.usage,
              streams: false,
              ...(stale === undefined ? {} : { stale }),
              staticReply: Option.isNone(object)
                ? undefined
                : () =>
                  Option.some(new LanguageModel.GenerateObjectResponse(object.value.value, textContent(object.value.json)))
            }, (h) => h.model.generateObject(request))),
          restore("generateObject")
        )))
    }

    const streamText: LanguageModel.Service["streamText"] = (request) =>
      Streaming.through(cascade, {
        open: (h, continued) =>
          h.model.streamText(
            continued === undefined ? request : { ...request, prompt: continuationPrompt(request.prompt, continued) }
          ),
        staticReply: replies === undefined ? undefined : () => Option.map(staticText(request.prompt), textParts),
        restore: restore("streamText"),
        answered: (answered) => FiberRef.set(currentAnswer, answered),
        cache,
        key: AnswerCache.keyOf(request),
        parts: (parts) => parts,
        midStreamPolicy: config.midStreamPolicy
      })

    return { generateText, generateObject, streamText }
  })

/**
 * The resilient `LanguageModel` as a layer: provide it in place of
 * `OpenAiLanguageModel.layer(...)` / `AnthropicLanguageModel.layer(...)`
 * and their client layers. Needs an `HttpClient` and a `StateStore`
 * (`StateStore.layerMemory`, or the Redis store to share breaker and key
 * health between instances).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: ClientConfig.ClientConfig,
  options: Options = {}
): Layer.Layer<LanguageModel.LanguageModel, Errors.InvalidConfigError, HttpClient.HttpClient | StateStore.StateStore> =>
  Layer.scoped(LanguageModel.LanguageModel, make(config, options))

/**
 * {@link layer} with a static reply as the chain's last step, and the
 * {@link AlwaysAnswers} that says so to {@link alwaysAnswers}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithStaticReply = (
  config: ClientConfig.ClientConfig,
  staticReply: StaticReplyOptions = {},
  options: Omit<Options, "staticReply"> = {}
): Layer.Layer<
  LanguageModel.LanguageModel | AlwaysAnswers,
  Errors.InvalidConfigError,
  HttpClient.HttpClient | StateStore.StateStore
> => Layer.merge(layer(config, { ...options, staticReply }), Layer.succeed(AlwaysAnswers, { staticReply }))

/**
 * {@link layer} from the JSON configuration, decoded with its errors named by field.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromJson = (
  json: string,
  options: Options = {}
): Layer.Layer<LanguageModel.LanguageModel, Errors.InvalidConfigError, HttpClient.HttpClient | StateStore.StateStore> =>
  Layer.scoped(LanguageModel.LanguageModel, Effect.flatMap(ClientConfig.fromJson(json), (config) => make(config, options)))
