import * as AiError from "@effect/ai/AiError"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as AiErrors from "../src/AiErrors.js"

const request = { method: "POST" as const, url: "https://api.example/v1/responses", urlParams: [], hash: Option.none(), headers: {} }

const response = (status: number, headers: Record<string, string>, body?: string) =>
  new AiError.HttpResponseError({
    module: "OpenAiClient",
    method: "createResponse",
    reason: "StatusCode",
    request,
    response: { status, headers },
    ...(body === undefined ? {} : { body })
  })

const now = Date.UTC(2025, 0, 1)
const where = { now, provider: "openai", deployment: "gpt", keyName: "key-a" }

describe("AiErrors", () => {
  // One row per rule of the module header's table.
  const rows: ReadonlyArray<readonly [string, AiError.AiError, string]> = [
    ["429 is a RateLimitError", response(429, {}), "RateLimitError"],
    ["401 is an AuthError", response(401, {}), "AuthError"],
    ["403 is an AuthError", response(403, {}), "AuthError"],
    ["400 about the context window is a ContextLengthError", response(400, {}, JSON.stringify({ error: { code: "context_length_exceeded", message: "maximum context length is 128000 tokens" } })), "ContextLengthError"],
    ["400 with any other body is a BadRequestError", response(400, {}, JSON.stringify({ error: { message: "Unknown parameter" } })), "BadRequestError"],
    ["429 insufficient_quota is a QuotaExhaustedError", response(429, {}, JSON.stringify({ error: { code: "insufficient_quota" } })), "QuotaExhaustedError"],
    ["503 is a ProviderUnavailableError", response(503, {}), "ProviderUnavailableError"],
    ["529 is a ProviderUnavailableError", response(529, {}), "ProviderUnavailableError"],
    ["a body that does not decode is a MalformedResponseError", new AiError.HttpResponseError({ module: "m", method: "x", reason: "Decode", request, response: { status: 200, headers: {} } }), "MalformedResponseError"],
    ["a transport failure is a ConnectionError", new AiError.HttpRequestError({ module: "m", method: "x", reason: "Transport", request, cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) }), "ConnectionError"],
    ["a request that cannot be encoded is a BadRequestError", new AiError.HttpRequestError({ module: "m", method: "x", reason: "Encode", request }), "BadRequestError"],
    ["MalformedOutput is a MalformedResponseError", new AiError.MalformedOutput({ module: "m", method: "x", description: "expected string" }), "MalformedResponseError"],
    ["MalformedInput is a BadRequestError", new AiError.MalformedInput({ module: "m", method: "x" }), "BadRequestError"]
  ]
  for (const [rule, error, tag] of rows) {
    it(rule, () => {
      const ours = AiErrors.toResilienceError(error, where)
      expect(ours._tag).toBe(tag)
      expect(ours).toMatchObject({ deployment: "gpt" })
    })
  }

  it("retry-after-ms wins over retry-after; the key that got the 429 is named", () => {
    const ours = AiErrors.toResilienceError(response(429, { "retry-after-ms": "1500", "retry-after": "30" }), where)
    expect(ours).toMatchObject({ _tag: "RateLimitError", keyName: "key-a" })
    expect(ours._tag === "RateLimitError" && ours.retryAfter !== undefined && Duration.toMillis(ours.retryAfter)).toBe(1500)
  })

  it("a 429 without Retry-After takes its wait from the rate-limit reset headers", () => {
    const ours = AiErrors.toResilienceError(response(429, { "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s" }), where)
    expect(ours._tag === "RateLimitError" && ours.retryAfter !== undefined && Duration.toMillis(ours.retryAfter)).toBe(6000)
  })

  it("a 503's Retry-After (an HTTP date) delays the deployment", () => {
    const at = new Date(now + 20_000).toUTCString()
    const ours = AiErrors.toResilienceError(response(503, { "retry-after": at }), where)
    expect(ours._tag === "ProviderUnavailableError" && ours.retryAfter !== undefined && Duration.toMillis(ours.retryAfter)).toBe(20_000)
  })

  it("back at the edge, an error made from an AiError is that AiError; any other is an UnknownError whose cause is ours", () => {
    const original = response(503, {})
    const ours = AiErrors.toResilienceError(original, where)
    expect(AiErrors.toAiError(ours, "generateText")).toBe(original)
    expect(AiErrors.resilienceErrorOf(original)).toEqual(Option.some(ours))
  })
})
