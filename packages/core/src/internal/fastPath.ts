/**
 * The synchronous side doors of the policies, for the hot path.
 *
 * Every effect op costs the fiber runtime 50-150 ns, and an
 * `uninterruptibleMask` about 150-400 ns; composed one around the other, the
 * breaker, key pool, rate limiter and bulkhead of one attempt ran some 60
 * ops and 2 masks. A `Policy` instead decides the admission of all of them
 * in one op and completes them in one handler. For that each policy
 * registers here, next to its public service, a "gate": the same pure state
 * machine steps as its `execute`, made synchronously, in two halves: `plan`
 * decides what the gate would take (nothing is taken) and `take` takes it.
 *
 * Planning first lets the attempt be made before anything is taken: when
 * the call is done at once (an `Exit`), its plans are taken and completed
 * in the same op, with no mask, since nothing can run or interrupt the fiber
 * in between. Otherwise the plans are dropped and the attempt is admitted
 * again inside the mask, plan and take together.
 *
 * A gate only decides what needs no effect: an admission that makes no
 * transition, needs no wait and is not a rejection. Anything else (an open
 * breaker, a key coming back, a limiter that must wait or refuse, a full
 * bulkhead) is left to the policy's own effectful path, with nothing changed
 * by the gate. A completion returns `undefined` when it is done, or an effect
 * to run when it has something to publish.
 *
 * Gates work only over a `StateStore` whose `modify` is synchronous (the
 * in-memory store registers itself here); with any other store the policies
 * register no gate and `Policy` composes their effects as before.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import type * as Effect from "effect/Effect"
import type * as MetricLabel from "effect/MetricLabel"
import type { CircuitOpenError } from "../Errors.js"
import type * as KeyPool from "../KeyPool.js"
import type * as StateStore from "../StateStore.js"
import type * as breaker from "./breakerState.js"
import type * as keyPool from "./keyPoolState.js"
import type * as tokenBucket from "./tokenBucket.js"

/**
 * One slot of a synchronous store, read and written at once. A `get`, a
 * pure step and a `set` in one synchronous run are one atomic `modify`.
 */
export interface SyncCell<S> {
  readonly get: () => S
  readonly set: (state: S) => void
  /**
   * Registers what writes the slot's pending changes: the store runs it
   * before each read through its effects (`get`, `modify`), so a policy may
   * hold changes back from its hot path and every reader still sees them.
   */
  readonly beforeRead: (write: () => void) => void
}

/** Stores whose `modify` runs synchronously, by identity: the cell of a key. */
export const syncStores = new WeakMap<StateStore.Service, <S>(key: StateStore.StateKey<S>) => SyncCell<S>>()

/** The cell of `key` when `store` is synchronous: resolved once, so the hot path makes no lookup. */
export const syncCell = <S>(store: StateStore.Service, key: StateStore.StateKey<S>): SyncCell<S> | undefined =>
  syncStores.get(store)?.(key)

/**
 * What a gate would take, decided at one instant and taken (or dropped) in
 * the same synchronous run: a plan is made from a state no one else can
 * change before it is taken, so taking it is the admission itself. A
 * breaker's plan is an admission or a refusal, and the state that follows.
 */
export type BreakerPlan = breaker.Step<breaker.Admission>

export interface BreakerGate {
  /** The decision at `now` when it makes no transition; `undefined`: use `execute`. Takes nothing. */
  readonly plan: (now: number) => BreakerPlan | undefined
  /** Takes an admission: the plan's state. */
  readonly take: (state: breaker.BreakerState) => void
  /** Takes a refusal and counts it as `execute` does: its failure, an `Exit`. */
  readonly refuse: (state: breaker.BreakerState, rejection: breaker.Rejection) => Effect.Effect<never, CircuitOpenError>
  /** Records the outcome (`undefined` cause: a success) of an admitted call that started at `start`. */
  readonly leave: (
    admission: breaker.Admitted,
    cause: Cause.Cause<unknown> | undefined,
    start: number,
    clock: Clock.Clock
  ) => Effect.Effect<void> | undefined
}

/** A plain pick of the key at `result.index`. */
export type KeyPlan = keyPool.Step<keyPool.Picked>

export interface KeyPoolGate {
  /** The key a pick at `now` would take, or `undefined`: use `withKey`. Takes nothing. */
  readonly plan: (
    now: number,
    avoid: ReadonlySet<string> | undefined,
    affinity: string | undefined
  ) => KeyPlan | undefined
  /** Takes the pick, counted under the caller's metric labels. */
  readonly take: (plan: KeyPlan, labels: ReadonlyArray<MetricLabel.MetricLabel>) => void
  readonly key: (index: number) => KeyPool.PickedKey | undefined
  /** Learns from the outcome (`undefined` cause: a success) of a call on key `index`. */
  readonly leave: (index: number, cause: Cause.Cause<unknown> | undefined, clock: Clock.Clock) => Effect.Effect<void> | undefined
}

export interface LimiterGate {
  /**
   * The buckets after one request and `tokens` taken at `now`, when they are
   * granted without a wait; `undefined`: use `execute`. Takes nothing.
   */
  readonly plan: (now: number, tokens: number) => tokenBucket.State | undefined
  readonly take: (plan: tokenBucket.State) => void
  /** Corrects a grant of `tokens` to the `actual` tokens used. */
  readonly settle: (tokens: number, actual: number) => Effect.Effect<void>
}

export interface BulkheadGate {
  /** Whether `tryTake` would succeed now. */
  readonly available: () => boolean
  readonly tryTake: () => boolean
  readonly release: () => void
}

/** Records a first attempt at epoch ms `now`. */
export type RetryBudgetGate = (now: number) => void

export interface RetryGate {
  /** Records the first attempt of a call in the retry budget, if the retry has one. */
  readonly record: RetryBudgetGate | undefined
  /**
   * Goes on after a first attempt that failed with `cause` (recorded by the
   * caller with `record`): `effect` is each further attempt.
   */
  readonly retryFailed: <A, E, R>(cause: Cause.Cause<E>, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export const breakers = new WeakMap<object, BreakerGate>()
export const retryBudgets = new WeakMap<object, RetryBudgetGate>()
export const retries = new WeakMap<object, RetryGate>()
export const keyPools = new WeakMap<object, KeyPoolGate>()
export const limiters = new WeakMap<object, LimiterGate>()
export const bulkheads = new WeakMap<object, BulkheadGate>()
