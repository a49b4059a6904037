/**
 * A circuit breaker for one provider deployment.
 *
 * effect 3.x has none (the rezilience port in Effect-TS/effect#2854 never
 * merged), so this one is ours. It offers the seed's consecutive-failure mode
 * and resilience4j's sliding-window failure-rate and slow-call-rate modes
 * over a count or time window, with a half-open budget of trial calls. The
 * rules are SEMANTICS.md 1-12; the state machine is pure
 * (`internal/breakerState.ts`) and its state lives in the {@link StateStore},
 * so N replicas on a shared store open one breaker together.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
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
import { type BreakerVerdict, breakerVerdict, CircuitOpenError, InvalidConfigError } from "./Errors.js"
import * as machine from "./internal/breakerState.js"
import { exitOf } from "./internal/done.js"
import * as fastPath from "./internal/fastPath.js"
import { decodeOptions, Millis, PositiveInt, PositiveMillis, Ratio } from "./internal/config.js"
import * as metrics from "./internal/metrics.js"
import * as StateStore from "./StateStore.js"
import { clockOf } from "./internal/fiberClock.js"

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
  /** A half-open period whose trials have not all finished by then re-opens (rule 10). Default 60 s. */
  readonly maxHalfOpenDuration?: Duration.DurationInput
  /** Calls strictly slower than this are slow (rule 6). Off unless set. */
  readonly slowCallDuration?: Duration.DurationInput
  /** Count an upstream 429 as a failure. Default false: 429 is the key pool's business (rule 1). */
  readonly countUpstreamRateLimit?: boolean
  /** Overrides the verdict for an error; `undefined` keeps the default of the error table. */
  readonly classify?: (error: unknown) => BreakerVerdict | undefined
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
    minimumCalls: Schema.optionalWith(PositiveInt, { default: () => 10 }),
    slowCallRateThreshold: Schema.optional(Ratio)
  })
)

const OptionsSchema = Schema.Struct({
  name: Schema.NonEmptyTrimmedString,
  trigger: Schema.optionalWith(TriggerSchema, {
    default: () => ({ kind: "consecutive", failures: 5 }) as const
  }),
  openDuration: Schema.optional(Schema.Unknown),
  permittedCallsInHalfOpen: Schema.optionalWith(PositiveInt, { default: () => 1 }),
  maxHalfOpenDuration: Schema.optionalWith(PositiveMillis, { default: () => 60_000 }),
  slowCallDuration: Schema.optional(Millis),
  countUpstreamRateLimit: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  classify: Schema.optional(Schema.declare(Predicate.isFunction)),
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
      maxHalfOpenMillis: o.maxHalfOpenDuration,
      openMillis
    }
    const store = yield* StateStore.StateStore
    const pubsub = yield* PubSub.unbounded<Transition>()
    const breaker = makeWith(o.name, config, store, pubsub, {
      countUpstreamRateLimit: o.countUpstreamRateLimit,
      classify: options.classify
    }, options.onTransition)
    yield* breaker.status // the state gauge shows the breaker from the start, not from its first transition
    return breaker
  })

