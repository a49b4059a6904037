/**
 * Hedged requests (docs/semantics.md rule 22): when an attempt is slow, start
 * another one and take whichever answers first.
 *
 * - Attempt 0 starts at once. The next attempt starts when the hedge delay
 *   has passed since the **last** launch, or at once when a running attempt
 *   fails with a handled error (`shouldHedgeOn`). At most `1 +
 *   maxExtraAttempts` attempts run in all.
 * - The first success wins. The other attempts are interrupted **and
 *   awaited**: their finalizers (an HTTP request's abort, a bulkhead permit,
 *   a breaker's record) have run when `execute` returns.
 * - A failure that is not handled (by default a `BadRequestError`,
 *   `ContextLengthError`, ... : the request itself is wrong, so no other
 *   attempt can fix it), a defect or an interruption of an attempt ends the
 *   whole hedge at once with that attempt's cause; the others are
 *   interrupted and awaited.
 * - When every attempt failed with a handled error, the hedge fails with
 *   `Cause.parallel` of the attempts' causes **in launch order** (attempt 0
 *   first, whatever order they failed in). So `Effect.catchAll` and
 *   `Effect.either` see attempt 0's error, while `Effect.catchAllCause` and
 *   `Cause.failures` see every error, attempt 0's first.
 * - The delay is a fixed duration, or a percentile (p95, say) of a
 *   {@link LatencyTracker.Service} rounded up to a whole millisecond and
 *   clamped to `[min, max]`, with a `fallback` until the tracker holds enough
 *   samples. It is read once per `execute`.
 * - With a {@link RetryBudget.Service} as the hedge budget, each `execute`
 *   records one first attempt and every extra launch must be admitted by it
 *   (hedges may add at most the budget's ratio to the calls). A refusal
 *   launches nothing more in that `execute`: the running attempts are awaited.
 *
 * `execute` passes each attempt its index (0, 1, ...), so a hedge can go to
 * another key or deployment. The hedge records nothing in the tracker: the
 * winner's latency is biased low; record each attempt's own latency inside
 * the attempt (`tracker.track`). Time comes only from `Clock`, so `TestClock`
 * makes it exact.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { InvalidConfigError, isFallbackable, isRetryable } from "./Errors.js"
import { decodeOptions, LimitMillis, Millis, NonNegativeInt, Ratio } from "./internal/config.js"
import type * as LatencyTracker from "./LatencyTracker.js"
import type * as RetryBudget from "./RetryBudget.js"
import * as AttemptEvents from "./AttemptEvents.js"

/**
 * A hedge delay read from observed latencies: the tracker's `percentile`,
 * rounded up to a whole millisecond and clamped to `[min, max]`, or `fallback` while the tracker has fewer samples
 * than its `minSamples` (the fallback is not clamped).
 *
 * @since 0.1.0
 * @category options
 */
export interface PercentileDelay {
  /** A fraction in (0, 1]: `0.95` hedges the calls slower than p95. */
  readonly percentile: number
  readonly tracker: LatencyTracker.Service
  readonly min?: Duration.DurationInput | undefined
  /** No ceiling when absent or `Duration.infinity`. */
  readonly max?: Duration.DurationInput | undefined
  /** The delay until the tracker has enough samples. */
  readonly fallback: Duration.DurationInput
}

/**
 * Why an extra attempt was launched, for events and metrics.
 *
 * @since 0.1.0
 * @category models
 */
export interface LaunchInfo {
  /** The attempt's index: 1 for the first hedge. */
  readonly index: number
  /** `"delay"`: the hedge delay passed; `"failure"`: a running attempt failed with a handled error. */
  readonly reason: "delay" | "failure"
  /**
   * Milliseconds since the previous launch: the hedge delay for `"delay"`,
   * less than it for `"failure"`.
   */
  readonly delayMs: number
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Names the hedged deployment in `AttemptEvents` (`HedgeLaunched`). Default "hedge". */
  readonly name?: string | undefined
  /** A fixed delay, or one read from a latency tracker. `0` launches every attempt at once. */
  readonly delay: Duration.DurationInput | PercentileDelay
  /** Attempts beyond the first. Default 1; 0 runs attempt 0 alone. */
  readonly maxExtraAttempts?: number | undefined
  /** The hedge budget: asked before each extra launch; each `execute` records one first attempt. */
  readonly budget?: RetryBudget.Service | undefined
  /**
   * The handled failures: they launch the next attempt at once, and the hedge
   * goes on while other attempts run. Any other failure ends the hedge.
   * Default {@link isHandled}.
   */
  readonly shouldHedgeOn?: ((error: unknown) => boolean) | undefined
  /** Called before each extra launch (not for attempt 0); it delays that launch, so keep it quick. */
  readonly onLaunch?: ((info: LaunchInfo) => Effect.Effect<void>) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Runs `attempt(0)`, hedges it with `attempt(1)`, ... as described in the
   * module documentation, and returns the first success. An effect is run
   * once per attempt and reads its index from {@link CurrentHedge} (the
   * `execute(effect)` shape every policy has); a function is given it.
   */
  readonly execute: Execute
  /** The hedge delay in milliseconds an `execute` starting now would use. */
  readonly currentDelay: Effect.Effect<number>
}

