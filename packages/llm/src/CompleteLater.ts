/**
 * Degraded answers complete themselves (docs/semantics.md rule 32): a
 * request the client answered with a static reply or a stale cache entry is
 * queued, and a real model answers it later through the normal cascade.
 *
 * - Only degraded answers are queued (`static`, `stale-cache`); a fresh cache
 *   hit is a real answer. A request marked `idempotent: false` or
 *   `fallbackAfterTimeout: false` is never queued: completing it would send
 *   it again (rule 31).
 * - The degraded answer says what happened in `ChatResult.completion`: the
 *   request id its completion will carry, and `queued`, `duplicate` (an
 *   identical request is already queued: one completion serves both) or
 *   `refused` (the queue is full). The request itself never fails for it.
 * - The request id is the request's cache key (the SHA-256 of the fields that
 *   change the answer), so identical requests share one id and one completion.
 * - A completion runs the cascade without the cache (a stale entry must not
 *   answer it again), with the request's own options; it is retried on the
 *   schedule while its error is fallbackable (`DeferredCompletion`'s rules:
 *   bounded queue, head-of-line backoff, Retry-After wins). Its answer goes to
 *   the cache (when the client has one, so the next identical request is a
 *   hit), then to `completions`, then to `onCompleted`.
 * - Closing the client's scope drops what is still queued, in one logged line.
 *
 * `DeferredCompletion` (core) is the queue; this module is what the client
 * adds to it: which answers qualify, the request id, and where answers go.
 *
 * @since 0.1.0
 */
import { DeferredCompletion, type Errors } from "@resilient-ai/core"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Chat from "./Chat.js"
import type * as ClientConfig from "./ClientConfig.js"
import type * as ResilientClient from "./ResilientClient.js"

/**
 * `completeLater` in the client's `Extras`. Fields given here win over the
 * config file's `completeLater`.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Requests the queue holds, not counting those in progress. Default 1 000. */
  readonly capacity?: number
  /** Attempts per request, the first included. Default 10 (about 4 minutes of trying on the default schedule). */
  readonly maxAttempts?: number
  /** Requests completed at once. Default 1. */
  readonly concurrency?: number
  /** The wait between attempts. Default exponential from `baseDelay` (1 s), each delay capped at `maxDelay` (1 min). */
  readonly schedule?: Schedule.Schedule<unknown, unknown>
  /** Receives each completion, after the cache and `completions`. */
  readonly onCompleted?: (completion: Completion) => Effect.Effect<void>
}

/**
 * What a degraded answer says about its completion.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ticket {
  /** The id its completion will carry. */
  readonly requestId: string
  /** `duplicate`: an identical request is queued already, and its completion serves this one too. */
  readonly status: "queued" | "duplicate" | "refused"
}

/**
 * A real answer to a request that was answered degraded.
 *
 * @since 0.1.0
 * @category models
 */
export interface Completion {
  readonly requestId: string
  readonly request: Chat.ChatRequest
  /** The answer, as `chat` would have given it: the deployment, attempts, usage and cost of the completion. */
  readonly result: ResilientClient.ChatResult
  /** Epoch milliseconds (effect `Clock`) of the degraded answer, and of the completion. */
  readonly degradedAt: number
  readonly completedAt: number
}

/**
 * The client's queue, for callers and status pages.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Completions as they come. A subscriber sees those completed after it subscribed; it ends when the client closes. */
  readonly completions: Stream.Stream<Completion>
  readonly status: Effect.Effect<DeferredCompletion.Status>
}

/**
 * The queue as the client uses it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Queue extends Service {
  /** Queues a degraded answer's request if it qualifies; the answer, with its ticket when queued or not. */
  readonly settle: (
    request: Chat.ChatRequest,
    options: ResilientClient.ChatOptions,
    result: ResilientClient.ChatResult
  ) => Effect.Effect<ResilientClient.ChatResult>
}

interface Item {
  readonly request: Chat.ChatRequest
  readonly options: ResilientClient.ChatOptions
  readonly requestId: string
  readonly degradedAt: number
}

/**
 * The options of the config file and of the code, merged; undefined when
 * neither asks for completions.
 *
 * @since 0.1.0
 * @category options
 */
export const options = (
  fromFile: ClientConfig.ClientConfig["completeLater"],
  fromCode: Options | undefined
): Options | undefined => {
  if (fromFile === undefined) return fromCode
  const { baseDelay, maxDelay, ...counts } = fromFile
  const schedule = Schedule.exponential(baseDelay ?? "1 second").pipe(
    Schedule.either(Schedule.spaced(maxDelay ?? "1 minute"))
  )
  return { ...counts, schedule, ...fromCode }
}

/** A degraded answer: a static reply or an expired cache entry. */
const isDegraded = (result: ResilientClient.ChatResult): boolean =>
  result.source === "static" || result.source === "stale-cache"

/** A request its caller must not have sent twice (rule 31). */
const mustNotResend = (options: ResilientClient.ChatOptions): boolean =>
  options.idempotent === false || options.fallbackAfterTimeout === false

/**
 * Makes the queue and starts its workers in the scope.
 *
 * `complete` is the cascade without the cache; `store` puts an answer in the
 * client's cache (or does nothing); `requestIdOf` names a request.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options,
  complete: (request: Chat.ChatRequest, options: ResilientClient.ChatOptions) => Effect.Effect<ResilientClient.ChatResult, Errors.ResilienceError>,
  store: (request: Chat.ChatRequest, response: Chat.ChatResponse) => Effect.Effect<void>,
  requestIdOf: (request: Chat.ChatRequest) => string
): Effect.Effect<Queue, Errors.InvalidConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    const published = yield* Effect.acquireRelease(PubSub.unbounded<Completion>(), PubSub.shutdown)
    const { onCompleted } = options
    const answered = (item: Item, result: ResilientClient.ChatResult): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (completedAt) => {
        const completion: Completion = {
          requestId: item.requestId,
          request: item.request,
          result,
          degradedAt: item.degradedAt,
          completedAt
        }
        return Effect.zipRight(
          Effect.zipRight(store(item.request, result.response), PubSub.publish(published, completion)),
          onCompleted === undefined ? Effect.void : onCompleted(completion)
        )
      })
    const queue = yield* DeferredCompletion.make<Item, ResilientClient.ChatResult, Errors.ResilienceError, never>({
      name: "complete-later",
      complete: (item) => complete(item.request, item.options),
      key: (item) => item.requestId,
      maxAttempts: options.maxAttempts ?? 10,
      onAnswer: answered,
      ...(options.capacity === undefined ? {} : { capacity: options.capacity }),
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.schedule === undefined ? {} : { schedule: options.schedule })
    })

    const settle = (
      request: Chat.ChatRequest,
      chatOptions: ResilientClient.ChatOptions,
      result: ResilientClient.ChatResult
    ): Effect.Effect<ResilientClient.ChatResult> => {
      if (!isDegraded(result) || mustNotResend(chatOptions)) return Effect.succeed(result)
      const requestId = requestIdOf(request)
      const ticketed = (status: Ticket["status"]): ResilientClient.ChatResult => ({ ...result, completion: { requestId, status } })
      return Effect.flatMap(Clock.currentTimeMillis, (degradedAt) =>
        Effect.match(queue.enqueue({ request, options: chatOptions, requestId, degradedAt }), {
          onFailure: () => ticketed("refused"),
          onSuccess: ticketed
        }))
    }

    return { settle, completions: Stream.fromPubSub(published), status: queue.status } satisfies Queue
  })
