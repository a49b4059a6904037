/**
 * A queue of requests to complete later. When a request had to be answered
 * from the cache or with a static reply (the providers were rate limited or
 * down), it can be queued here for a real attempt once they recover; the
 * real answer fills the cache, so the next identical request gets it.
 *
 * Rules:
 * - The queue is bounded (`capacity`). A request that does not fit is refused
 *   with a typed {@link DeferredQueueFullError}: never dropped silently. A
 *   request whose key is already queued or in progress is not queued twice
 *   (`enqueue` answers `"duplicate"`).
 * - `concurrency` workers (default 1) take requests in FIFO order; each runs
 *   `complete(request)` up to `maxAttempts` times (default 5), waiting between
 *   attempts by `schedule` (default exponential from 1 s, each delay capped at
 *   1 min), and never less than an error's `retryAfter`. Only errors for which
 *   `retryOn` holds (default `Errors.isFallbackable`) are tried again; a
 *   `BadRequestError` fails at once. A worker backs off on its current request
 *   before taking the next one (head of line): during an outage the next one
 *   would fail too. Raise `concurrency` to overlap them.
 * - On success the answer is stored with `cache.set` (if a cache is given),
 *   then passed to `onAnswer`. A request that gave up is counted as failed,
 *   logged with `Effect.logWarning` and passed to `onFailure`.
 * - A worker survives every way one completion can end: a failure, a defect,
 *   an interruption that is not the worker's own (a completion that joined
 *   an interrupted child fiber), a callback that dies. Each is logged, the
 *   request's key is released (it may be queued again) and the worker takes
 *   the next request.
 * - Shutdown (the scope closes): the workers are interrupted, then every
 *   request still queued or in progress is counted as dropped and named in one
 *   `Effect.logWarning` line. Nothing queued is lost without that line.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { type InvalidConfigError, isFallbackable } from "./Errors.js"
import { decodeOptions, PositiveInt } from "./internal/config.js"
import * as CacheKey from "./internal/responseCacheKey.js"
import type * as ResponseCache from "./ResponseCache.js"

/**
 * The queue is full: the request was not queued.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeferredQueueFullError extends Schema.TaggedError<DeferredQueueFullError>()("DeferredQueueFullError", {
  queue: Schema.String,
  capacity: Schema.Number,
  /** The key of the refused request. */
  key: Schema.String
}) {
  override get message(): string {
    return `deferred completion queue "${this.queue}" is full (${this.capacity} requests); request ${this.key} was not queued`
  }
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options<Req, Res, E, R> {
  /** Names the queue in logs, errors and status. Default `"deferred-completion"`. */
  readonly name?: string
  /** The real attempt, e.g. the resilient client without its cache and static fallback steps. */
  readonly complete: (request: Req) => Effect.Effect<Res, E, R>
  /** Requests the queue holds, not counting those in progress. Default 1 000. */
  readonly capacity?: number
  /** Attempts per request, the first included. Default 5. */
  readonly maxAttempts?: number
  /** The wait between attempts. Default exponential from 1 s, each delay capped at 1 min. */
  readonly schedule?: Schedule.Schedule<unknown, unknown>
  /** Which errors are worth another attempt. Default `Errors.isFallbackable`. */
  readonly retryOn?: (error: E) => boolean
  /** Workers, each completing one request at a time. Default 1. */
  readonly concurrency?: number
  /** Receives each answer first (`set`), so the next identical request is a hit. Its `keyOf` names requests. */
  readonly cache?: ResponseCache.Service<Req, Res>
  /** Receives each answer, after the cache. */
  readonly onAnswer?: (request: Req, response: Res) => Effect.Effect<void, never, R>
  /** Receives each request that gave up, with why. */
  readonly onFailure?: (request: Req, cause: Cause.Cause<E>) => Effect.Effect<void, never, R>
  /** Names a request in logs and dedupes the queue. Default: the cache's `keyOf`, else `ResponseCache.hashRequest`. */
  readonly key?: (request: Req) => string
}

/**
 * Counters since the queue was made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly name: string
  /** Waiting for a worker. */
  readonly queued: number
  /** Taken by a worker, attempting or backing off. */
  readonly inProgress: number
  /** Answered. */
  readonly completed: number
  /** Gave up: attempts spent or an error not worth retrying. */
  readonly failed: number
  /** Refused at `enqueue` because the queue was full. */
  readonly refused: number
  /** Still queued or in progress at shutdown. */
  readonly dropped: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service<in Req> {
  readonly name: string
  /**
   * Queues `request` for a later real attempt; `"duplicate"` when its key is
   * already queued or in progress. After shutdown the queue is gone and the
   * caller is interrupted.
   */
  readonly enqueue: (request: Req) => Effect.Effect<"queued" | "duplicate", DeferredQueueFullError>
  readonly status: Effect.Effect<Status>
}

interface Item<Req> {
  readonly request: Req
  readonly key: string
  readonly enqueuedAt: number
}

const component = "DeferredCompletion"

const fn = Schema.declare(Predicate.isFunction, { message: () => "expected a function" })

const OptionsSchema = Schema.Struct({
  name: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })), {
    default: () => "deferred-completion"
  }),
  complete: fn,
  capacity: Schema.optionalWith(PositiveInt, { default: () => 1_000 }),
  maxAttempts: Schema.optionalWith(PositiveInt, { default: () => 5 }),
  schedule: Schema.optional(
    Schema.declare((u: unknown): u is Schedule.Schedule<unknown, unknown> => Schedule.isSchedule(u), {
      message: () => "expected a Schedule"
    })
  ),
  retryOn: Schema.optional(fn),
  concurrency: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  cache: Schema.optional(
    Schema.declare((u: unknown): u is object => Predicate.hasProperty(u, "set") && Predicate.isFunction(u.set), {
      message: () => "expected a ResponseCache service"
    })
  ),
  onAnswer: Schema.optional(fn),
  onFailure: Schema.optional(fn),
  key: Schema.optional(fn)
})

