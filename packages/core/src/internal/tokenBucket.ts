/**
 * The pure state machine behind `RateLimiter`: discrete token buckets with
 * reservations (docs/semantics.md rule 21).
 *
 * Every function here is a pure function of (state, now) meant to run inside
 * one `StateStore.modify`, so the same code is atomic on the in-memory store
 * and on a shared one. State is plain JSON.
 *
 * The model is golang.org/x/time/rate's reservation, made discrete:
 * - bucket `i` gains `refillAmount` at `origin + n·refillInterval` for every
 *   whole n (aligned to the limiter's creation, not to the calls), capped at
 *   `capacity`;
 * - a grant debits at once, even into a negative balance: a negative balance
 *   is tokens already promised to callers that are sleeping, so a later caller
 *   computes its wait behind them (FIFO without a queue);
 * - a cost is granted when the balance before the debit covers it, i.e. when
 *   the balance after the debit is back to zero or more;
 * - a paused limiter grants nothing before `pausedUntil`.
 *
 * @internal
 */

/** One bucket, in whole units and milliseconds. */
export interface Bucket {
  readonly name: "requests" | "tokens"
  readonly capacity: number
  readonly refillAmount: number
  readonly refillInterval: number
}

/** The buckets of one limiter and the signature that stored state must carry. */
export interface Config {
  readonly buckets: ReadonlyArray<Bucket>
  readonly signature: string
}

/** The stored state of one limiter (JSON). Arrays are indexed like `Config.buckets`. */
export interface State {
  /** The bucket configuration the state was built for; a different one starts afresh. */
  readonly signature: string
  /** Creation time (epoch ms): refills happen at `origin + n·refillInterval`. */
  readonly origin: number
  /** No grant before this time (epoch ms); 0 when never paused. */
  readonly pausedUntil: number
  /** Tokens in each bucket; negative when reserved ahead. */
  readonly balances: ReadonlyArray<number>
  /** Refills already added to each bucket, counted from `origin`. */
  readonly refills: ReadonlyArray<number>
}

/** What `reserve` decided. Times are milliseconds. */
export type Decision =
  | { readonly _tag: "Granted"; readonly wait: number }
  | {
    readonly _tag: "Rejected"
    readonly retryAfter: number
    /** The bucket that needs the longest wait, or -1 when the pause does. */
    readonly bucket: number
  }

export const grantedNow: Decision = { _tag: "Granted", wait: 0 }

export const makeConfig = (buckets: ReadonlyArray<Bucket>): Config => ({
  buckets,
  signature: buckets.map((b) => `${b.name}:${b.capacity}+${b.refillAmount}/${b.refillInterval}`).join(",")
})

export const initial = (config: Config, now: number): State => ({
  signature: config.signature,
  origin: now,
  pausedUntil: 0,
  balances: config.buckets.map((b) => b.capacity),
  refills: config.buckets.map(() => 0)
})

/**
 * The state at `now`: refills added, or a fresh state when there is none yet
 * (or it was built for other buckets). Returns `state` itself when unchanged.
 */
export const current = (config: Config, state: State | null, now: number): State => {
  if (state === null || state.signature !== config.signature) return initial(config, now)
  const buckets = config.buckets
  let balances: Array<number> | undefined
  let refills: Array<number> | undefined
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i]!
    const due = Math.floor((now - state.origin) / b.refillInterval)
    const done = state.refills[i] ?? 0
    if (due > done) {
      balances ??= state.balances.slice()
      refills ??= state.refills.slice()
      balances[i] = Math.min(b.capacity, (state.balances[i] ?? 0) + (due - done) * b.refillAmount)
      refills[i] = due
    }
  }
  return balances === undefined || refills === undefined ? state : withBalances(state, balances, refills)
}

// Explicit literals rather than spreads: these run on every call.
const withBalances = (state: State, balances: ReadonlyArray<number>, refills: ReadonlyArray<number>): State => ({
  signature: state.signature,
  origin: state.origin,
  pausedUntil: state.pausedUntil,
  balances,
  refills
})

/** Milliseconds from `now` until bucket `i` of `state` (already current) covers `cost`. */
const waitFor = (b: Bucket, state: State, i: number, cost: number, now: number): number => {
  const balance = state.balances[i] ?? 0
  if (balance >= cost) return 0
  const refillsNeeded = Math.ceil((cost - balance) / b.refillAmount)
  return state.origin + ((state.refills[i] ?? 0) + refillsNeeded) * b.refillInterval - now
}

