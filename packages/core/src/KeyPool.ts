/**
 * A pool of API keys for one provider (or shared by the providers of one
 * account): a healthy key per attempt, and key health learnt from what the
 * attempts meet.
 *
 * - An upstream 429 cools the key for its `retryAfter` (default 60 s), and
 *   rate-limit headers saying nothing is left cool it before the 429 comes.
 * - A 401/403 (`AuthError`) disables the key until {@link Service.enable}.
 * - Quota exhaustion parks the key, and every key of its `group` (the account
 *   whose quota they share), until the error's `resetAt` (default 1 h).
 * - A provider-wide failure (connection refused, 5xx, timeout) is the
 *   breaker's business and never cools a key (docs/semantics.md rule 23):
 *   otherwise every key cools during an outage and the provider comes back
 *   late. Opt in with `failuresBeforeCooldown`: that many transient
 *   failures in a row (the breaker's "failure" verdict: 5xx, timeouts,
 *   connection, malformed bodies) cool it for `failureCooldown` (default
 *   30 s); a success resets the count.
 * - Interruption and our own rejections (local rate limit, open breaker, full
 *   bulkhead, ...) say nothing about a key and are ignored.
 *
 * Keys come back lazily when their time comes (no timer fibers). The pool
 * keeps names and health in the {@link StateStore} under `key-pool/<name>`,
 * changed by one atomic store operation per pick and one per outcome, so replicas on
 * a shared store agree on which keys are out. Secrets never leave the
 * `Redacted` they came in: state, status, transitions, metrics and errors
 * carry key names only.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Admission from "./Admission.js"
import * as AttemptEvents from "./AttemptEvents.js"
import type * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { breakerVerdict, InvalidConfigError, NoKeyAvailableError, tagOf } from "./Errors.js"
import { decodeOptions, LimitMillis, PositiveInt, PositiveMillis } from "./internal/config.js"
import { exitOf } from "./internal/done.js"
import { published as publishedStep } from "./internal/published.js"
import * as machine from "./internal/keyPoolState.js"
import * as RequestScope from "./internal/requestScope.js"
import { millisOf } from "./internal/retryAfter.js"
import * as StateStore from "./StateStore.js"

/**
 * `healthy` keys are picked; `cooling` ones (429, rate-limit headers, repeated
 * transient failures) and `parked` ones (quota) come back by themselves at
 * their `until`; `disabled` ones (401/403, or by hand) only by `enable`.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyState = machine.KeyState

/**
 * One key of the pool.
 *
 * @since 0.1.0
 * @category options
 */
export interface Key {
  /** Names the key in status, transitions, metrics and errors. Unique in the pool. */
  readonly name: string
  /** The secret; load it with `Config.redacted`. */
  readonly key: Redacted.Redacted<string>
  /** A positive integer share of the traffic; only with `strategy: "weighted"`. Default 1. */
  readonly weight?: number
  /** The account or project whose quota this key shares: a quota error parks the whole group. */
  readonly group?: string
  /**
   * The rate limit this key shares (one organisation, one relay): an
   * upstream 429, or rate-limit headers saying nothing is left, cools every
   * key of the group together.
   */
  readonly rateLimitGroup?: string
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Names the pool in errors, metrics and the store (`key-pool/<name>`): pools of one name share key health. */
  readonly name: string
  readonly keys: ReadonlyArray<Key>
  /**
   * `"round-robin"` (the default) takes the healthy keys in turn;
   * `"weighted"` is nginx's smooth weighted round-robin: over every
   * sum-of-weights picks each key is taken exactly `weight` times, interleaved.
   */
  readonly strategy?: "round-robin" | "weighted"
  /** How long an upstream 429 without `retryAfter` cools its key. Default 60 s. */
  readonly rateLimitCooldown?: Duration.DurationInput
  /**
   * Transient failures in a row that cool a key. Default: none ever do
   * (`Infinity`, rule 23: a provider-wide failure is the breaker's business).
   */
  readonly failuresBeforeCooldown?: number
  /** How long those failures cool it. Default 30 s. */
  readonly failureCooldown?: Duration.DurationInput
  /** How long a quota error without `resetAt` parks its group. Default 1 hour. */
  readonly quotaResetAfter?: Duration.DurationInput
  /**
   * When every key is out but some come back by themselves, wait for the first
   * up to this long (and never past the request's `Deadline`). Default 0:
   * fail at once with `NoKeyAvailableError`.
   */
  readonly waitForKey?: Duration.DurationInput
  /** Copied into `NoKeyAvailableError`s. */
  readonly provider?: string
}

