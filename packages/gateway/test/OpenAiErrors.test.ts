import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@resilient-ai/core"
import * as Duration from "effect/Duration"
import * as OpenAiErrors from "../src/OpenAiErrors.js"

const now = Date.parse("2026-01-01T00:00:00Z")
const context: OpenAiErrors.ErrorContext = { now, retryAfterMs: 7_000, model: "smart" }

describe("OpenAiErrors.fromError: the module's table", () => {
  const rows: ReadonlyArray<readonly [Errors.ResilienceError, number, string | null, string | undefined]> = [
    [new Errors.BadRequestError({ status: 422, detail: "bad temperature" }), 422, null, undefined],
    [new Errors.BadRequestError({ detail: "no deployment can serve this request" }), 400, null, undefined],
    [new Errors.ContextLengthError({ status: 400 }), 400, "context_length_exceeded", undefined],
    [new Errors.ContentFilterError({ status: 400 }), 400, "content_filter", undefined],
    [new Errors.NoKeyAvailableError({ pool: "p", availableAt: now + 12_300 }), 429, "no_key_available", "13"],
    [new Errors.NoKeyAvailableError({ pool: "p" }), 429, "no_key_available", "7"],
    [new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.millis(1_500) }), 429, "rate_limit_exceeded", "2"],
    [new Errors.TimeoutError({ phase: "total", timeout: Duration.seconds(30) }), 504, "timeout", undefined],
    [new Errors.BudgetExhaustedError({ budget: "deadline", limit: 30_000 }), 504, "timeout", undefined],
    [new Errors.BudgetExhaustedError({ budget: "attempts", limit: 6 }), 503, "all_fallbacks_exhausted", "7"],
    [new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(5) }), 503, "all_fallbacks_exhausted", "7"],
    [new Errors.CircuitOpenError({ breaker: "b", state: "open" }), 503, "all_fallbacks_exhausted", "7"],
    [new Errors.ProviderUnavailableError({ status: 503 }), 503, "all_fallbacks_exhausted", "7"],
    [new Errors.ConnectionError({}), 503, "all_fallbacks_exhausted", "7"],
    // Our keys' troubles are not the caller's: not a 401 or 402.
    [new Errors.AuthError({ status: 401 }), 503, "all_fallbacks_exhausted", "7"],
    [new Errors.QuotaExhaustedError({ status: 429 }), 503, "all_fallbacks_exhausted", "7"],
    [new Errors.StreamInterruptedError({ chunksReceived: 3 }), 502, "stream_interrupted", undefined]
  ]
  for (const [error, status, code, retryAfter] of rows) {
    it(`${error._tag}${"status" in error && error.status !== undefined ? ` (${error.status})` : ""} → ${status} ${code ?? ""}`, () => {
      const reply = OpenAiErrors.fromError(error, context)
      expect(reply.status).toBe(status)
      expect(reply.body.error.code).toBe(code)
      expect(reply.headers["retry-after"]).toBe(retryAfter)
      expect(typeof reply.body.error.message).toBe("string")
    })
  }

  it("a request no deployment had room for says so, not that every deployment failed", () => {
    const full = OpenAiErrors.fromError(
      new Errors.BulkheadFullError({ bulkhead: "primary", reason: "adaptive-limit", maxConcurrent: 50, maxQueue: 0 }),
      context
    )
    expect([full.status, full.body.error.code, full.headers["retry-after"]]).toEqual([503, "all_fallbacks_exhausted", "7"])
    expect(full.body.error.message).toMatch(/^No deployment for model .+ can take the request now; try again later\. Last error: bulkhead "primary" is at its adaptive limit \(50 running\)/)
    const failed = OpenAiErrors.fromError(new Errors.ProviderUnavailableError({ status: 503 }), context)
    expect(failed.body.error.message).toMatch(/^All deployments for model .+ failed; try again later\./)
  })

  it("a provider's text is sanitized: a key in it never reaches the caller", () => {
    const reply = OpenAiErrors.fromError(
      new Errors.BadRequestError({ status: 400, detail: "key sk-proj-AbCdEfGhIjKlMnOpQrStUvWx is not allowed" }),
      context
    )
    expect(reply.body.error.message).not.toContain("AbCdEfGhIjKlMnOpQrStUvWx")
  })

  it("Retry-After is whole seconds, rounded up, at least 1", () => {
    expect([0, 1, 999, 1000, 1001, -5].map(OpenAiErrors.retryAfterSeconds)).toEqual([1, 1, 1, 1, 2, 1])
  })
})
