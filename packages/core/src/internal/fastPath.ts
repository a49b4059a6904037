/**
 * The synchronous side doors of the policies, for the hot path.
 *
 * Every effect op costs the fiber runtime 50-150 ns, and an
 * `uninterruptibleMask` about 400 ns; composed one around the other, the
 * breaker, key pool, rate limiter and bulkhead of one attempt ran some 60
 * ops and 2 masks. A `Policy` instead decides the admission of all of them
 * in one op, inside one mask, and completes them in one handler. For that
 * each policy registers here, next to its public service, a "gate": the same
 * pure state machine steps as its `execute`, made synchronously.
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
import type * as KeyPool from "../KeyPool.js"
import type * as StateStore from "../StateStore.js"
import type * as breaker from "./breakerState.js"

/**
 * One slot of a synchronous store, read and written at once. A `get`, a
 * pure step and a `set` in one synchronous run are one atomic `modify`.
 */
export interface SyncCell<S> {
  readonly get: () => S
  readonly set: (state: S) => void
}

/** Stores whose `modify` runs synchronously, by identity: the cell of a key. */
export const syncStores = new WeakMap<StateStore.Service, <S>(key: StateStore.StateKey<S>) => SyncCell<S>>()

/** The cell of `key` when `store` is synchronous: resolved once, so the hot path makes no lookup. */
export const syncCell = <S>(store: StateStore.Service, key: StateStore.StateKey<S>): SyncCell<S> | undefined =>
  syncStores.get(store)?.(key)

export interface BreakerGate {
  /** Admits at `now` when that changes no state but the trial count; `undefined`: use `execute`. */
  readonly enter: (now: number) => breaker.Admitted | undefined
  /** Records the outcome (`undefined` cause: a success) of an admitted call that started at `start`. */
  readonly leave: (
    admission: breaker.Admitted,
    cause: Cause.Cause<unknown> | undefined,
    start: number,
    clock: Clock.Clock
  ) => Effect.Effect<void> | undefined
}

export interface KeyPoolGate {
  /** The index of the key picked at `now`, or -1: use `withKey` (nothing was changed). */
  readonly enter: (
    now: number,
    avoid: ReadonlySet<string> | undefined,
    affinity: string | undefined,
    labels: ReadonlyArray<MetricLabel.MetricLabel>
  ) => number
  readonly key: (index: number) => KeyPool.PickedKey | undefined
  /** Learns from the outcome (`undefined` cause: a success) of a call on key `index`. */
  readonly leave: (index: number, cause: Cause.Cause<unknown> | undefined, clock: Clock.Clock) => Effect.Effect<void> | undefined
}

export interface LimiterGate {
  /**
   * Takes one request and `tokens` at `now` when they are granted without a
   * wait; false: use `execute` (nothing was reserved).
   */
  readonly enter: (now: number, tokens: number) => boolean
  /** Corrects a grant of `tokens` to the `actual` tokens used. */
  readonly settle: (tokens: number, actual: number) => Effect.Effect<void>
}

export interface BulkheadGate {
  readonly tryTake: () => boolean
  readonly release: () => void
}

/** Records a first attempt at epoch ms `now`. */
export type RetryBudgetGate = (now: number) => void

export interface RetryGate {
  /** Records the first attempt of a call in the retry budget, if the retry has one. */
  readonly record: RetryBudgetGate | undefined
  /** `execute` without recording the first attempt: the caller has done it with `record`. */
  readonly executeRecorded: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export const breakers = new WeakMap<object, BreakerGate>()
export const retryBudgets = new WeakMap<object, RetryBudgetGate>()
export const retries = new WeakMap<object, RetryGate>()
export const keyPools = new WeakMap<object, KeyPoolGate>()
export const limiters = new WeakMap<object, LimiterGate>()
export const bulkheads = new WeakMap<object, BulkheadGate>()
