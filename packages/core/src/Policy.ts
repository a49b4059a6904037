/**
 * The policies of one provider deployment, composed in the decided order
 * (docs/semantics.md rule 18), outermost first, as {@link order} states it:
 *
 * ```
 * total timeout → retry (with budget) → circuit breaker → key pool → rate limiter → bulkhead → attempt timeout → call
 * ```
 *
 * So the breaker sees every attempt (it measures the provider, not the
 * user's request), a circuit-open error is never retried against the same
 * breaker, and a retry's sleep holds no bulkhead permit or limiter grant.
 * With a key pool, each attempt takes a healthy key between the breaker and
 * the limiter; a retry tries the keys not yet tried first, and the limiter is
 * per key (providers limit requests and tokens per key).
 *
 * Each stage is given as options or as an existing service (a breaker
 * shared by two deployments, a limiter provided by a layer). `make` turns
 * {@link order} into a plan once; a call runs the plan: the wrappers (the
 * timeouts, the retry) around the gates of the stateful policies, which are
 * admitted together through their `Admission` contract, so an attempt
 * through four gates costs one uninterruptible region.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as AdaptiveLimit from "./AdaptiveLimit.js"
import * as Admission from "./Admission.js"
import * as AttemptEvents from "./AttemptEvents.js"
import * as Bulkhead from "./Bulkhead.js"
import * as CircuitBreaker from "./CircuitBreaker.js"
import * as Deadline from "./Deadline.js"
import type { BudgetExhaustedError, BulkheadFullError, CircuitOpenError, NoKeyAvailableError } from "./Errors.js"
import {
  allConfigErrors,
  configPathUnder,
  InvalidConfigError,
  isResilienceError,
  type RateLimitError,
  TimeoutError,
  withConfigPaths
} from "./Errors.js"
import { decodeOptions, PositiveLimitMillis } from "./internal/config.js"
import * as DeadlineQueue from "./internal/deadlineQueue.js"
import { exitOf } from "./internal/done.js"
import { clockOf } from "./internal/fiberClock.js"
import * as RequestScope from "./internal/requestScope.js"
import * as internalTimeout from "./internal/timeout.js"
import type * as KeyPool from "./KeyPool.js"
import * as RateLimiter from "./RateLimiter.js"
import * as AttemptCharge from "./internal/attemptCharge.js"
import * as RequestBudget from "./RequestBudget.js"
import * as Retry from "./Retry.js"
import * as RetryBudget from "./RetryBudget.js"
import type * as StateStore from "./StateStore.js"
import * as Timeout from "./Timeout.js"

/**
 * Each policy is on with its defaults unless set to `false`, except the
 * rate limiter, the bulkhead and the timeouts, which need numbers only the
 * user knows (the provider's limits, the model's speed) and are off unless set.
 *
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Names every policy of the deployment: breaker, limiter, bulkhead and budget state. */
  readonly deployment: string
  readonly provider?: string
  /** The whole call, retries included: sets the request's `Deadline`. */
  readonly totalTimeout?: Duration.DurationInput
  /** One attempt; the call is interrupted when it fires. */
  readonly attemptTimeout?: Duration.DurationInput
  /**
   * Options, or a retry built elsewhere (then `retryBudget` and the attempt
   * events are that retry's own business).
   */
  readonly retry?: Omit<Retry.Options, "name" | "budget"> | Retry.Service | false
  /** Default: retries add at most 20 % to the first attempts of a 10 s window. A budget may be shared. */
  readonly retryBudget?: Omit<RetryBudget.Options, "name"> | RetryBudget.Service | false
  /** Default: open after 5 consecutive failures for 30 s, one trial. A breaker may be shared by deployments. */
  readonly circuitBreaker?: Omit<CircuitBreaker.Options, "name"> | CircuitBreaker.Service | false
  /** The keys of the deployment; a pool may be shared by deployments of one account. */
  readonly keyPool?: KeyPool.Service
  /**
   * Requests and tokens per minute: options make one limiter per key when
   * there is a key pool, else one for the deployment; a limiter service is
   * used as it is, for every key.
   */
  readonly rateLimiter?: Omit<RateLimiter.Options, "name" | "deployment" | "provider"> | RateLimiter.Service
  /**
   * A fixed limit (options or a service), or one that learns
   * (`{ adaptive: {...} }` or an `AdaptiveLimit` service, rule 29).
   */
  readonly bulkhead?:
    | Omit<Bulkhead.Options, "name">
    | Bulkhead.Service
    | { readonly adaptive: Omit<AdaptiveLimit.Options, "name" | "onChange"> }
    | AdaptiveLimit.Service
  /**
   * For limiters made from options: an upstream 429 with Retry-After pauses
   * the limiter of its key (or deployment) until then. Default true.
   */
  readonly pauseLimiterOnRateLimit?: boolean
}

