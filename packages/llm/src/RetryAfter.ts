/**
 * When does the provider want us back? Reads the answer's headers into a
 * `Duration` (docs/semantics.md rule 15: the retry waits exactly this long).
 *
 * Sources, first valid one wins:
 *
 * 1. `retry-after-ms`: milliseconds (OpenAI and its SDKs).
 * 2. `retry-after`: delta seconds (fractional accepted) or an HTTP date
 *    (IMF-fixdate, and the obsolete RFC 850 and asctime forms RFC 9110 asks
 *    recipients to accept), relative to `now`; a date in the past is zero.
 * 3. The provider's rate-limit reset headers (`x-ratelimit-reset-requests` /
 *    `-tokens` as Go durations, `anthropic-ratelimit-*-reset` as RFC 3339
 *    timestamps): the latest reset among the budgets the headers say are
 *    exhausted, else the earliest reset given (see
 *    `RateLimitHeaders.relevantReset`). For a 429 only: a failing provider
 *    (503, 529) is read from 1 and 2 ({@link fromRetryAfterHeaders}).
 *
 * A header whose value does not parse is skipped, never guessed at; if
 * nothing parses the answer is `None` and the caller's backoff applies. No
 * cap is applied here: `maxRetryAfter` is the retry policy's business.
 * Every function is pure; `now` is epoch milliseconds.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as RateLimitHeaders from "./RateLimitHeaders.js"

/**
 * Which header decided.
 *
 * @since 0.1.0
 * @category models
 */
export type Source = "retry-after-ms" | "retry-after" | "rate-limit-reset"

/**
 * A resolved delay and the header it came from.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryAfter {
  readonly delay: Duration.Duration
  readonly source: Source
}

/**
 * `retry-after-ms`: a non-negative number of milliseconds.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseRetryAfterMs = (value: string): Option.Option<Duration.Duration> =>
  Option.map(RateLimitHeaders.parseNonNegativeNumber(value), Duration.millis)

const months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
const monthPattern = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
const time = "(\\d{2}):(\\d{2}):(\\d{2})"
const imfFixdate = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) ${monthPattern} (\\d{4}) ${time} GMT$`, "i")
const rfc850 = new RegExp(
  `^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-${monthPattern}-(\\d{2}) ${time} GMT$`,
  "i"
)
const asctime = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ${monthPattern} ( \\d|\\d{2}) ${time} (\\d{4})$`, "i")

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

const instant = (
  year: number,
  month: string | undefined,
  day: string | undefined,
  h: string | undefined,
  m: string | undefined,
  s: string | undefined
): Option.Option<number> => {
  const mo = months.indexOf((month ?? "").toLowerCase()) + 1
  if (mo === 0) return Option.none()
  // Reuse the range-checked RFC 3339 parser: Feb 30 or 25:00 are None.
  return RateLimitHeaders.parseTimestamp(
    `${pad(year, 4)}-${pad(mo, 2)}-${pad(Number((day ?? "").trim()), 2)}T${h}:${m}:${s}Z`
  )
}

const fiftyYears = 50 * 365.25 * 24 * 3_600_000

/**
 * An HTTP date (RFC 9110 section 5.6.7) as epoch milliseconds:
 * `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT` (a
 * two-digit year more than 50 years after `now` is read as the century
 * before), or `Sun Nov  6 08:49:37 1994`. Day and month names are matched
 * case-insensitively; the weekday is not checked against the date.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseHttpDate = (value: string, now: number): Option.Option<number> => {
  const s = value.trim()
  const imf = imfFixdate.exec(s)
  if (imf !== null) return instant(Number(imf[3]), imf[2], imf[1], imf[4], imf[5], imf[6])
  const old = rfc850.exec(s)
  if (old !== null) {
    const yy = Number(old[3])
    let year = 2000 + yy
    const at = (y: number) => instant(y, old[2], old[1], old[4], old[5], old[6])
    let parsed = at(year)
    while (Option.isSome(parsed) && parsed.value > now + fiftyYears) {
      year -= 100
      parsed = at(year)
    }
    for (let next = at(year + 100); Option.isSome(next) && next.value <= now + fiftyYears; next = at(year + 100)) {
      year += 100
      parsed = next
    }
    return parsed
  }
  const asc = asctime.exec(s)
  if (asc !== null) return instant(Number(asc[6]), asc[1], asc[2], asc[3], asc[4], asc[5])
  return Option.none()
}

/**
 * `retry-after`: delta seconds (`"120"`, `"1.5"`) or an HTTP date, as a
 * delay from `now`. A date in the past gives zero.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseRetryAfter = (value: string, now: number): Option.Option<Duration.Duration> => {
  const seconds = RateLimitHeaders.parseNonNegativeNumber(value)
  if (Option.isSome(seconds)) return Option.some(Duration.millis(seconds.value * 1000))
  return Option.map(parseHttpDate(value, now), (at) => Duration.millis(Math.max(0, at - now)))
}

/** Sources 1 and 2: what the server asked for in so many words. */
const resolveRetryAfterHeaders = (headers: RateLimitHeaders.HeaderSource, now: number): Option.Option<RetryAfter> => {
  const ms = RateLimitHeaders.getHeader(headers, "retry-after-ms")
  if (ms !== undefined) {
    const d = parseRetryAfterMs(ms)
    if (Option.isSome(d)) return Option.some({ delay: d.value, source: "retry-after-ms" })
  }
  const ra = RateLimitHeaders.getHeader(headers, "retry-after")
  if (ra !== undefined) {
    const d = parseRetryAfter(ra, now)
    if (Option.isSome(d)) return Option.some({ delay: d.value, source: "retry-after" })
  }
  return Option.none()
}

/**
 * The delay and the header that gave it, or `None` when no header parses.
 *
 * @since 0.1.0
 * @category parsers
 */
export const resolve = (headers: RateLimitHeaders.HeaderSource, now: number): Option.Option<RetryAfter> => {
  const asked = resolveRetryAfterHeaders(headers, now)
  if (Option.isSome(asked)) return asked
  const reset = RateLimitHeaders.relevantReset(RateLimitHeaders.budgets(headers, now))
  return reset === undefined
    ? Option.none()
    : Option.some({ delay: Duration.millis(Math.max(0, reset - now)), source: "rate-limit-reset" })
}

/**
 * The delay of `retry-after-ms`, then `retry-after`, without source 3: what
 * a 503 or a 529 asks for. The rate-limit reset headers, which OpenAI sends
 * on every answer, time a key's budget: on a failing provider they would
 * delay the next attempt until a refill that says nothing about when the
 * provider is back.
 *
 * @since 0.1.0
 * @category parsers
 */
export const fromRetryAfterHeaders = (
  headers: RateLimitHeaders.HeaderSource,
  now: number
): Option.Option<Duration.Duration> => Option.map(resolveRetryAfterHeaders(headers, now), (r) => r.delay)

/**
 * How long the provider asks us to wait, from the headers of its answer.
 *
 * @since 0.1.0
 * @category parsers
 */
export const fromHeaders = (headers: RateLimitHeaders.HeaderSource, now: number): Option.Option<Duration.Duration> =>
  Option.map(resolve(headers, now), (r) => r.delay)