/**
 * Exponential from 1 s, each delay capped at 1 min (`Schedule.exponential` has
 * no cap of its own; `either` takes the shorter delay).
 *
 * @since 0.1.0
 * @category schedules
 */
export const defaultSchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential("1 second").pipe(
  Schedule.either(Schedule.spaced("1 minute"))
)

const retryAfterMillis = (error: unknown): number =>
  Predicate.hasProperty(error, "retryAfter") && Duration.isDuration(error.retryAfter)
    ? Duration.toMillis(error.retryAfter)
    : 0

/**
 * Makes the queue and starts its workers in the scope. Closing the scope
 * stops them and logs what was left.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <Req, Res, E, R>(
  options: Options<Req, Res, E, R>
): Effect.Effect<Service<Req>, InvalidConfigError, Scope.Scope | R> =>
  Effect.gen(function*() {
    const o = yield* decodeOptions(component, OptionsSchema, options)
    const { capacity, concurrency, maxAttempts, name } = o
    const { cache, complete, onAnswer, onFailure } = options
    const retryOn: (error: E) => boolean = options.retryOn ?? isFallbackable
    const keyOf: (request: Req) => string = options.key ?? cache?.keyOf ??
      ((request) => CacheKey.keyOf(request, CacheKey.defaultFields))
    // Intersect: go on while every part goes on, wait for the longest delay (so Retry-After wins over a shorter backoff).
    const schedule = (options.schedule ?? defaultSchedule).pipe(
      Schedule.intersect(Schedule.recurs(maxAttempts - 1)),
      Schedule.intersect(Schedule.identity<unknown>().pipe(Schedule.addDelay(retryAfterMillis)))
    )

    const queue = yield* Queue.dropping<Item<Req>>(capacity)
    /** Keys queued or in progress. */
    const pending = new Set<string>()
    const inProgress = new Map<string, Item<Req>>()
    const counts = { completed: 0, failed: 0, refused: 0, dropped: 0 }

    const enqueue = (request: Req): Effect.Effect<"queued" | "duplicate", DeferredQueueFullError> =>
      Effect.suspend(() => {
        const key = keyOf(request)
        if (pending.has(key)) return Effect.succeed("duplicate" as const)
        pending.add(key)
        return Effect.flatMap(Clock.currentTimeMillis, (enqueuedAt) =>
          Effect.flatMap(Queue.offer(queue, { request, key, enqueuedAt }), (offered) => {
            if (offered) return Effect.succeed("queued" as const)
            pending.delete(key)
            counts.refused++
            return Effect.fail(new DeferredQueueFullError({ queue: name, capacity, key }))
          }))
      })

    const answered = (item: Item<Req>, response: Res): Effect.Effect<void, never, R> =>
      Effect.zipRight(
        Effect.sync(() => void counts.completed++),
        Effect.zipRight(
          cache === undefined ? Effect.void : cache.set(item.request, response),
          onAnswer === undefined ? Effect.void : onAnswer(item.request, response)
        )
      )

    const gaveUp = (item: Item<Req>, attempts: number, cause: Cause.Cause<E>): Effect.Effect<void, never, R> =>
      Effect.zipRight(
        Effect.zipRight(
          Effect.sync(() => void counts.failed++),
          Effect.logWarning(
            `DeferredCompletion "${name}": gave up on request ${item.key} after ${attempts} attempt(s)`,
            cause
          )
        ),
        onFailure === undefined ? Effect.void : onFailure(item.request, cause)
      )

    const attempt = (item: Item<Req>): Effect.Effect<void, never, R> =>
      Effect.suspend(() => {
        let attempts = 0
        const once = Effect.suspend(() => {
          attempts++
          return complete(item.request)
        })
        // Every failure gives up, an interruption only included: a completion that joined an interrupted
        // child fails that way while the worker itself runs on (its own interruption skips this handler).
        return Effect.matchCauseEffect(Effect.retry(once, { schedule, while: retryOn }), {
          onSuccess: (response) => answered(item, response),
          onFailure: (cause) => gaveUp(item, attempts, cause)
        })
      })

    // An item leaves `pending` however it ends, except by the worker's own interruption (shutdown): the
    // finalizer names those. A failure handler does not run for a fiber being interrupted, so what
    // `catchAllCause` sees (a callback that died or was interrupted) is the item's, and the worker goes on.
    const handle = (item: Item<Req>): Effect.Effect<void, never, R> =>
      attempt(item).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError(`DeferredCompletion "${name}": request ${item.key} ended abnormally`, cause)
        ),
        Effect.onExit((exit) =>
          Exit.isInterrupted(exit)
            ? Effect.void
            : Effect.sync(() => {
              inProgress.delete(item.key)
              pending.delete(item.key)
            })
        )
      )

    const worker: Effect.Effect<never, never, R> = Effect.forever(
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(Queue.take(queue)), (item) => {
          inProgress.set(item.key, item)
          return restore(handle(item))
        })
      )
    )

    // Added before the workers are forked, so it runs after they are interrupted (finalizers run in reverse).
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const queued = yield* Queue.takeAll(queue)
        yield* Queue.shutdown(queue)
        const running = Array.from(inProgress.values())
        const lost = [...running, ...queued]
        inProgress.clear()
        pending.clear()
        if (lost.length === 0) return
        counts.dropped += lost.length
        const keys = lost.map((item) => item.key)
        yield* Effect.logWarning(
          `DeferredCompletion "${name}": shutting down, dropped ${lost.length} request(s) never completed ` +
            `(${queued.length} queued, ${running.length} in progress): ${keys.join(", ")}`
        ).pipe(Effect.annotateLogs({ queue: name, dropped: keys }))
      })
    )
    for (let i = 0; i < concurrency; i++) yield* Effect.forkScoped(worker)

    const status: Effect.Effect<Status> = Effect.sync(() => ({
      name,
      queued: pending.size - inProgress.size,
      inProgress: inProgress.size,
      ...counts
    }))

    return { name, enqueue, status } satisfies Service<Req>
  })

/**
 * A layer with the queue of `options` under `tag`; the tag belongs to the
 * package that knows the request type.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, Req, Res, E, R>(
  tag: Context.Tag<I, Service<Req>>,
  options: Options<Req, Res, E, R>
): Layer.Layer<I, InvalidConfigError, Exclude<R, Scope.Scope>> => Layer.scoped(tag, make(options))
