/**
 * Rate-limit headers of an upstream answer, read into the budgets they
 * describe, so the key pool can move traffic to another key *before* the
 * provider answers 429.
 *
 * Two families are understood:
 *
 * | provider | remaining | limit | reset |
 * | --- | --- | --- | --- |
 * | OpenAI-compatible | `x-ratelimit-remaining-requests`, `-tokens` | `x-ratelimit-limit-requests`, `-tokens` | `x-ratelimit-reset-requests`, `-tokens`: a Go duration (`"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`) |
 * | Anthropic | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining` | `...-limit` | `...-reset`: an RFC 3339 timestamp |
 *
 * Header names are matched case-insensitively. A value that does not parse is
 * treated as absent: garbage never becomes a number.
 *
 * This module also holds the small parsers the reset headers need (Go
 * durations, RFC 3339 timestamps) and the header lookup shared with
 * `RetryAfter` and `ErrorMapping`. Every function is pure: the current time is
 * a parameter (`now`, epoch milliseconds), never read from a clock.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

// ---------------------------------------------------------------------------
// headers
// ---------------------------------------------------------------------------

/**
 * Response headers as this package reads them: a plain record (an
 * `@effect/platform` `Headers` value is one; its keys are lower-case), or
 * anything with a `get(name)` such as the Fetch API's `Headers`.
 *
 * @since 0.1.0
 * @category models
 */
export type HeaderSource =
  | { readonly [name: string]: string | ReadonlyArray<string> | undefined }
  | { readonly get: (name: string) => string | null | undefined }

const hasGet = (h: HeaderSource): h is { readonly get: (name: string) => string | null | undefined } =>
  typeof (h as { readonly get?: unknown }).get === "function"

const first = (v: string | ReadonlyArray<string> | null | undefined): string | undefined =>
  v === null || v === undefined ? undefined : typeof v === "string" ? v : v[0]

/**
 * The value of a header, matched case-insensitively and trimmed, or
 * `undefined` when absent or empty. A repeated header gives its first value.
 *
 * @since 0.1.0
 * @category headers
 */
export const getHeader = (headers: HeaderSource, name: string): string | undefined => {
  const lower = name.toLowerCase()
  let raw: string | undefined
  if (hasGet(headers)) {
    raw = first(headers.get(lower))
  } else {
    raw = first(headers[lower])
    if (raw === undefined) {
      for (const key of Object.keys(headers)) {
        if (key.toLowerCase() === lower) {
          raw = first(headers[key])
          break
        }
      }
    }
  }
  const trimmed = raw?.trim()
  return trimmed === undefined || trimmed === "" ? undefined : trimmed
}

// ---------------------------------------------------------------------------
// value parsers
// ---------------------------------------------------------------------------

const decimal = /^(?:\d+(?:\.\d*)?|\.\d+)$/

