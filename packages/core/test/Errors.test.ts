import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Duration from "effect/Duration"
import * as Errors from "../src/Errors.js"

const samples: ReadonlyArray<Errors.ResilienceError> = [
  new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(2), provider: "openai", keyName: "k1" }),
  new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(10) }),
  new Errors.CircuitOpenError({ breaker: "openai", state: "open", retryAt: 30_000 }),
  new Errors.BulkheadFullError({ bulkhead: "openai", reason: "queue-full", maxConcurrent: 10, maxQueue: 5 }),
  new Errors.ProviderUnavailableError({ status: 503 }),
  new Errors.ConnectionError({ detail: "ECONNREFUSED" }),
  new Errors.AuthError({ status: 401, keyName: "prod-1" }),
  new Errors.QuotaExhaustedError({ status: 429 }),
  new Errors.NoKeyAvailableError({ pool: "openai", availableAt: 60_000 }),
  new Errors.ContextLengthError({ status: 400 }),
  new Errors.ContentFilterError({ status: 400 }),
  new Errors.BadRequestError({ status: 422 }),
  new Errors.StreamInterruptedError({ chunksReceived: 3 }),
  new Errors.BudgetExhaustedError({ budget: "attempts", limit: 6 }),
  new Errors.MalformedResponseError({ detail: "missing choices" })
]

describe("Errors", () => {
  it("has one sample per tag of the table", () => {
    expect(new Set(samples.map((e) => e._tag))).toEqual(new Set(Object.keys(Errors.policyOf)))
  })

  it.each(samples.map((e) => [e._tag, e] as const))("%s survives an encode/decode round trip", (_, error) => {
    const encoded = Schema.encodeSync(Errors.ResilienceError)(error)
    const json = JSON.parse(JSON.stringify(encoded))
    const decoded = Schema.decodeUnknownSync(Errors.ResilienceError)(json)
    expect(decoded).toBeInstanceOf(error.constructor)
    expect(decoded).toEqual(error)
  })

  it("retryable, fallbackable and breaker verdicts are the decided table", () => {
    const table = Object.fromEntries(
      samples.map((e) => [e._tag, [Errors.isRetryable(e), Errors.isFallbackable(e), Errors.breakerVerdict(e)]])
    )
    expect(table).toEqual({
      RateLimitError: [true, true, "ignored"],
      TimeoutError: [true, true, "failure"],
      CircuitOpenError: [false, true, "ignored"],
      BulkheadFullError: [false, true, "ignored"],
      ProviderUnavailableError: [true, true, "failure"],
      ConnectionError: [true, true, "failure"],
      AuthError: [false, true, "success"],
      QuotaExhaustedError: [false, true, "success"],
      NoKeyAvailableError: [false, true, "ignored"],
      ContextLengthError: [false, false, "success"],
      ContentFilterError: [false, false, "success"],
      BadRequestError: [false, false, "success"],
      StreamInterruptedError: [false, false, "failure"],
      BudgetExhaustedError: [false, false, "ignored"],
      MalformedResponseError: [true, true, "failure"]
    })
  })

  it("the RetryableError and FallbackableError types list exactly the tags the table marks", () => {
    const retryable = samples.filter((e) => Errors.policyOf[e._tag].retryable).map((e) => e._tag)
    const fallbackable = samples.filter((e) => Errors.policyOf[e._tag].fallbackable).map((e) => e._tag)
    const retryableTags: ReadonlyArray<Errors.RetryableError["_tag"]> = [
      "RateLimitError",
      "TimeoutError",
      "ProviderUnavailableError",
      "ConnectionError",
      "MalformedResponseError"
    ]
    const fallbackableTags: ReadonlyArray<Errors.FallbackableError["_tag"]> = [
      "RateLimitError",
      "TimeoutError",
      "CircuitOpenError",
      "BulkheadFullError",
      "ProviderUnavailableError",
      "ConnectionError",
      "AuthError",
      "QuotaExhaustedError",
      "NoKeyAvailableError",
      "MalformedResponseError"
    ]
    expectTypeOf<(typeof retryableTags)[number]>().toEqualTypeOf<Errors.RetryableError["_tag"]>()
    expectTypeOf<(typeof fallbackableTags)[number]>().toEqualTypeOf<Errors.FallbackableError["_tag"]>()
    expect(new Set(retryable)).toEqual(new Set(retryableTags))
    expect(new Set(fallbackable)).toEqual(new Set(fallbackableTags))
  })

  it("isRetryable narrows a union to its retryable members", () => {
    const e = samples[0] as Errors.RateLimitError | Errors.AuthError
    if (Errors.isRetryable(e)) {
      expectTypeOf(e).toEqualTypeOf<Errors.RateLimitError>()
    }
  })

  it("errors outside the taxonomy are neither retried nor fallen back on, and count as breaker failures", () => {
    const foreign = new Error("boom")
    expect([Errors.isRetryable(foreign), Errors.isFallbackable(foreign), Errors.breakerVerdict(foreign)]).toEqual([
      false,
      false,
      "failure"
    ])
  })

  it("messages name the key, never show it", () => {
    const e = new Errors.AuthError({ status: 401, keyName: "prod-1", provider: "openai", detail: "invalid api key" })
    expect(e.message).toBe("authentication failed (openai, key prod-1): invalid api key")
    expect(new Errors.RateLimitError({ source: "local", retryAfter: Duration.millis(1500) }).message).toBe(
      "rate limited (local), retry after 1s 500ms"
    )
  })

  it.effect("catchTag narrows to one tag", () =>
    Effect.gen(function*() {
      const failing: Effect.Effect<string, Errors.RateLimitError | Errors.TimeoutError> = Effect.fail(
        new Errors.TimeoutError({ phase: "total", timeout: Duration.seconds(1) })
      )
      const handled = failing.pipe(Effect.catchTag("TimeoutError", (e) => Effect.succeed(e.phase)))
      expectTypeOf(handled).toEqualTypeOf<Effect.Effect<string, Errors.RateLimitError>>()
      expect(yield* Effect.either(handled)).toEqual(Either.right("total"))
    }))
})
