/**
 * Where the stateful policies keep their state: breaker windows, token
 * buckets, key health, retry budgets.
 *
 * The store speaks the policies' algorithms, not bytes: "admit a call to
 * this breaker at `now`", "record this outcome and tell me the transitions",
 * "reserve these costs in these buckets", "pick a healthy key", as
 * @effect/experimental's `RateLimiter` store offers `tokenBucket` and
 * `fixedWindow`. A shared store (Redis, next) implements each operation
 * atomically on its side (a script per algorithm) instead of a
 * read-modify-write of the whole state, and every policy runs the same code
 * on either store: there is no second path.
 *
 * An operation is called at the moment it happens (inside the effect that
 * makes the call) and its effect is run at once. The in-memory store does
 * the work in the call and returns the finished `Exit`, which the policies
 * take in the same op: on the default store an admission costs no extra
 * effect op. A shared store returns an effect that suspends on I/O. A shared
 * store degrades to local state on trouble; it never fails a call, so no
 * operation has an error channel.
 *
 * The algorithms themselves are pure state machines over plain JSON state
 * (`internal/breakerState.ts`, `internal/tokenBucket.ts`,
 * `internal/keyPoolState.ts`, the retry budget's buckets below), so a store
 * keeps the state as data and the property tests drive the machines alone.
 *
 * Slots are named by policy kind and name (`breaker/<name>`,
 * `rate-limiter/<name>`, `key-pool/<name>`, `retry-budget/<name>`,
 * `adaptive-limit/<name>`):
 * policies of one kind and name in one store share their state.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as adaptiveLimit from "./internal/adaptiveLimitState.js"
import * as breaker from "./internal/breakerState.js"
import * as keyPool from "./internal/keyPoolState.js"
import * as retryBudget from "./internal/retryBudgetState.js"
import * as tokenBucket from "./internal/tokenBucket.js"

/**
 * The breaker's operations (docs/semantics.md rules 1-12), each one atomic step
 * of the breaker's machine that returns its result, the state after it and
 * the transitions it made, for the policy to publish.
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerSlot {
  /** Admits a call at `now`, or refuses it; moves OPEN to HALF_OPEN when its time has come. */
  readonly admit: (now: number) => Effect.Effect<breaker.Step<breaker.Admission>>
  /** Records the outcome of an admitted call that took `durationMillis`, ending at `now`. */
  readonly record: (
    admission: breaker.Admitted,
    outcome: breaker.Outcome,
    durationMillis: number,
    now: number
  ) => Effect.Effect<breaker.Step<void>>
  /** The state at `now` (a half-open probe that hung is sent back to OPEN: rule 10). */
  readonly read: (now: number) => Effect.Effect<breaker.Step<breaker.BreakerState>>
  /** A manual move (rule 12). */
  readonly force: (
    to: "forced-open" | "forced-closed" | "disabled" | "closed",
    now: number
  ) => Effect.Effect<breaker.Step<void>>
}

/**
 * The token buckets of one limiter (rule 21): every operation takes or gives
 * in all buckets at once.
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenBucketSlot {
  /**
   * Reserves `costs` (one per bucket) at `now`, granted at once or after a
   * wait of at most `maxWait` that ends before `deadline` (epoch ms), or
   * rejected with the exact wait.
   */
  readonly reserve: (
    costs: ReadonlyArray<number>,
    now: number,
    maxWait: number,
    deadline: number
  ) => Effect.Effect<tokenBucket.Decision>
  /** Gives back a reservation that was never used. */
  readonly release: (costs: ReadonlyArray<number>, now: number) => Effect.Effect<void>
  /** Debits `delta` more from bucket `bucket` (negative: refunds up to capacity). */
  readonly correct: (bucket: number, delta: number, now: number) => Effect.Effect<void>
  /** Grants nothing before `until`; never shortens a pause. Returns the pause in force. */
  readonly pause: (until: number, now: number) => Effect.Effect<number>
  /** The buckets at `now`, created (their refills aligned to `now`) if the store has none for this configuration. */
  readonly read: (now: number) => Effect.Effect<tokenBucket.State>
}

