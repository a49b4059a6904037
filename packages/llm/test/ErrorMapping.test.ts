import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@resilient-ai/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as ErrorMapping from "../src/ErrorMapping.js"
import * as OpenAiWire from "../src/OpenAiWire.js"

const now = Date.UTC(2025, 5, 10, 12, 0, 0)

type Wire = "openai" | "anthropic"

interface Case {
  readonly name: string
  /** Which wire dialect the body is in ("openai" covers every OpenAI-compatible provider). */
  readonly wire: Wire
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body: string
  readonly row: string
  readonly tag: ErrorMapping.MappedTag
  readonly check?: (e: ErrorMapping.MappedError) => void
}

const openAiError = (error: Record<string, unknown>) => JSON.stringify({ error })
const anthropicError = (type: string, message: string) =>
  JSON.stringify({ type: "error", error: { type, message }, request_id: "req_011CXYZ" })

/** The `retryAfter` in ms of whichever error carries one (rule 24: a 429's or a 503's). */
const retryAfterMs = (e: ErrorMapping.MappedError): number | undefined =>
  (e._tag === "RateLimitError" || e._tag === "ProviderUnavailableError") && e.retryAfter !== undefined
    ? Duration.toMillis(e.retryAfter)
    : undefined

const cloudflare502 =
  "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"

