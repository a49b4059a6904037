/**
 * A circuit breaker for one provider deployment.
 *
 * effect 3.x has none (the rezilience port in Effect-TS/effect#2854 never
 * merged), so this one is ours. It offers the seed's consecutive-failure mode
 * and resilience4j's sliding-window failure-rate and slow-call-rate modes
 * over a count or time window, with a half-open budget of trial calls. The
 * rules are 1-12 of docs/semantics.md; the state machine is pure
 * (`internal/breakerState.ts`) and its state lives in the {@link StateStore},
 * so N replicas on a shared store open one breaker together.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Chunk from "effect/Chunk"
import * as Admission from "./Admission.js"
import { type BreakerVerdict, breakerVerdict, CircuitOpenError, InvalidConfigError } from "./Errors.js"
import * as machine from "./internal/breakerState.js"
import { exitOf } from "./internal/done.js"
import { published as publishedStep } from "./internal/published.js"
import { decodeOptions, Millis, PositiveInt, PositiveLimitMillis, PositiveMillis, Ratio } from "./internal/config.js"
import * as metrics from "./internal/metrics.js"
import * as StateStore from "./StateStore.js"

/**
 * @since 0.1.0
 * @category models
 */
export type State = machine.State

/**
 * Open after `failures` failures in a row (the seed's mode, rule 7).
 *
 * @since 0.1.0
 * @category options
 */
export interface ConsecutiveTrigger {
  readonly kind: "consecutive"
  readonly failures: number
}

/**
 * Open when the failure rate (or the slow-call rate) of a sliding window is
 * at or above its threshold, once the window holds `minimumCalls` calls.
 *
 * @since 0.1.0
 * @category options
 */
export interface FailureRateTrigger {
  readonly kind: "failure-rate"
  readonly window:
    | { readonly kind: "count"; readonly size: number }
    /** `buckets` (default 10) slices of `duration`, aligned to the clock. */
    | { readonly kind: "time"; readonly duration: Duration.DurationInput; readonly buckets?: number }
  /** 0.5 = open at 50 % failures. */
  readonly threshold: number
  /** Default 10; clamped to the size of a count window. */
  readonly minimumCalls?: number
  /** Off unless set; needs `slowCallDuration`. */
  readonly slowCallRateThreshold?: number
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The deployment this breaker guards; it names the breaker in errors, metrics and the store. */
  readonly name: string
  /** Default: `{ kind: "consecutive", failures: 5 }`. */
  readonly trigger?: ConsecutiveTrigger | FailureRateTrigger
  /**
   * How long OPEN lasts before a trial (default 30 s). A `Schedule` or a
   * function of the opening's number (1, 2, ...) grows it on each consecutive
   * opening; it starts over when the breaker closes. A schedule is sampled
   * once, at construction, for the first 64 openings.
   */
  readonly openDuration?:
    | Duration.DurationInput
    | Schedule.Schedule<unknown, number>
    | ((opening: number) => Duration.DurationInput)
  /** Trial calls HALF_OPEN admits; in consecutive mode also the successes that close it. Default 1. */
  readonly permittedCallsInHalfOpen?: number
  /**
   * A half-open period whose trials have not all finished by then re-opens
   * (rule 10). Default 60 s; `Duration.infinity` switches it off.
   */
  readonly maxHalfOpenDuration?: Duration.DurationInput
  /** Calls strictly slower than this are slow (rule 6). Off unless set. */
  readonly slowCallDuration?: Duration.DurationInput
  /** Count an upstream 429 as a failure. Default false: 429 is the key pool's business (rule 1). */
  readonly countUpstreamRateLimit?: boolean
  /** Overrides the verdict for an error; `undefined` keeps the default of the error table. */
  readonly classify?: (error: unknown) => BreakerVerdict | undefined
  /**
   * The verdict for a value (an answer the retry may also retry on, such as an
   * empty completion); `undefined` or unset: a success. An answer is a
   * success unless this says otherwise.
   */
  readonly classifyResult?: (value: unknown) => BreakerVerdict | undefined
  /** Called with every state change, in order, before the call that caused it goes on. */
  readonly onTransition?: (transition: Transition) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Transition {
  readonly breaker: string
  readonly from: State
  readonly to: State
  /** Epoch milliseconds on the effect `Clock`. */
  readonly at: number
  readonly reason: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly name: string
  readonly state: State
  readonly generation: number
  /** Calls in the current window (failure-rate mode). */
  readonly calls: number
  /** Failures in the current window (slow failures included). */
  readonly failures: number
  /** Calls in the current window strictly slower than `slowCallDuration` (failed or not). */
  readonly slowCalls: number
  /** Calls in the current window both slow and failed. */
  readonly slowFailures: number
  /** Calls this breaker refused since it was built (this process). */
  readonly notPermitted: number
  /** Calls the window must hold before its rates count (0 in consecutive mode). */
  readonly minimumCalls: number
  /** False while the window holds fewer than `minimumCalls`: its rates are "not rated yet" and cannot open it. */
  readonly rated: boolean
  readonly failureRate: number
  readonly slowCallRate: number
  readonly consecutiveFailures: number
  /** Consecutive openings since the last close. */
  readonly openings: number
  /** When OPEN, the epoch milliseconds of the next trial. */
  readonly retryAt: number | undefined
  readonly halfOpenTrials: { readonly admitted: number; readonly done: number } | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** The breaker's admission: a permit per call (or `CircuitOpenError`), released with the call's outcome. */
  readonly gate: Admission.Gate<void, Admission.Permit, CircuitOpenError>
  /** Runs `self` if the breaker admits it, and records its outcome. */
  readonly execute: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpenError, R>
  readonly status: Effect.Effect<Status>
  /** Every state change, in order, from the moment the stream starts running. */
  readonly transitions: Stream.Stream<Transition>
  /** A queue of every state change from now on; unsubscribes when the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Transition>, never, Scope.Scope>
  /** Rejects every call until `reset` or `forceClosed`. */
  readonly forceOpen: Effect.Effect<void>
  /** Admits every call and keeps recording for status, but never opens. */
  readonly forceClosed: Effect.Effect<void>
  /** Admits every call and records nothing. */
  readonly disable: Effect.Effect<void>
  /** Back to CLOSED with a fresh window and open-duration schedule. */
  readonly reset: Effect.Effect<void>
}

/**
 * The single-breaker service, for programs that guard one deployment.
 *
 * @since 0.1.0
 * @category tags
 */
export class CircuitBreaker extends Context.Tag("@resilient-ai/core/CircuitBreaker")<CircuitBreaker, Service>() {}

/**
 * What a breaker uses where its options are silent: 5 failures in a row
 * open it; a failure-rate window's rates count from 10 calls on. Exported
 * for what draws a breaker against its thresholds (the gateway's
 * dashboard), so the numbers live here only.
 *
 * @since 0.1.0
 * @category defaults
 */
export const defaults = { failures: 5, minimumCalls: 10 } as const

const TriggerSchema = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("consecutive"), failures: PositiveInt }),
  Schema.Struct({
    kind: Schema.Literal("failure-rate"),
    window: Schema.Union(
      Schema.Struct({ kind: Schema.Literal("count"), size: PositiveInt }),
      Schema.Struct({
        kind: Schema.Literal("time"),
        duration: PositiveMillis,
        buckets: Schema.optionalWith(PositiveInt, { default: () => 10 })
      })
    ),
    threshold: Ratio,
    minimumCalls: Schema.optionalWith(PositiveInt, { default: () => defaults.minimumCalls }),
    slowCallRateThreshold: Schema.optional(Ratio)
  })
)

