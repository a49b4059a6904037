import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as RateLimitHeaders from "../src/RateLimitHeaders.js"
import * as RetryAfter from "../src/RetryAfter.js"

const now = Date.UTC(2025, 5, 10, 12, 0, 0) // Tue, 10 Jun 2025 12:00:00 GMT

const millis = (o: Option.Option<Duration.Duration>): number | undefined =>
  Option.getOrUndefined(Option.map(o, Duration.toMillis))

describe("RetryAfter.parseRetryAfterMs", () => {
  it.each([
    ["1500", 1500],
    ["0", 0],
    ["20.5", 20.5],
    [" 250 ", 250]
  ] as const)("%j → %d ms", (value, expected) => {
    expect(millis(RetryAfter.parseRetryAfterMs(value))).toBe(expected)
  })

  it.each(["", "-5", "1e3", "abc", "10ms", "Infinity", "NaN", "1,5"])("garbage %j → none", (value) => {
    expect(Option.isNone(RetryAfter.parseRetryAfterMs(value))).toBe(true)
  })
})

describe("RetryAfter.parseRetryAfter", () => {
  it.each([
    ["120", 120_000],
    ["0", 0],
    ["1.5", 1500],
    [".25", 250],
    ["30 ", 30_000]
  ] as const)("delta seconds %j → %d ms", (value, expected) => {
    expect(millis(RetryAfter.parseRetryAfter(value, now))).toBe(expected)
  })

  it.each([
    ["IMF-fixdate", "Tue, 10 Jun 2025 12:00:30 GMT", 30_000],
    ["RFC 850", "Tuesday, 10-Jun-25 12:01:00 GMT", 60_000],
    ["asctime", "Tue Jun 10 12:00:05 2025", 5_000],
    ["asctime with a one-digit day", "Sun Jun  1 00:00:00 2025", 0],
    ["a date in the past is zero", "Mon, 09 Jun 2025 12:00:00 GMT", 0],
    ["lower-case names", "tue, 10 jun 2025 12:00:01 GMT", 1_000]
  ] as const)("HTTP date, %s", (_, value, expected) => {
    expect(millis(RetryAfter.parseRetryAfter(value, now))).toBe(expected)
  })

  it("an RFC 850 two-digit year more than 50 years ahead is the century before", () => {
    expect(RetryAfter.parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", now)).toEqual(
      Option.some(Date.UTC(1994, 10, 6, 8, 49, 37))
    )
    expect(RetryAfter.parseHttpDate("Monday, 06-Nov-73 08:49:37 GMT", now)).toEqual(
      Option.some(Date.UTC(2073, 10, 6, 8, 49, 37))
    )
  })

  it.each([
    "",
    "-1",
    "soon",
    "10s",
    "Tue, 31 Jun 2025 12:00:00 GMT", // no 31 June
    "Tue, 10 Jun 2025 25:00:00 GMT",
    "Tue, 10 Jun 2025 12:00:00 UTC", // HTTP dates are GMT
    "2025-06-10T12:00:30Z", // RFC 3339 is not an HTTP date
    "Tue, 10 Foo 2025 12:00:00 GMT"
  ])("garbage %j → none", (value) => {
    expect(Option.isNone(RetryAfter.parseRetryAfter(value, now))).toBe(true)
  })
})

describe("RateLimitHeaders.parseGoDuration (OpenAI reset headers)", () => {
  it.each([
    ["1s", 1000],
    ["6m0s", 360_000],
    ["20ms", 20],
    ["1h2m3.5s", 3_723_500],
    ["0s", 0],
    ["0", 0],
    ["1.5h", 5_400_000],
    ["500us", 0.5],
    ["500µs", 0.5],
    ["300ns", 0.0003],
    ["2m59.56s", 179_560],
    ["17", 17_000] // bare seconds, as some OpenAI-compatible servers send
  ] as const)("%j → %d ms", (value, expected) => {
    const got = millis(RateLimitHeaders.parseGoDuration(value))
    expect(got).toBeCloseTo(expected, 6)
  })

  it.each(["", "-1s", "s", "1x", "1s2", "1 s", "ms", "1.2.3s", "+1s", "1d"])("garbage %j → none", (value) => {
    expect(Option.isNone(RateLimitHeaders.parseGoDuration(value))).toBe(true)
  })
})

