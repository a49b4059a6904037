/**
 * A client-side rate limiter for one deployment (or one key): discrete token
 * buckets for requests and for tokens, weighted costs, FIFO reservations, a
 * bounded wait with an exact `retryAfter`, correction from the real usage,
 * and a pause when the upstream answers 429 (docs/semantics.md rule 21).
 *
 * Why not effect's own limiters:
 * - `effect/RateLimiter` (3.22) is a semaphore refilled by a background fiber
 *   (it needs a `Scope`): `token-bucket` puts back one permit every
 *   `ceil(interval / limit)` ms, `fixed-window` refills all permits `interval`
 *   after the first take of a window, so neither is aligned to the limiter's
 *   creation. A call always waits (`semaphore.take`): there is no reject, no
 *   bounded wait and so no `retryAfter`. Its cost (`withCost`) is one number
 *   for one limiter; two limiters composed take one after the other, so the
 *   first is debited while the call waits for the second, and a cost above
 *   `limit` waits forever. Nothing corrects a cost after the call, nothing
 *   pauses it, and its state is in-process semaphores that cannot live in a
 *   shared `StateStore`.
 * - `@effect/experimental/RateLimiter` (not a dependency here) keeps its
 *   counters in a store (memory or Redis) and can `delay` or `fail` a call,
 *   but a delay is unbounded (no `maxWait`), a call consumes from one limit at
 *   a time (no atomic requests + tokens pair), its errors share one tag with a
 *   `reason`, and there is no correction from usage and no pause.
 *
 * Here a call takes both buckets in one atomic `StateStore.modify` with a
 * pure function of (state, now); time comes from `Clock` only, so `TestClock`
 * drives it and no fiber runs in the background.
 *
 * `requestsPerMinute: N` (and `tokensPerMinute`) is a bucket of capacity N
 * refilled with N every minute counted from the limiter's creation: the limit
 * as providers state it, in whole numbers. It admits a burst of N right
 * before a minute boundary and N more right after; where that matters, give
 * `buckets` with a smaller capacity and a shorter interval (for example
 * capacity N/6 refilled with N/6 every 10 seconds).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Admission from "./Admission.js"
import { InvalidConfigError, RateLimitError } from "./Errors.js"
import { decodeOptions, LimitMillis, PositiveInt, PositiveMillis } from "./internal/config.js"
import { exitOf } from "./internal/done.js"
import { millisOf } from "./internal/retryAfter.js"
import * as TokenBucket from "./internal/tokenBucket.js"
import * as StateStore from "./StateStore.js"
import { clockOf } from "./internal/fiberClock.js"
import * as RequestScope from "./internal/requestScope.js"

/**
 * One bucket: `capacity` tokens at most, `refillAmount` more (default:
 * `capacity`) every `refillInterval`, counted from the limiter's creation.
 *
 * @since 0.1.0
 * @category models
 */
export interface BucketOptions {
  readonly capacity: number
  readonly refillAmount?: number
  readonly refillInterval: Duration.DurationInput
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the state (`rate-limiter/<name>`): limiters of one name share their buckets. */
  readonly name: string
  /** A requests bucket of capacity N, refilled with N every minute. */
  readonly requestsPerMinute?: number
  /** A tokens bucket of capacity N, refilled with N every minute. */
  readonly tokensPerMinute?: number
  /** The general form, instead of the per-minute shorthands. */
  readonly buckets?: {
    readonly requests?: BucketOptions
    readonly tokens?: BucketOptions
  }
  /**
   * How long a call may wait for its grant; 0 (the default) rejects at once,
   * `Duration.infinity` waits as long as it takes (never past the request's deadline).
   */
  readonly maxWait?: Duration.DurationInput
  /** Copied into the `RateLimitError`s, for logs. */
  readonly provider?: string
  readonly deployment?: string
  /**
   * An upstream 429 with a Retry-After, met by a call this limiter admitted,
   * pauses the limiter until then (rule 21): the provider said when it
   * takes calls again. Default true.
   */
  readonly pauseOnUpstreamRateLimit?: boolean
}

/**
 * What one call costs: a request (always 1 in the requests bucket) and its
 * estimated `tokens` (default 0) in the tokens bucket.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cost {
  readonly tokens?: number
  /** Overrides the limiter's `maxWait` for this call. */
  readonly maxWait?: Duration.DurationInput
}