/**
 * The health of the keys of one pool (rules 23-26).
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyHealthSlot {
  /** Picks a healthy key at `now` (keys in `avoid` last; `affinity` pins a key), bringing back keys whose time has come. */
  readonly pick: (
    now: number,
    avoid: ReadonlySet<string> | undefined,
    affinity: string | undefined
  ) => Effect.Effect<keyPool.Step<keyPool.Pick>>
  /** Learns what an outcome on key `index` says about it. */
  readonly record: (index: number, outcome: keyPool.Outcome, now: number) => Effect.Effect<keyPool.Step<void>>
  /** Takes key `index` out of rotation until `until` (rate-limit headers). */
  readonly cool: (index: number, until: number, now: number, reason: string) => Effect.Effect<keyPool.Step<void>>
  /** A manual move: back to healthy, or disabled. */
  readonly force: (index: number, to: "healthy" | "disabled", now: number) => Effect.Effect<keyPool.Step<void>>
  /** The health at `now`, keys whose time has come brought back. */
  readonly read: (now: number) => Effect.Effect<keyPool.Step<keyPool.PoolState>>
}

/**
 * A retry budget's window (rule 17).
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryBudgetSlot {
  /** Counts a first attempt at `now`. */
  readonly recordAttempt: (now: number) => Effect.Effect<void>
  /** Takes one retry at `now` if the window admits it. */
  readonly tryAcquireRetry: (now: number) => Effect.Effect<boolean>
  /** First attempts and retries of the window ending at `now`. */
  readonly read: (now: number) => Effect.Effect<retryBudget.Totals>
}

/**
 * An adaptive concurrency limit (rule 29). The calls in flight are the
 * process's own (a permit belongs to a live fiber, as the bulkhead's does);
 * the learned limit is state.
 *
 * @since 0.1.0
 * @category models
 */
export interface AdaptiveLimitSlot {
  /**
   * Records `event` at `now`, then closes the window if its time is over.
   * `inFlightSince(t)`: this process's calls in flight that started before `t`.
   */
  readonly step: (
    event: adaptiveLimit.Event,
    now: number,
    inFlightSince: (start: number) => number
  ) => Effect.Effect<readonly [adaptiveLimit.State, adaptiveLimit.Change | undefined]>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly breaker: (name: string, config: breaker.Config) => BreakerSlot
  readonly adaptiveLimit: (name: string, config: adaptiveLimit.Config) => AdaptiveLimitSlot
  readonly tokenBucket: (name: string, config: tokenBucket.Config) => TokenBucketSlot
  readonly keyHealth: (name: string, config: keyPool.Config) => KeyHealthSlot
  readonly retryBudget: (name: string, config: retryBudget.Config) => RetryBudgetSlot
}

/**
 * @since 0.1.0
 * @category tags
 */
export class StateStore extends Context.Tag("@resilient-ai/core/StateStore")<StateStore, Service>() {}

/**
 * The in-memory store, with a look at its raw state for tests and debugging.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryStore extends Service {
  /** The stored state of slot `id` (`"breaker/<name>"`, ...) as plain JSON data, or `undefined`. */
  readonly inspect: (id: string) => unknown
}

/** One slot's state; `undefined` until first written. */
interface Cell {
  value: unknown
}

