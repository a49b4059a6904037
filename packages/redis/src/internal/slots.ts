/**
 * The `StateStore` slots over shared cells: each operation is the core's own
 * machine step (`@resilient-ai/core/StateMachines`), the same call the memory
 * store makes, on the state the cell holds. Nothing here decides anything.
 *
 * Steps whose caller needs no answer (a retry budget's first attempt, a
 * limiter's refund) commit behind the call instead of on its latency path;
 * the next operation of this process on the slot sees them (they are queued
 * first) and other processes within one round trip.
 *
 * @internal
 */
import * as Machines from "@resilient-ai/core/StateMachines"
import type * as StateStore from "@resilient-ai/core/StateStore"
import type { Cell } from "./sharedCell.js"

const Breaker = Machines.Breaker
const TokenBucket = Machines.TokenBucket
const KeyPool = Machines.KeyPool
const RetryBudget = Machines.RetryBudget
const AdaptiveLimit = Machines.AdaptiveLimit

type Breaker = Machines.Breaker.BreakerState
type Buckets = Machines.TokenBucket.State
type Pool = Machines.KeyPool.PoolState
type Budget = Machines.RetryBudget.State
type Adaptive = Machines.AdaptiveLimit.State

/** Makes the cell of one slot; `undefined` stands for "never written". */
export type CellFor = <S>(id: string) => Cell<S | undefined>

export const breakerSlot = (cellFor: CellFor, name: string, config: Machines.Breaker.Config): StateStore.BreakerSlot => {
  const cell = cellFor<Breaker>(`breaker:{${name}}`)
  const get = (s: Breaker | undefined): Breaker => s ?? Breaker.initial(config)
  type Step<A> = Machines.Breaker.Step<A>
  // The step is the answer; its state is what the cell keeps. `unchanged` keeps the cell's own
  // object when the machine made no move, so the cell can answer from its cache.
  const run = <A>(f: (s: Breaker) => Step<A>) => (stored: Breaker | undefined): readonly [Step<A>, Breaker | undefined] => {
    const s = get(stored)
    const step = f(s)
    return [step, step.state === s ? stored : step.state]
  }
  return {
    admit: (now) =>
      cell.modify(now, (stored) => {
        const s = get(stored)
        const admitted = Breaker.admitUnchanged(s)
        if (admitted !== undefined) return [{ result: admitted, state: s, transitions: [] }, stored]
        return run((s) => Breaker.admit(config, s, now))(stored)
      }),
    // A failure is counted in Redis before the call returns, so every process's next admission can
    // see the threshold reached (rule 3 across processes); a success commits behind the call.
    record: (admission, outcome, durationMillis, now) =>
      (outcome === "failure" ? cell.modify : cell.modifyAhead)(now, (stored) => {
        const s = get(stored)
        if (Breaker.recordIsNoop(s, admission, outcome)) return [{ result: undefined, state: s, transitions: [] }, stored]
        return run((s) => Breaker.record(config, s, admission, outcome, durationMillis, now))(stored)
      }),
    read: (now) =>
      cell.modify(now, run((s) => {
        const transitions: Array<Machines.Breaker.Transition> = []
        const state = Breaker.advance(config, s, now, transitions)
        return { result: state, state, transitions }
      })),
    force: (to, now) => cell.modify(now, run((s) => Breaker.force(config, s, to, now)))
  }
}