const OptionsSchema = Schema.Struct({
  name: Schema.NonEmptyTrimmedString,
  trigger: Schema.optionalWith(TriggerSchema, {
    default: () => ({ kind: "consecutive", failures: defaults.failures }) as const
  }),
  openDuration: Schema.optional(Schema.Unknown),
  permittedCallsInHalfOpen: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  maxHalfOpenDuration: Schema.optionalWith(PositiveLimitMillis, { default: () => 60_000 }),
  slowCallDuration: Schema.optional(Millis),
  countUpstreamRateLimit: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  classify: Schema.optional(Schema.declare(Predicate.isFunction)),
  classifyResult: Schema.optional(Schema.declare(Predicate.isFunction)),
  onTransition: Schema.optional(Schema.declare(Predicate.isFunction))
})

const SAMPLED_OPENINGS = 64

const resolveOpenDuration = (
  component: string,
  input: Options["openDuration"]
): Effect.Effect<(opening: number) => number, InvalidConfigError> => {
  if (input === undefined) return Effect.succeed(() => 30_000)
  if (Schedule.isSchedule(input)) {
    const schedule = input as Schedule.Schedule<unknown, number>
    const inputs = Array.from({ length: SAMPLED_OPENINGS }, (_, i) => i + 1)
    return Schedule.run(Schedule.delays(schedule), 0, inputs).pipe(
      Effect.map((delays) => {
        const table = Chunk.toReadonlyArray(delays).map(Duration.toMillis)
        const last = table[table.length - 1] ?? 30_000
        return (opening: number) => table[opening - 1] ?? last
      })
    )
  }
  if (Predicate.isFunction(input)) {
    const f = input
    return Effect.succeed((opening: number) => {
      const d = Duration.decodeUnknown(f(opening))
      return Option.isSome(d) && Duration.isFinite(d.value) ? Math.max(0, Duration.toMillis(d.value)) : 30_000
    })
  }
  return Effect.map(decodeOptions(component, Schema.Struct({ openDuration: Millis }), { openDuration: input }), (o) => {
    const ms = o.openDuration
    return () => ms
  })
}