/**
 * What the call is told about the attempt it serves.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempt {
  readonly deployment: string
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number
  /** The key to send, when the deployment has a key pool. */
  readonly key: KeyPool.PickedKey | undefined
  /**
   * The attempt's time limit (the attempt timeout, or the request's deadline
   * when it comes first), for a call made with `appliesTimeLimit`: the call
   * puts it around the part of its work the limit is for. For any other call
   * it is the identity: the policy limits the whole call.
   */
  readonly timeLimit: Timeout.Timeout
}

/**
 * Per call: its estimated tokens for the limiter and money for the request's
 * budget, and how to read the real ones from the answer.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions<A> {
  // The functions are methods, not function-valued properties: methods are bivariant in their
  // parameter, so a call's `CallOptions<A>` is stored as the `CallOptions<unknown>` of its run
  // without wrapping each function per call. Each is only ever given the value of that call: an `A`.
  readonly tokens?: number
  usage?(a: A): number | undefined
  /** Estimated cost of one attempt, drawn from the request's `RequestBudget`. */
  readonly estimatedCostUsd?: number
  /** The size of an answer (its output tokens), so an adaptive limit does not read a long answer as a slow provider. */
  work?(a: A): number | undefined
  /** The real cost of an answered attempt, to correct the estimate. */
  costUsd?(a: A): number | undefined
  /** A session or prompt-prefix hash: pins the call to one healthy key (the provider's prompt cache). */
  readonly affinity?: string
  /**
   * Retries an attempt whose value this holds for (an empty completion), on
   * top of the retry's own `retryOnResult`; when retries run out the last
   * value is returned.
   */
  retryOnResult?(a: A): boolean
  /**
   * The call applies the attempt's time limit itself, with
   * {@link Attempt.timeLimit}, to the part of its work the limit is for: a
   * stream until its first output, after which the transport's stall timeout
   * guards it (docs/semantics.md rule 28). The total timeout then sets the
   * request's deadline without cutting the call. Default false: the whole
   * call is limited. The gates see the whole call's outcome either way.
   */
  readonly appliesTimeLimit?: boolean
}

/**
 * An answer and how the deployment produced it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Detailed<A> {
  readonly value: A
  readonly deployment: string
  /** The key that answered, if the deployment has a key pool. */
  readonly keyName: string | undefined
  /** True when another key than the first one tried answered. */
  readonly backupKey: boolean
  /** Attempts this call made on this deployment. */
  readonly attempts: number
}

/**
 * The errors the policies themselves add to a call's error channel.
 *
 * @since 0.1.0
 * @category models
 */
export type PolicyError =
  | CircuitOpenError
  | BulkheadFullError
  | RateLimitError
  | TimeoutError
  | BudgetExhaustedError
  | NoKeyAvailableError

/**
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly deployment: string
  readonly circuitBreaker: CircuitBreaker.Status | undefined
  readonly bulkhead: Bulkhead.Status | undefined
  readonly adaptiveLimit: AdaptiveLimit.Status | undefined
  readonly rateLimiter: RateLimiter.Status | undefined
  /** Per key name, when the limiter is per key. */
  readonly keyRateLimiters: Readonly<Record<string, RateLimiter.Status>> | undefined
  readonly keyPool: KeyPool.Status | undefined
  readonly retryBudget: RetryBudget.Status | undefined
}

/**
 * The attempt an effect run by {@link Service.execute} serves: its number and its key.
 *
 * @since 0.1.0
 * @category tags
 */
export class CurrentAttempt extends Context.Tag("@resilient-ai/core/Policy/CurrentAttempt")<CurrentAttempt, Attempt>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Execute {
  <A, E, R>(effect: Effect.Effect<A, E, R>, options?: CallOptions<A>): Effect.Effect<A, E | PolicyError, Exclude<R, CurrentAttempt>>
  <A, E, R>(call: (attempt: Attempt) => Effect.Effect<A, E, R>, options?: CallOptions<A>): Effect.Effect<A, E | PolicyError, R>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ExecuteDetailed {
  <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: CallOptions<A>
  ): Effect.Effect<Detailed<A>, E | PolicyError, Exclude<R, CurrentAttempt>>
  <A, E, R>(
    call: (attempt: Attempt) => Effect.Effect<A, E, R>,
    options?: CallOptions<A>
  ): Effect.Effect<Detailed<A>, E | PolicyError, R>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly deployment: string
  /**
   * Runs a call under the policies: an effect, run once per attempt, that
   * reads its attempt (and key) from {@link CurrentAttempt}, as every
   * policy's `execute(effect, options)` does; or a function of the attempt.
   */
  readonly execute: Execute
  /** `execute`, telling which key answered and after how many attempts. */
  readonly executeDetailed: ExecuteDetailed
  readonly keyPool: KeyPool.Service | undefined
  readonly circuitBreaker: CircuitBreaker.Service | undefined
  readonly bulkhead: Bulkhead.Service | undefined
  readonly adaptiveLimit: AdaptiveLimit.Service | undefined
  readonly rateLimiter: RateLimiter.Service | undefined
  readonly retryBudget: RetryBudget.Service | undefined
  readonly status: Effect.Effect<Status>
}