/**
 * A cost for {@link Service.execute}, with `usage` reading the tokens really
 * used from the result (e.g. `(r) => r.usage.totalTokens`) to correct the
 * estimate; `undefined` keeps the estimate.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecuteCost<A> extends Cost {
  readonly usage?: (a: A) => number | undefined
}

/**
 * What the limiter's gate is asked for: a `Cost`, and how to read the
 * tokens really used from the admitted call's value.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  readonly tokens?: number | undefined
  readonly maxWait?: Duration.DurationInput | undefined
  readonly usage?: ((value: unknown) => number | undefined) | undefined
}

/**
 * A granted call.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit extends Admission.Permit {
  /** Milliseconds the call waited for its grant. */
  readonly waited: number
  /** The tokens the call declared. */
  readonly tokens: number
  /**
   * Sets the tokens the call really used; the difference from what was
   * charged so far is debited (the balance may go negative, holding back
   * later calls) or refunded (up to capacity). A later `settle` replaces an
   * earlier one. Ignores a negative or non-finite count.
   */
  readonly settle: (actualTokens: number) => Effect.Effect<void>
}

/**
 * One bucket now. `available` is negative while calls hold reservations
 * ahead of the refills.
 *
 * @since 0.1.0
 * @category models
 */
export interface BucketStatus {
  readonly available: number
  readonly capacity: number
  /** Epoch ms of the next refill. */
  readonly nextRefillAt: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly requests?: BucketStatus
  readonly tokens?: BucketStatus
  /** Epoch ms until which nothing is granted, when paused. */
  readonly pausedUntil: Option.Option<number>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** The limiter's admission: a grant per call (waiting up to `maxWait`), or a local `RateLimitError`. */
  readonly gate: Admission.Gate<Request, Permit, RateLimitError>
  /**
   * Takes `cost` from every bucket at once, waiting up to `maxWait` (and never
   * past the request's `Deadline`) in FIFO order. Fails with a local
   * `RateLimitError` whose `retryAfter` is the exact time until the cost would
   * be granted, having reserved nothing. An interrupted waiter gives its
   * reservation back.
   */
  readonly acquire: (cost?: Cost) => Effect.Effect<Permit, RateLimitError>
  /** `acquire`, then `effect`, then the correction from `cost.usage` when it succeeded. */
  readonly execute: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    cost?: ExecuteCost<A>
  ) => Effect.Effect<A, E | RateLimitError, R>
  /** Grants nothing for `duration` from now (an upstream 429's Retry-After). Never shortens a pause. */
  readonly pause: (duration: Duration.DurationInput) => Effect.Effect<void>
  readonly status: Effect.Effect<Status>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("@resilient-ai/core/RateLimiter")<RateLimiter, Service>() {}

const component = "RateLimiter"
const minute = 60_000

const BucketSchema = Schema.Struct({
  capacity: PositiveInt,
  refillAmount: Schema.optional(PositiveInt),
  refillInterval: PositiveMillis
})

const OptionsSchema = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })),
  requestsPerMinute: Schema.optional(PositiveInt),
  tokensPerMinute: Schema.optional(PositiveInt),
  buckets: Schema.optional(Schema.Struct({
    requests: Schema.optional(BucketSchema),
    tokens: Schema.optional(BucketSchema)
  })),
  maxWait: Schema.optional(LimitMillis),
  provider: Schema.optional(Schema.String),
  deployment: Schema.optional(Schema.String),
  pauseOnUpstreamRateLimit: Schema.optional(Schema.Boolean)
})

const bucketOf = (
  name: "requests" | "tokens",
  perMinute: number | undefined,
  general: Schema.Schema.Type<typeof BucketSchema> | undefined
): Effect.Effect<TokenBucket.Bucket | undefined, InvalidConfigError> => {
  if (perMinute !== undefined && general !== undefined) {
    return Effect.fail(
      new InvalidConfigError({
        component,
        path: `buckets.${name}`,
        detail: `give either ${name}PerMinute or buckets.${name}, not both`
      })
    )
  }
  if (perMinute !== undefined) {
    return Effect.succeed({ name, capacity: perMinute, refillAmount: perMinute, refillInterval: minute })
  }
  if (general !== undefined) {
    return Effect.succeed({
      name,
      capacity: general.capacity,
      refillAmount: general.refillAmount ?? general.capacity,
      refillInterval: general.refillInterval
    })
  }
  return Effect.succeed(undefined)
}

const bucketStatus = (b: TokenBucket.Bucket, state: TokenBucket.State, i: number): BucketStatus => ({
  available: state.balances[i] ?? 0,
  capacity: b.capacity,
  nextRefillAt: state.origin + ((state.refills[i] ?? 0) + 1) * b.refillInterval
})