/** The index of the first bucket whose capacity is below its cost (never grantable), or -1. */
export const oversized = (config: Config, costs: ReadonlyArray<number>): number => {
  const buckets = config.buckets
  for (let i = 0; i < buckets.length; i++) {
    if ((costs[i] ?? 0) > buckets[i]!.capacity) return i
  }
  return -1
}

/**
 * Reserves `costs` (one per bucket) in every bucket at once, or in none.
 * Rejected when the wait for the slowest bucket (or the pause) exceeds
 * `maxWait`, or when the grant would come at or after `deadline`
 * (epoch ms; `Infinity` for none). `costs` must not exceed capacities
 * (check with {@link oversized} first).
 */
export const reserve = (
  config: Config,
  costs: ReadonlyArray<number>,
  now: number,
  maxWait: number,
  deadline: number
) =>
(stored: State | null): readonly [Decision, State] => {
  const state = current(config, stored, now)
  const buckets = config.buckets
  let wait = state.pausedUntil > now ? state.pausedUntil - now : 0
  let bucket = -1
  for (let i = 0; i < buckets.length; i++) {
    const w = waitFor(buckets[i]!, state, i, costs[i] ?? 0, now)
    if (w > wait) {
      wait = w
      bucket = i
    }
  }
  if (wait > maxWait || (wait > 0 && now + wait >= deadline)) {
    return [{ _tag: "Rejected", retryAfter: wait, bucket }, state]
  }
  const balances: Array<number> = []
  for (let i = 0; i < buckets.length; i++) balances.push((state.balances[i] ?? 0) - (costs[i] ?? 0))
  return [wait === 0 ? grantedNow : { _tag: "Granted", wait }, withBalances(state, balances, state.refills)]
}

/**
 * `reserve` for a grant without a wait, uncurried for the hot path: the next
 * state when every bucket covers its cost at `now` and no pause holds, else
 * `undefined` (the state is then left as it is).
 */
export const takeNow = (
  config: Config,
  costs: ReadonlyArray<number>,
  now: number,
  stored: State | null
): State | undefined => {
  const state = current(config, stored, now)
  if (state.pausedUntil > now) return undefined
  // `current` has added every refill due by `now`: a bucket short of its cost waits for the next one.
  const n = config.buckets.length
  const balances = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    const balance = state.balances[i] ?? 0
    const cost = costs[i] ?? 0
    if (balance < cost) return undefined
    balances[i] = balance - cost
  }
  return withBalances(state, balances, state.refills)
}

/** Gives back a reservation that was never used (an interrupted or rejected waiter). */
export const release = (config: Config, costs: ReadonlyArray<number>, now: number) =>
(stored: State | null): readonly [void, State] => {
  const state = current(config, stored, now)
  // A state started afresh (other buckets) owes this reservation nothing.
  if (stored === null || stored.signature !== config.signature) return [undefined, state]
  const balances = state.balances.map((balance, i) => Math.min(config.buckets[i]!.capacity, balance + (costs[i] ?? 0)))
  return [undefined, withBalances(state, balances, state.refills)]
}

/** Debits `delta` more from bucket `i` (a negative delta refunds, up to capacity). */
export const correct = (config: Config, i: number, delta: number, now: number) =>
(stored: State | null): readonly [void, State] => {
  const state = current(config, stored, now)
  const b = config.buckets[i]
  if (b === undefined) return [undefined, state]
  const balances = state.balances.slice()
  balances[i] = Math.min(b.capacity, (balances[i] ?? 0) - delta)
  return [undefined, withBalances(state, balances, state.refills)]
}

/** Grants nothing before `until` (epoch ms); an earlier pause never shortens a later one. */
export const pause = (config: Config, until: number, now: number) =>
(stored: State | null): readonly [number, State] => {
  const state = current(config, stored, now)
  const pausedUntil = Math.max(state.pausedUntil, until)
  return [pausedUntil, pausedUntil === state.pausedUntil ? state : { ...state, pausedUntil }]
}

/** The pause in force in `stored`, in epoch ms (0 when none). */
export const pausedUntil = (config: Config, stored: State | null): number =>
  stored === null || stored.signature !== config.signature ? 0 : stored.pausedUntil