const stateCode: Record<State, number> = {
  closed: 0,
  open: 1,
  "half-open": 2,
  "forced-open": 3,
  "forced-closed": 4,
  disabled: 5
}

/**
 * Builds a breaker whose state lives in the `StateStore`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Service, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const component = `CircuitBreaker "${options.name}"`
    const o = yield* decodeOptions(component, OptionsSchema, options)
    const openMillis = yield* resolveOpenDuration(component, options.openDuration)
    if (o.trigger.kind === "failure-rate" && o.trigger.slowCallRateThreshold !== undefined && o.slowCallDuration === undefined) {
      return yield* new InvalidConfigError({
        component,
        path: "slowCallDuration",
        detail: "trigger.slowCallRateThreshold needs slowCallDuration to say what a slow call is"
      })
    }
    const trigger: machine.Config["trigger"] = o.trigger.kind === "consecutive"
      ? o.trigger
      : {
        kind: "failure-rate",
        threshold: o.trigger.threshold,
        minimumCalls: o.trigger.minimumCalls,
        slowCallRateThreshold: o.trigger.slowCallRateThreshold,
        window: o.trigger.window.kind === "count"
          ? o.trigger.window
          : {
            kind: "time",
            buckets: o.trigger.window.buckets,
            bucketMillis: o.trigger.window.duration / o.trigger.window.buckets
          }
      }
    const config: machine.Config = {
      trigger,
      slowCallMillis: o.slowCallDuration,
      permittedCallsInHalfOpen: o.permittedCallsInHalfOpen,
      // `Duration.infinity` switches rule 10 off: a half-open period then waits for its trials however long they take.
      maxHalfOpenMillis: o.maxHalfOpenDuration === Infinity ? undefined : o.maxHalfOpenDuration,
      openMillis
    }
    const store = yield* StateStore.StateStore
    const pubsub = yield* PubSub.unbounded<Transition>()
    const breaker = makeWith(o.name, config, store, pubsub, {
      countUpstreamRateLimit: o.countUpstreamRateLimit,
      classify: options.classify,
      classifyResult: options.classifyResult
    }, options.onTransition)
    yield* breaker.status // the state gauge shows the breaker from the start, not from its first transition
    return breaker
  })

const makeWith = (
  name: string,
  config: machine.Config,
  store: StateStore.Service,
  pubsub: PubSub.PubSub<Transition>,
  verdicts: {
    readonly countUpstreamRateLimit: boolean
    readonly classify: Options["classify"]
    readonly classifyResult: Options["classifyResult"]
  },
  onTransition: Options["onTransition"]
): Service => {
  const slot = store.breaker(name, config)
  const gauge = metrics.gauge(
    "resilient_ai_breaker_state",
    "0 closed, 1 open, 2 half-open, 3 forced-open, 4 forced-closed, 5 disabled",
    { breaker: name }
  )
  const counted = (outcome: string) =>
    metrics.counter(
      "resilient_ai_breaker_calls_total",
      "calls seen by a circuit breaker, by outcome (success, failure, ignored, not-permitted)",
      { breaker: name, outcome }
    )
  const calls: Record<machine.Outcome | "notPermitted", Metric.Metric.Counter<number>> = {
    success: counted("success"),
    failure: counted("failure"),
    ignored: counted("ignored"),
    notPermitted: counted("not-permitted")
  }
  let notPermitted = 0

  const publish = (transitions: ReadonlyArray<machine.Transition>): Effect.Effect<void> => {
    const last = transitions[transitions.length - 1]
    if (last === undefined) return Effect.void
    gauge.unsafeUpdate(stateCode[last.to], [])
    const named = transitions.map((t): Transition => ({ breaker: name, ...t }))
    const published = PubSub.publishAll(pubsub, named)
    return onTransition === undefined
      ? published
      : Effect.zipRight(published, Effect.forEach(named, onTransition, { discard: true }))
  }

  /** A store step's result, after its transitions are published. */
  const published = <A>(step: Effect.Effect<machine.Step<A>>): Effect.Effect<A> => publishedStep(step, publish)

  const verdictOf = (error: unknown): BreakerVerdict => {
    const custom = verdicts.classify?.(error)
    if (custom !== undefined) return custom
    if (Predicate.isTagged(error, "RateLimitError")) {
      // Rule 2: a local limiter's refusal never enters the window.
      const source = (error as { readonly source?: unknown }).source
      return source === "upstream" && verdicts.countUpstreamRateLimit ? "failure" : "ignored"
    }
    return breakerVerdict(error)
  }

  const outcomeOf = (exit: Exit.Exit<unknown, unknown>): machine.Outcome => {
    if (Exit.isSuccess(exit)) return verdicts.classifyResult?.(exit.value) ?? "success"
    // Rule 1: interruption from outside says nothing about the provider.
    if (Cause.isInterruptedOnly(exit.cause)) return "ignored"
    const failure = Cause.failureOption(exit.cause)
    return Option.isSome(failure) ? verdictOf(failure.value) : "failure"
  }

  /**
   * An admitted call; rule 11: its generation decides whether its outcome counts. Its duration runs from when the
   * call began, after the gates inside the breaker: a wait in our own bulkhead or limiter is not the provider's
   * slowness (rule 6).
   */
  class Admitted implements Admission.Permit {
    constructor(readonly admission: machine.Admitted) {}
    release(exit: Exit.Exit<unknown, unknown>, now: number, started: number): Effect.Effect<void> {
      const outcome = outcomeOf(exit)
      calls[outcome].unsafeUpdate(1, [])
      return published(slot.record(this.admission, outcome, now - started, now))
    }
  }
  // A disabled breaker admits every call and records nothing.
  const unrecorded: Admission.Permit = { release: () => Effect.void }

  // Errors are immutable values: the rejections of one open period (same state, same `retryAt`) share one.
  let lastRejection: CircuitOpenError | undefined
  const refusal = (rejection: machine.Rejection): CircuitOpenError => {
    calls.notPermitted.unsafeUpdate(1, [])
    notPermitted++
    let error = lastRejection
    if (error === undefined || error.state !== rejection.state || error.retryAt !== rejection.retryAt) {
      error = new CircuitOpenError({
        breaker: name,
        state: rejection.state,
        ...(rejection.retryAt === undefined ? {} : { retryAt: rejection.retryAt }),
        deployment: name
      }, true) // checked fields, in the schema's order (validation would reorder them): no validation per rejection
      lastRejection = error
    }
    return error
  }

  const permitOf = (admission: machine.Admission): Effect.Effect<Admission.Permit, CircuitOpenError> => {
    if (admission._tag === "rejected") return Exit.fail(refusal(admission.rejection))
    return Exit.succeed(admission.recorded ? new Admitted(admission) : unrecorded)
  }

  const gate: Admission.Gate<void, Admission.Permit, CircuitOpenError> = {
    acquire: (_, { now }) => {
      const step = slot.admit(now)
      const done = exitOf(step)
      if (done !== undefined && Exit.isSuccess(done) && done.value.transitions.length === 0) {
        return permitOf(done.value.result)
      }
      return Effect.flatMap(published(step), permitOf)
    }
  }

  const execute = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | CircuitOpenError, R> =>
    Admission.execute(gate, undefined, () => self)

  const status = Effect.clockWith((clock) => {
    const now = clock.unsafeCurrentTimeMillis()
    return Effect.map(published(slot.read(now)), (next): Status => {
      // A shared store may have moved without this process seeing a transition: the gauge follows every read.
      gauge.unsafeUpdate(stateCode[next.state], [])
      const t = machine.counts(config, next.window, now)
      const minimumCalls = config.trigger.kind === "consecutive" ? 0 : machine.effectiveMinimumCalls(config)
      return {
        name,
        state: next.state,
        generation: next.generation,
        calls: t.calls,
        failures: t.failures,
        slowCalls: t.slow,
        slowFailures: t.slowFailures,
        notPermitted,
        minimumCalls,
        rated: config.trigger.kind === "consecutive" || t.calls >= minimumCalls,
        failureRate: t.calls === 0 ? 0 : t.failures / t.calls,
        slowCallRate: t.calls === 0 ? 0 : t.slow / t.calls,
        consecutiveFailures: next.consecutiveFailures,
        openings: next.openings,
        retryAt: next.state === "open" ? next.openUntil : undefined,
        halfOpenTrials: next.state === "half-open" ? { admitted: next.trials.admitted, done: next.trials.done } : undefined
      }
    })
  })

  const force = (to: "forced-open" | "forced-closed" | "disabled" | "closed") =>
    Effect.clockWith((clock) => published(slot.force(to, clock.unsafeCurrentTimeMillis())))

  return {
    name,
    gate,
    execute,
    status,
    transitions: Stream.fromPubSub(pubsub),
    subscribe: PubSub.subscribe(pubsub),
    forceOpen: force("forced-open"),
    forceClosed: force("forced-closed"),
    disable: force("disabled"),
    reset: force("closed")
  }
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<CircuitBreaker, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(CircuitBreaker, make(options))