export const tokenBucketSlot = (
  cellFor: CellFor,
  name: string,
  config: Machines.TokenBucket.Config
): StateStore.TokenBucketSlot => {
  const cell = cellFor<Buckets>(`rate-limiter:{${name}}`)
  const apply = <A>(f: (stored: Buckets | null) => readonly [A, Buckets]) => (stored: Buckets | undefined) => {
    const [result, next] = f(stored ?? null)
    return [result, next === stored ? stored : next] as const
  }
  return {
    reserve: (costs, now, maxWait, deadline) =>
      cell.modify(now, (stored) => {
        // The memory store's hot path, for the same answers: a grant without a wait.
        const granted = TokenBucket.takeNow(config, costs, now, stored ?? null)
        if (granted !== undefined) return [TokenBucket.grantedNow, granted]
        return apply(TokenBucket.reserve(config, costs, now, maxWait, deadline))(stored)
      }),
    release: (costs, now) => cell.modifyBehind(now, (stored) => TokenBucket.release(config, costs, now)(stored ?? null)[1]),
    correct: (bucket, delta, now) =>
      cell.modifyBehind(now, (stored) => TokenBucket.correct(config, bucket, delta, now)(stored ?? null)[1]),
    pause: (until, now) => cell.modify(now, apply(TokenBucket.pause(config, until, now))),
    read: (now) =>
      cell.modify(now, apply((stored) => {
        const state = TokenBucket.current(config, stored, now)
        return [state, state] as const
      }))
  }
}

export const keyHealthSlot = (cellFor: CellFor, name: string, config: Machines.KeyPool.Config): StateStore.KeyHealthSlot => {
  const cell = cellFor<Pool>(`key-pool:{${name}}`)
  type Step<A> = Machines.KeyPool.Step<A>
  const run = <A>(f: (s: Pool) => Step<A>) => (stored: Pool | undefined): readonly [Step<A>, Pool | undefined] => {
    const s = stored ?? KeyPool.initial(config)
    const step = f(s)
    return [step, step.state === s ? stored : step.state]
  }
  return {
    // A pick needs a healthy key, not the last word on the rotation: from the fresh view, committed behind.
    pick: (now, avoid, affinity) => cell.modifyAhead(now, run((s) => KeyPool.pick(config, s, now, avoid, affinity))),
    // As the breaker's: what a failure says about a key is in Redis before the call returns; a success commits behind.
    record: (index, outcome, now) =>
      (outcome._tag === "success" || outcome._tag === "ignored" ? cell.modifyAhead : cell.modify)(
        now,
        run((s) => KeyPool.record(config, s, index, outcome, now))
      ),
    cool: (index, until, now, reason) => cell.modify(now, run((s) => KeyPool.cool(config, s, index, until, now, reason))),
    force: (index, to, now) => cell.modify(now, run((s) => KeyPool.force(config, s, index, to, now))),
    read: (now) =>
      cell.modify(now, run((s) => {
        const step = KeyPool.advance(config, s, now)
        return { result: step.state, state: step.state, transitions: step.transitions }
      }))
  }
}

export const retryBudgetSlot = (
  cellFor: CellFor,
  name: string,
  config: Machines.RetryBudget.Config
): StateStore.RetryBudgetSlot => {
  const cell = cellFor<Budget>(`retry-budget:{${name}}`)
  return {
    recordAttempt: (now) => cell.modifyBehind(now, (stored) => RetryBudget.recordAttempt(config, stored ?? RetryBudget.initial, now)),
    tryAcquireRetry: (now) => cell.modify(now, (stored) => RetryBudget.tryAcquireRetry(config, stored ?? RetryBudget.initial, now)),
    read: (now) => cell.modify(now, (stored) => [RetryBudget.totals(config, stored ?? RetryBudget.initial, now), stored] as const)
  }
}

/**
 * The learned limit and its window are shared: every process learns from the
 * outcomes of all (the provider's capacity is one), and each holds at most
 * the limit in flight of its own calls (`inFlightSince` is this process's).
 * Each event commits behind the call; the commit re-runs the step on the
 * shared state, asking `inFlightSince` again then.
 */
export const adaptiveLimitSlot = (
  cellFor: CellFor,
  name: string,
  config: Machines.AdaptiveLimit.Config
): StateStore.AdaptiveLimitSlot => {
  const cell = cellFor<Adaptive>(`adaptive-limit:{${name}}`)
  return {
    step: (event, now, inFlightSince) =>
      cell.modifyAhead(now, (stored) => {
        const stepped = AdaptiveLimit.step(config, stored, event, now, inFlightSince)
        return [stepped, stepped[0]] as const
      })
  }
}