const makeWith = (
  name: string,
  config: machine.Config,
  store: StateStore.Service,
  pubsub: PubSub.PubSub<Transition>,
  verdicts: { readonly countUpstreamRateLimit: boolean; readonly classify: Options["classify"] },
  onTransition: Options["onTransition"]
): Service => {
  const key = StateStore.key(`breaker/${name}`, () => machine.initial(config))
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

  /** One atomic step of the machine at `now`; publishes the transitions it made, if any. */
  const stepAt = <A>(now: number, f: (s: machine.BreakerState, now: number) => machine.Step<A>): Effect.Effect<A> =>
    Effect.flatMap(
      store.modify(key, (s) => {
        const result = f(s, now)
        return [result, result.state] as const
      }),
      (result) =>
        result.transitions.length === 0 ? Effect.succeed(result.result) : Effect.as(publish(result.transitions), result.result)
    )

  const step = <A>(f: (s: machine.BreakerState, now: number) => machine.Step<A>): Effect.Effect<A> =>
    Effect.clockWith((clock) => stepAt(clock.unsafeCurrentTimeMillis(), f))

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

  const outcomeOf = <E>(cause: Cause.Cause<E>): machine.Outcome => {
    // Rule 1: interruption from outside says nothing about the provider.
    if (Cause.isInterruptedOnly(cause)) return "ignored"
    const failure = Cause.failureOption(cause)
    return Option.isSome(failure) ? verdictOf(failure.value) : "failure"
  }

  /** The breaker's slot, when the store is synchronous (the in-memory store). */
  const sync = fastPath.syncCell(store, key)

  // The admission of the last state seen that admits without moving: the hot path reuses it while
  // the state object is the same (a state is never mutated).
  let unchangedPlan: fastPath.BreakerPlan | undefined
  const planUnchanged = (state: machine.BreakerState): fastPath.BreakerPlan | undefined => {
    if (state !== unchangedPlan?.state) {
      const admitted = machine.admitUnchanged(state)
      unchangedPlan = admitted === undefined ? undefined : { result: admitted, state, transitions: [] }
      if (unchangedPlan === undefined) return undefined
    }
    return unchangedPlan
  }

  /** One step of the machine run at once on a synchronous store. */
  const syncStep = <A>(cell: fastPath.SyncCell<machine.BreakerState>, f: (s: machine.BreakerState) => machine.Step<A>) => {
    const result = f(cell.get())
    cell.set(result.state)
    return result
  }

  /**
   * Whether a success outside half-open needs the time it ended: only to
   * measure a slow call or to fill a time window. In consecutive mode without
   * `slowCallDuration` the machine never reads it (nothing moves on such a
   * success), so the hot path skips that clock read.
   */
  const timeless = config.trigger.kind === "consecutive" && config.slowCallMillis === undefined

  /** Records an outcome: synchronously on a synchronous store (then an effect only to publish transitions). */
  const record = (
    admission: machine.Admitted,
    outcome: machine.Outcome,
    start: number,
    clock: Clock.Clock
  ): Effect.Effect<void> | undefined => {
    calls[outcome].unsafeUpdate(1, [])
    const now = timeless && outcome !== "failure" && !admission.trial ? start : clock.unsafeCurrentTimeMillis()
    if (sync === undefined) return stepAt(now, (s) => machine.record(config, s, admission, outcome, now - start, now))
    const state = sync.get()
    if (machine.recordIsNoop(state, admission, outcome)) return undefined
    const result = machine.record(config, state, admission, outcome, now - start, now)
    sync.set(result.state)
    return result.transitions.length === 0 ? undefined : publish(result.transitions)
  }

  // Errors are immutable values: the rejections of one open period (same state, same `retryAt`) share one.
  let lastRejection: CircuitOpenError | undefined
  const rejectedWith = (rejection: machine.Rejection): Effect.Effect<never, CircuitOpenError> => {
    calls.notPermitted.unsafeUpdate(1, [])
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
    return Effect.fail(error)
  }

  /**
   * On a synchronous store, the decision at `now` (an admission or a
   * refusal) when it makes no transition, and the state that follows; nothing
   * is taken (see internal/fastPath.ts).
   */
  const planAt = (now: number): fastPath.BreakerPlan | undefined => {
    if (sync === undefined) return undefined
    const state = sync.get()
    const unchanged = planUnchanged(state)
    if (unchanged !== undefined) return unchanged
    const result = machine.admit(config, state, now)
    return result.transitions.length === 0 ? result : undefined
  }

  // The hot path: one effect op decides the admission (one clock read, one store step), and the
  // outcome is recorded in the handler of `matchCauseEffect`, inside the same mask. An effect that
  // is done already (an `Exit`) is admitted and recorded in one op: nothing can interrupt in between.
  const execute = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | CircuitOpenError, R> => {
    const done = exitOf(self)
    return sync === undefined || done === undefined ? executeMasked(self) : executeDone(done, sync)
  }

  const executeDone = <A, E>(
    self: Exit.Exit<A, E>,
    cell: fastPath.SyncCell<machine.BreakerState>
  ): Effect.Effect<A, E | CircuitOpenError> =>
    Effect.withFiberRuntime((fiber) => {
      const clock = clockOf(fiber)
      const start = clock.unsafeCurrentTimeMillis()
      const plan = planAt(start)
      // A transition to publish: the effectful path, with nothing taken here.
      if (plan === undefined) return executeMasked(self)
      cell.set(plan.state)
      const admission = plan.result
      if (admission._tag === "rejected") return rejectedWith(admission.rejection)
      if (!admission.recorded) return self
      const recorded = record(admission, Exit.isSuccess(self) ? "success" : outcomeOf(self.cause), start, clock)
      return recorded === undefined ? self : Effect.uninterruptible(Effect.zipRight(recorded, self))
    })

  const executeMasked = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | CircuitOpenError, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.withFiberRuntime<A, E | CircuitOpenError, R>((fiber) => {
        const clock = clockOf(fiber)
        const start = clock.unsafeCurrentTimeMillis()
        const admitted = (admission: machine.Admission): Effect.Effect<A, E | CircuitOpenError, R> => {
          if (admission._tag === "rejected") return rejectedWith(admission.rejection)
          if (!admission.recorded) return restore(self)
          return Effect.matchCauseEffect(restore(self), {
            onFailure: (cause) => {
              const recorded = record(admission, outcomeOf(cause), start, clock)
              return recorded === undefined ? Exit.failCause(cause) : Effect.zipRight(recorded, Exit.failCause(cause))
            },
            onSuccess: (a) => {
              const recorded = record(admission, "success", start, clock)
              return recorded === undefined ? Exit.succeed(a) : Effect.as(recorded, a)
            }
          })
        }
        if (sync === undefined) return Effect.flatMap(stepAt(start, (s) => machine.admit(config, s, start)), admitted)
        const unchanged = planUnchanged(sync.get())
        if (unchanged !== undefined) return admitted(unchanged.result)
        const result = syncStep(sync, (s) => machine.admit(config, s, start))
        return result.transitions.length === 0
          ? admitted(result.result)
          : Effect.zipRight(publish(result.transitions), Effect.suspend(() => admitted(result.result)))
      })
    )

  const status = step((s, now) => {
    const transitions: Array<machine.Transition> = []
    const next = machine.advance(config, s, now, transitions)
    // A shared store may have moved without this process seeing a transition: the gauge follows every read.
    gauge.unsafeUpdate(stateCode[next.state], [])
    const t = machine.tally(config, next.window, now)
    const result: Status = {
      name,
      state: next.state,
      generation: next.generation,
      calls: t.calls,
      failureRate: t.calls === 0 ? 0 : t.failures / t.calls,
      slowCallRate: t.calls === 0 ? 0 : t.slow / t.calls,
      consecutiveFailures: next.consecutiveFailures,
      openings: next.openings,
      retryAt: next.state === "open" ? next.openUntil : undefined,
      halfOpenTrials: next.state === "half-open" ? { admitted: next.trials.admitted, done: next.trials.done } : undefined
    }
    return { result, state: next, transitions }
  })

  const force = (to: "forced-open" | "forced-closed" | "disabled" | "closed") =>
    step((s, now) => machine.force(config, s, to, now))

  const service: Service = {
    name,
    execute,
    status,
    transitions: Stream.fromPubSub(pubsub),
    subscribe: PubSub.subscribe(pubsub),
    forceOpen: force("forced-open"),
    forceClosed: force("forced-closed"),
    disable: force("disabled"),
    reset: force("closed")
  }
  if (sync !== undefined) {
    fastPath.breakers.set(service, {
      plan: planAt,
      take: (state) => sync.set(state),
      refuse: (state, rejection) => {
        sync.set(state)
        return rejectedWith(rejection)
      },
      leave: (admission, cause, start, clock) =>
        admission.recorded ? record(admission, cause === undefined ? "success" : outcomeOf(cause), start, clock) : undefined
    })
  }
  return service
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<CircuitBreaker, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(CircuitBreaker, make(options))