/**
 * The order of rule 18, outermost first: the one place it is written.
 * `make` folds it into a plan; the attempts of a call begin inside `retry`.
 *
 * @since 0.1.0
 * @category models
 */
export const order = [
  "totalTimeout",
  "retry",
  "circuitBreaker",
  "keyPool",
  "rateLimiter",
  "bulkhead",
  "attemptTimeout"
] as const

/**
 * @since 0.1.0
 * @category models
 */
export type Stage = typeof order[number]

/** What one call (all its attempts) keeps, and what its gates hand each other. */
interface Run {
  readonly callOptions: CallOptions<unknown>
  /** The limiter's request: the call's tokens, and how to read the tokens it used. */
  readonly limiterRequest: RateLimiter.Request
  attempts: number
  /** Keys of earlier attempts, made at the second attempt (the pool picks them last). */
  tried: Set<string> | undefined
  firstKey: string | undefined
  lastKey: string | undefined
  /** The key the pool admitted this attempt on. */
  key: KeyPool.KeyPermit | undefined
}

/** One element of the plan: a wrapper around what is inside, or gates admitted together. */
type Step =
  | {
    readonly _tag: "Wrap"
    readonly stage: "totalTimeout"
    readonly wrap: Wrap
    /** The deadline alone, for a call that applies its time limit itself. */
    readonly deadline: Wrap
  }
  /** Always in the plan: the attempts of a call begin inside it. */
  | { readonly _tag: "Retry"; readonly retry: Retry.Service | undefined }
  | { readonly _tag: "Gates"; readonly gates: ReadonlyArray<Admission.Gate<Run, Admission.Permit, PolicyError>> }

type Wrap = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | PolicyError, R>

type GateOf = Admission.Gate<Run, Admission.Permit, PolicyError>

const noCallOptions: CallOptions<unknown> = {}
const noLimiterRequest: RateLimiter.Request = {}
const noKeyOptions: KeyPool.WithKeyOptions = {}

/** A service given for a stage, or options to build one: services carry their admission gate or their `execute`. */
const isService = <S extends object>(value: object, member: keyof S): value is S => member in value

/** The services of a deployment's stages: made from options, or given. */
interface Stages {
  readonly circuitBreaker: CircuitBreaker.Service | undefined
  readonly retryBudget: RetryBudget.Service | undefined
  readonly retry: Retry.Service | undefined
  readonly keyPool: KeyPool.Service | undefined
  readonly keyNames: ReadonlyArray<string>
  /** The deployment's limiter: made from options without a key pool, or given. */
  readonly sharedLimiter: RateLimiter.Service | undefined
  /** One limiter per key (by the pool's key index), made from options with a key pool. */
  readonly keyRateLimiters: ReadonlyArray<RateLimiter.Service> | undefined
  readonly bulkhead: Bulkhead.Service | undefined
  readonly adaptiveLimit: AdaptiveLimit.Service | undefined
}

/** What an attempt needs besides its call: who it is for, its events, its timeout. */
interface AttemptContext {
  readonly name: string
  readonly provider: string | undefined
  readonly events: AttemptEvents.Service | undefined
  readonly attemptMillis: number | undefined
  /** The attempt timeout as the admission of the attempt applies it. */
  readonly attemptLimit: Admission.Timeout<TimeoutError> | undefined
}