/**
 * What `use` gets: the key to send, and its name to report.
 *
 * @since 0.1.0
 * @category models
 */
export interface PickedKey {
  readonly name: string
  readonly key: Redacted.Redacted<string>
  readonly group?: string
}

/**
 * A call admitted on one key.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyPermit extends Admission.Permit {
  readonly key: PickedKey
  /** The key's place in the configured order. */
  readonly index: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface WithKeyOptions {
  /**
   * Names of keys earlier attempts of this request used: they are picked only
   * when no other key is healthy, so the attempt after a failure goes to
   * another key first.
   */
  readonly avoid?: ReadonlySet<string>
  /**
   * A session id or prompt-prefix hash: the same value gets the same key while
   * that key is healthy (rendezvous hashing, weighted), so provider-side
   * prompt caches stay warm. When a key goes out only its sessions move.
   */
  readonly affinity?: string
}

/**
 * Rate-limit headers of an answer (`x-ratelimit-remaining-requests`, ...).
 * When requests or tokens remaining is 0 the key cools until `resetAt`
 * (epoch ms), or `resetAfter` from now, or else for `rateLimitCooldown`, so
 * traffic moves to another key before a 429.
 *
 * @since 0.1.0
 * @category models
 */
export interface Feedback {
  readonly remainingRequests?: number
  readonly remainingTokens?: number
  readonly resetAt?: number
  readonly resetAfter?: Duration.DurationInput
}

