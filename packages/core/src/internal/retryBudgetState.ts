/**
 * The retry budget's window as a pure function of (state, now) over plain
 * JSON state (docs/semantics.md rule 17). The window is kept as 1 s buckets
 * aligned to the clock (a bucket holds the calls of one clock second) and
 * expired by arithmetic on every call: no timer, and an idle gap longer than
 * the window leaves nothing stale.
 *
 *     allowed = max(⌊ratio · attempts⌋, ⌊minRetriesPerSecond · windowSeconds⌋)
 *
 * @internal
 */

/** The calls of one clock second: `second` is `⌊epochMillis / 1000⌋`. */
export interface Bucket {
  readonly second: number
  readonly attempts: number
  readonly retries: number
}

export interface State {
  /** Ascending by `second`; at most one bucket a second. */
  readonly buckets: ReadonlyArray<Bucket>
}

export interface Config {
  readonly ratio: number
  readonly minRetriesPerSecond: number
  readonly windowSeconds: number
}

export interface Totals {
  readonly attempts: number
  readonly retries: number
  /** Retries the window admits in all; the next is admitted while `retries < allowed`. */
  readonly allowed: number
}

export const BUCKET_MILLIS = 1000

/** Guards `0.29 * 100 = 28.999999999999996` style float error before flooring. */
const EPSILON = 1e-9

export const initial: State = { buckets: [] }

/** The buckets still inside the window that ends with the second `now`. */
const live = (config: Config, state: State, now: number): ReadonlyArray<Bucket> => {
  const oldest = now - config.windowSeconds + 1
  const first = state.buckets[0]
  // Nothing expired: nothing copied.
  return first === undefined || first.second >= oldest ? state.buckets : state.buckets.filter((b) => b.second >= oldest)
}

const allowedFor = (config: Config, attempts: number): number =>
  Math.max(
    Math.floor(config.ratio * attempts + EPSILON),
    Math.floor(config.minRetriesPerSecond * config.windowSeconds + EPSILON)
  )

const sum = (buckets: ReadonlyArray<Bucket>): { attempts: number; retries: number } => {
  let attempts = 0
  let retries = 0
  for (const b of buckets) {
    attempts += b.attempts
    retries += b.retries
  }
  return { attempts, retries }
}

/** Adds one attempt or retry to the bucket of the second `now`, creating it if needed. */
const bump = (buckets: ReadonlyArray<Bucket>, now: number, field: "attempts" | "retries"): State => {
  const last = buckets[buckets.length - 1]
  if (last !== undefined && last.second === now) {
    const next = buckets.slice()
    next[next.length - 1] = field === "attempts"
      ? { second: now, attempts: last.attempts + 1, retries: last.retries }
      : { second: now, attempts: last.attempts, retries: last.retries + 1 }
    return { buckets: next }
  }
  const index = buckets.findIndex((b) => b.second === now)
  if (index === -1) {
    const fresh: Bucket = { second: now, attempts: field === "attempts" ? 1 : 0, retries: field === "retries" ? 1 : 0 }
    return { buckets: [...buckets, fresh].sort((a, b) => a.second - b.second) }
  }
  return { buckets: buckets.map((b, i) => (i === index ? { ...b, [field]: b[field] + 1 } : b)) }
}

const secondOf = (millis: number): number => Math.floor(millis / BUCKET_MILLIS)

export const recordAttempt = (config: Config, state: State, nowMillis: number): State => {
  const now = secondOf(nowMillis)
  return bump(live(config, state, now), now, "attempts")
}

export const tryAcquireRetry = (config: Config, state: State, nowMillis: number): readonly [boolean, State] => {
  const now = secondOf(nowMillis)
  const buckets = live(config, state, now)
  const { attempts, retries } = sum(buckets)
  return retries < allowedFor(config, attempts)
    ? [true, bump(buckets, now, "retries")]
    : [false, buckets === state.buckets ? state : { buckets }]
}

export const totals = (config: Config, state: State, nowMillis: number): Totals => {
  const { attempts, retries } = sum(live(config, state, secondOf(nowMillis)))
  return { attempts, retries, allowed: allowedFor(config, attempts) }
}