/**
 * Builds the policies of one deployment.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const name = options.deployment
    const origin = {
      deployment: name,
      ...(options.provider === undefined ? {} : { provider: options.provider })
    }
    const events = Option.getOrUndefined(yield* Effect.serviceOption(AttemptEvents.AttemptEvents))
    // A bad duration is a config error naming the field, never a thrown `Duration.decode`.
    const timeouts = yield* decodeOptions(`Policy "${name}"`, TimeoutsSchema, {
      attemptTimeout: options.attemptTimeout,
      totalTimeout: options.totalTimeout
    })
    const stages = yield* stagesOf(options, origin, events)
    const attemptMillis = timeouts.attemptTimeout
    const gates = gatesOf(name, stages)
    const stageOf = (stage: Stage): Step | GateOf | undefined => {
      switch (stage) {
        case "totalTimeout":
          return timeouts.totalTimeout === undefined || timeouts.totalTimeout === Infinity
            ? undefined
            : {
              _tag: "Wrap",
              stage,
              wrap: Timeout.total(timeouts.totalTimeout, origin),
              deadline: Deadline.within(timeouts.totalTimeout)
            }
        case "retry":
          return { _tag: "Retry", retry: stages.retry }
        case "circuitBreaker":
        case "keyPool":
        case "rateLimiter":
        case "bulkhead":
          return gates[stage]
        case "attemptTimeout":
          // Applied with the request's deadline by the attempt's admission, the plan's last step (`limitOf`).
          return undefined
      }
    }
    const plan = planOf(order.map(stageOf))
    const timedMillis = attemptMillis === undefined || attemptMillis === Infinity ? undefined : attemptMillis
    if (timedMillis !== undefined) DeadlineQueue.register(timedMillis)
    const context: AttemptContext = {
      name,
      provider: options.provider,
      events,
      attemptMillis: timedMillis,
      attemptLimit: timedMillis === undefined ? undefined : {
        millis: timedMillis,
        onTimeout: () =>
          new TimeoutError({ phase: "attempt", timeout: Duration.millis(timedMillis), provider: options.provider, deployment: name }, true)
      }
    }

    function executeDetailed<A, E, R>(
      effect: Effect.Effect<A, E, R>,
      callOptions?: CallOptions<A>
    ): Effect.Effect<Detailed<A>, E | PolicyError, Exclude<R, CurrentAttempt>>
    function executeDetailed<A, E, R>(
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions?: CallOptions<A>
    ): Effect.Effect<Detailed<A>, E | PolicyError, R>
    function executeDetailed<A, E, R>(
      call: Effect.Effect<A, E, R> | ((attempt: Attempt) => Effect.Effect<A, E, R>),
      callOptions?: CallOptions<A>
    ): Effect.Effect<Detailed<A>, E | PolicyError, R> {
      const made = callOf(call)
      return Effect.suspend(() => {
        const run = newRun(callOptions ?? noCallOptions)
        return Effect.map(runFrom(plan, context, 0, run, made), (value): Detailed<A> => ({
          value,
          deployment: name,
          keyName: run.lastKey,
          backupKey: run.lastKey !== run.firstKey,
          attempts: run.attempts
        }))
      })
    }

    function execute<A, E, R>(
      effect: Effect.Effect<A, E, R>,
      callOptions?: CallOptions<A>
    ): Effect.Effect<A, E | PolicyError, Exclude<R, CurrentAttempt>>
    function execute<A, E, R>(
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions?: CallOptions<A>
    ): Effect.Effect<A, E | PolicyError, R>
    function execute<A, E, R>(
      call: Effect.Effect<A, E, R> | ((attempt: Attempt) => Effect.Effect<A, E, R>),
      callOptions?: CallOptions<A>
    ): Effect.Effect<A, E | PolicyError, R> {
      const made = callOf(call)
      return Effect.suspend(() => runFrom(plan, context, 0, newRun(callOptions ?? noCallOptions), made))
    }

    return {
      deployment: name,
      execute,
      executeDetailed,
      keyPool: stages.keyPool,
      circuitBreaker: stages.circuitBreaker,
      bulkhead: stages.bulkhead,
      adaptiveLimit: stages.adaptiveLimit,
      rateLimiter: stages.sharedLimiter,
      retryBudget: stages.retryBudget,
      status: statusOf(name, stages)
    }
  })

const TimeoutsSchema = Schema.Struct({
  attemptTimeout: Schema.optional(PositiveLimitMillis),
  totalTimeout: Schema.optional(PositiveLimitMillis)
})

/**
 * A stage made from its options, its config error kept in `problems` with the path from the Policy's
 * options (`circuitBreaker.trigger.threshold`): the stages after it are still made, so every bad field of
 * every stage is reported at once. `undefined` when it failed.
 */
const inStage = (problems: Array<InvalidConfigError>, stage: "circuitBreaker" | "retryBudget" | "retry" | "rateLimiter" | "bulkhead") =>
<A, R>(self: Effect.Effect<A, InvalidConfigError, R>): Effect.Effect<A | undefined, never, R> =>
  Effect.catchAll(self, (e) => {
    problems.push(withConfigPaths(e, configPathUnder(stage)))
    return Effect.succeed(undefined)
  })

