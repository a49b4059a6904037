/**
 * A fixed log-scale histogram of latencies in milliseconds (the DDSketch
 * mapping, dense and bounded).
 *
 * Bin `k` holds the values in `(γ^(k−1), γ^k]` with `γ = (1 + α) / (1 − α)`
 * and reports them as `2γ^k / (γ + 1)`. Every value of the bin is then within
 * a relative error `α` of the reported one:
 *
 *     2γ^k / (γ + 1) ÷ v  ∈  [2 / (γ + 1), 2γ / (γ + 1))  =  [1 − α, 1 + α)
 *
 * so the percentile estimate `q̂` of the exact nearest-rank percentile `q`
 * satisfies `|q̂ − q| ≤ α · q` for `MIN_MILLIS ≤ q ≤ MAX_MILLIS` (up to float
 * rounding at a bin edge). `α = 2 %` gives 574 bins (2.3 KB of counts) from 10 µs to one day.
 * Values below `MIN_MILLIS` (including 0) share one bin reported as 0, so
 * their absolute error is below 10 µs; values above `MAX_MILLIS` fall into the
 * top bin. Estimates are clamped to the exact minimum and maximum observed,
 * which keeps the bound and makes `p = 1` the exact maximum.
 */

/** The relative error bound of every percentile estimate. */
export const RELATIVE_ERROR = 0.02

/** Values below this (in ms) are counted as 0. */
export const MIN_MILLIS = 0.01

/** Values above this (one day, in ms) are counted in the top bin. */
export const MAX_MILLIS = 86_400_000

const GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
const LN_GAMMA = Math.log(GAMMA)
const K_MIN = Math.ceil(Math.log(MIN_MILLIS) / LN_GAMMA)
const K_MAX = Math.ceil(Math.log(MAX_MILLIS) / LN_GAMMA)

/** Bin 0 is the zero bin; bins 1.. are the log-scale bins from `K_MIN` to `K_MAX`. */
export const BINS = K_MAX - K_MIN + 2

/** The bin of a finite, non-negative value. */
export const binOf = (millis: number): number => {
  if (millis < MIN_MILLIS) return 0
  const k = Math.ceil(Math.log(millis) / LN_GAMMA)
  return Math.min(BINS - 1, Math.max(1, k - K_MIN + 1))
}

/** The value a bin reports. */
export const valueOf = (bin: number): number => bin === 0 ? 0 : (2 * Math.pow(GAMMA, bin + K_MIN - 1)) / (GAMMA + 1)

/** The samples of one slice of the window. Mutable: it lives in one tracker's closure. */
export interface Counts {
  readonly bins: Uint32Array
  count: number
  sum: number
  min: number
  max: number
}

export const emptyCounts = (): Counts => ({
  bins: new Uint32Array(BINS),
  count: 0,
  sum: 0,
  min: Number.POSITIVE_INFINITY,
  max: Number.NEGATIVE_INFINITY
})

export const reset = (counts: Counts): void => {
  counts.bins.fill(0)
  counts.count = 0
  counts.sum = 0
  counts.min = Number.POSITIVE_INFINITY
  counts.max = Number.NEGATIVE_INFINITY
}

export const add = (counts: Counts, millis: number): void => {
  const bin = binOf(millis)
  counts.bins[bin] = (counts.bins[bin] ?? 0) + 1
  counts.count += 1
  counts.sum += millis
  if (millis < counts.min) counts.min = millis
  if (millis > counts.max) counts.max = millis
}

/** Adds `from` into `into`. */
export const merge = (into: Counts, from: Counts): void => {
  for (let i = 0; i < BINS; i++) {
    const n = from.bins[i] ?? 0
    if (n !== 0) into.bins[i] = (into.bins[i] ?? 0) + n
  }
  into.count += from.count
  into.sum += from.sum
  if (from.min < into.min) into.min = from.min
  if (from.max > into.max) into.max = from.max
}

/** Guards `0.95 * 20 = 19.000000000000004` style float error before rounding up. */
const EPSILON = 1e-9

/**
 * The nearest-rank percentile `p` in `[0, 1]` (the value at rank
 * `max(1, ⌈p · n⌉)` of the sorted samples), estimated within
 * {@link RELATIVE_ERROR}. `undefined` when there is no sample.
 */
export const quantile = (counts: Counts, p: number): number | undefined => {
  if (counts.count === 0) return undefined
  const rank = Math.max(1, Math.ceil(p * counts.count - EPSILON))
  let seen = 0
  for (let i = 0; i < BINS; i++) {
    seen += counts.bins[i] ?? 0
    if (seen >= rank) return Math.min(counts.max, Math.max(counts.min, valueOf(i)))
  }
  return counts.max
}