/**
 * A non-negative decimal number (`"12"`, `"0.5"`, `".5"`); no sign, no
 * exponent, no units.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseNonNegativeNumber = (value: string): Option.Option<number> => {
  const s = value.trim()
  if (!decimal.test(s)) return Option.none()
  const n = Number(s)
  return Number.isFinite(n) ? Option.some(n) : Option.none()
}

const goUnits: { readonly [unit: string]: number } = {
  ns: 1e-6,
  us: 1e-3,
  "\u00b5s": 1e-3, // µ (micro sign)
  "\u03bcs": 1e-3, // μ (Greek mu)
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}

const goDuration = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+$/
const goPart = /(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/g

/**
 * A duration in Go's `time.Duration` text form, as OpenAI sends it in
 * `x-ratelimit-reset-*`: `"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`, `"0"`.
 * Units `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`. A bare non-negative
 * number is read as seconds (some OpenAI-compatible servers send that; Go
 * itself would reject it). Negative or malformed values are `None`.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseGoDuration = (value: string): Option.Option<Duration.Duration> => {
  const s = value.trim()
  if (s === "") return Option.none()
  const bare = parseNonNegativeNumber(s)
  if (Option.isSome(bare)) return Option.some(Duration.millis(bare.value * 1000))
  if (!goDuration.test(s)) return Option.none()
  let millis = 0
  for (const match of s.matchAll(goPart)) {
    const amount = Number(match[1])
    const unit = goUnits[match[2] ?? ""]
    if (unit === undefined || !Number.isFinite(amount)) return Option.none()
    millis += amount * unit
  }
  return Number.isFinite(millis) ? Option.some(Duration.millis(millis)) : Option.none()
}

const rfc3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

const isLeap = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0

/** Days of `month` (1-12) in `year`. */
const daysInMonth = (year: number, month: number): number =>
  month === 2 ? (isLeap(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31

/**
 * An RFC 3339 timestamp (`"2024-06-10T17:32:05Z"`,
 * `"2024-06-10T17:32:05.123+02:00"`) as epoch milliseconds, as Anthropic
 * sends it in `anthropic-ratelimit-*-reset`. Out-of-range fields (month 13,
 * February 30) are `None`; a leap second (`:60`) is read as `:59.999`.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseTimestamp = (value: string): Option.Option<number> => {
  const m = rfc3339.exec(value.trim())
  if (m === null) return Option.none()
  const [, y, mo, d, h, mi, s, frac, , sign, oh, om] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = Number(s)
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return Option.none()
  if (hour > 23 || minute > 59 || second > 60) return Option.none()
  const millis = frac === undefined ? 0 : Math.min(999, Math.floor(Number(`0${frac}`) * 1000))
  let offset = 0
  if (sign !== undefined) {
    const offH = Number(oh)
    const offM = Number(om)
    if (offH > 23 || offM > 59) return Option.none()
    offset = (sign === "-" ? -1 : 1) * (offH * 60 + offM) * 60_000
  }
  const epoch = second === 60
    ? Date.UTC(year, month - 1, day, hour, minute, 59, 999)
    : Date.UTC(year, month - 1, day, hour, minute, second, millis)
  return Option.some(epoch - offset)
}

/**
 * A reset header's value as an instant (epoch milliseconds): an RFC 3339
 * timestamp as is, a Go duration (or bare seconds) counted from `now`.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseReset = (value: string, now: number): Option.Option<number> => {
  const at = parseTimestamp(value)
  if (Option.isSome(at)) return at
  return Option.map(parseGoDuration(value), (d) => now + Duration.toMillis(d))
}

// ---------------------------------------------------------------------------
// budgets
// ---------------------------------------------------------------------------

/**
 * The budgets a provider reports on.
 *
 * @since 0.1.0
 * @category models
 */
export type BudgetName = "requests" | "tokens" | "input-tokens" | "output-tokens"

/**
 * One budget of one answer, as the headers describe it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Budget {
  readonly name: BudgetName
  readonly remaining?: number
  readonly limit?: number
  /** Epoch milliseconds when the budget is replenished. */
  readonly resetAt?: number
}

/**
 * The header names of each budget, by family. Exported as data so the
 * README can list them.
 *
 * @since 0.1.0
 * @category models
 */
export const headerNames: ReadonlyArray<{
  readonly budget: BudgetName
  readonly remaining: string
  readonly limit: string
  readonly reset: string
}> = [
  {
    budget: "requests",
    remaining: "x-ratelimit-remaining-requests",
    limit: "x-ratelimit-limit-requests",
    reset: "x-ratelimit-reset-requests"
  },
  {
    budget: "tokens",
    remaining: "x-ratelimit-remaining-tokens",
    limit: "x-ratelimit-limit-tokens",
    reset: "x-ratelimit-reset-tokens"
  },
  ...(["requests", "tokens", "input-tokens", "output-tokens"] as const).map((budget) => ({
    budget,
    remaining: `anthropic-ratelimit-${budget}-remaining`,
    limit: `anthropic-ratelimit-${budget}-limit`,
    reset: `anthropic-ratelimit-${budget}-reset`
  }))
]

const numberHeader = (headers: HeaderSource, name: string): number | undefined => {
  const v = getHeader(headers, name)
  return v === undefined ? undefined : Option.getOrUndefined(parseNonNegativeNumber(v))
}

/**
 * Every budget the headers mention (at least one of remaining, limit or a
 * parseable reset), OpenAI-style first, then Anthropic-style.
 *
 * @since 0.1.0
 * @category parsers
 */
export const budgets = (headers: HeaderSource, now: number): ReadonlyArray<Budget> => {
  const out: Array<Budget> = []
  for (const names of headerNames) {
    const remaining = numberHeader(headers, names.remaining)
    const limit = numberHeader(headers, names.limit)
    const resetRaw = getHeader(headers, names.reset)
    const resetAt = resetRaw === undefined ? undefined : Option.getOrUndefined(parseReset(resetRaw, now))
    if (remaining === undefined && limit === undefined && resetAt === undefined) continue
    out.push({
      name: names.budget,
      ...(remaining === undefined ? {} : { remaining }),
      ...(limit === undefined ? {} : { limit }),
      ...(resetAt === undefined ? {} : { resetAt })
    })
  }
  return out
}

/**
 * What the headers of one answer say about the key's budgets. Shaped to be
 * passed to `KeyPool.feedback(name, info)` as is.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimitInfo {
  readonly remainingRequests?: number
  /** The smallest remaining count over the token budgets (tokens, input-tokens, output-tokens). */
  readonly remainingTokens?: number
  readonly limitRequests?: number
  /** The smallest limit over the token budgets. */
  readonly limitTokens?: number
  /**
   * Epoch milliseconds of the relevant reset: when some budget is exhausted
   * (remaining 0), the *latest* reset among the exhausted ones (the key can
   * serve again only when all of them are back); otherwise the earliest
   * reset of any budget.
   */
  readonly resetAt?: number
}