/**
 * The index of the hedged attempt an effect run by {@link Service.execute} is: 0 first.
 *
 * @since 0.1.0
 * @category tags
 */
export class CurrentHedge extends Context.Tag("@resilient-ai/core/Hedge/CurrentHedge")<CurrentHedge, number>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Execute {
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, CurrentHedge>>
  <A, E, R>(attempt: (index: number) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Hedge extends Context.Tag("@resilient-ai/core/Hedge")<Hedge, Service>() {}

/**
 * The default handled failures: every retryable or fallbackable tag of the
 * taxonomy (5xx, timeouts, connection errors, 429, malformed bodies, an open
 * breaker, a full bulkhead, a bad or exhausted key). They belong to one
 * attempt's provider, deployment or key, so another attempt (possibly sent
 * elsewhere through its index) may still succeed. Request-level errors
 * (`BadRequestError`, `ContextLengthError`, `ContentFilterError`,
 * `StreamInterruptedError`, `BudgetExhaustedError`) and errors outside the
 * taxonomy end the hedge: every attempt would fail the same way, and we do
 * not guess about failures we cannot name.
 *
 * @since 0.1.0
 * @category policy
 */
export const isHandled = (error: unknown): boolean => isRetryable(error) || isFallbackable(error)

const isTracker = (u: unknown): u is LatencyTracker.Service =>
  Predicate.hasProperty(u, "percentile") && Predicate.isFunction(u.percentile)

const isBudget = (u: unknown): u is RetryBudget.Service =>
  Predicate.hasProperty(u, "tryAcquireRetry") && Predicate.hasProperty(u, "recordAttempt")

const isPercentileDelay = (u: unknown): u is PercentileDelay =>
  Predicate.isRecord(u) && !Duration.isDuration(u) && ("tracker" in u || "percentile" in u)

const PercentileDelaySchema = Schema.Struct({
  percentile: Ratio,
  tracker: Schema.declare(isTracker, { message: () => "expected a LatencyTracker service" }),
  min: Schema.optional(Millis),
  max: Schema.optional(LimitMillis),
  fallback: Millis
})

const rest = {
  name: Schema.optional(Schema.String),
  maxExtraAttempts: Schema.optionalWith(NonNegativeInt, { default: () => 1 }),
  budget: Schema.optional(Schema.declare(isBudget, { message: () => "expected a RetryBudget service" })),
  shouldHedgeOn: Schema.optional(Schema.declare(Predicate.isFunction, { message: () => "expected a function" })),
  onLaunch: Schema.optional(Schema.declare(Predicate.isFunction, { message: () => "expected a function" }))
}

const FixedOptionsSchema = Schema.Struct({ delay: Millis, ...rest })
const PercentileOptionsSchema = Schema.Struct({ delay: PercentileDelaySchema, ...rest })

const COMPONENT = "Hedge"

interface Config {
  /** Reads the delay of one `execute`, in milliseconds. */
  readonly currentDelay: Effect.Effect<number>
  readonly maxExtraAttempts: number
}

const decode = (options: Options): Effect.Effect<Config, InvalidConfigError> => {
  if (!isPercentileDelay(options.delay)) {
    return Effect.map(decodeOptions(COMPONENT, FixedOptionsSchema, options), (o) => ({
      currentDelay: Effect.succeed(o.delay),
      maxExtraAttempts: o.maxExtraAttempts
    }))
  }
  return Effect.flatMap(decodeOptions(COMPONENT, PercentileOptionsSchema, options), (o) => {
    const { fallback, max, min, percentile, tracker } = o.delay
    if (min !== undefined && max !== undefined && min > max) {
      return new InvalidConfigError({ component: COMPONENT, path: "delay.max", detail: "expected max to be at least min" })
    }
    // Rounded up to a whole millisecond: never hedge before the percentile, and keep sleeps and events in whole ms.
    const clamp = (ms: number) => Math.min(max ?? Number.POSITIVE_INFINITY, Math.max(min ?? 0, Math.ceil(ms)))
    return Effect.succeed({
      currentDelay: Effect.map(tracker.percentile(percentile), Option.match({ onNone: () => fallback, onSome: clamp })),
      maxExtraAttempts: o.maxExtraAttempts
    })
  })
}

/** What an attempt's fiber leaves for the coordinator. */
interface Finished<A, E> {
  readonly index: number
  readonly exit: Exit.Exit<A, E>
}

/**
 * Builds a hedge. Bad options fail with `InvalidConfigError` naming the field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError> =>
  Effect.gen(function*() {
    const { currentDelay, maxExtraAttempts } = yield* decode(options)
    const maxAttempts = 1 + maxExtraAttempts
    const budget = options.budget
    const handled = options.shouldHedgeOn ?? isHandled
    const onLaunch = options.onLaunch
    const hedgeName = options.name ?? "hedge"

    function execute<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, CurrentHedge>>
    function execute<A, E, R>(attempt: (index: number) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R>
    function execute<A, E, R>(
      call: Effect.Effect<A, E, R> | ((index: number) => Effect.Effect<A, E, R>)
    ): Effect.Effect<A, E, R> {
      const attempt = Effect.isEffect(call) ? (index: number) => Effect.provideService(call, CurrentHedge, index) : call
      return Effect.suspend(() => {
        // Every attempt fiber ever forked; all are interrupted and awaited on the way out.
        const fibers: Array<Fiber.RuntimeFiber<void>> = []
        const cleanup = Effect.suspend(() => Fiber.interruptAll(fibers))
        return Effect.ensuring(coordinate(attempt, fibers), cleanup)
      })
    }

    const coordinate = <A, E, R>(
      attempt: (index: number) => Effect.Effect<A, E, R>,
      fibers: Array<Fiber.RuntimeFiber<void>>
    ): Effect.Effect<A, E, R> =>
      Effect.gen(function*() {
        const delayMs = yield* currentDelay
        if (budget !== undefined) yield* budget.recordAttempt

        // Attempts push their exit here and offer a wake-up token. The coordinator
        // reads the array, not the queue, so a wake-up lost to the timer race loses
        // no exit: the loop always looks at the array before it waits again.
        const finished: Array<Finished<A, E>> = []
        const wake = yield* Queue.unbounded<void>()

        // Fork and register in one uninterruptible step, so no attempt escapes the cleanup.
        const launch = (index: number) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.map(
              Effect.fork(
                Effect.flatMap(Effect.exit(restore(Effect.suspend(() => attempt(index)))), (exit) => {
                  finished.push({ index, exit })
                  return Effect.asVoid(Queue.offer(wake, undefined))
                })
              ),
              (fiber) => {
                fibers.push(fiber)
              }
            )
          )

        let launched = 0
        let running = 0
        let lastLaunch = 0
        let refused = false
        const failures: Array<{ readonly index: number; readonly cause: Cause.Cause<E> }> = []
        const canLaunch = () => !refused && launched < maxAttempts

        const start = (reason: "delay" | "failure" | "first") =>
          Effect.gen(function*() {
            if (reason !== "first") {
              if (budget !== undefined && !(yield* budget.tryAcquireRetry)) {
                refused = true
                return
              }
              const now = yield* Clock.currentTimeMillis
              const info = { index: launched, reason, delayMs: reason === "delay" ? delayMs : now - lastLaunch }
              yield* AttemptEvents.emit({ _tag: "HedgeLaunched", at: now, deployment: hedgeName, ...info })
              if (onLaunch !== undefined) yield* onLaunch(info)
            }
            lastLaunch = yield* Clock.currentTimeMillis
            yield* launch(launched)
            launched += 1
            running += 1
          })

        yield* start("first")
        while (true) {
          // Settle every attempt that has finished, in the order they finished.
          let next = finished.shift()
          while (next !== undefined) {
            running -= 1
            const { exit, index } = next
            if (Exit.isSuccess(exit)) return exit.value
            const failure = Cause.failureOrCause(exit.cause)
            if (Either.isRight(failure) || !handled(failure.left)) return yield* Effect.failCause(exit.cause)
            failures.push({ index, cause: exit.cause })
            if (canLaunch()) yield* start("failure")
            next = finished.shift()
          }

          if (!canLaunch()) {
            if (running === 0) return yield* Effect.failCause(allFailed(failures))
            yield* Queue.take(wake)
            continue
          }
          const remaining = lastLaunch + delayMs - (yield* Clock.currentTimeMillis)
          if (remaining <= 0) {
            yield* start("delay")
            continue
          }
          yield* Effect.timeoutOption(Queue.take(wake), Duration.millis(remaining))
        }
      })

    return { execute, currentDelay } satisfies Service
  })

/** The attempts' causes in launch order, joined in parallel: attempt 0's error is the first failure. */
const allFailed = <E>(failures: ReadonlyArray<{ readonly index: number; readonly cause: Cause.Cause<E> }>): Cause.Cause<E> => {
  const [first, ...others] = [...failures].sort((a, b) => a.index - b.index).map((f) => f.cause)
  return others.reduce((all, cause) => Cause.parallel(all, cause), first ?? Cause.empty)
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Hedge, InvalidConfigError> => Layer.effect(Hedge, make(options))