/** Each stage's service: the one given, or one made from its options (named after the deployment). */
const stagesOf = (
  options: Options,
  origin: { readonly deployment: string; readonly provider?: string },
  events: AttemptEvents.Service | undefined
): Effect.Effect<Stages, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const name = options.deployment
    const emit = events === undefined ? undefined : events.publish
    const problems: Array<InvalidConfigError> = []
    const breakerOption = options.circuitBreaker ?? {}
    const circuitBreaker = breakerOption === false
      ? undefined
      : isService<CircuitBreaker.Service>(breakerOption, "gate")
      ? breakerOption
      : yield* inStage(problems, "circuitBreaker")(CircuitBreaker.make({
        ...breakerOption,
        name,
        ...(emit === undefined && breakerOption.onTransition === undefined ? {} : {
          onTransition: (t: CircuitBreaker.Transition) =>
            Effect.zipRight(
              breakerOption.onTransition === undefined ? Effect.void : breakerOption.onTransition(t),
              emit === undefined
                ? Effect.void
                : emit({ _tag: "BreakerTransition", at: t.at, breaker: t.breaker, from: t.from, to: t.to, reason: t.reason })
            )
        })
      }))
    const budgetOption = options.retryBudget ?? {}
    const retryBudget = budgetOption === false
      ? undefined
      : isService<RetryBudget.Service>(budgetOption, "tryAcquireRetry")
      ? budgetOption
      : yield* inStage(problems, "retryBudget")(RetryBudget.make({ ...budgetOption, name }))
    const keyPool = options.keyPool
    const keyNames = keyPool === undefined ? [] : (yield* keyPool.status).keys.map((k) => k.name)
    const limiterOption = options.rateLimiter
    // Providers limit requests and tokens per key: with a key pool, limiter options make one limiter per key
    // (below), and a local refusal then binds its key only (the retry's Retry-After).
    const limitsPerKey = limiterOption !== undefined && keyPool !== undefined &&
      !isService<RateLimiter.Service>(limiterOption, "gate")
    const retryOption = options.retry ?? {}
    const retry = retryOption === false
      ? undefined
      : isService<Retry.Service>(retryOption, "execute")
      ? retryOption
      : yield* inStage(problems, "retry")(Retry.make(retryOptions(retryOption, name, keyPool, limitsPerKey && keyNames.length > 1, retryBudget, emit)))
    const pauseOnUpstreamRateLimit = options.pauseLimiterOnRateLimit ?? true
    let sharedLimiter: RateLimiter.Service | undefined
    let keyRateLimiters: ReadonlyArray<RateLimiter.Service> | undefined
    if (limiterOption !== undefined && isService<RateLimiter.Service>(limiterOption, "gate")) {
      sharedLimiter = limiterOption
    } else if (limiterOption !== undefined && !limitsPerKey) {
      sharedLimiter = yield* inStage(problems, "rateLimiter")(RateLimiter.make({ ...limiterOption, name, ...origin, pauseOnUpstreamRateLimit }))
    } else if (limiterOption !== undefined) {
      // One limiter per key (`limitsPerKey`).
      keyRateLimiters = yield* inStage(problems, "rateLimiter")(Effect.forEach(keyNames, (keyName) =>
        RateLimiter.make({ ...limiterOption, name: `${name}/${keyName}`, ...origin, pauseOnUpstreamRateLimit })))
    }
    const bulkheadOption = options.bulkhead
    let bulkhead: Bulkhead.Service | undefined
    let adaptiveLimit: AdaptiveLimit.Service | undefined
    if (bulkheadOption === undefined) {
      // Neither.
    } else if (isService<AdaptiveLimit.Service>(bulkheadOption, "learns")) {
      adaptiveLimit = bulkheadOption
    } else if (isService<Bulkhead.Service>(bulkheadOption, "gate")) {
      bulkhead = bulkheadOption
    } else if ("adaptive" in bulkheadOption) {
      adaptiveLimit = yield* inStage(problems, "bulkhead")(Effect.mapError(
        AdaptiveLimit.make({
          ...bulkheadOption.adaptive,
          name,
          ...(emit === undefined ? {} : {
            onChange: (c: AdaptiveLimit.Change) =>
              emit({ _tag: "LimitChanged", at: c.at, limit: c.name, from: c.from, to: c.to, reason: c.reason })
          })
        }),
        (e) => withConfigPaths(e, configPathUnder("adaptive"))
      ))
    } else {
      bulkhead = yield* inStage(problems, "bulkhead")(Bulkhead.make({ ...bulkheadOption, name }))
    }
    const [first, ...more] = problems
    if (first !== undefined) return yield* allConfigErrors(`Policy "${name}"`, [first, ...more])
    return { circuitBreaker, retryBudget, retry, keyPool, keyNames, sharedLimiter, keyRateLimiters, bulkhead, adaptiveLimit }
  })