const cases: ReadonlyArray<Case> = [
  // payment-required
  {
    name: "DeepSeek 402 Insufficient Balance",
    wire: "openai",
    status: 402,
    body: openAiError({ message: "Insufficient Balance", type: "unknown_error", param: null, code: "invalid_request_error" }),
    row: "payment-required",
    tag: "QuotaExhaustedError",
    check: (e) => expect(e.detail).toBe("Insufficient Balance")
  },
  {
    name: "OpenRouter 402 credits",
    wire: "openai",
    status: 402,
    body: openAiError({
      code: 402,
      message:
        "This request requires more credits, or fewer max_tokens. You requested up to 4096 tokens, but can only afford 1523. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account",
      metadata: { provider_name: null }
    }),
    row: "payment-required",
    tag: "QuotaExhaustedError"
  },
  {
    name: "Anthropic 402 billing_error",
    wire: "anthropic",
    status: 402,
    body: anthropicError("billing_error", "There is an issue with your billing or payment information."),
    row: "payment-required",
    tag: "QuotaExhaustedError"
  },
  // quota-by-body
  {
    name: "OpenAI 429 insufficient_quota",
    wire: "openai",
    status: 429,
    headers: { "retry-after": "20" },
    body: openAiError({
      message:
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
      type: "insufficient_quota",
      param: null,
      code: "insufficient_quota"
    }),
    row: "quota-by-body",
    tag: "QuotaExhaustedError",
    check: (e) => {
      expect(e.status).toBe(429)
      expect(e.detail).toContain("You exceeded your current quota")
    }
  },
  {
    name: "OpenAI 400 billing_hard_limit_reached",
    wire: "openai",
    status: 400,
    body: openAiError({
      code: "billing_hard_limit_reached",
      message: "Billing hard limit has been reached",
      param: null,
      type: "invalid_request_error"
    }),
    row: "quota-by-body",
    tag: "QuotaExhaustedError"
  },
  {
    name: "OpenAI 429 billing_not_active",
    wire: "openai",
    status: 429,
    body: openAiError({
      message: "Your account is not active, please check your billing details on our website.",
      type: "billing_not_active",
      param: null,
      code: "billing_not_active"
    }),
    row: "quota-by-body",
    tag: "QuotaExhaustedError"
  },
  {
    name: "Anthropic 400 credit balance too low",
    wire: "anthropic",
    status: 400,
    body: anthropicError(
      "invalid_request_error",
      "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
    ),
    row: "quota-by-body",
    tag: "QuotaExhaustedError"
  },
  {
    name: "Anthropic 400 usage limits with the date access comes back",
    wire: "anthropic",
    status: 400,
    body: anthropicError(
      "invalid_request_error",
      "You have reached your specified API usage limits. You will regain access on 2025-07-01 at 00:00 UTC."
    ),
    row: "quota-by-body",
    tag: "QuotaExhaustedError",
    check: (e) => expect(e._tag === "QuotaExhaustedError" && e.resetAt).toBe(Date.UTC(2025, 6, 1))
  },
  // auth
  {
    name: "OpenAI 401 invalid_api_key (the echoed key is masked)",
    wire: "openai",
    status: 401,
    body: openAiError({
      message:
        "Incorrect API key provided: sk-proj-********************************************Ab9z. You can find your API key at https://platform.openai.com/account/api-keys.",
      type: "invalid_request_error",
      param: null,
      code: "invalid_api_key"
    }),
    row: "auth",
    tag: "AuthError",
    check: (e) => {
      expect(e.detail).toContain("Incorrect API key provided")
      expect(e.detail).not.toContain("Ab9z")
      expect(e.status).toBe(401)
    }
  },
  {
    name: "OpenAI 403 unsupported region",
    wire: "openai",
    status: 403,
    body: openAiError({
      code: "unsupported_country_region_territory",
      message: "Country, region, or territory not supported",
      param: null,
      type: "request_forbidden"
    }),
    row: "auth",
    tag: "AuthError"
  },
  {
    name: "Anthropic 401 authentication_error",
    wire: "anthropic",
    status: 401,
    body: anthropicError("authentication_error", "invalid x-api-key"),
    row: "auth",
    tag: "AuthError",
    check: (e) => expect(e.detail).toBe("invalid x-api-key")
  },
  {
    name: "Anthropic 403 permission_error",
    wire: "anthropic",
    status: 403,
    body: anthropicError("permission_error", "Your API key does not have permission to use the specified resource."),
    row: "auth",
    tag: "AuthError"
  },
  // rate-limit
  {
    name: "OpenAI 429 TPM with retry-after-ms",
    wire: "openai",
    status: 429,
    headers: {
      "retry-after-ms": "1500",
      "retry-after": "2",
      "x-ratelimit-remaining-tokens": "0",
      "x-ratelimit-reset-tokens": "6m0s"
    },
    body: openAiError({
      message:
        "Rate limit reached for gpt-4o in organization org-abc123 on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s. Visit https://platform.openai.com/account/rate-limits to learn more.",
      type: "tokens",
      param: null,
      code: "rate_limit_exceeded"
    }),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => {
      expect(e._tag === "RateLimitError" && e.source).toBe("upstream")
      expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(1500)
    }
  },
  {
    name: "OpenAI 429 free-tier rate limit whose message links to the billing page: not a quota problem",
    wire: "openai",
    status: 429,
    headers: { "retry-after": "20" },
    body: openAiError({
      message:
        "Rate limit reached for gpt-4o-mini in organization org-abc123 on requests per day (RPD): Limit 200, Used 200, Requested 1. Please try again in 7m12s. Visit https://platform.openai.com/account/rate-limits to learn more. You can increase your rate limit by adding a payment method to your account at https://platform.openai.com/account/billing.",
      type: "requests",
      param: null,
      code: "rate_limit_exceeded"
    }),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(20_000)
  },
  {
    name: "OpenAI 429 with only rate-limit reset headers",
    wire: "openai",
    status: 429,
    headers: { "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m2.5s" },
    body: openAiError({
      message: "Rate limit reached for gpt-4o on requests per min (RPM): Limit 500, Used 500, Requested 1.",
      type: "requests",
      param: null,
      code: "rate_limit_exceeded"
    }),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(62_500)
  },
  {
    name: "OpenAI 429 without headers: \"try again in 850ms\" from the message",
    wire: "openai",
    status: 429,
    body: openAiError({
      message: "Rate limit reached for gpt-4o-mini on tokens per min (TPM). Please try again in 850ms.",
      type: "tokens",
      param: null,
      code: "rate_limit_exceeded"
    }),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(850)
  },
  {
    name: "OpenRouter 429 upstream rate limited, no hint at all",
    wire: "openai",
    status: 429,
    body: openAiError({
      message: "Provider returned error",
      code: 429,
      metadata: { raw: "meta-llama/llama-3.3-70b-instruct:free is temporarily rate-limited upstream", provider_name: "Chutes" }
    }),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => expect(e._tag === "RateLimitError" && e.retryAfter).toBe(undefined)
  },
  {
    name: "Anthropic 429 rate_limit_error with retry-after",
    wire: "anthropic",
    status: 429,
    headers: {
      "retry-after": "31",
      "anthropic-ratelimit-input-tokens-remaining": "0",
      "anthropic-ratelimit-input-tokens-reset": "2025-06-10T12:00:45Z"
    },
    body: anthropicError(
      "rate_limit_error",
      "This request would exceed the rate limit for your organization (a1b2) of 40,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
    ),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(31_000)
  },
  {
    name: "Anthropic 429 with only its reset header",
    wire: "anthropic",
    status: 429,
    headers: {
      "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": "2025-06-10T12:00:07.5Z"
    },
    body: anthropicError("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    row: "rate-limit",
    tag: "RateLimitError",
    check: (e) => expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(7500)
  },
  // transient-client-status
  {
    name: "OpenAI-compatible 408 from a load balancer",
    wire: "openai",
    status: 408,
    body: "<html><head><title>408 Request Time-out</title></head><body>Your browser didn't send a complete request in time.</body></html>",
    row: "transient-client-status",
    tag: "ProviderUnavailableError",
    check: (e) => expect(e.detail).toBe("408 Request Time-out")
  },
  {
    name: "408 with retry-after: the deployment's next attempt waits for it (rule 24)",
    wire: "openai",
    status: 408,
    headers: { "retry-after": "4" },
    body: "",
    row: "transient-client-status",
    tag: "ProviderUnavailableError",
    check: (e) => expect(retryAfterMs(e)).toBe(4_000)
  },
  {
    name: "Anthropic 409 conflict",
    wire: "anthropic",
    status: 409,
    body: anthropicError("api_error", "Conflict, please retry"),
    row: "transient-client-status",
    tag: "ProviderUnavailableError"
  },
  // context-length
  {
    name: "OpenAI 400 context_length_exceeded",
    wire: "openai",
    status: 400,
    body: openAiError({
      message:
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens. Please reduce the length of the messages.",
      type: "invalid_request_error",
      param: "messages",
      code: "context_length_exceeded"
    }),
    row: "context-length",
    tag: "ContextLengthError"
  },
  {
    name: "vLLM 400 flat error body",
    wire: "openai",
    status: 400,
    body: JSON.stringify({
      object: "error",
      message:
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
      type: "BadRequestError",
      param: null,
      code: 400
    }),
    row: "context-length",
    tag: "ContextLengthError",
    check: (e) => expect(e.detail).toMatch(/^This model's maximum context length is 4096 tokens/)
  },
  {
    name: "DeepSeek 400 maximum context length (no code)",
    wire: "openai",
    status: 400,
    body: openAiError({
      message:
        "This model's maximum context length is 65536 tokens. However, you requested 70211 tokens (62019 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.",
      type: "invalid_request_error",
      param: null,
      code: "invalid_request_error"
    }),
    row: "context-length",
    tag: "ContextLengthError"
  },
  {
    name: "Anthropic 400 prompt is too long",
    wire: "anthropic",
    status: 400,
    body: anthropicError("invalid_request_error", "prompt is too long: 215762 tokens > 200000 maximum"),
    row: "context-length",
    tag: "ContextLengthError"
  },
  {
    name: "Anthropic 400 input plus max_tokens exceed context limit",
    wire: "anthropic",
    status: 400,
    body: anthropicError(
      "invalid_request_error",
      "input length and `max_tokens` exceed context limit: 197943 + 8192 > 200000, decrease input length or `max_tokens` and try again"
    ),
    row: "context-length",
    tag: "ContextLengthError"
  },
  // content-filter
  {
    name: "OpenAI 400 content_policy_violation",
    wire: "openai",
    status: 400,
    body: openAiError({
      code: "content_policy_violation",
      message:
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
      param: null,
      type: "invalid_request_error"
    }),
    row: "content-filter",
    tag: "ContentFilterError"
  },
  {
    name: "Azure OpenAI 400 content_filter",
    wire: "openai",
    status: 400,
    body: openAiError({
      message:
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
      type: null,
      param: "prompt",
      code: "content_filter",
      status: 400,
      innererror: { code: "ResponsibleAIPolicyViolation", content_filter_result: { hate: { filtered: true, severity: "high" } } }
    }),
    row: "content-filter",
    tag: "ContentFilterError"
  },
  {
    name: "Anthropic 400 output blocked by content filtering policy",
    wire: "anthropic",
    status: 400,
    body: anthropicError("invalid_request_error", "Output blocked by content filtering policy"),
    row: "content-filter",
    tag: "ContentFilterError"
  },
  // bad-request
  {
    name: "OpenAI 400 invalid parameter",
    wire: "openai",
    status: 400,
    body: openAiError({
      message: "Invalid value for 'temperature': expected a number between 0 and 2, got 3.",
      type: "invalid_request_error",
      param: "temperature",
      code: "invalid_value"
    }),
    row: "bad-request",
    tag: "BadRequestError",
    check: (e) => expect(e.status).toBe(400)
  },
  {
    name: "OpenAI 404 model_not_found",
    wire: "openai",
    status: 404,
    body: openAiError({
      message: "The model `gpt-5-turbo` does not exist or you do not have access to it.",
      type: "invalid_request_error",
      param: null,
      code: "model_not_found"
    }),
    row: "bad-request",
    tag: "BadRequestError"
  },
  {
    name: "relay 422 with a plain-text body",
    wire: "openai",
    status: 422,
    body: "Unprocessable Entity: field 'messages' is required",
    row: "bad-request",
    tag: "BadRequestError",
    check: (e) => expect(e.detail).toBe("Unprocessable Entity: field 'messages' is required")
  },
  {
    name: "Anthropic 400 roles must alternate",
    wire: "anthropic",
    status: 400,
    body: anthropicError("invalid_request_error", "messages: roles must alternate between \"user\" and \"assistant\""),
    row: "bad-request",
    tag: "BadRequestError"
  },
  {
    name: "Anthropic 404 not_found_error",
    wire: "anthropic",
    status: 404,
    body: anthropicError("not_found_error", "model: claude-3-opus-2099"),
    row: "bad-request",
    tag: "BadRequestError"
  },
  {
    name: "Anthropic 413 request_too_large (bytes, not tokens)",
    wire: "anthropic",
    status: 413,
    body: anthropicError("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    row: "bad-request",
    tag: "BadRequestError"
  },
  // overloaded
  {
    name: "Anthropic 529 overloaded_error",
    wire: "anthropic",
    status: 529,
    body: anthropicError("overloaded_error", "Overloaded"),
    row: "overloaded",
    tag: "ProviderUnavailableError",
    check: (e) => {
      expect(e.status).toBe(529)
      expect(e.detail).toBe("Overloaded")
    }
  },
  {
    name: "Anthropic 529 overloaded_error with retry-after: carried as the error's retryAfter (rule 24)",
    wire: "anthropic",
    status: 529,
    headers: { "retry-after": "12" },
    body: anthropicError("overloaded_error", "Overloaded"),
    row: "overloaded",
    tag: "ProviderUnavailableError",
    check: (e) => expect(retryAfterMs(e)).toBe(12_000)
  },
  {
    name: "a relay passing Anthropic's 529 through an OpenAI-compatible body",
    wire: "openai",
    status: 529,
    body: openAiError({ message: "Overloaded", type: "overloaded_error", code: null }),
    row: "overloaded",
    tag: "ProviderUnavailableError"
  },
  // server-error
  {
    name: "OpenAI 500 server_error",
    wire: "openai",
    status: 500,
    body: openAiError({
      message: "The server had an error while processing your request. Sorry about that!",
      type: "server_error",
      param: null,
      code: null
    }),
    row: "server-error",
    tag: "ProviderUnavailableError"
  },
  {
    name: "Cloudflare 502 HTML page: the title is the detail",
    wire: "openai",
    status: 502,
    body: cloudflare502,
    row: "server-error",
    tag: "ProviderUnavailableError",
    check: (e) => expect(e.detail).toBe("502 Bad Gateway")
  },
  {
    name: "OpenAI 503 engine overloaded",
    wire: "openai",
    status: 503,
    body: openAiError({
      message: "The engine is currently overloaded, please try again later.",
      type: "server_error",
      param: null,
      code: null
    }),
    row: "server-error",
    tag: "ProviderUnavailableError"
  },
  {
    name: "OpenAI 503 with retry-after-ms and retry-after: retry-after-ms wins, as on a 429",
    wire: "openai",
    status: 503,
    headers: { "retry-after-ms": "2500", "retry-after": "3" },
    body: openAiError({ message: "The engine is currently overloaded, please try again later.", type: "server_error" }),
    row: "server-error",
    tag: "ProviderUnavailableError",
    check: (e) => expect(retryAfterMs(e)).toBe(2_500)
  },
  {
    name: "503 with retry-after as an HTTP date: the delay from now",
    wire: "anthropic",
    status: 503,
    headers: { "retry-after": "Tue, 10 Jun 2025 12:00:30 GMT" },
    body: anthropicError("api_error", "Service Unavailable"),
    row: "server-error",
    tag: "ProviderUnavailableError",
    check: (e) => {
      expect(retryAfterMs(e)).toBe(30_000)
      expect(e.message).toContain("retry after 30s")
    }
  },
  {
    name: "OpenAI 503 with only rate-limit reset headers: no retryAfter (they time a key's budget, not the outage)",
    wire: "openai",
    status: 503,
    headers: { "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s" },
    body: openAiError({ message: "Service Unavailable", type: "server_error" }),
    row: "server-error",
    tag: "ProviderUnavailableError",
    check: (e) => expect(retryAfterMs(e)).toBe(undefined)
  },
  {
    name: "504 with an empty body: no detail",
    wire: "openai",
    status: 504,
    body: "",
    row: "server-error",
    tag: "ProviderUnavailableError",
    check: (e) => {
      expect(e.detail).toBe(undefined)
      expect(e.status).toBe(504)
    }
  },
  {
    name: "Anthropic 500 api_error",
    wire: "anthropic",
    status: 500,
    body: anthropicError("api_error", "Internal server error"),
    row: "server-error",
    tag: "ProviderUnavailableError"
  },
  {
    name: "Anthropic 503 during an incident",
    wire: "anthropic",
    status: 503,
    body: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    row: "server-error",
    tag: "ProviderUnavailableError"
  },
  // unexpected-status
  {
    name: "OpenAI-compatible 302 to a maintenance page",
    wire: "openai",
    status: 302,
    headers: { location: "https://status.example.com" },
    body: "<html><head><title>Maintenance</title></head></html>",
    row: "unexpected-status",
    tag: "ProviderUnavailableError"
  },
  {
    name: "Anthropic 200 handed in as an error",
    wire: "anthropic",
    status: 200,
    body: "{}",
    row: "unexpected-status",
    tag: "ProviderUnavailableError"
  }
]

const origin = { provider: "openai", deployment: "gpt-4o@eastus", keyName: "team-a" }

describe("ErrorMapping.table", () => {
  it.each(cases)("$status $name → $tag ($row)", (c) => {
    const body = ErrorMapping.parseErrorBody(c.body)
    expect(ErrorMapping.classify({ status: c.status, body }).id).toBe(c.row)
    const error = ErrorMapping.fromResponse({ status: c.status, headers: c.headers ?? {}, body: c.body }, { ...origin, now })
    expect(error._tag).toBe(c.tag)
    expect(error.status).toBe(c.status)
    expect(error.provider).toBe("openai")
    expect(error.deployment).toBe("gpt-4o@eastus")
    expect(error.keyName).toBe("team-a")
    // Each error still encodes with its schema (it crosses Redis and the gateway).
    expect(Either.isRight(Schema.encodeEither(Errors.ResilienceError)(error))).toBe(true)
    c.check?.(error)
  })

  it("every row of the table is exercised, with bodies of both wire dialects", () => {
    for (const row of ErrorMapping.table) {
      const wires = new Set(cases.filter((c) => c.row === row.id).map((c) => c.wire))
      expect({ row: row.id, wires: [...wires].sort() }).toEqual({ row: row.id, wires: ["anthropic", "openai"] })
    }
  })

  it("every row has a description, a status and a condition for the README; ids are unique", () => {
    const ids = ErrorMapping.table.map((r) => r.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const row of ErrorMapping.table) {
      expect(row.description.length).toBeGreaterThan(10)
      expect(row.status).not.toBe("")
      expect(row.when).not.toBe("")
    }
  })

  it("the last row takes any status, so every answer gets a tag", () => {
    for (const status of [0, 100, 204, 301, 399, 600, 999]) {
      expect(ErrorMapping.fromResponse({ status, headers: {}, body: "" }, { now })._tag).toBe("ProviderUnavailableError")
    }
  })

  it("any 4xx that no body rule claims is a BadRequestError, any 5xx a ProviderUnavailableError", () => {
    for (let status = 400; status < 600; status++) {
      const tag = ErrorMapping.fromResponse({ status, headers: {}, body: "" }, { now })._tag
      const expected = status === 401 || status === 403
        ? "AuthError"
        : status === 402
        ? "QuotaExhaustedError"
        : status === 429
        ? "RateLimitError"
        : status === 408 || status === 409 || status >= 500
        ? "ProviderUnavailableError"
        : "BadRequestError"
      expect({ status, tag }).toEqual({ status, tag: expected })
    }
  })

  it("a quota message on a 401 is still an AuthError: quota is read from the body only on 400, 403 and 429", () => {
    const error = ErrorMapping.fromResponse(
      { status: 401, headers: {}, body: openAiError({ message: "insufficient_quota", code: "insufficient_quota" }) },
      { now }
    )
    expect(error._tag).toBe("AuthError")
  })

  it("x-should-retry: false makes a retryable answer final for the retry; its tag, status and Retry-After stay", () => {
    const error = ErrorMapping.fromResponse(
      { status: 503, headers: { "x-should-retry": "false", "retry-after": "3" }, body: openAiError({ message: "down" }) },
      { now }
    )
    expect(error).toMatchObject({ _tag: "ProviderUnavailableError", status: 503, shouldRetry: false, detail: "down" })
    expect(error._tag === "ProviderUnavailableError" && error.retryAfter).toEqual(Duration.seconds(3))
  })

  it("x-should-retry: true makes an answer the retry would not retry a retryable ProviderUnavailableError; a retryable one keeps its tag", () => {
    const conflict = ErrorMapping.fromResponse(
      { status: 400, headers: { "X-Should-Retry": "true" }, body: openAiError({ message: "lock timeout" }) },
      { now }
    )
    expect(conflict).toMatchObject({ _tag: "ProviderUnavailableError", status: 400, shouldRetry: true, detail: "lock timeout" })
    const limited = ErrorMapping.fromResponse({ status: 429, headers: { "x-should-retry": "true" }, body: "" }, { now })
    expect(limited).toMatchObject({ _tag: "RateLimitError", shouldRetry: true })
    const plain = ErrorMapping.fromResponse({ status: 400, headers: {}, body: "" }, { now })
    expect(plain._tag).toBe("BadRequestError")
    expect("shouldRetry" in plain).toBe(false)
  })

  it("a relay's 422 validation list keeps each field's own message (FastAPI's detail: [{ loc, msg }])", () => {
    const body = JSON.stringify({
      detail: [
        { loc: ["body", "temperature"], msg: "ensure this value is less than or equal to 2", type: "value_error" },
        { loc: ["body", "messages", 0, "role"], msg: "unexpected value", type: "value_error" }
      ]
    })
    const error = ErrorMapping.fromResponse({ status: 422, headers: {}, body }, { now })
    expect(error._tag).toBe("BadRequestError")
    expect(error.detail).toBe("temperature: ensure this value is less than or equal to 2; messages.0.role: unexpected value")
  })

  it("origin fields are omitted when not given (exactOptionalPropertyTypes-safe)", () => {
    const error = ErrorMapping.fromResponse({ status: 500, headers: {}, body: "" }, { now })
    expect("provider" in error).toBe(false)
    expect("keyName" in error).toBe(false)
  })
})

describe("ErrorMapping.parseErrorBody", () => {
  it("reads OpenAI, Anthropic, vLLM-flat, bare-string and array-wrapped bodies", () => {
    expect(ErrorMapping.parseErrorBody(openAiError({ message: "m", type: "T", code: "C" }))).toEqual({
      type: "t",
      code: "c",
      message: "m"
    })
    expect(ErrorMapping.parseErrorBody(anthropicError("overloaded_error", "Overloaded"))).toEqual({
      type: "overloaded_error",
      message: "Overloaded"
    })
    expect(ErrorMapping.parseErrorBody(JSON.stringify({ object: "error", message: "m", type: "BadRequestError", code: 400 })))
      .toEqual({ type: "badrequesterror", code: "400", message: "m" })
    expect(ErrorMapping.parseErrorBody(JSON.stringify({ error: "model 'llama3' not found" }))).toEqual({
      message: "model 'llama3' not found"
    })
    expect(ErrorMapping.parseErrorBody(JSON.stringify([{ error: { message: "m", code: 503 } }]))).toEqual({
      code: "503",
      message: "m"
    })
    expect(ErrorMapping.parseErrorBody(JSON.stringify({ detail: "Not Found" }))).toEqual({ message: "Not Found" })
  })

  it("never fails: truncated JSON and HTML are kept as text", () => {
    expect(ErrorMapping.parseErrorBody("{\"error\":{\"mess")).toEqual({ text: "{\"error\":{\"mess" })
    expect(ErrorMapping.parseErrorBody("<html><body><h1>Bad</h1> gateway</body></html>")).toEqual({
      text: "Bad gateway"
    })
    expect(ErrorMapping.parseErrorBody("")).toEqual({})
  })
})

describe("ErrorMapping.sanitize", () => {
  it("masks API keys and bearer tokens in whatever the provider echoes", () => {
    const text = ErrorMapping.sanitize(
      "bad key sk-ant-api03-AbCdEf123456_xyz and sk-or-v1-0123456789abcdef and Bearer eyJhbGciOi.J9x.abc, url https://x.test/v1?key=AIzaSyD-secret&x=1"
    )
    expect(text).toBe("bad key sk-ant-api03-*** and sk-or-v1-*** and Bearer ***, url https://x.test/v1?key=***&x=1")
  })

  it("masks long opaque tokens but keeps ordinary words and model names", () => {
    expect(ErrorMapping.sanitize("token 0123456789abcdef0123456789abcdef01234567 for gpt-4o-2024-08-06")).toBe(
      "token *** for gpt-4o-2024-08-06"
    )
  })

  it("collapses whitespace and cuts to 300 code points with an ellipsis, never splitting a character", () => {
    const long = "😀".repeat(400)
    const cut = ErrorMapping.sanitize(long) ?? ""
    expect(Array.from(cut)).toHaveLength(ErrorMapping.maxDetailLength)
    expect(cut.endsWith("😀…")).toBe(true)
    expect(ErrorMapping.sanitize("  a \n\t b  ")).toBe("a b")
    expect(ErrorMapping.sanitize("   ")).toBe(undefined)
  })

  it("a long provider message becomes a detail of at most 300 characters", () => {
    const error = ErrorMapping.fromResponse(
      { status: 400, headers: {}, body: openAiError({ message: "x ".repeat(1000), type: "invalid_request_error" }) },
      { now }
    )
    expect(Array.from(error.detail ?? "").length).toBeLessThanOrEqual(300)
  })
})

describe("ErrorMapping.fromStreamError", () => {
  const map = (kind: ErrorMapping.ProviderKind, payload: unknown) =>
    ErrorMapping.fromStreamError(kind, JSON.stringify(payload), { deployment: "d", now })

  it("Anthropic overloaded_error mid-stream is a ProviderUnavailableError with status 529", () => {
    const e = map("anthropic", { type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
    expect(e._tag).toBe("ProviderUnavailableError")
    expect(e.status).toBe(529)
    expect(e.detail).toBe("Overloaded")
    expect(e.deployment).toBe("d")
  })

  it("Anthropic error types map through their documented statuses", () => {
    const tagOf = (type: string, message = "m") => map("anthropic", { type: "error", error: { type, message } })._tag
    expect(tagOf("rate_limit_error")).toBe("RateLimitError")
    expect(tagOf("api_error")).toBe("ProviderUnavailableError")
    expect(tagOf("authentication_error")).toBe("AuthError")
    expect(tagOf("billing_error")).toBe("QuotaExhaustedError")
    expect(tagOf("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")).toBe("ContextLengthError")
    expect(tagOf("invalid_request_error", "Output blocked by content filtering policy")).toBe("ContentFilterError")
    expect(tagOf("something_new")).toBe("ProviderUnavailableError")
  })

  it("OpenAI-compatible error chunks: type, code, and OpenRouter's numeric code", () => {
    expect(map("openai", { error: { message: "The server had an error", type: "server_error", code: null } })._tag).toBe(
      "ProviderUnavailableError"
    )
    const rl = map("openai", { error: { message: "Please try again in 1m30s.", type: "tokens", code: "rate_limit_exceeded" } })
    expect(rl._tag).toBe("RateLimitError")
    expect(rl._tag === "RateLimitError" && rl.retryAfter && Duration.toMillis(rl.retryAfter)).toBe(90_000)
    const openRouter = map("openai", {
      id: "gen-1",
      object: "chat.completion.chunk",
      error: { code: 502, message: "Provider disconnected" },
      choices: [{ index: 0, delta: { content: "" }, finish_reason: "error" }]
    })
    expect(openRouter._tag).toBe("ProviderUnavailableError")
    expect(openRouter.status).toBe(502)
    expect(map("openai", { error: { message: "m", code: "content_filter" } })._tag).toBe("ContentFilterError")
    expect(map("openai", { error: { message: "no type at all" } })._tag).toBe("ProviderUnavailableError")
  })
})

describe("ErrorMapping.fromFinishReason", () => {
  it("content_filter and refusal are a ContentFilterError; other reasons are not", () => {
    expect(Option.map(ErrorMapping.fromFinishReason("content_filter", { provider: "azure" }), (e) => e.provider)).toEqual(
      Option.some("azure")
    )
    expect(Option.isSome(ErrorMapping.fromFinishReason("refusal"))).toBe(true)
    expect(Option.isNone(ErrorMapping.fromFinishReason("stop"))).toBe(true)
    expect(Option.isNone(ErrorMapping.fromFinishReason(null))).toBe(true)
  })
})

const request = HttpClientRequest.post("https://api.example.com/v1/chat/completions")

const systemError = (code: string, message: string) => Object.assign(new Error(message), { code })

describe("ErrorMapping transport failures", () => {
  it("finds the code of a fetch failure's nested cause", () => {
    const cause = new TypeError("fetch failed", { cause: systemError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:8080") })
    const e = ErrorMapping.connectionError(cause, { deployment: "local" })
    expect(e._tag).toBe("ConnectionError")
    expect(e.detail).toBe("connect ECONNREFUSED 127.0.0.1:8080")
    expect(e.deployment).toBe("local")
  })

  it("looks inside AggregateError (Node's happy-eyeballs connect) and prefixes the code when the message lacks it", () => {
    const cause = new AggregateError([systemError("ETIMEDOUT", "connect timed out"), new Error("other")], "")
    expect(ErrorMapping.connectionError(cause).detail).toBe("ETIMEDOUT: connect timed out")
    expect(ErrorMapping.findErrorCode(systemError("UND_ERR_SOCKET", "other side closed")).code).toBe("UND_ERR_SOCKET")
    expect(ErrorMapping.connectionCodes.has("ENOTFOUND")).toBe(true)
  })

  it("a RequestError: Transport is a ConnectionError, InvalidUrl a BadRequestError without status", () => {
    const transport = new HttpClientError.RequestError({
      request,
      reason: "Transport",
      cause: systemError("ENOTFOUND", "getaddrinfo ENOTFOUND api.example.com")
    })
    expect(ErrorMapping.fromRequestError(transport)._tag).toBe("ConnectionError")
    expect(ErrorMapping.fromRequestError(transport).detail).toBe("getaddrinfo ENOTFOUND api.example.com")
    const invalid = new HttpClientError.RequestError({ request, reason: "InvalidUrl", description: "bad url" })
    const bad = ErrorMapping.fromRequestError(invalid)
    expect(bad._tag).toBe("BadRequestError")
    expect(bad.status).toBe(undefined)
    expect(bad.detail).toBe("InvalidUrl: bad url")
  })

  it("a ResponseError: Decode is malformed, unless the body was cut by the connection; StatusCode maps by status", () => {
    const response = HttpClientResponse.fromWeb(request, new Response("", { status: 200 }))
    const decode = new HttpClientError.ResponseError({ request, response, reason: "Decode", description: "Unexpected end of JSON input" })
    const m = ErrorMapping.fromResponseError(decode, { now })
    expect(m._tag).toBe("MalformedResponseError")
    expect(m.detail).toBe("Unexpected end of JSON input")
    const cut = new HttpClientError.ResponseError({
      request,
      response,
      reason: "Decode",
      cause: systemError("ECONNRESET", "read ECONNRESET")
    })
    expect(ErrorMapping.fromResponseError(cut, { now })._tag).toBe("ConnectionError")
    const status = new HttpClientError.ResponseError({
      request,
      response: HttpClientResponse.fromWeb(request, new Response("", { status: 503 })),
      reason: "StatusCode"
    })
    expect(ErrorMapping.fromResponseError(status, { now })._tag).toBe("ProviderUnavailableError")
  })
})

describe("ErrorMapping.malformed", () => {
  it("names the bad field's path and what was expected there, not the schema's type signature; cut to 300 characters", () => {
    const Chunk = Schema.Struct({ id: Schema.String, choices: Schema.Array(Schema.Struct({ index: Schema.Number })) })
    const result = Schema.decodeUnknownEither(Chunk)({ id: "c", choices: [{ index: "x".repeat(1000) }] })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      const e = ErrorMapping.malformed(result.left, { provider: "openai", status: 200 })
      expect(e._tag).toBe("MalformedResponseError")
      expect(e.detail).toMatch(/^choices\.0\.index: Expected number, actual "xxx/)
      expect(e.detail).not.toContain("readonly")
      expect(Array.from(e.detail ?? "").length).toBeLessThanOrEqual(300)
      expect(e.status).toBe(200)
    }
  })

  it("an OpenAI answer whose content is not a string says choices.0.message.content", () =>
    Effect.gen(function*() {
      const body = {
        id: "chatcmpl-1",
        object: "chat.completion",
        created: 1,
        model: "m",
        choices: [{ index: 0, message: { role: "assistant", content: 42 }, finish_reason: "stop" }]
      }
      const error = yield* Effect.flip(OpenAiWire.decodeResponse(body))
      expect(ErrorMapping.malformed(error).detail).toMatch(/^choices\.0\.message\.content: /)
    }).pipe(Effect.runSync))
})

describe("ErrorMapping.attemptTimeout", () => {
  it("is a TimeoutError of phase attempt", () => {
    const e = ErrorMapping.attemptTimeout("30 seconds", { deployment: "d" })
    expect(e.phase).toBe("attempt")
    expect(Duration.toMillis(e.timeout)).toBe(30_000)
    expect(e.deployment).toBe("d")
  })
})

describe("ErrorMapping.fromClientResponse", () => {
  it.effect("reads the body and maps it, with the Clock's time for HTTP dates", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(1994, 10, 6, 8, 49, 0))
      const response = HttpClientResponse.fromWeb(
        request,
        new Response(anthropicError("rate_limit_error", "slow down"), {
          status: 429,
          headers: { "retry-after": "Sun, 06 Nov 1994 08:49:37 GMT" }
        })
      )
      const e = yield* ErrorMapping.fromClientResponse(response, { keyName: "k1" })
      expect(e._tag).toBe("RateLimitError")
      expect(e.keyName).toBe("k1")
      expect(e._tag === "RateLimitError" && e.retryAfter && Duration.toMillis(e.retryAfter)).toBe(37_000)
    }))
})
