/**
 * The policies of one provider deployment, composed in the decided order
 * (SEMANTICS.md rule 18), outermost first:
 *
 * ```
 * total timeout → retry (with budget) → circuit breaker → rate limiter → bulkhead → attempt timeout → call
 * ```
 *
 * So the breaker sees every attempt (it measures the provider, not the
 * user's request), a circuit-open error is never retried against the same
 * breaker, and a retry's sleep holds no bulkhead permit or limiter grant.
 * With a key pool, each attempt takes a healthy key between the breaker and
 * the limiter; a retry tries the keys not yet tried first, and the limiter is
 * per key (providers limit requests and tokens per key).
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
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Bulkhead from "./Bulkhead.js"
import * as CircuitBreaker from "./CircuitBreaker.js"
import * as AttemptEvents from "./AttemptEvents.js"
import * as Deadline from "./Deadline.js"
import type { BudgetExhaustedError, BulkheadFullError, CircuitOpenError, NoKeyAvailableError } from "./Errors.js"
import { InvalidConfigError, isResilienceError, RateLimitError, TimeoutError } from "./Errors.js"
import * as RequestBudget from "./RequestBudget.js"
import type * as KeyPool from "./KeyPool.js"
import type { Admitted as BreakerAdmitted } from "./internal/breakerState.js"
import { exitOf } from "./internal/done.js"
import * as fastPath from "./internal/fastPath.js"
import * as internalTimeout from "./internal/timeout.js"
import type * as TokenBucket from "./internal/tokenBucket.js"
import * as RateLimiter from "./RateLimiter.js"
import * as Retry from "./Retry.js"
import * as RetryBudget from "./RetryBudget.js"
import type * as StateStore from "./StateStore.js"
import * as Timeout from "./Timeout.js"
import { clockOf } from "./internal/fiberClock.js"

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
  readonly retry?: Omit<Retry.Options, "name" | "budget"> | false
  /** Default: retries add at most 20 % to the first attempts of a 10 s window. */
  readonly retryBudget?: Omit<RetryBudget.Options, "name"> | false
  /** Default: open after 5 consecutive failures for 30 s, one trial. */
  readonly circuitBreaker?: Omit<CircuitBreaker.Options, "name"> | false
  /** The keys of the deployment; a pool may be shared by deployments of one account. */
  readonly keyPool?: KeyPool.Service
  /** Requests and tokens per minute; per key when there is a key pool, else for the deployment. */
  readonly rateLimiter?: Omit<RateLimiter.Options, "name" | "deployment" | "provider">
  readonly bulkhead?: Omit<Bulkhead.Options, "name">
  /** An upstream 429 with Retry-After pauses the limiter of its key (or deployment) until then. Default true. */
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
}

/**
 * Per call: its estimated tokens for the limiter and money for the request's
 * budget, and how to read the real ones from the answer.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions<A> {
  readonly tokens?: number
  readonly usage?: (a: A) => number | undefined
  /** Estimated cost of one attempt, drawn from the request's `RequestBudget`. */
  readonly estimatedCostUsd?: number
  /** The real cost of an answered attempt, to correct the estimate. */
  readonly costUsd?: (a: A) => number | undefined
  /** A session or prompt-prefix hash: pins the call to one healthy key (the provider's prompt cache). */
  readonly affinity?: string
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
  readonly rateLimiter: RateLimiter.Status | undefined
  /** Per key name, when the limiter is per key. */
  readonly keyRateLimiters: Readonly<Record<string, RateLimiter.Status>> | undefined
  readonly keyPool: KeyPool.Status | undefined
  readonly retryBudget: RetryBudget.Status | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly deployment: string
  readonly execute: <A, E, R>(
    call: (attempt: Attempt) => Effect.Effect<A, E, R>,
    options?: CallOptions<A>
  ) => Effect.Effect<A, E | PolicyError, R>
  /** `execute`, telling which key answered and after how many attempts. */
  readonly executeDetailed: <A, E, R>(
    call: (attempt: Attempt) => Effect.Effect<A, E, R>,
    options?: CallOptions<A>
  ) => Effect.Effect<Detailed<A>, E | PolicyError, R>
  readonly keyPool: KeyPool.Service | undefined
  readonly circuitBreaker: CircuitBreaker.Service | undefined
  readonly bulkhead: Bulkhead.Service | undefined
  readonly rateLimiter: RateLimiter.Service | undefined
  readonly retryBudget: RetryBudget.Service | undefined
  readonly status: Effect.Effect<Status>
}

