/**
 * Active health probes (docs/semantics.md rule 30): a deployment that gets
 * no traffic (a fallback, until the outage that needs it) is asked a cheap
 * question on a schedule, so a revoked key or a dead relay is known before
 * real requests are sent to it.
 *
 * A probe goes through the deployment's circuit breaker and key pool, the
 * gates that learn from calls, and through nothing else:
 * - it learns what a call would teach (rules 23-26): a 401 or 403 disables
 *   the key it used; a provider-wide failure counts for the breaker;
 * - it passes an open breaker only as its half-open trial, so a success
 *   closes a breaker only the normal way;
 * - it never takes a bulkhead permit or a rate limiter's tokens, and it is
 *   not a request in the request metrics.
 *
 * It runs only when the deployment has had no real traffic for `idleFor`
 * (a busy deployment learns from its traffic), at most `maxPerMinute` times
 * a minute (its own small budget). After each probe its verdict is what the
 * breaker and the keys say: a deployment whose breaker is open or whose
 * keys are all out cannot serve, and the fallback chain skips it, saying why.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Admission from "./Admission.js"
import * as AttemptEvents from "./AttemptEvents.js"
import type * as CircuitBreaker from "./CircuitBreaker.js"
import { type InvalidConfigError, type ResilienceError, tagOf } from "./Errors.js"
import { decodeOptions, PositiveInt, PositiveMillis } from "./internal/config.js"
import type * as KeyPool from "./KeyPool.js"
import * as TaggedMetric from "./TaggedMetric.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** The deployment probed. */
  readonly name: string
  /** How often to look. Default 30 s. */
  readonly every?: Duration.DurationInput
  /** Probe only after this long without real traffic. Default 60 s. */
  readonly idleFor?: Duration.DurationInput
  /** The probes' own budget. Default 4. */
  readonly maxPerMinute?: number
}

/**
 * What is probed: the deployment's learning gates and its cheap call.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly circuitBreaker: CircuitBreaker.Service | undefined
  readonly keyPool: KeyPool.Service | undefined
  /** When real traffic last reached the deployment, epoch ms; undefined if never. */
  readonly lastUsed: Effect.Effect<number | undefined>
  /** The cheap call (a model list, a 1-token completion), with the key the pool picked. */
  readonly call: (key: KeyPool.PickedKey | undefined) => Effect.Effect<void, ResilienceError>
}

/**
 * How a probe ended: `ok`, an error's tag, or why it did not run.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome = "ok" | "busy" | "over-budget" | "interrupted" | "defect" | (string & {})

/**
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly name: string
  /** Probes that ran (not those skipped: busy, over budget). */
  readonly probes: number
  readonly lastAt: number | undefined
  readonly lastOutcome: Outcome | undefined
  /** Why the last probe says the deployment cannot serve; undefined when it can (or none ran). */
  readonly unfit: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** One probe now, idle and budget permitting. */
  readonly probe: Effect.Effect<Outcome>
  /**
   * Why the last probe says the deployment cannot serve (its breaker open,
   * every key out), or undefined. Read by the fallback chain on every
   * request, so it is the verdict kept by the last probe, not a new look.
   */
  readonly unfit: () => string | undefined
  readonly status: Effect.Effect<Status>
}

const probes = Metric.counter("resilient_ai_probes_total", {
  description: "health probes that ran, by deployment and outcome (ok or the error's tag)",
  incremental: true
})
const probesBy = TaggedMetric.taggedBy(probes, ["deployment", "outcome"])

const OptionsSchema = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })),
  every: Schema.optional(PositiveMillis),
  idleFor: Schema.optional(PositiveMillis),
  maxPerMinute: Schema.optional(PositiveInt)
})

const MINUTE = 60_000

/**
 * Makes the probe of one deployment and runs it on its schedule for as
 * long as the scope lasts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options, target: Target): Effect.Effect<Service, InvalidConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    const o = yield* decodeOptions(`HealthProbe "${String(options.name)}"`, OptionsSchema, options)
    const name = o.name
    const every = o.every ?? 30_000
    const idleFor = o.idleFor ?? 60_000
    const maxPerMinute = o.maxPerMinute ?? 4
    const events = Option.getOrUndefined(yield* Effect.serviceOption(AttemptEvents.AttemptEvents))
    const recent: Array<number> = []
    let ran = 0
    let lastAt: number | undefined
    let lastOutcome: Outcome | undefined
    let unfit: string | undefined

    const verdict: Effect.Effect<string | undefined> = Effect.gen(function*() {
      const breaker = target.circuitBreaker === undefined ? undefined : yield* target.circuitBreaker.status
      if (breaker !== undefined && (breaker.state === "open" || breaker.state === "forced-open")) return `its breaker is ${breaker.state}`
      const keys = target.keyPool === undefined ? undefined : yield* target.keyPool.status
      if (keys !== undefined && keys.healthy === 0) {
        return keys.keys.every((k) => k.state === "disabled") ? "every key is disabled" : "no key is available"
      }
      return undefined
    })

    // The breaker, then the key pool: the order of rule 18 without the limiter and the bulkhead.
    const called = (): Effect.Effect<void, ResilienceError> => {
      const withKey = target.keyPool === undefined
        ? target.call(undefined)
        : Admission.execute(target.keyPool.gate, {}, (permit) => target.call(permit.key))
      return target.circuitBreaker === undefined ? withKey : Admission.execute(target.circuitBreaker.gate, undefined, () => withKey)
    }

    const probe: Effect.Effect<Outcome> = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const used = yield* target.lastUsed
      if (used !== undefined && now - used < idleFor) return "busy"
      while (recent.length > 0 && now - recent[0]! >= MINUTE) recent.shift()
      if (recent.length >= maxPerMinute) return "over-budget"
      recent.push(now)
      const exit = yield* Effect.exit(called())
      const outcome = outcomeOf(exit)
      ran++
      lastAt = now
      lastOutcome = outcome
      unfit = yield* verdict
      probesBy(name, outcome).unsafeUpdate(1, [])
      if (events !== undefined) {
        yield* events.publish({ _tag: "ProbeRan", at: now, deployment: name, outcome, unfit })
      }
      return outcome
    })

    yield* Effect.forkScoped(Effect.zipRight(Effect.sleep(every), Effect.repeat(probe, Schedule.spaced(every))))

    const status: Effect.Effect<Status> = Effect.sync(() => ({ name, probes: ran, lastAt, lastOutcome, unfit }))
    return { name, probe, unfit: () => unfit, status }
  })

const outcomeOf = (exit: Exit.Exit<void, ResilienceError>): Outcome => {
  if (Exit.isSuccess(exit)) return "ok"
  if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) ? tagOf(failure.value) : "defect"
}