/** The gates of the stateful stages, adapted to one call's `Run`. */
const gatesOf = (
  name: string,
  { adaptiveLimit, bulkhead, circuitBreaker, keyPool, keyRateLimiters, sharedLimiter }: Stages
): Record<"circuitBreaker" | "keyPool" | "rateLimiter" | "bulkhead", GateOf | undefined> => ({
  circuitBreaker: circuitBreaker === undefined ? undefined : {
    acquire: (_, context) => circuitBreaker.gate.acquire(undefined, context)
  },
  keyPool: keyPool === undefined ? undefined : {
    acquire: (run, context) => {
      const acquired = keyPool.gate.acquire(keyOptionsOf(run), context)
      const done = exitOf(acquired)
      if (done === undefined) return Effect.tap(acquired, (permit) => noteKey(run, permit))
      if (Exit.isSuccess(done)) noteKey(run, done.value)
      return done
    }
  },
  rateLimiter: sharedLimiter === undefined && keyRateLimiters === undefined ? undefined : {
    acquire: (run, context) => {
      const limiter = run.key === undefined || keyRateLimiters === undefined ? sharedLimiter : keyRateLimiters[run.key.index]
      return limiter === undefined
        ? Effect.dieMessage(`Policy "${name}": no rate limiter for key ${run.key?.key.name}`)
        : limiter.gate.acquire(run.limiterRequest, context)
    }
  },
  bulkhead: adaptiveLimit !== undefined
    ? { acquire: (run, context) => adaptiveLimit.gate.acquire(run.callOptions, context) }
    : bulkhead === undefined
    ? undefined
    : { acquire: (_, context) => bulkhead.gate.acquire(undefined, context) }
})

/**
 * Runs the plan from step `i` for one call; the attempts begin inside the
 * retry. `fiber`: the running fiber, when the step before handed it over.
 */
const runFrom = <A, E, R>(
  plan: ReadonlyArray<Step>,
  context: AttemptContext,
  i: number,
  run: Run,
  call: (attempt: Attempt) => Effect.Effect<A, E, R>,
  fiber?: Fiber.RuntimeFiber<unknown, unknown>
): Effect.Effect<A, E | PolicyError, R> => {
  const step = plan[i]
  if (step === undefined) {
    return fiber === undefined
      ? Effect.withFiberRuntime((f) => attemptOnce(context, run, call, f))
      : attemptOnce(context, run, call, fiber)
  }
  if (step._tag === "Gates") {
    return Admission.executeAll(
      step.gates,
      run,
      (f) => runFrom(plan, context, i + 1, run, call, f),
      run.callOptions.appliesTimeLimit === true ? noLimit : (f, now) => limitOf(context, f, now)
    )
  }
  if (step._tag === "Wrap") {
    const inner = runFrom(plan, context, i + 1, run, call)
    return run.callOptions.appliesTimeLimit === true ? step.deadline(inner) : step.wrap(inner)
  }
  const attempt = Effect.withFiberRuntime<A, E | PolicyError, R>((fiber) => {
    // The gates may refuse it before the call: a retry around this policy must not pay for that.
    AttemptCharge.delegated(fiber)
    run.attempts += 1
    run.key = undefined
    return runFrom(plan, context, i + 1, run, call, fiber)
  })
  if (step.retry === undefined) return attempt
  const retryOnResult = run.callOptions.retryOnResult
  return retryOnResult === undefined
    ? step.retry.execute(attempt, attemptsChargeThemselves)
    : step.retry.execute(attempt, { retryOnResult, chargesEachRun: true })
}

/** The policy's attempt charges its own run (`attemptOnce`): its retry only checks the budget. */
const attemptsChargeThemselves: Retry.ExecuteOptions<unknown> = { chargesEachRun: true }

/** The call itself, as one attempt: budget, deadline, events, cost, under the attempt timeout. */
const attemptOnce = <A, E, R>(
  context: AttemptContext,
  run: Run,
  call: (attempt: Attempt) => Effect.Effect<A, E, R>,
  fiber: Fiber.RuntimeFiber<unknown, unknown>
): Effect.Effect<A, E | PolicyError, R> => {
  const { events, name } = context
  const callOptions = run.callOptions
  const attempt = run.attempts
  const key = run.key?.key
  const timeLimit = callOptions.appliesTimeLimit === true ? timeLimitOf(context, fiber) : untimed
  const made = (): Effect.Effect<A, E, R> => {
    try {
      return call({ deployment: name, attempt, key, timeLimit })
    } catch (defect) {
      // A `call` that throws is a defect of its attempt.
      return Effect.die(defect)
    }
  }
  // Nothing to charge, note or report: just the call under its timeout.
  const scope = fiber.getFiberRef(RequestScope.currentScope)
  if (events === undefined && (scope === undefined || (scope.ledger === undefined && scope.deadline === undefined))) {
    return made()
  }
  return Effect.suspend(() => {
    const charged = AttemptCharge.charged(
      fiber,
      { deployment: name, estimatedCostUsd: callOptions.estimatedCostUsd },
      Effect.suspend(made)
    )
    const costUsd = callOptions.costUsd
    const costed = costUsd === undefined ? charged : Effect.tap(charged, (a) => {
      const actual = costUsd(a)
      return actual === undefined ? Effect.void : RequestBudget.settleCost(callOptions.estimatedCostUsd ?? 0, actual)
    })
    const keyName = key?.name
    const noted = Effect.tapError(costed, (e) =>
      isResilienceError(e) && e._tag !== "BudgetExhaustedError"
        ? RequestBudget.noteError({ tag: e._tag, deployment: name, keyName })
        : Effect.void)
    if (events === undefined) return noted
    return Effect.flatMap(Clock.currentTimeMillis, (start) =>
      Effect.zipRight(
        events.publish({ _tag: "AttemptStarted", at: start, deployment: name, attempt, keyName }),
        Effect.onExit(noted, (exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (end) =>
            events.publish({
              _tag: "AttemptEnded",
              at: end,
              deployment: name,
              attempt,
              keyName,
              durationMs: end - start,
              outcome: outcomeOf(exit)
            })))
      ))
  })
}