const optional = <A, B, E, R>(
  value: A | false | undefined,
  build: (a: A) => Effect.Effect<B, E, R>
): Effect.Effect<B | undefined, E, R> => (value === undefined || value === false ? Effect.succeed(undefined) : build(value))

type Wrap = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | PolicyError, R>
const identity: Wrap = (self) => self
const noCallOptions: CallOptions<unknown> = {}
const identityRestore = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => self

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
    const emit = (event: AttemptEvents.AttemptEvent): Effect.Effect<void> =>
      events === undefined ? Effect.void : events.publish(event)

    const breakerOptions = options.circuitBreaker ?? {}
    const circuitBreaker = yield* optional(breakerOptions, (o) =>
      CircuitBreaker.make({
        ...o,
        name,
        ...(events === undefined && o.onTransition === undefined ? {} : {
          onTransition: (t: CircuitBreaker.Transition) =>
            Effect.zipRight(
              o.onTransition === undefined ? Effect.void : o.onTransition(t),
              emit({ _tag: "BreakerTransition", at: t.at, breaker: t.breaker, from: t.from, to: t.to, reason: t.reason })
            )
        })
      }))
    const retryBudget = yield* optional(options.retryBudget ?? {}, (o) => RetryBudget.make({ ...o, name }))
    const keyPool = options.keyPool
    const retry = yield* optional(options.retry ?? {}, (o) =>
      Retry.make({
        ...o,
        name,
        ...(keyPool === undefined || o.honorRetryAfter !== undefined ? {} : {
          // The Retry-After of a 429 belongs to the key that got it: with another healthy key, retry there now.
          honorRetryAfter: () => Effect.map(keyPool.status, (s) => s.healthy === 0)
        }),
        ...(retryBudget === undefined ? {} : { budget: retryBudget }),
        ...(events === undefined ? {} : {
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
      }))
    const keyNames = keyPool === undefined ? [] : (yield* keyPool.status).keys.map((k) => k.name)
    const rateLimiter = keyPool === undefined
      ? yield* optional(options.rateLimiter, (o) => RateLimiter.make({ ...o, name, ...origin }))
      : undefined
    const keyRateLimiters = keyPool === undefined || options.rateLimiter === undefined
      ? undefined
      : new Map(
        yield* Effect.forEach(keyNames, (keyName) =>
          Effect.map(
            RateLimiter.make({ ...options.rateLimiter, name: `${name}/${keyName}`, ...origin }),
            (limiter) => [keyName, limiter] as const
          ))
      )
    const bulkhead = yield* optional(options.bulkhead, (o) => Bulkhead.make({ ...o, name }))
    const attemptMillis = options.attemptTimeout === undefined
      ? undefined
      : Duration.toMillis(Duration.decode(options.attemptTimeout))
    const totalTimeout = options.totalTimeout === undefined ? identity : Timeout.total(options.totalTimeout, origin)
    const pauseOnRateLimit = options.pauseLimiterOnRateLimit ?? true

    /**
     * The attempt timeout, shortened to the request's deadline when that
     * comes first: a request past its deadline stops its attempt with a
     * `TimeoutError` a fallback step can take over.
     */
    const timed = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | TimeoutError, R> =>
      Effect.flatMap(Deadline.remaining, (left) => {
        const deadline = Option.getOrUndefined(left)
        if (deadline === undefined || (attemptMillis !== undefined && attemptMillis <= deadline)) {
          return attemptMillis === undefined ? self : Timeout.attempt(attemptMillis, origin)(self)
        }
        return internalTimeout.timeout(
          deadline,
          () => new TimeoutError({ phase: "total", timeout: Duration.millis(deadline), ...(options.provider === undefined ? {} : { provider: options.provider }), deployment: name }, true),
          false
        )(self)
      })

    const outcomeOf = <A, E>(exit: Exit.Exit<A, E>): string => {
      if (Exit.isSuccess(exit)) return "success"
      if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
      const failure = Cause.failureOption(exit.cause)
      return Option.isSome(failure) && isResilienceError(failure.value) ? failure.value._tag : "defect"
    }

    /** The call itself, as one attempt: budget, deadline, events, cost. */
    const attemptOnce = <A, E, R>(
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A>,
      attempt: number,
      key: KeyPool.PickedKey | undefined
    ): Effect.Effect<A, E | PolicyError, R> => {
      const keyName = key?.name
      const charged = Effect.zipRight(
        RequestBudget.spendAttempt({ deployment: name, estimatedCostUsd: callOptions.estimatedCostUsd }),
        timed(call({ deployment: name, attempt, key }))
      )
      const costed = callOptions.costUsd === undefined
        ? charged
        : Effect.tap(charged, (a) => {
          const actual = callOptions.costUsd?.(a)
          return actual === undefined ? Effect.void : RequestBudget.settleCost(callOptions.estimatedCostUsd ?? 0, actual)
        })
      const noted = Effect.tapError(costed, (e) =>
        isResilienceError(e) && e._tag !== "BudgetExhaustedError"
          ? RequestBudget.noteError({ tag: e._tag, deployment: name, keyName })
          : Effect.void)
      if (events === undefined) return noted
      return Effect.flatMap(Clock.currentTimeMillis, (start) =>
        Effect.zipRight(
          emit({ _tag: "AttemptStarted", at: start, deployment: name, attempt, keyName }),
          Effect.onExit(noted, (exit) =>
            Effect.flatMap(Clock.currentTimeMillis, (end) =>
              emit({
                _tag: "AttemptEnded",
                at: end,
                deployment: name,
                attempt,
                keyName,
                durationMs: end - start,
                outcome: outcomeOf(exit)
              })))
        ))
    }

    const limited = <A, E, R>(
      limiter: RateLimiter.Service | undefined,
      self: Effect.Effect<A, E, R>,
      call: CallOptions<A>
    ): Effect.Effect<A, E | PolicyError, R> => {
      if (limiter === undefined) return self
      const guarded = limiter.execute(self, call)
      if (!pauseOnRateLimit) return guarded
      return Effect.tapError(guarded, (error) =>
        error instanceof RateLimitError && error.source === "upstream" && error.retryAfter !== undefined
          ? limiter.pause(error.retryAfter)
          : Effect.void)
    }

    /** What one call (all its attempts) keeps: attempts made and keys tried. */
    interface Run {
      attempts: number
      /** Keys of earlier attempts, made at the second attempt (the pool picks them last). */
      tried: Set<string> | undefined
      firstKey: string | undefined
      lastKey: string | undefined
      /** Records the first attempt in the retry budget (the fused path does it in the first admission). */
      readonly recordFirst: fastPath.RetryBudgetGate | undefined
    }

    const noteKey = (run: Run, name: string): void => {
      run.tried?.add(name)
      run.firstKey ??= name
      run.lastKey = name
    }

    const avoidOf = (run: Run): Set<string> | undefined => {
      if (run.tried === undefined && run.attempts > 1) {
        run.tried = new Set(run.firstKey === undefined ? [] : [run.firstKey])
      }
      return run.tried
    }

    /** One attempt as composed effects: each policy's own `execute`, outermost first. */
    const composedAttempt = <A, E, R>(
      run: Run,
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A>,
      attempt: number
    ): Effect.Effect<A, E | PolicyError, R> => {
      const onKey = (key: KeyPool.PickedKey | undefined) => {
        const inner = attemptOnce(call, callOptions, attempt, key)
        const bounded = bulkhead === undefined ? inner : bulkhead.execute(inner)
        const limiter = key === undefined || keyRateLimiters === undefined ? rateLimiter : keyRateLimiters.get(key.name)
        return limited(limiter, bounded, callOptions)
      }
      const avoid = avoidOf(run)
      const keyed = keyPool === undefined ? onKey(undefined) : keyPool.withKey((key) => {
        noteKey(run, key.name)
        return onKey(key)
      }, {
        ...(avoid === undefined ? {} : { avoid }),
        ...(callOptions.affinity === undefined ? {} : { affinity: callOptions.affinity })
      })
      return circuitBreaker === undefined ? keyed : circuitBreaker.execute(keyed)
    }

    // The fused hot path (see internal/fastPath.ts and `attemptNow`): when every policy of the
    // deployment has a synchronous gate, one op admits the attempt through breaker, key pool, limiter
    // and bulkhead, and one handler completes them all, innermost first as the composed effects would.
    const breakerGate = circuitBreaker === undefined ? undefined : fastPath.breakers.get(circuitBreaker)
    const poolGate = keyPool === undefined ? undefined : fastPath.keyPools.get(keyPool)
    const limiterGate = rateLimiter === undefined ? undefined : fastPath.limiters.get(rateLimiter)
    const keyLimiterGates = keyRateLimiters === undefined
      ? undefined
      : new Map([...keyRateLimiters].map(([keyName, limiter]) => [keyName, fastPath.limiters.get(limiter)] as const))
    // The per-key limiter and its gate by the pool's key index (the configured order), for the hot path.
    const keyLimitersByIndex = keyRateLimiters === undefined
      ? undefined
      : keyNames.map((keyName) => ({ limiter: keyRateLimiters.get(keyName), gate: keyLimiterGates?.get(keyName) }))
    const bulkheadGate = bulkhead === undefined ? undefined : fastPath.bulkheads.get(bulkhead)
    const fused = (circuitBreaker === undefined || breakerGate !== undefined) &&
      (keyPool === undefined || poolGate !== undefined) &&
      (rateLimiter === undefined || limiterGate !== undefined) &&
      (keyLimiterGates === undefined || [...keyLimiterGates.values()].every((g) => g !== undefined)) &&
      (bulkhead === undefined || bulkheadGate !== undefined)
    const attemptTimeout = attemptMillis === undefined ? identity : Timeout.attempt(attemptMillis, origin)

    /** What the fused admission took, to give back or record when the attempt ends. */
    interface Admitted {
      readonly breaker: BreakerAdmitted | undefined
      readonly start: number
      readonly keyIndex: number
      readonly limiter: RateLimiter.Service | undefined
      readonly limiterGate: fastPath.LimiterGate | undefined
      readonly bulkhead: boolean
    }

    /**
     * Completes what the fused admission took, innermost first: bulkhead
     * permit, limiter correction or pause, key health, breaker outcome. Each
     * step is synchronous; a step that has effects to run (transitions to
     * publish, a pause) runs them before the next step, so the order is the
     * composed effects' order.
     */
    const complete = <A, E>(
      taken: Admitted,
      callOptions: CallOptions<A>,
      exit: Exit.Exit<A, E>,
      clock: Clock.Clock,
      from: number
    ): Effect.Effect<A, E> => {
      const cause = Exit.isFailure(exit) ? exit.cause : undefined
      for (let i = from; i < 4; i++) {
        let effect: Effect.Effect<void> | undefined
        if (i === 0) {
          if (taken.bulkhead) bulkheadGate?.release()
        } else if (i === 1) {
          if (taken.limiter !== undefined) effect = limiterDone(taken, callOptions, exit)
        } else if (i === 2) {
          if (taken.keyIndex >= 0) effect = poolGate?.leave(taken.keyIndex, cause, clock)
        } else if (taken.breaker !== undefined) {
          effect = breakerGate?.leave(taken.breaker, cause, taken.start, clock)
        }
        if (effect !== undefined) {
          const next = i + 1
          return Effect.zipRight(effect, Effect.suspend(() => complete(taken, callOptions, exit, clock, next)))
        }
      }
      return exit
    }

    /** What `limiter.execute` and `limited` do after the call: correct the grant from `usage`, or pause on an upstream 429. */
    const limiterDone = <A, E>(
      taken: Admitted,
      callOptions: CallOptions<A>,
      exit: Exit.Exit<A, E>
    ): Effect.Effect<void> | undefined => {
      if (Exit.isSuccess(exit)) {
        const actual = callOptions.usage === undefined ? undefined : callOptions.usage(exit.value)
        return actual === undefined ? undefined : taken.limiterGate?.settle(callOptions.tokens ?? 0, actual)
      }
      if (!pauseOnRateLimit || taken.limiter === undefined) return undefined
      const failure = Cause.failureOption(exit.cause)
      if (Option.isNone(failure)) return undefined
      const error = failure.value
      return error instanceof RateLimitError && error.source === "upstream" && error.retryAfter !== undefined
        ? taken.limiter.pause(error.retryAfter)
        : undefined
    }

    /** Runs `self` (already under `restore`) and completes what was taken, in the uninterruptible region. */
    const completing = <A, E, R>(
      self: Effect.Effect<A, E, R>,
      taken: Admitted,
      callOptions: CallOptions<A>,
      clock: Clock.Clock
    ): Effect.Effect<A, E, R> => {
      if (taken.breaker === undefined && taken.keyIndex < 0 && taken.limiter === undefined && !taken.bulkhead) return self
      return Effect.matchCauseEffect(self, {
        onFailure: (cause) => complete(taken, callOptions, Exit.failCause(cause), clock, 0),
        onSuccess: (a) => complete(taken, callOptions, Exit.succeed(a), clock, 0)
      })
    }

    /** An attempt's call, made for the key at `keyIndex` (-1: no pool) before the admission that takes it. */
    interface Made<A, E, R> {
      readonly keyIndex: number
      readonly effect: Effect.Effect<A, E | PolicyError, R>
    }

    /**
     * What the gates would take at `now`, nothing taken (see
     * internal/fastPath.ts). `stop`: the first gate that cannot decide alone
     * (a transition, a wait, a full bulkhead), or `"refused"` when the
     * breaker refuses; the plans before it are valid, the ones after it unmade.
     */
    interface Plans {
      stop: "refused" | "breaker" | "pool" | "limiter" | "bulkhead" | undefined
      breaker: fastPath.BreakerPlan | undefined
      key: fastPath.KeyPlan | undefined
      keyIndex: number
      picked: KeyPool.PickedKey | undefined
      limiter: RateLimiter.Service | undefined
      limiterGate: fastPath.LimiterGate | undefined
      limiterPlan: TokenBucket.State | undefined
    }

    const planGates = <A>(run: Run, callOptions: CallOptions<A>, now: number): Plans => {
      const plans: Plans = {
        stop: undefined,
        breaker: undefined,
        key: undefined,
        keyIndex: -1,
        picked: undefined,
        limiter: undefined,
        limiterGate: undefined,
        limiterPlan: undefined
      }
      if (breakerGate !== undefined) {
        plans.breaker = breakerGate.plan(now)
        if (plans.breaker === undefined) plans.stop = "breaker"
        else if (plans.breaker.result._tag === "rejected") plans.stop = "refused"
        if (plans.stop !== undefined) return plans
      }
      if (poolGate !== undefined) {
        plans.key = poolGate.plan(now, avoidOf(run), callOptions.affinity)
        if (plans.key !== undefined) {
          plans.keyIndex = plans.key.result.index
          plans.picked = poolGate.key(plans.keyIndex)
        }
        // A pick without its key cannot happen; the pool's own path says so if it does.
        if (plans.picked === undefined) {
          plans.stop = "pool"
          return plans
        }
      }
      const perKey = plans.keyIndex < 0 ? undefined : keyLimitersByIndex?.[plans.keyIndex]
      plans.limiter = perKey === undefined ? rateLimiter : perKey.limiter
      if (plans.limiter !== undefined) {
        plans.limiterGate = perKey === undefined ? limiterGate : perKey.gate
        plans.limiterPlan = plans.limiterGate?.plan(now, callOptions.tokens ?? 0)
        if (plans.limiterPlan === undefined) {
          plans.stop = "limiter"
          return plans
        }
      }
      if (bulkheadGate !== undefined && !bulkheadGate.available()) plans.stop = "bulkhead"
      return plans
    }

    /**
     * Takes the plans before `plans.stop` (all of them without one) but the
     * bulkhead's, and says what was taken, for `complete`.
     */
    const takePlans = (
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      run: Run,
      plans: Plans,
      now: number
    ): { -readonly [K in keyof Admitted]: Admitted[K] } => {
      const taken: { -readonly [K in keyof Admitted]: Admitted[K] } = {
        breaker: undefined,
        start: now,
        keyIndex: -1,
        limiter: undefined,
        limiterGate: undefined,
        bulkhead: false
      }
      const breakerPlan = plans.breaker
      if (breakerGate !== undefined) {
        if (breakerPlan === undefined || breakerPlan.result._tag === "rejected") return taken
        breakerGate.take(breakerPlan.state)
        taken.breaker = breakerPlan.result
      }
      if (plans.stop === "pool") return taken
      if (plans.key !== undefined && plans.picked !== undefined) {
        poolGate?.take(plans.key, fiber.getFiberRef(FiberRef.currentMetricLabels))
        taken.keyIndex = plans.keyIndex
        noteKey(run, plans.picked.name)
      }
      if (plans.stop === "limiter") return taken
      if (plans.limiterPlan !== undefined) {
        plans.limiterGate?.take(plans.limiterPlan)
        taken.limiter = plans.limiter
        taken.limiterGate = plans.limiterGate
      }
      return taken
    }

    /**
     * One attempt, decided in the op that runs it (see internal/fastPath.ts).
     * The gates plan what they would take, taking nothing, and the call is
     * made. When it is done already (an `Exit`), the plans are taken and the
     * attempt completed in this same op: nothing can run or interrupt the
     * fiber in between, so no mask is needed, and the bulkhead permit it would
     * take and give back is not touched. Else, or when a gate cannot decide
     * alone, nothing was taken and the attempt is admitted inside the mask
     * (`maskedAttempt`). An open breaker fails fast here: its refusal is an `Exit`.
     */
    const attemptNow = <A, E, R>(
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      run: Run,
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A>,
      interruptible: boolean
    ): Effect.Effect<A, E | PolicyError, R> => {
      run.attempts += 1
      const attempt = run.attempts
      const clock = clockOf(fiber)
      const now = clock.unsafeCurrentTimeMillis()
      if (attempt === 1) run.recordFirst?.(now)

      const plans = planGates(run, callOptions, now)
      if (plans.stop === "refused") return refusal(plans)
      if (plans.stop !== undefined) return maskedAttempt(run, call, callOptions, attempt, interruptible, undefined)
      const inner = leanAttempt(fiber, call, callOptions, attempt, plans.picked)
      const done = exitOf(inner)
      if (done === undefined) {
        return maskedAttempt(run, call, callOptions, attempt, interruptible, { keyIndex: plans.keyIndex, effect: inner })
      }
      const completed = complete(takePlans(fiber, run, plans, now), callOptions, done, clock, 0)
      // What is left publishes what the completion changed: as in the mask it would have run in.
      return completed === done ? done : Effect.uninterruptible(completed)
    }

    /** The breaker's refusal in `plans`, taken. */
    const refusal = (plans: Plans): Effect.Effect<never, CircuitOpenError> => {
      const plan = plans.breaker
      return plan === undefined || plan.result._tag !== "rejected" || breakerGate === undefined
        ? Effect.dieMessage(`Policy "${name}": no refusal to take`)
        : breakerGate.refuse(plan.state, plan.result.rejection)
    }

    /**
     * An attempt admitted inside the mask: one op takes what every gate
     * grants at once, and one handler completes them all, innermost first as
     * the composed effects would. A gate that cannot decide alone (a
     * transition, a wait, a full bulkhead) hands that policy and the ones
     * inside it to their own effects, and the handler completes only the
     * outer ones. `made`: the call made for a planned key, used when that key
     * is picked again (so a call is made once per attempt unless another
     * fiber moved the pool in between). `interruptible`: the caller's
     * interruptibility, given back to the call as `uninterruptibleMask` would.
     */
    const maskedAttempt = <A, E, R>(
      run: Run,
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A>,
      attempt: number,
      interruptible: boolean,
      made: Made<A, E, R> | undefined
    ): Effect.Effect<A, E | PolicyError, R> => {
      const admit = Effect.withFiberRuntime<A, E | PolicyError, R>((fiber) => {
        const restore = interruptible ? Effect.interruptible : identityRestore
        const clock = clockOf(fiber)
        const now = clock.unsafeCurrentTimeMillis()
        const plans = planGates(run, callOptions, now)
        if (plans.stop === "refused") return refusal(plans)
        if (plans.stop === "breaker") return restore(composedAttempt(run, call, callOptions, attempt))
        const taken = takePlans(fiber, run, plans, now)
        const key = plans.picked

        // The key pool's own path, and the policies inside it composed, when its gate cannot pick alone.
        if (plans.stop === "pool" && keyPool !== undefined) {
          const avoid = avoidOf(run)
          const keyed = keyPool.withKey((k) => {
            noteKey(run, k.name)
            const limiter = keyRateLimiters === undefined ? rateLimiter : keyRateLimiters.get(k.name)
            const inner = attemptOnce(call, callOptions, attempt, k)
            return limited(limiter, bulkhead === undefined ? inner : bulkhead.execute(inner), callOptions)
          }, {
            ...(avoid === undefined ? {} : { avoid }),
            ...(callOptions.affinity === undefined ? {} : { affinity: callOptions.affinity })
          })
          return completing(restore(keyed), taken, callOptions, clock)
        }
        if (plans.stop === "limiter" && plans.limiter !== undefined) {
          const inner = attemptOnce(call, callOptions, attempt, key)
          const limitedInner = limited(plans.limiter, bulkhead === undefined ? inner : bulkhead.execute(inner), callOptions)
          return completing(restore(limitedInner), taken, callOptions, clock)
        }
        if (bulkheadGate !== undefined && bulkhead !== undefined) {
          if (plans.stop === "bulkhead" || !bulkheadGate.tryTake()) {
            return completing(restore(bulkhead.execute(attemptOnce(call, callOptions, attempt, key))), taken, callOptions, clock)
          }
          taken.bulkhead = true
        }

        const inner = made !== undefined && made.keyIndex === taken.keyIndex
          ? made.effect
          : leanAttempt(fiber, call, callOptions, attempt, key)
        // Done already (an `Exit`): complete now, without the handler.
        const done = exitOf(inner)
        if (done !== undefined) return complete(taken, callOptions, done, clock, 0)
        return completing(restore(inner), taken, callOptions, clock)
      })
      return interruptible ? Effect.uninterruptible(admit) : admit
    }

    /**
     * The attempt itself: `attemptOnce`, or, without events, a request
     * budget, a deadline or a cost to read (each a no-op then), just the
     * call under the attempt timeout. A `call` that throws is a defect of
     * the attempt, never a permit left taken.
     */
    const leanAttempt = <A, E, R>(
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A>,
      attempt: number,
      key: KeyPool.PickedKey | undefined
    ): Effect.Effect<A, E | PolicyError, R> => {
      try {
        return events === undefined && callOptions.costUsd === undefined &&
            fiber.getFiberRef(RequestBudget.currentLedger) === undefined &&
            Option.isNone(fiber.getFiberRef(Deadline.currentDeadline))
          ? attemptTimeout(call({ deployment: name, attempt, key }))
          : attemptOnce(call, callOptions, attempt, key)
      } catch (defect) {
        return Effect.die(defect)
      }
    }

    // The retry's side door: the first attempt's admission records it in the retry budget.
    const retryGate = retry === undefined ? undefined : fastPath.retries.get(retry)
    const fusedCall = fused && (retry === undefined || retryGate !== undefined)

    const newRun = (): Run => ({
      attempts: 0,
      tried: undefined,
      firstKey: undefined,
      lastKey: undefined,
      recordFirst: retryGate?.record
    })

    /** One call: all its attempts, under the total timeout. `capture` is given the call's state. */
    const runCall = <A, E, R>(
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A>,
      capture: ((run: Run) => void) | undefined
    ): Effect.Effect<A, E | PolicyError, R> => {
      if (!fusedCall) {
        return Effect.suspend(() => {
          const run = newRun()
          capture?.(run)
          const oneAttempt = Effect.suspend(() => {
            run.attempts += 1
            return composedAttempt(run, call, callOptions, run.attempts)
          })
          return totalTimeout(retry === undefined ? oneAttempt : retry.execute(oneAttempt))
        })
      }
      // One op starts the call and makes its first attempt: a call answered at once costs this op only.
      return totalTimeout(Effect.withFiberRuntime<A, E | PolicyError, R>((fiber, status) => {
        const run = newRun()
        capture?.(run)
        const interruptible = RuntimeFlags.interruption(status.runtimeFlags)
        const first = attemptNow(fiber, run, call, callOptions, interruptible)
        if (retryGate === undefined) return first
        const done = exitOf(first)
        if (done !== undefined && Exit.isSuccess(done)) return done
        const again = Effect.withFiberRuntime<A, E | PolicyError, R>((f) => attemptNow(f, run, call, callOptions, interruptible))
        if (done === undefined) return Effect.catchAllCause(first, (cause) => retryGate.retryFailed(cause, again))
        return retryGate.retryFailed(done.cause, again)
      }))
    }

    const executeDetailed = <A, E, R>(
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A> = noCallOptions
    ): Effect.Effect<Detailed<A>, E | PolicyError, R> =>
      Effect.suspend(() => {
        let run: Run | undefined
        return Effect.map(runCall(call, callOptions, (r) => {
          run = r
        }), (value): Detailed<A> => ({
          value,
          deployment: name,
          keyName: run?.lastKey,
          backupKey: run?.lastKey !== run?.firstKey,
          attempts: run?.attempts ?? 0
        }))
      })

    const execute = <A, E, R>(
      call: (attempt: Attempt) => Effect.Effect<A, E, R>,
      callOptions: CallOptions<A> = noCallOptions
    ): Effect.Effect<A, E | PolicyError, R> => runCall(call, callOptions, undefined)

    const statusOf = <S>(service: { readonly status: Effect.Effect<S> } | undefined) =>
      service === undefined ? Effect.succeed(undefined) : service.status

    return {
      deployment: name,
      execute,
      executeDetailed,
      keyPool,
      circuitBreaker,
      bulkhead,
      rateLimiter,
      retryBudget,
      status: Effect.all({
        deployment: Effect.succeed(name),
        circuitBreaker: statusOf(circuitBreaker),
        bulkhead: statusOf(bulkhead),
        rateLimiter: statusOf(rateLimiter),
        keyRateLimiters: keyRateLimiters === undefined
          ? Effect.succeed(undefined)
          : Effect.map(
            Effect.forEach([...keyRateLimiters], ([keyName, limiter]) => Effect.map(limiter.status, (s) => [keyName, s] as const)),
            (entries) => Object.fromEntries(entries)
          ),
        keyPool: statusOf(keyPool),
        retryBudget: statusOf(retryBudget)
      })
    }
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
        byName.set(options.deployment, yield* make(options))
      }
      const all = [...byName.values()]
      return { get: (deployment) => Option.fromNullable(byName.get(deployment)), all }
    })
  )