const minOf = (values: ReadonlyArray<number | undefined>): number | undefined => {
  let out: number | undefined
  for (const v of values) if (v !== undefined && (out === undefined || v < out)) out = v
  return out
}

const maxOf = (values: ReadonlyArray<number | undefined>): number | undefined => {
  let out: number | undefined
  for (const v of values) if (v !== undefined && (out === undefined || v > out)) out = v
  return out
}

/**
 * The reset that matters, from a list of budgets: the latest reset among the
 * exhausted budgets (remaining 0) that have one, else the earliest reset of
 * any budget.
 *
 * @since 0.1.0
 * @category parsers
 */
export const relevantReset = (list: ReadonlyArray<Budget>): number | undefined => {
  const exhausted = maxOf(list.filter((b) => b.remaining === 0).map((b) => b.resetAt))
  return exhausted ?? minOf(list.map((b) => b.resetAt))
}

/**
 * Reads the rate-limit headers of an answer (OpenAI-style and
 * Anthropic-style). Fields the headers do not give are absent.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parse = (headers: HeaderSource, now: number): RateLimitInfo => {
  const list = budgets(headers, now)
  const requests = list.filter((b) => b.name === "requests")
  const tokens = list.filter((b) => b.name !== "requests")
  const remainingRequests = minOf(requests.map((b) => b.remaining))
  const remainingTokens = minOf(tokens.map((b) => b.remaining))
  const limitRequests = minOf(requests.map((b) => b.limit))
  const limitTokens = minOf(tokens.map((b) => b.limit))
  const resetAt = relevantReset(list)
  return {
    ...(remainingRequests === undefined ? {} : { remainingRequests }),
    ...(remainingTokens === undefined ? {} : { remainingTokens }),
    ...(limitRequests === undefined ? {} : { limitRequests }),
    ...(limitTokens === undefined ? {} : { limitTokens }),
    ...(resetAt === undefined ? {} : { resetAt })
  }
}

/**
 * True when the headers say no request (or no token) is left on this key.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isExhausted = (info: RateLimitInfo): boolean =>
  info.remainingRequests === 0 || info.remainingTokens === 0