/**
 * The attempt's time limit as the gates' admission applies it: the attempt
 * timeout, or the request's deadline when that comes first (then a
 * `TimeoutError` of phase "total", which a fallback step can take over).
 */
const limitOf = (
  context: AttemptContext,
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  now: number
): Admission.Timeout<TimeoutError> | undefined => {
  const deadline = RequestScope.deadlineOf(fiber)
  if (deadline === undefined) return context.attemptLimit
  const left = Math.max(0, deadline - now)
  if (context.attemptMillis !== undefined && context.attemptMillis <= left) return context.attemptLimit
  return { millis: left, onTimeout: () => totalTimeoutError(context, left) }
}

const noLimit = (): undefined => undefined

const untimed: Timeout.Timeout = (self) => self

/** The attempt's limit (`limitOf`, from now) as a timeout the call applies itself. */
const timeLimitOf = (context: AttemptContext, fiber: Fiber.RuntimeFiber<unknown, unknown>): Timeout.Timeout => {
  const limit = limitOf(context, fiber, clockOf(fiber).unsafeCurrentTimeMillis())
  return limit === undefined ? untimed : internalTimeout.timeout(limit.millis, limit.onTimeout, false)
}

const totalTimeoutError = (context: AttemptContext, millis: number): TimeoutError =>
  new TimeoutError({
    phase: "total",
    timeout: Duration.millis(millis),
    ...(context.provider === undefined ? {} : { provider: context.provider }),
    deployment: context.name
  }, true)

const newRun = (callOptions: CallOptions<unknown>): Run => ({
  callOptions,
  limiterRequest: limiterRequestOf(callOptions),
  attempts: 0,
  tried: undefined,
  firstKey: undefined,
  lastKey: undefined,
  key: undefined
})

const statusOf = (name: string, stages: Stages): Effect.Effect<Status> => {
  const of = <S>(service: { readonly status: Effect.Effect<S> } | undefined) =>
    service === undefined ? Effect.succeed(undefined) : service.status
  const { keyNames, keyRateLimiters } = stages
  return Effect.all({
    deployment: Effect.succeed(name),
    circuitBreaker: of(stages.circuitBreaker),
    bulkhead: of(stages.bulkhead),
    adaptiveLimit: of(stages.adaptiveLimit),
    rateLimiter: of(stages.sharedLimiter),
    keyRateLimiters: keyRateLimiters === undefined
      ? Effect.succeed(undefined)
      : Effect.map(
        Effect.forEach(keyRateLimiters, (limiter, i) => Effect.map(limiter.status, (s) => [keyNames[i] ?? "", s] as const)),
        (entries) => Object.fromEntries(entries)
      ),
    keyPool: of(stages.keyPool),
    retryBudget: of(stages.retryBudget)
  })
}

/** A call as a function of its attempt: an effect reads it from `CurrentAttempt`. */
const callOf = <A, E, R>(
  call: Effect.Effect<A, E, R> | ((attempt: Attempt) => Effect.Effect<A, E, R>)
): (attempt: Attempt) => Effect.Effect<A, E, R> =>
  Effect.isEffect(call) ? (attempt) => Effect.provideService(call, CurrentAttempt, attempt) : call

/**
 * The stages of `order` that are on, consecutive gates grouped to be
 * admitted together. The last step is always an admission (with no gate if
 * none is on): it applies the attempt timeout, the innermost stage.
 */
const planOf = (stages: ReadonlyArray<Step | GateOf | undefined>): ReadonlyArray<Step> => {
  const plan: Array<Step> = []
  let gates: Array<GateOf> = []
  for (const stage of stages) {
    if (stage === undefined) continue
    if ("acquire" in stage) {
      gates.push(stage)
      continue
    }
    if (gates.length > 0) plan.push({ _tag: "Gates", gates })
    gates = []
    plan.push(stage)
  }
  plan.push({ _tag: "Gates", gates })
  return plan
}