/**
 * An in-memory store. Every operation runs the algorithm in the call and
 * returns its `Exit`: within one process that is atomic without locks, since
 * nothing else runs in between.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (): MemoryStore => {
  const cells = new Map<string, Cell>()
  const cellOf = (id: string): Cell => {
    let cell = cells.get(id)
    if (cell === undefined) {
      cell = { value: undefined }
      cells.set(id, cell)
    }
    return cell
  }

  const breakerSlot = (name: string, config: breaker.Config): BreakerSlot => {
    const cell = cellOf(`breaker/${name}`)
    const get = (): breaker.BreakerState =>
      cell.value === undefined ? breaker.initial(config) : (cell.value as breaker.BreakerState)
    const run = <A>(step: breaker.Step<A>): Effect.Effect<breaker.Step<A>> => {
      cell.value = step.state
      return Exit.succeed(step)
    }
    // The hot path of a closed breaker: the admission, and a record that changes nothing, depend on
    // the state object only, so the ones made for the last state seen are handed out again while
    // that state stays (it is never mutated).
    let unchanged: { readonly state: breaker.BreakerState; readonly exit: Effect.Effect<breaker.Step<breaker.Admission>> } | undefined
    let noop: { readonly state: breaker.BreakerState; readonly exit: Effect.Effect<breaker.Step<void>> } | undefined
    return {
      admit: (now) => {
        const state = get()
        if (unchanged?.state === state) return unchanged.exit
        const admitted = breaker.admitUnchanged(state)
        if (admitted !== undefined) {
          unchanged = { state, exit: Exit.succeed({ result: admitted, state, transitions: [] }) }
          return unchanged.exit
        }
        return run(breaker.admit(config, state, now))
      },
      record: (admission, outcome, durationMillis, now) => {
        const state = get()
        if (!breaker.recordIsNoop(state, admission, outcome)) {
          return run(breaker.record(config, state, admission, outcome, durationMillis, now))
        }
        if (noop?.state !== state) noop = { state, exit: Exit.succeed({ result: undefined, state, transitions: [] }) }
        return noop.exit
      },
      read: (now) => {
        const transitions: Array<breaker.Transition> = []
        const state = breaker.advance(config, get(), now, transitions)
        return run({ result: state, state, transitions })
      },
      force: (to, now) => run(breaker.force(config, get(), to, now))
    }
  }

  const tokenBucketSlot = (name: string, config: tokenBucket.Config): TokenBucketSlot => {
    const cell = cellOf(`rate-limiter/${name}`)
    const get = (): tokenBucket.State | null => (cell.value === undefined ? null : (cell.value as tokenBucket.State))
    const apply = <A>(f: (stored: tokenBucket.State | null) => readonly [A, tokenBucket.State]): Effect.Effect<A> => {
      const [result, next] = f(get())
      cell.value = next
      return Exit.succeed(result)
    }
    return {
      reserve: (costs, now, maxWait, deadline) => {
        // A grant without a wait (the common case) is computed without the general reservation's bookkeeping.
        const granted = tokenBucket.takeNow(config, costs, now, get())
        if (granted !== undefined) {
          cell.value = granted
          return Exit.succeed(tokenBucket.grantedNow)
        }
        return apply(tokenBucket.reserve(config, costs, now, maxWait, deadline))
      },
      release: (costs, now) => apply(tokenBucket.release(config, costs, now)),
      correct: (bucket, delta, now) => apply(tokenBucket.correct(config, bucket, delta, now)),
      pause: (until, now) => apply(tokenBucket.pause(config, until, now)),
      read: (now) =>
        apply((stored) => {
          const state = tokenBucket.current(config, stored, now)
          return [state, state] as const
        })
    }
  }

  const keyHealthSlot = (name: string, config: keyPool.Config): KeyHealthSlot => {
    const cell = cellOf(`key-pool/${name}`)
    const get = (): keyPool.PoolState => (cell.value === undefined ? keyPool.initial(config) : (cell.value as keyPool.PoolState))
    const run = <A>(step: keyPool.Step<A>): Effect.Effect<keyPool.Step<A>> => {
      cell.value = step.state
      return Exit.succeed(step)
    }
    return {
      pick: (now, avoid, affinity) => run(keyPool.pick(config, get(), now, avoid, affinity)),
      record: (index, outcome, now) => run(keyPool.record(config, get(), index, outcome, now)),
      cool: (index, until, now, reason) => run(keyPool.cool(config, get(), index, until, now, reason)),
      force: (index, to, now) => run(keyPool.force(config, get(), index, to, now)),
      read: (now) => {
        const step = keyPool.advance(config, get(), now)
        return run({ result: step.state, state: step.state, transitions: step.transitions })
      }
    }
  }

  const retryBudgetSlot = (name: string, config: retryBudget.Config): RetryBudgetSlot => {
    const cell = cellOf(`retry-budget/${name}`)
    const get = (): retryBudget.State => (cell.value === undefined ? retryBudget.initial : (cell.value as retryBudget.State))
    return {
      recordAttempt: (now) => {
        cell.value = retryBudget.recordAttempt(config, get(), now)
        return Exit.void
      },
      tryAcquireRetry: (now) => {
        const [granted, next] = retryBudget.tryAcquireRetry(config, get(), now)
        cell.value = next
        return Exit.succeed(granted)
      },
      read: (now) => Exit.succeed(retryBudget.totals(config, get(), now))
    }
  }

  const adaptiveLimitSlot = (name: string, config: adaptiveLimit.Config): AdaptiveLimitSlot => {
    const cell = cellOf(`adaptive-limit/${name}`)
    return {
      step: (event, now, inFlightSince) => {
        const stepped = adaptiveLimit.step(config, cell.value as adaptiveLimit.State | undefined, event, now, inFlightSince)
        cell.value = stepped[0]
        return Exit.succeed(stepped)
      }
    }
  }

  return {
    breaker: breakerSlot,
    adaptiveLimit: adaptiveLimitSlot,
    tokenBucket: tokenBucketSlot,
    keyHealth: keyHealthSlot,
    retryBudget: retryBudgetSlot,
    inspect: (id) => cells.get(id)?.value
  }
}

/**
 * The embedded default: state lives in this process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<StateStore> = Layer.sync(StateStore, makeMemory)