/**
 * Builds a limiter whose buckets live in the `StateStore` under
 * `rate-limiter/<name>`. The buckets are created now (their refills are
 * aligned to this moment) unless the store already holds them for the same
 * configuration, which are then shared (another process, a rebuilt layer).
 * State built for other buckets is replaced: give limiters with different
 * buckets different names.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const decoded = yield* decodeOptions(component, OptionsSchema, options)
    const requestsBucket = yield* bucketOf("requests", decoded.requestsPerMinute, decoded.buckets?.requests)
    const tokensBucket = yield* bucketOf("tokens", decoded.tokensPerMinute, decoded.buckets?.tokens)
    if (requestsBucket === undefined && tokensBucket === undefined) {
      return yield* Effect.fail(
        new InvalidConfigError({
          component,
          path: "requestsPerMinute",
          detail: "a limiter needs a bucket: give requestsPerMinute, tokensPerMinute or buckets"
        })
      )
    }
    const buckets = [requestsBucket, tokensBucket].filter((b): b is TokenBucket.Bucket => b !== undefined)
    const config = TokenBucket.makeConfig(buckets)
    const requestsIndex = requestsBucket === undefined ? -1 : 0
    const tokensIndex = tokensBucket === undefined ? -1 : buckets.length - 1
    const name = decoded.name
    const defaultMaxWait = decoded.maxWait ?? 0
    const { deployment, provider } = decoded
    const store = yield* StateStore.StateStore
    const slot = store.tokenBucket(name, config)
    const pauseOnUpstreamRateLimit = decoded.pauseOnUpstreamRateLimit ?? true

    yield* Effect.clockWith((clock) => slot.read(clock.unsafeCurrentTimeMillis()))

    const oneRequest: ReadonlyArray<number> = [1]
    const costsOf: (tokens: number) => ReadonlyArray<number> = requestsIndex < 0
      ? (tokens) => [tokens]
      : tokensIndex < 0
      ? () => oneRequest
      : (tokens) => [1, tokens]

    const rejected = (retryAfter: number, bucket: number): RateLimitError =>
      new RateLimitError({
        source: "local",
        retryAfter: Duration.millis(retryAfter),
        provider,
        deployment,
        detail: bucket < 0
          ? `limiter "${name}" is paused`
          : `limiter "${name}": the ${buckets[bucket]?.name} bucket is short`
      })

    const oversizedError = (bucket: number, cost: number): RateLimitError => {
      const b = buckets[bucket]
      return new RateLimitError({
        source: "local",
        provider,
        deployment,
        detail: `limiter "${name}": a cost of ${cost} exceeds the ${b?.name} bucket's capacity of ${b?.capacity}` +
          " and can never be granted"
      })
    }

    // After the reserved wait, a pause that arrived meanwhile still holds the grant back.
    const sleepUntilGranted = (
      wait: number,
      latestGrant: number,
      deadline: number
    ): Effect.Effect<void, RateLimitError> =>
      Effect.zipRight(
        Effect.sleep(Duration.millis(wait)),
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          return Effect.flatMap(slot.read(now), (state) => {
            const pausedUntil = state.pausedUntil
            if (pausedUntil <= now) return Effect.void
            if (pausedUntil > latestGrant || pausedUntil >= deadline) {
              return Effect.fail(rejected(pausedUntil - now, -1))
            }
            return sleepUntilGranted(pausedUntil - now, latestGrant, deadline)
          })
        })
      )

    const pauseUntil = (until: number, now: number): Effect.Effect<void> => Effect.asVoid(slot.pause(until, now))

    /** A granted call: corrects its tokens from the answer, or pauses the limiter on an upstream 429. */
    class Granted implements Permit {
      private charged: number
      constructor(
        readonly tokens: number,
        readonly waited: number,
        private readonly usage: ((value: unknown) => number | undefined) | undefined
      ) {
        this.charged = tokens
      }
      settle(actual: number): Effect.Effect<void> {
        return Effect.clockWith((clock) => this.settleAt(actual, clock.unsafeCurrentTimeMillis()))
      }
      private settleAt(actual: number, now: number): Effect.Effect<void> {
        if (tokensIndex < 0 || !(actual >= 0 && actual < Infinity)) return Effect.void
        const delta = actual - this.charged
        this.charged = actual
        return delta === 0 ? Effect.void : slot.correct(tokensIndex, delta, now)
      }
      release(exit: Exit.Exit<unknown, unknown>, now: number): Effect.Effect<void> {
        if (Exit.isSuccess(exit)) {
          const actual = this.usage === undefined ? undefined : this.usage(exit.value)
          return actual === undefined ? Exit.void : this.settleAt(actual, now)
        }
        if (!pauseOnUpstreamRateLimit) return Exit.void
        const failure = Cause.failureOption(exit.cause)
        if (Option.isNone(failure)) return Exit.void
        // By tag, not `instanceof`: an error built by another copy of this package pauses too.
        const retryAfter = upstreamRetryAfter(failure.value)
        return retryAfter === undefined ? Exit.void : pauseUntil(now + retryAfter, now)
      }
    }

    const gate: Admission.Gate<Request, Granted, RateLimitError> = {
      acquire: (request, { fiber, now, restore }) => {
        const tokens = request.tokens ?? 0
        if (!(tokens >= 0 && tokens < Infinity)) {
          return Effect.dieMessage(`RateLimiter "${name}": tokens must be a finite number of zero or more, got ${tokens}`)
        }
        const costs = costsOf(tokens)
        const over = TokenBucket.oversized(config, costs)
        if (over >= 0) return Exit.fail(oversizedError(over, costs[over] ?? 0))
        const maxWait = request.maxWait === undefined ? defaultMaxWait : Duration.toMillis(request.maxWait)
        const deadline = RequestScope.deadlineOf(fiber) ?? Infinity
        const decided = (decision: TokenBucket.Decision): Effect.Effect<Granted, RateLimitError> => {
          if (decision._tag === "Rejected") return Exit.fail(rejected(decision.retryAfter, decision.bucket))
          const granted = new Granted(tokens, decision.wait, request.usage)
          if (decision.wait === 0) return Exit.succeed(granted)
          // A waiter that is interrupted, or finds the limiter paused meanwhile, gives its reservation back.
          return Effect.as(
            Effect.onError(restore(sleepUntilGranted(decision.wait, now + maxWait, deadline)), () =>
              Effect.clockWith((clock) => slot.release(costs, clock.unsafeCurrentTimeMillis()))),
            granted
          )
        }
        const reserved = slot.reserve(costs, now, maxWait, deadline)
        const done = exitOf(reserved)
        return done !== undefined && Exit.isSuccess(done) ? decided(done.value) : Effect.flatMap(reserved, decided)
      }
    }

    /** Admits one call of `cost` and runs `use` with its permit. */
    const admitted = <A, E, R>(
      cost: ExecuteCost<A> | undefined,
      use: (permit: Permit) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | RateLimitError, R> => {
      const usage = cost?.usage
      const request: Request = {
        tokens: cost?.tokens,
        maxWait: cost?.maxWait,
        // The permit is released with the exit of the very call it admitted: its value is an `A`.
        usage: usage === undefined ? undefined : (value) => usage(value as A)
      }
      return Admission.execute(gate, request, use)
    }

    const acquire = (cost?: Cost): Effect.Effect<Permit, RateLimitError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.withFiberRuntime((fiber) =>
          gate.acquire(
            { tokens: cost?.tokens, maxWait: cost?.maxWait, usage: undefined },
            { now: clockOf(fiber).unsafeCurrentTimeMillis(), restore, fiber }
          )
        )
      )

    const execute = <A, E, R>(effect: Effect.Effect<A, E, R>, cost?: ExecuteCost<A>): Effect.Effect<A, E | RateLimitError, R> =>
      admitted(cost, () => effect)

    const pause = (duration: Duration.DurationInput): Effect.Effect<void> => {
      const millis = Duration.toMillis(duration)
      if (!(millis > 0 && millis < Infinity)) return Effect.void
      return Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        return pauseUntil(now + millis, now)
      })
    }

    const status: Effect.Effect<Status> = Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      return Effect.map(slot.read(now), (state): Status => {
        const pausedUntil = state.pausedUntil > now ? Option.some(state.pausedUntil) : Option.none()
        const requests = requestsBucket === undefined ? undefined : bucketStatus(requestsBucket, state, requestsIndex)
        const tokens = tokensBucket === undefined ? undefined : bucketStatus(tokensBucket, state, tokensIndex)
        return {
          pausedUntil,
          ...(requests === undefined ? {} : { requests }),
          ...(tokens === undefined ? {} : { tokens })
        }
      })
    })

    return { name, gate, acquire, execute, pause, status }
  })

/** The milliseconds an upstream 429 asks to wait, read by tag and fields (any copy of the error class). */
const upstreamRetryAfter = (error: unknown): number | undefined => {
  if (!Predicate.isTagged(error, "RateLimitError") || !Predicate.hasProperty(error, "source") || error.source !== "upstream") {
    return undefined
  }
  const millis = Predicate.hasProperty(error, "retryAfter") ? millisOf(error.retryAfter) : undefined
  return millis !== undefined && millis > 0 ? millis : undefined
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RateLimiter, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(RateLimiter, make(options))
