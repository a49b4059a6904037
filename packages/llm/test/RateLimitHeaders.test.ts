import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import type { Feedback } from "@resilient-ai/core/KeyPool"
import * as Option from "effect/Option"
import * as RateLimitHeaders from "../src/RateLimitHeaders.js"

const now = Date.UTC(2025, 5, 10, 12, 0, 0)

describe("RateLimitHeaders.parse", () => {
  it("reads a full OpenAI set (Go-duration resets counted from now)", () => {
    const info = RateLimitHeaders.parse(
      {
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-remaining-tokens": "29999546",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-reset-tokens": "0s"
      },
      now
    )
    expect(info).toEqual({
      remainingRequests: 9999,
      remainingTokens: 29999546,
      limitRequests: 10000,
      limitTokens: 30000000,
      resetAt: now // the earliest: nothing is exhausted
    })
    expect(RateLimitHeaders.isExhausted(info)).toBe(false)
  })

  it("reads a full Anthropic set: token figures are the most constraining of tokens, input and output", () => {
    const info = RateLimitHeaders.parse(
      {
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-requests-reset": "2025-06-10T12:00:01Z",
        "anthropic-ratelimit-tokens-limit": "480000",
        "anthropic-ratelimit-tokens-remaining": "470000",
        "anthropic-ratelimit-tokens-reset": "2025-06-10T12:00:02Z",
        "anthropic-ratelimit-input-tokens-limit": "400000",
        "anthropic-ratelimit-input-tokens-remaining": "399000",
        "anthropic-ratelimit-input-tokens-reset": "2025-06-10T12:00:03Z",
        "anthropic-ratelimit-output-tokens-limit": "80000",
        "anthropic-ratelimit-output-tokens-remaining": "80000",
        "anthropic-ratelimit-output-tokens-reset": "2025-06-10T12:00:00Z"
      },
      now
    )
    expect(info).toEqual({
      remainingRequests: 3999,
      remainingTokens: 80000,
      limitRequests: 4000,
      limitTokens: 80000,
      resetAt: now
    })
  })

  it("resetAt is the reset of the exhausted budget, so the key pool cools the key exactly that long", () => {
    const info = RateLimitHeaders.parse(
      {
        "anthropic-ratelimit-requests-remaining": "12",
        "anthropic-ratelimit-requests-reset": "2025-06-10T12:00:01Z",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2025-06-10T12:00:20Z"
      },
      now
    )
    expect(info.remainingTokens).toBe(0)
    expect(info.resetAt).toBe(now + 20_000)
    expect(RateLimitHeaders.isExhausted(info)).toBe(true)
  })

  it("with several exhausted budgets, resetAt is the latest of their resets (all must be back)", () => {
    const info = RateLimitHeaders.parse(
      {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1m"
      },
      now
    )
    expect(info.resetAt).toBe(now + 60_000)
  })

  it("garbage values are absent, never NaN", () => {
    const info = RateLimitHeaders.parse(
      {
        "x-ratelimit-remaining-requests": "lots",
        "x-ratelimit-remaining-tokens": "-3",
        "x-ratelimit-limit-requests": "",
        "x-ratelimit-reset-requests": "tomorrow",
        "anthropic-ratelimit-tokens-reset": "2025-13-01T00:00:00Z"
      },
      now
    )
    expect(info).toEqual({})
  })

  it("no rate-limit headers → an empty record", () => {
    expect(RateLimitHeaders.parse({ "content-type": "text/event-stream" }, now)).toEqual({})
    expect(RateLimitHeaders.budgets({}, now)).toEqual([])
  })

  it("header names are matched case-insensitively, in records and Fetch Headers", () => {
    expect(RateLimitHeaders.parse({ "X-RateLimit-Remaining-Requests": "0" }, now)).toEqual({ remainingRequests: 0 })
    expect(RateLimitHeaders.parse(new Headers({ "X-RateLimit-Remaining-Tokens": "5" }), now)).toEqual({
      remainingTokens: 5
    })
    expect(RateLimitHeaders.getHeader({ a: ["1", "2"] }, "A")).toBe("1")
  })

  it("budgets lists each budget with what its headers gave", () => {
    expect(
      RateLimitHeaders.budgets(
        { "anthropic-ratelimit-input-tokens-remaining": "7", "x-ratelimit-reset-requests": "1s" },
        now
      )
    ).toEqual([
      { name: "requests", resetAt: now + 1000 },
      { name: "input-tokens", remaining: 7 }
    ])
  })

  it("the result is what KeyPool.feedback takes", () => {
    expectTypeOf<RateLimitHeaders.RateLimitInfo>().toMatchTypeOf<Feedback>()
  })
})

describe("RateLimitHeaders.parseTimestamp (Anthropic resets)", () => {
  it.each([
    ["2024-06-10T17:32:05Z", Date.UTC(2024, 5, 10, 17, 32, 5)],
    ["2024-06-10T17:32:05.123Z", Date.UTC(2024, 5, 10, 17, 32, 5, 123)],
    ["2024-06-10t17:32:05.1234567z", Date.UTC(2024, 5, 10, 17, 32, 5, 123)],
    ["2024-06-10 17:32:05+02:00", Date.UTC(2024, 5, 10, 15, 32, 5)],
    ["2024-06-10T17:32:05-05:30", Date.UTC(2024, 5, 10, 23, 2, 5)],
    ["2024-02-29T00:00:00Z", Date.UTC(2024, 1, 29)],
    ["2016-12-31T23:59:60Z", Date.UTC(2016, 11, 31, 23, 59, 59, 999)]
  ] as const)("%s", (value, expected) => {
    expect(RateLimitHeaders.parseTimestamp(value)).toEqual(Option.some(expected))
  })

  it.each([
    "2023-02-29T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "2024-06-10T24:00:00Z",
    "2024-06-10T17:32:05",
    "2024-06-10",
    "1718040725",
    "Tue, 10 Jun 2025 12:00:00 GMT"
  ])("garbage %j → none", (value) => {
    expect(Option.isNone(RateLimitHeaders.parseTimestamp(value))).toBe(true)
  })
})