/** A call's options with their value type forgotten: the plan is shared by calls of every type. */
const limiterRequestOf = (callOptions: CallOptions<unknown>): RateLimiter.Request =>
  callOptions.tokens === undefined && callOptions.usage === undefined
    ? noLimiterRequest
    : { tokens: callOptions.tokens, usage: callOptions.usage }

const noteKey = (run: Run, permit: KeyPool.KeyPermit): void => {
  const keyName = permit.key.name
  run.key = permit
  run.tried?.add(keyName)
  run.firstKey ??= keyName
  run.lastKey = keyName
}

/** What the key pool is asked for this attempt: keys tried before come last; the call's affinity. */
const keyOptionsOf = (run: Run): KeyPool.WithKeyOptions => {
  if (run.tried === undefined && run.attempts > 1) {
    run.tried = new Set(run.firstKey === undefined ? [] : [run.firstKey])
  }
  const affinity = run.callOptions.affinity
  if (run.tried === undefined && affinity === undefined) return noKeyOptions
  return {
    ...(run.tried === undefined ? {} : { avoid: run.tried }),
    ...(affinity === undefined ? {} : { affinity })
  }
}

const outcomeOf = <A, E>(exit: Exit.Exit<A, E>): string => {
  if (Exit.isSuccess(exit)) return "success"
  if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) && isResilienceError(failure.value) ? failure.value._tag : "defect"
}

/** The retry's options: the deployment's budget, its key pool's say on Retry-After, and the attempt events. */
const retryOptions = (
  o: Omit<Retry.Options, "name" | "budget">,
  name: string,
  keyPool: KeyPool.Service | undefined,
  otherKeysHaveLimitsOfTheirOwn: boolean,
  budget: RetryBudget.Service | undefined,
  emit: ((event: AttemptEvents.AttemptEvent) => Effect.Effect<void>) | undefined
): Retry.Options => ({
  ...o,
  name,
  ...(keyPool === undefined || o.honorRetryAfter !== undefined ? {} : {
    // The Retry-After of a 429 belongs to the key that got it (rule 24): with another healthy key, retry there now.
    // A local limiter's binds a key only when each key has a limiter of its own; one limiter for all keys, or a
    // single key, cannot be escaped, so its Retry-After is obeyed (rule 15) whatever the pool's health says.
    honorRetryAfter: (e: RateLimitError) =>
      e.source === "local" && !otherKeysHaveLimitsOfTheirOwn
        ? Effect.succeed(true)
        : Effect.map(keyPool.status, (s) => s.healthy === 0)
  }),
  ...(budget === undefined ? {} : { budget }),
  ...(emit === undefined ? {} : {
    onRetry: (e: Retry.RetryEvent) =>
      Effect.zipRight(
        o.onRetry === undefined ? Effect.void : o.onRetry(e),
        Effect.flatMap(Clock.currentTimeMillis, (at) =>
          emit({
            _tag: "RetryScheduled",
            at,
            deployment: name,
            retry: e.retry,
            delayMs: e.delayMs,
            reason: e.reason,
            errorTag: e.error._tag
          }))
      ),
    onGiveUp: (e: Retry.GiveUpEvent) =>
      Effect.zipRight(
        o.onGiveUp === undefined ? Effect.void : o.onGiveUp(e),
        Effect.flatMap(Clock.currentTimeMillis, (at) =>
          emit({ _tag: "RetryStopped", at, deployment: name, reason: e.reason, retries: e.retries }))
      )
  })
})

/**
 * The policies of every deployment, by name.
 *
 * @since 0.1.0
 * @category models
 */
export interface Registry {
  readonly get: (deployment: string) => Option.Option<Service>
  readonly all: ReadonlyArray<Service>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Policies extends Context.Tag("@resilient-ai/core/Policies")<Policies, Registry>() {}

/**
 * Builds the policies of several deployments. Two deployments of one name
 * would share state silently, so they are a config error.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  deployments: ReadonlyArray<Options>
): Layer.Layer<Policies, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(
    Policies,
    Effect.gen(function*() {
      const byName = new Map<string, Service>()
      for (const [index, options] of deployments.entries()) {
        if (byName.has(options.deployment)) {
          return yield* new InvalidConfigError({
            component: "Policies",
            path: `${index}.deployment`,
            detail: `deployment "${options.deployment}" is defined twice`
          })
        }
        byName.set(options.deployment, yield* Effect.mapError(make(options), (e) => withConfigPaths(e, configPathUnder(String(index)))))
      }
      const all = [...byName.values()]
      return { get: (deployment) => Option.fromNullable(byName.get(deployment)), all }
    })
  )