describe("RetryAfter.fromHeaders: the order of sources", () => {
  it("retry-after-ms wins over retry-after and the reset headers", () => {
    const r = RetryAfter.resolve(
      { "retry-after-ms": "750", "retry-after": "3", "x-ratelimit-reset-requests": "10s" },
      now
    )
    expect(Option.map(r, (x) => [Duration.toMillis(x.delay), x.source])).toEqual(Option.some([750, "retry-after-ms"]))
  })

  it("retry-after wins over the reset headers", () => {
    const r = RetryAfter.resolve({ "retry-after": "3", "x-ratelimit-reset-requests": "10s" }, now)
    expect(Option.map(r, (x) => [Duration.toMillis(x.delay), x.source])).toEqual(Option.some([3000, "retry-after"]))
  })

  it("a garbage header is skipped, and the next source decides", () => {
    expect(millis(RetryAfter.fromHeaders({ "retry-after-ms": "soon", "retry-after": "2" }, now))).toBe(2000)
    expect(millis(RetryAfter.fromHeaders({ "retry-after": "later", "x-ratelimit-reset-tokens": "1s" }, now))).toBe(1000)
  })

  it("fromRetryAfterHeaders (a 503's) reads retry-after-ms, then retry-after, never the reset headers", () => {
    expect(millis(RetryAfter.fromRetryAfterHeaders({ "retry-after-ms": "750", "retry-after": "3" }, now))).toBe(750)
    expect(millis(RetryAfter.fromRetryAfterHeaders({ "retry-after-ms": "soon", "retry-after": "3" }, now))).toBe(3000)
    const resetsOnly = { "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "10s" }
    expect(millis(RetryAfter.fromHeaders(resetsOnly, now))).toBe(10_000)
    expect(Option.isNone(RetryAfter.fromRetryAfterHeaders(resetsOnly, now))).toBe(true)
  })

  it("nothing parseable → none (the caller's backoff applies)", () => {
    expect(Option.isNone(RetryAfter.fromHeaders({}, now))).toBe(true)
    expect(Option.isNone(RetryAfter.fromHeaders({ "retry-after": "x", "x-ratelimit-reset-tokens": "y" }, now))).toBe(true)
    expect(Option.isNone(RetryAfter.fromHeaders({ "content-type": "application/json" }, now))).toBe(true)
  })

  it("OpenAI: the reset of the exhausted budget counts, not the other one", () => {
    const headers = {
      "x-ratelimit-remaining-requests": "499",
      "x-ratelimit-remaining-tokens": "0",
      "x-ratelimit-reset-requests": "120ms",
      "x-ratelimit-reset-tokens": "6m0s"
    }
    expect(millis(RetryAfter.fromHeaders(headers, now))).toBe(360_000)
  })

  it("OpenAI: when both budgets are exhausted, wait for the later reset", () => {
    const headers = {
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-remaining-tokens": "0",
      "x-ratelimit-reset-requests": "2s",
      "x-ratelimit-reset-tokens": "1s"
    }
    expect(millis(RetryAfter.fromHeaders(headers, now))).toBe(2000)
  })

  it("OpenAI: when no budget is known to be exhausted, the earliest reset", () => {
    const headers = { "x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "1s" }
    expect(millis(RetryAfter.fromHeaders(headers, now))).toBe(1000)
  })

  it("Anthropic: RFC 3339 reset timestamps relative to now; past resets are zero", () => {
    expect(
      millis(RetryAfter.fromHeaders({
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2025-06-10T12:00:42Z",
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-requests-reset": "2025-06-10T12:00:01Z"
      }, now))
    ).toBe(42_000)
    expect(millis(RetryAfter.fromHeaders({ "anthropic-ratelimit-requests-reset": "2025-06-10T11:59:00Z" }, now))).toBe(0)
    expect(
      millis(RetryAfter.fromHeaders({ "anthropic-ratelimit-input-tokens-reset": "2025-06-10T14:00:03.250+02:00" }, now))
    ).toBe(3250)
  })

  it("header names are case-insensitive, and a Fetch Headers object works too", () => {
    expect(millis(RetryAfter.fromHeaders({ "Retry-After": "4" }, now))).toBe(4000)
    expect(millis(RetryAfter.fromHeaders(new Headers({ "Retry-After-Ms": "40" }), now))).toBe(40)
  })
})