/**
 * A change of a key's state.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transition {
  readonly pool: string
  /** The key's name. */
  readonly key: string
  readonly from: KeyState
  readonly to: KeyState
  /**
   * Epoch milliseconds on the effect `Clock` when the pool made the move. A
   * key comes back lazily: that move is made (and published) the first time
   * the pool looks at the key at or after its `until`.
   */
  readonly at: number
  readonly reason: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface KeyStatus {
  readonly name: string
  readonly group: string | undefined
  readonly weight: number
  readonly state: KeyState
  readonly consecutiveFailures: number
  /** Epoch ms when a cooling or parked key comes back. */
  readonly until: number | undefined
  /** Tag of the last error that said something about the key. */
  readonly lastError: string | undefined
  /** Picks by this process since the pool was built. */
  readonly picks: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly pool: string
  readonly strategy: "round-robin" | "weighted"
  /** In the configured order. Names and health only, never a key. */
  readonly keys: ReadonlyArray<KeyStatus>
  readonly healthy: number
  /** When no key is healthy: epoch ms when the first comes back, if any will. */
  readonly availableAt: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** The pool's admission: a healthy key per call (or `NoKeyAvailableError`), released with what the call met. */
  readonly gate: Admission.Gate<WithKeyOptions, KeyPermit, NoKeyAvailableError>
  /**
   * Picks a healthy key, runs `use` with it, and learns from its outcome (its
   * `Exit`: see the module's rules). One key per call: a retry calls `withKey`
   * again, with the names it tried in `avoid`. Fails with
   * `NoKeyAvailableError` when every key is out (after waiting up to
   * `waitForKey` for one to come back, if set), without running `use`.
   */
  readonly withKey: <A, E, R>(
    use: (key: PickedKey) => Effect.Effect<A, E, R>,
    options?: WithKeyOptions
  ) => Effect.Effect<A, E | NoKeyAvailableError, R>
  /**
   * `withKey` for an effect that reads its key from {@link CurrentKey}: the
   * `execute(effect, options)` shape every policy has.
   */
  readonly execute: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: WithKeyOptions
  ) => Effect.Effect<A, E | NoKeyAvailableError, Exclude<R, CurrentKey>>
  /** Feeds an outcome observed elsewhere into the key's health. Unknown names are ignored. */
  readonly report: (name: string, outcome: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
  /** Rate-limit headers of an answer on this key. Unknown names are ignored. */
  readonly feedback: (name: string, feedback: Feedback) => Effect.Effect<void>
  /** Back to healthy now, whatever the state (clears cooldowns, parks and disables). */
  readonly enable: (name: string) => Effect.Effect<void, Cause.NoSuchElementException>
  /** Out of rotation until `enable`. */
  readonly disable: (name: string) => Effect.Effect<void, Cause.NoSuchElementException>
  readonly status: Effect.Effect<Status>
  /** Every key state change, in order, from the moment the stream starts running. */
  readonly transitions: Stream.Stream<Transition>
  /** A queue of every key state change from now on; unsubscribes when the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Transition>, never, Scope.Scope>
}

/**
 * The key an effect run by {@link Service.execute} is to send.
 *
 * @since 0.1.0
 * @category tags
 */
export class CurrentKey extends Context.Tag("@resilient-ai/core/KeyPool/CurrentKey")<CurrentKey, PickedKey>() {}

/**
 * The single-pool service.
 *
 * @since 0.1.0
 * @category tags
 */
export class KeyPool extends Context.Tag("@resilient-ai/core/KeyPool")<KeyPool, Service>() {}

const secretMessage = () => "expected a Redacted string (Redacted.make or Config.redacted), never a plain secret"

const RedactedString = Schema.declare(
  (u: unknown): u is Redacted.Redacted<string> => Redacted.isRedacted(u) && typeof Redacted.value(u) === "string",
  // The default message would print the value: a plain-string secret must not reach the error.
  { message: secretMessage }
)

const NonEmptyString = Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty string" }))

const KeySchema = Schema.Struct({
  name: NonEmptyString,
  key: RedactedString,
  weight: Schema.optional(PositiveInt),
  group: Schema.optional(NonEmptyString),
  rateLimitGroup: Schema.optional(NonEmptyString)
})

const OptionsSchema = Schema.Struct({
  name: NonEmptyString,
  keys: Schema.Array(KeySchema).pipe(Schema.minItems(1, { message: () => "expected at least one key" })),
  strategy: Schema.optionalWith(Schema.Literal("round-robin", "weighted"), { default: () => "round-robin" as const }),
  rateLimitCooldown: Schema.optionalWith(PositiveMillis, { default: () => 60_000 }),
  failuresBeforeCooldown: Schema.optionalWith(Schema.Union(PositiveInt, Schema.Literal(Number.POSITIVE_INFINITY)), {
    default: () => Number.POSITIVE_INFINITY
  }),
  failureCooldown: Schema.optionalWith(PositiveMillis, { default: () => 30_000 }),
  quotaResetAfter: Schema.optionalWith(PositiveMillis, { default: () => 3_600_000 }),
  waitForKey: Schema.optionalWith(LimitMillis, { default: () => 0 }),
  provider: Schema.optional(Schema.String)
})

const stateCode: Record<KeyState, number> = { healthy: 0, cooling: 1, parked: 2, disabled: 3 }

const keyStateGauge: Metric.Metric.Gauge<number> = Metric.gauge("resilient_ai_key_pool_key_state", {
  description: "state of a key, by pool and key name: 0 healthy, 1 cooling, 2 parked, 3 disabled"
})
const picksKey = MetricKey.counter("resilient_ai_key_pool_picks_total", {
  description: "keys picked for an attempt, by pool and key name",
  incremental: true
})
const picksCounter: Metric.Metric.Counter<number> = Metric.fromMetricKey(picksKey)

/**
 * The pool's metrics, tagged `pool` and `key` (the key's name), for reading
 * them (tests, the gateway's /metrics). The state gauge is set on every
 * transition; a key's lazy return to healthy shows once the pool next looks
 * at it (a pick, an outcome or `status`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = { picks: picksCounter, keyState: keyStateGauge } as const


/**
 * What an error says about the key that met it. Upstream 429, 401/403 and
 * quota speak about the key; the breaker's "failure" verdict is a transient
 * failure; an answer (the breaker's "success") clears the failure count;
 * everything the breaker ignores (local rejections, no key) is ignored.
 */
const outcomeOfError = (error: unknown): machine.Outcome => {
  const tag = tagOf(error)
  switch (tag) {
    case "RateLimitError": {
      const e = error as { readonly source?: unknown; readonly retryAfter?: unknown }
      return e.source === "upstream"
        ? { _tag: "rate-limited", error: tag, retryAfter: millisOf(e.retryAfter) }
        : machine.ignored
    }
    case "AuthError":
      return { _tag: "auth", error: tag }
    case "QuotaExhaustedError": {
      const resetAt = (error as { readonly resetAt?: unknown }).resetAt
      return { _tag: "quota", error: tag, resetAt: typeof resetAt === "number" ? resetAt : undefined }
    }
  }
  switch (breakerVerdict(error)) {
    case "failure":
      return { _tag: "failure", error: tag }
    case "success":
      return machine.success
    case "ignored":
      return machine.ignored
  }
}

const outcomeOfCause = (cause: Cause.Cause<unknown>): machine.Outcome => {
  // The caller left: that says nothing about the key.
  if (Cause.isInterruptedOnly(cause)) return machine.ignored
  const failure = Cause.failureOption(cause)
  // A defect is not proof of health (as for the breaker).
  return Option.isSome(failure) ? outcomeOfError(failure.value) : { _tag: "failure", error: "Defect" }
}

/**
 * Builds a pool whose key health lives in the `StateStore` under
 * `key-pool/<name>`. State written for another key set keeps the health of
 * the keys still present, by name.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const component = `KeyPool${typeof options?.name === "string" ? ` "${options.name}"` : ""}`
    const o = yield* decodeOptions(component, OptionsSchema, options)
    const seen = new Map<string, number>()
    for (const [i, k] of o.keys.entries()) {
      if (seen.has(k.name)) {
        return yield* new InvalidConfigError({
          component,
          path: `keys.${i}.name`,
          detail: `key name "${k.name}" is used twice (also keys.${seen.get(k.name)}.name)`
        })
      }
      seen.set(k.name, i)
      if (k.weight !== undefined && o.strategy !== "weighted") {
        return yield* new InvalidConfigError({
          component,
          path: `keys.${i}.weight`,
          detail: `a weight applies only with strategy "weighted" (the strategy is "${o.strategy}")`
        })
      }
    }
    const names = o.keys.map((k) => k.name)
    const groupNames = o.keys.map((k) => k.group)
    const config: machine.Config = {
      names,
      weights: o.keys.map((k) => k.weight ?? 1),
      groupNames,
      groups: o.keys.map((k, i) =>
        k.group === undefined ? [i] : o.keys.flatMap((other, j) => (other.group === k.group ? [j] : []))
      ),
      rateLimitGroups: o.keys.map((k, i) =>
        k.rateLimitGroup === undefined
          ? [i]
          : o.keys.flatMap((other, j) => (other.rateLimitGroup === k.rateLimitGroup ? [j] : []))
      ),
      strategy: o.strategy,
      rateLimitCooldown: o.rateLimitCooldown,
      failuresBeforeCooldown: o.failuresBeforeCooldown,
      failureCooldown: o.failureCooldown,
      quotaResetAfter: o.quotaResetAfter
    }
    const store = yield* StateStore.StateStore
    const pubsub = yield* PubSub.unbounded<Transition>()
    const events = Option.getOrUndefined(yield* Effect.serviceOption(AttemptEvents.AttemptEvents))
    const pool = makeWith(o.name, config, o.keys, o.waitForKey, o.provider, store, pubsub, events)
    // Reconcile state written for another key set now, and show every key on the gauge.
    const initial = yield* Effect.clockWith((clock) => pool.slot.read(clock.unsafeCurrentTimeMillis()))
    yield* Effect.forEach(initial.state.keys, (k, i) => Metric.set(pool.gauges[i] ?? keyStateGauge, stateCode[k.state]), {
      discard: true
    })
    return pool.service
  })

const makeWith = (
  name: string,
  config: machine.Config,
  keys: ReadonlyArray<{ readonly name: string; readonly key: Redacted.Redacted<string>; readonly group?: string | undefined }>,
  waitForKey: number,
  provider: string | undefined,
  store: StateStore.Service,
  pubsub: PubSub.PubSub<Transition>,
  events: AttemptEvents.Service | undefined
) => {
  const slot = store.keyHealth(name, config)
  const indexOf = new Map(config.names.map((n, i) => [n, i] as const))
  // One label array per key: effect caches a tagged metric's hook by the identity of its labels,
  // which chained `Metric.tagged` calls rebuild on every update.
  const labels = config.names.map((n) => [MetricLabel.make("pool", name), MetricLabel.make("key", n)])
  const gauges = labels.map((l) => Metric.taggedWithLabels(keyStateGauge, l))
  // Made from the tagged key (as internal/metrics.ts does): an update with no fiber labels goes
  // straight to its hook, where `taggedWithLabels` merged the tags into the labels on every pick.
  const picks = labels.map((l) => Metric.fromMetricKey(MetricKey.taggedWithLabels(picksKey, l)))
  // Picks by this process: a statistic like the metric, kept out of the shared state.
  const pickCounts = config.names.map(() => 0)

  const publish = (transitions: ReadonlyArray<machine.Transition>): Effect.Effect<void> =>
    Effect.zipRight(
      PubSub.publishAll(pubsub, transitions.map((t): Transition => ({ pool: name, ...t }))),
      Effect.forEach(transitions, (t) => {
        const gauge = gauges[indexOf.get(t.key) ?? -1]
        const set = gauge === undefined ? Effect.void : Metric.set(gauge, stateCode[t.to])
        return events === undefined ? set : Effect.zipRight(
          set,
          events.publish({ _tag: "KeyTransition", at: t.at, pool: name, keyName: t.key, from: t.from, to: t.to, reason: t.reason })
        )
      }, { discard: true })
    )

  /** A store step's result, after its transitions are published. */
  const published = <A>(step: Effect.Effect<machine.Step<A>>): Effect.Effect<A> => publishedStep(step, publish)

  const learn = (index: number, outcome: machine.Outcome, now: number): Effect.Effect<void> =>
    outcome === machine.ignored ? Exit.void : published(slot.record(index, outcome, now))

  /** A call on key `index`: its outcome teaches the pool about that key. One per key, made once. */
  const permits: ReadonlyArray<KeyPermit> = keys.map((k, index) => ({
    index,
    key: k.group === undefined ? { name: k.name, key: k.key } : { name: k.name, key: k.key, group: k.group },
    release: (exit, now) => learn(index, Exit.isSuccess(exit) ? machine.success : outcomeOfCause(exit.cause), now)
  }))

  const noKey = (availableAt: number | undefined) =>
    new NoKeyAvailableError({
      pool: name,
      ...(availableAt === undefined ? {} : { availableAt }),
      ...(provider === undefined ? {} : { provider })
    }, true)

  // `waitLimit`: the latest epoch ms a wait for a key may end, set at the first miss.
  const pickAt = (
    request: WithKeyOptions,
    context: Admission.Context,
    now: number,
    waitLimit: number | undefined
  ): Effect.Effect<KeyPermit, NoKeyAvailableError> => {
    const chosen = (pick: machine.Pick): Effect.Effect<KeyPermit, NoKeyAvailableError> => {
      if (pick._tag === "picked") {
        const permit = permits[pick.index]
        if (permit === undefined) return Effect.dieMessage(`KeyPool "${name}": no key at ${pick.index}`)
        pickCounts[pick.index] = (pickCounts[pick.index] ?? 0) + 1
        picks[pick.index]?.unsafeUpdate(1, context.fiber.getFiberRef(FiberRef.currentMetricLabels))
        return Exit.succeed(permit)
      }
      const availableAt = pick.availableAt
      // Rule 25: with a later step of a fallback chain to go to, no wait for a key above its limit.
      const limit = waitLimit ?? now + Math.min(waitForKey, RequestScope.maxWaitOf(context.fiber))
      const deadline = RequestScope.deadlineOf(context.fiber)
      // A key back at or after the deadline is no use to this request: fail at once.
      if (availableAt === undefined || availableAt > limit || (deadline !== undefined && availableAt >= deadline)) {
        return Exit.fail(noKey(availableAt))
      }
      return Effect.zipRight(
        context.restore(Effect.sleep(availableAt - now)),
        Effect.clockWith((clock) => pickAt(request, context, clock.unsafeCurrentTimeMillis(), limit))
      )
    }
    const step = slot.pick(now, request.avoid, request.affinity)
    const done = exitOf(step)
    if (done !== undefined && Exit.isSuccess(done) && done.value.transitions.length === 0) return chosen(done.value.result)
    return Effect.flatMap(published(step), chosen)
  }

  const gate: Admission.Gate<WithKeyOptions, KeyPermit, NoKeyAvailableError> = {
    acquire: (request, context) => pickAt(request, context, context.now, undefined)
  }

  const noOptions: WithKeyOptions = {}
  const withKey = <A, E, R>(
    use: (key: PickedKey) => Effect.Effect<A, E, R>,
    options?: WithKeyOptions
  ): Effect.Effect<A, E | NoKeyAvailableError, R> => Admission.execute(gate, options ?? noOptions, (permit) => use(permit.key))

  const execute = <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: WithKeyOptions
  ): Effect.Effect<A, E | NoKeyAvailableError, Exclude<R, CurrentKey>> =>
    withKey((key) => Effect.provideService(effect, CurrentKey, key), options)

  const step = <A>(f: (now: number) => Effect.Effect<machine.Step<A>>): Effect.Effect<A> =>
    Effect.clockWith((clock) => published(f(clock.unsafeCurrentTimeMillis())))

  const lookup = (key: string): Effect.Effect<number, Cause.NoSuchElementException> => {
    const i = indexOf.get(key)
    return i === undefined
      ? Effect.fail(new Cause.NoSuchElementException(`key pool "${name}" has no key named "${key}"`))
      : Effect.succeed(i)
  }

  const report = (key: string, outcome: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
    const permit = permits[indexOf.get(key) ?? -1]
    if (permit === undefined) return Effect.void
    return Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      return permit.release(outcome, now, now)
    })
  }

  const feedback = (key: string, f: Feedback): Effect.Effect<void> => {
    const i = indexOf.get(key)
    if (i === undefined || (f.remainingRequests !== 0 && f.remainingTokens !== 0)) return Effect.void
    const what = f.remainingRequests === 0 ? "requests" : "tokens"
    const after = f.resetAfter === undefined ? undefined : millisOf(f.resetAfter)
    return step((now) => {
      const until = f.resetAt ?? (after === undefined ? now + config.rateLimitCooldown : now + after)
      return slot.cool(i, until, now, `rate-limit headers: no ${what} left; cooling until ${new Date(until).toISOString()}`)
    })
  }

  const enable = (key: string) =>
    Effect.flatMap(lookup(key), (i) => step((now) => slot.force(i, "healthy", now)))

  const disable = (key: string) =>
    Effect.flatMap(lookup(key), (i) => step((now) => slot.force(i, "disabled", now)))

  const status: Effect.Effect<Status> = step((now) =>
    Effect.map(slot.read(now), (advanced) => {
      const next = advanced.state
      let healthy = 0
      const statuses = next.keys.map((k, i): KeyStatus => {
        if (k.state === "healthy") healthy++
        return {
          name: config.names[i] ?? "",
          group: config.groupNames[i],
          weight: config.weights[i] ?? 1,
          state: k.state,
          consecutiveFailures: k.failures,
          until: k.state === "cooling" || k.state === "parked" ? k.until : undefined,
          lastError: k.lastError ?? undefined,
          picks: pickCounts[i] ?? 0
        }
      })
      const result: Status = {
        pool: name,
        strategy: config.strategy,
        keys: statuses,
        healthy,
        availableAt: healthy === 0 ? machine.availableAt(next) : undefined
      }
      return { result, state: next, transitions: advanced.transitions }
    })
  )

  const service: Service = {
    name,
    gate,
    withKey,
    execute,
    report,
    feedback,
    enable,
    disable,
    status,
    transitions: Stream.fromPubSub(pubsub),
    subscribe: PubSub.subscribe(pubsub)
  }
  return { service, slot, gauges }
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<KeyPool, InvalidConfigError, StateStore.StateStore> =>
  Layer.effect(KeyPool, make(options))
