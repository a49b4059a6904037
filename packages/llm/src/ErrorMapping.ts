/**
 * From what an upstream said to a typed error of the taxonomy.
 *
 * One table ({@link table}) maps an HTTP answer (status, headers, body text)
 * to an error tag. The first row that matches wins; the last row matches
 * everything, so every answer gets a tag. The table is exported as data
 * (`id`, `status`, `when`, `tag`, `description`) so the README can print it.
 *
 * One table serves both provider kinds: the OpenAI-compatible body
 * `{"error":{"message","type","code"}}` (OpenAI, DeepSeek, OpenRouter, vLLM,
 * relays; also vLLM's flat `{"object":"error","message",...}` and the bare
 * `{"error":"..."}` of some relays) and Anthropic's
 * `{"type":"error","error":{"type","message"}}` are read by one parser, and
 * no status means different things on the two. The provider kind matters
 * only for reading an error event inside a 200 stream
 * ({@link fromStreamError}), where there is no status and one is inferred
 * from the error's type.
 *
 * Beside the table: transport failures ({@link connectionError},
 * {@link fromRequestError}), bodies that do not decode ({@link malformed}),
 * attempt timeouts ({@link attemptTimeout}).
 *
 * `detail` is the provider's own message, cleaned ({@link sanitize}): things
 * that look like API keys or bearer tokens are masked, whitespace is
 * collapsed, HTML pages are reduced to their title, and the text is cut to
 * {@link maxDetailLength} characters. The request is never copied into an
 * error.
 *
 * @since 0.1.0
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Errors } from "@resilient-ai/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Secrets from "./internal/secrets.js"
import * as RateLimitHeaders from "./RateLimitHeaders.js"
import * as RetryAfter from "./RetryAfter.js"

// ---------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------

/**
 * The wire dialects a provider client speaks.
 *
 * - `"openai"`: OpenAI-compatible (OpenAI, Azure OpenAI, DeepSeek, OpenRouter, vLLM, relays).
 * - `"anthropic"`: Anthropic's Messages API.
 *
 * @since 0.1.0
 * @category models
 */
export type ProviderKind = "openai" | "anthropic"

/**
 * Where an answer came from, copied into the error. Names only, never a key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Origin {
  readonly provider?: string
  readonly deployment?: string
  readonly keyName?: string
}

/**
 * An upstream HTTP answer that was not a success.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpstreamAnswer {
  readonly status: number
  readonly headers: RateLimitHeaders.HeaderSource
  /** The body as text (may be empty, JSON, HTML, anything). */
  readonly body: string
}

/**
 * What the body of an error answer says, from whichever JSON shape the
 * provider used. `type` and `code` are lower-cased strings (a numeric code,
 * as OpenRouter sends, becomes its digits).
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorBody {
  readonly type?: string
  readonly code?: string
  readonly message?: string
  /** A nested upstream body some gateways embed (OpenRouter `metadata.raw`); matched, not shown. */
  readonly nested?: string
  /** The body when it is not JSON (already reduced: HTML to its title). */
  readonly text?: string
}

/**
 * The errors an HTTP answer maps to.
 *
 * @since 0.1.0
 * @category models
 */
export type MappedError =
  | Errors.RateLimitError
  | Errors.QuotaExhaustedError
  | Errors.AuthError
  | Errors.ContextLengthError
  | Errors.ContentFilterError
  | Errors.BadRequestError
  | Errors.ProviderUnavailableError

/**
 * @since 0.1.0
 * @category models
 */
export type MappedTag = MappedError["_tag"]

/**
 * An answer as the table's rows see it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Classified {
  readonly status: number
  readonly body: ErrorBody
}

/**
 * One row of the mapping table.
 *
 * @since 0.1.0
 * @category models
 */
export interface Row {
  /** Stable name of the row (for tests, logs and the README). */
  readonly id: string
  /** The statuses the row applies to, as text: `"402"`, `"400, 403, 429"`, `"4xx"`, `"5xx"`, `"any"`. */
  readonly status: string
  /** The condition on the body, as text; `"any body"` when there is none. */
  readonly when: string
  readonly tag: MappedTag
  readonly description: string
  readonly matches: (answer: Classified) => boolean
}

// ---------------------------------------------------------------------------
// detail text
// ---------------------------------------------------------------------------

/**
 * The longest `detail` an error gets, in characters (code points).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxDetailLength = 300

const secretPatterns: ReadonlyArray<readonly [RegExp, string]> = [
  // OpenAI, Anthropic (sk-ant-), OpenRouter (sk-or-v1-), DeepSeek and most relays use sk- keys.
  [/\b(sk-(?:ant-(?:api\d+-)?|proj-|or-v1-|or-|svcacct-|admin-)?)[A-Za-z0-9_\-*]{3,}/g, "$1***"],
  // OpenAI's 401 echoes a masked key ("Incorrect API key provided: abc***xyz.").
  [/(api[ -]?key(?: provided)?\s*[:=]\s*)\S+?(?=[.,;]?(?:\s|$))/gi, "$1***"],
  [/(bearer\s+)[A-Za-z0-9._~+/=*-]+/gi, "$1***"],
  [/([?&](?:api[_-]?key|key|token|access_token|sig)=)[^&\s"']+/gi, "$1***"],
  // Google (AIza…), Hugging Face (hf_…), Azure (32 hex digits) keys.
  [/\bAIza[0-9A-Za-z_-]{20,}/g, "***"],
  [/\bhf_[A-Za-z0-9]{20,}/g, "***"],
  [/\b[0-9a-fA-F]{32}\b/g, "***"],
  // Long opaque tokens (JWTs, hex or base64 secrets) that are not words.
  [/\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{40,}\b/g, "***"]
]

/**
 * Cuts a text to `max` code points, ending it with `…` when cut.
 *
 * @since 0.1.0
 * @category detail
 */
export const truncate = (text: string, max: number = maxDetailLength): string => {
  const points = Array.from(text)
  return points.length <= max ? text : `${points.slice(0, Math.max(0, max - 1)).join("")}…`
}

/**
 * A provider's text made fit for `detail`: secrets masked, whitespace
 * collapsed, cut to {@link maxDetailLength}. `undefined` for empty text.
 *
 * @since 0.1.0
 * @category detail
 */
export const sanitize = (text: string | undefined): string | undefined => {
  if (text === undefined) return undefined
  // The configured keys themselves first: a key of no known shape is masked all the same.
  let out = Secrets.mask(text)
  for (const [pattern, replacement] of secretPatterns) out = out.replace(pattern, replacement)
  out = out.replace(/\s+/g, " ").trim()
  return out === "" ? undefined : truncate(out)
}

// ---------------------------------------------------------------------------
// body parsing
// ---------------------------------------------------------------------------

const parseJson = (text: string): unknown => {
  const trimmed = text.trim()
  if (!(trimmed.startsWith("{") || trimmed.startsWith("["))) return undefined
  return Option.getOrUndefined(Option.liftThrowable((s: string): unknown => JSON.parse(s))(trimmed))
}

const str = (u: unknown): string | undefined =>
  typeof u === "string" && u.trim() !== "" ? u : typeof u === "number" && Number.isFinite(u) ? String(u) : undefined

const lower = (u: unknown): string | undefined => str(u)?.toLowerCase()

const field = (u: unknown, key: string): unknown => (Predicate.isRecord(u) ? u[key] : undefined)

const htmlTitle = /<title[^>]*>([\s\S]*?)<\/title>/i

const textOf = (body: string): string | undefined => {
  const title = htmlTitle.exec(body)
  if (title !== null) return str(title[1]?.trim())
  if (/^\s*</.test(body)) return str(body.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim())
  return str(body)
}

const pick = <K extends string>(key: K, value: string | undefined): { readonly [P in K]?: string } =>
  (value === undefined ? {} : { [key]: value }) as { readonly [P in K]?: string }

/**
 * Reads the body of an error answer, whatever its shape. Never fails: a body
 * that is not JSON is kept as `text`.
 *
 * @since 0.1.0
 * @category parsing
 */
/**
 * A validation body's list (`{"detail":[{"loc":["body","temperature"],"msg":"..."}]}`,
 * as FastAPI-based relays answer 422) as one line: each field's path and message.
 */
const validationDetail = (detail: unknown): string | undefined => {
  if (!Array.isArray(detail)) return undefined
  const lines = detail.flatMap((item) => {
    const msg = str(field(item, "msg")) ?? str(field(item, "message"))
    if (msg === undefined) return []
    const loc = field(item, "loc")
    const path = Array.isArray(loc) ? loc.filter((p) => p !== "body").map(String).join(".") : undefined
    return [path === undefined || path === "" ? msg : `${path}: ${msg}`]
  })
  return lines.length === 0 ? undefined : lines.join("; ")
}

export const parseErrorBody = (body: string): ErrorBody => {
  const json0 = parseJson(body)
  // Some gateways wrap the error in a one-element array.
  const json = Array.isArray(json0) ? json0[0] : json0
  if (!Predicate.isRecord(json)) return pick("text", textOf(body))
  const error = json["error"]
  if (typeof error === "string") {
    return { ...pick("message", str(error)), ...pick("type", lower(json["type"])), ...pick("code", lower(json["code"])) }
  }
  // OpenAI {error:{...}}, Anthropic {type:"error", error:{...}}; else vLLM's flat {object:"error", message, type, code}.
  const source: Record<string, unknown> = Predicate.isRecord(error) ? error : json
  const message = str(source["message"]) ?? str(json["detail"]) ?? validationDetail(json["detail"]) ?? str(json["message"])
  const inner = field(source, "innererror") // Azure: {"innererror":{"code":"ResponsibleAIPolicyViolation"}}
  const code = lower(source["code"]) ?? lower(field(inner, "code"))
  const rawType = lower(source["type"])
  // A flat body's own {"type":"error"} names the envelope, not the error.
  const type = rawType === "error" ? undefined : rawType
  const nested = str(field(field(source, "metadata"), "raw"))
  return {
    ...pick("type", type),
    ...pick("code", code),
    ...pick("message", message),
    ...pick("nested", nested)
  }
}

// ---------------------------------------------------------------------------
// the table
// ---------------------------------------------------------------------------

const haystack = (b: ErrorBody): string =>
  [b.type, b.code, b.message, b.nested, b.text].filter((s): s is string => s !== undefined).join(" \u0000 ")

const hasCode = (b: ErrorBody, codes: ReadonlySet<string>): boolean =>
  (b.code !== undefined && codes.has(b.code)) || (b.type !== undefined && codes.has(b.type))

const quotaCodes: ReadonlySet<string> = new Set([
  "insufficient_quota",
  "billing_hard_limit_reached",
  "billing_not_active",
  "billing_error",
  "insufficient_balance",
  "insufficient_credits",
  "payment_required"
])
// Specific phrases only: OpenAI's ordinary 429 rate-limit message links to ".../account/billing",
// which must not park the key.
const quotaText =
  /insufficient[ _](?:quota|balance|credits?|funds)|exceeded your current quota|credit balance is too low|billing (?:hard )?limit|billing details|out of credits?|requires more credits|reached your specified api usage limits|payment required/i

const rateLimitCodes: ReadonlySet<string> = new Set(["rate_limit_exceeded", "rate_limit_error", "requests", "tokens"])

const contextCodes: ReadonlySet<string> = new Set(["context_length_exceeded"])
const contextText =
  /maximum context length|context[ _]length[ _]exceeded|context window|prompt is too long|exceeds? (?:the )?(?:available )?context (?:limit|length|size|window)|longer than the maximum model length|input is too long for (?:the )?(?:requested )?model|reduce the length of the messages/i

const filterCodes: ReadonlySet<string> = new Set([
  "content_filter",
  "content_policy_violation",
  "content_filtered",
  "responsibleaipolicyviolation"
])
const filterText =
  /content (?:management )?polic(?:y|ies)|content[ _]filter(?:ing|ed)?|safety system|responsible ?ai policy|was flagged|usage polic(?:y|ies)/i

const unexpectedStatus: Row = {
  id: "unexpected-status",
  status: "any",
  when: "any body",
  tag: "ProviderUnavailableError",
  description:
    "Any other status (1xx, 3xx, a 2xx handed in as an error): not an answer a chat call can use; retryable like a 5xx.",
  matches: () => true
}

const is =
  (...statuses: ReadonlyArray<number>) =>
  (status: number): boolean => statuses.includes(status)
const is4xx = (status: number): boolean => status >= 400 && status < 500
const is5xx = (status: number): boolean => status >= 500 && status < 600

/**
 * The mapping, first match wins. Exported as data for the README; the
 * `matches` functions are the code that runs.
 *
 * @since 0.1.0
 * @category table
 */
export const table: ReadonlyArray<Row> = [
  {
    id: "payment-required",
    status: "402",
    when: "any body",
    tag: "QuotaExhaustedError",
    description:
      "Payment Required: the account is out of credit (DeepSeek \"Insufficient Balance\", OpenRouter credits, Anthropic billing_error).",
    matches: (a) => a.status === 402
  },
  {
    id: "quota-by-body",
    status: "400, 403, 429",
    when:
      "code insufficient_quota / billing_hard_limit_reached / billing_not_active / billing_error, or (unless the code says rate limit) a message about exhausted quota, balance, credit or billing limits",
    tag: "QuotaExhaustedError",
    description:
      "Out of quota or credit, said in the body (OpenAI 429 insufficient_quota, Anthropic 400 \"credit balance is too low\", Anthropic usage limits).",
    matches: (a) =>
      is(400, 403, 429)(a.status) &&
      (hasCode(a.body, quotaCodes) || (!hasCode(a.body, rateLimitCodes) && quotaText.test(haystack(a.body))))
  },
  {
    id: "auth",
    status: "401, 403",
    when: "any body",
    tag: "AuthError",
    description: "The key is wrong, revoked, or not allowed this model or region.",
    matches: (a) => is(401, 403)(a.status)
  },
  {
    id: "rate-limit",
    status: "429",
    when: "any body",
    tag: "RateLimitError",
    description:
      "Too many requests or tokens; retryAfter from retry-after-ms, retry-after, the rate-limit reset headers, or \"try again in 6s\" in the message.",
    matches: (a) => a.status === 429
  },
  {
    id: "transient-client-status",
    status: "408, 409",
    when: "any body",
    tag: "ProviderUnavailableError",
    description:
      "Request timeout / conflict: transient on the provider's side (the official OpenAI and Anthropic SDKs retry them); retryAfter from retry-after-ms or retry-after.",
    matches: (a) => is(408, 409)(a.status)
  },
  {
    id: "context-length",
    status: "4xx",
    when: "code context_length_exceeded, or \"maximum context length\", \"prompt is too long\", \"context window\"",
    tag: "ContextLengthError",
    description: "The prompt (plus max_tokens) does not fit the model's context window.",
    matches: (a) => is4xx(a.status) && (hasCode(a.body, contextCodes) || contextText.test(haystack(a.body)))
  },
  {
    id: "content-filter",
    status: "4xx",
    when: "code content_filter / content_policy_violation, or a message about content policy or filtering",
    tag: "ContentFilterError",
    description:
      "The provider refused the content (OpenAI content_policy_violation, Azure content_filter, Anthropic \"Output blocked by content filtering policy\").",
    matches: (a) => is4xx(a.status) && (hasCode(a.body, filterCodes) || filterText.test(haystack(a.body)))
  },
  {
    id: "bad-request",
    status: "4xx",
    when: "any other body",
    tag: "BadRequestError",
    description: "The request itself is wrong (invalid parameter, unknown model, body too large...).",
    matches: (a) => is4xx(a.status)
  },
  {
    id: "overloaded",
    status: "529",
    when: "any body",
    tag: "ProviderUnavailableError",
    description: "Anthropic overloaded_error; retryAfter from retry-after-ms or retry-after.",
    matches: (a) => a.status === 529
  },
  {
    id: "server-error",
    status: "5xx",
    when: "any body",
    tag: "ProviderUnavailableError",
    description: "The provider failed (500, 502, 503, 504 and any other 5xx); retryAfter from retry-after-ms or retry-after.",
    matches: (a) => is5xx(a.status)
  },
  unexpectedStatus
]

/**
 * The row that decides an answer.
 *
 * @since 0.1.0
 * @category table
 */
export const classify = (answer: Classified): Row => {
  for (const row of table) if (row.matches(answer)) return row
  // Not reached: the last row matches everything.
  return unexpectedStatus
}

// ---------------------------------------------------------------------------
// building errors
// ---------------------------------------------------------------------------

const origin = (o: Origin): Origin => ({
  ...(o.provider === undefined ? {} : { provider: o.provider }),
  ...(o.deployment === undefined ? {} : { deployment: o.deployment }),
  ...(o.keyName === undefined ? {} : { keyName: o.keyName })
})

const bodyDetail = (b: ErrorBody): string | undefined => sanitize(b.message ?? b.text ?? b.code ?? b.type)

const tryAgainIn = /try again in\s+((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))*)/i

/**
 * The wait a rate-limit message asks for ("Please try again in 6s",
 * "... in 1m30s", "... in 850ms"), as OpenAI writes it.
 *
 * @since 0.1.0
 * @category parsing
 */
export const retryAfterFromMessage = (message: string | undefined): Option.Option<Duration.Duration> => {
  if (message === undefined) return Option.none()
  const m = tryAgainIn.exec(message)
  return m === null || m[1] === undefined ? Option.none() : RateLimitHeaders.parseGoDuration(m[1])
}

const regainAccess = /regain access on (\d{4}-\d{2}-\d{2}) at (\d{2}:\d{2})(?::(\d{2}))? UTC/i

/**
 * When a quota comes back, if the message says ("You will regain access on
 * 2025-07-01 at 00:00 UTC", Anthropic's usage limits), as epoch milliseconds.
 *
 * @since 0.1.0
 * @category parsing
 */
export const quotaResetFromMessage = (message: string | undefined): Option.Option<number> => {
  const m = message === undefined ? null : regainAccess.exec(message)
  return m === null ? Option.none() : RateLimitHeaders.parseTimestamp(`${m[1]}T${m[2]}:${m[3] ?? "00"}Z`)
}

const build = (
  tag: MappedTag,
  status: number,
  headers: RateLimitHeaders.HeaderSource,
  body: ErrorBody,
  where: Origin,
  now: number,
  shouldRetry: boolean | undefined
): MappedError => {
  const fields = {
    ...origin(where),
    status,
    ...pick("detail", bodyDetail(body)),
    ...(shouldRetry === undefined ? {} : { shouldRetry })
  }
  switch (tag) {
    case "RateLimitError": {
      const retryAfter = Option.orElse(RetryAfter.fromHeaders(headers, now), () =>
        retryAfterFromMessage(body.message ?? body.nested))
      return new Errors.RateLimitError({
        source: "upstream",
        ...fields,
        ...(Option.isSome(retryAfter) ? { retryAfter: retryAfter.value } : {})
      })
    }
    case "QuotaExhaustedError": {
      const resetAt = quotaResetFromMessage(body.message)
      return new Errors.QuotaExhaustedError({ ...fields, ...(Option.isSome(resetAt) ? { resetAt: resetAt.value } : {}) })
    }
    case "AuthError":
      return new Errors.AuthError(fields)
    case "ContextLengthError":
      return new Errors.ContextLengthError(fields)
    case "ContentFilterError":
      return new Errors.ContentFilterError(fields)
    case "BadRequestError":
      return new Errors.BadRequestError(fields)
    case "ProviderUnavailableError": {
      // Rule 24: a 503's (or 529's, 408's...) Retry-After delays the deployment's next attempt.
      const retryAfter = RetryAfter.fromRetryAfterHeaders(headers, now)
      return new Errors.ProviderUnavailableError({
        ...fields,
        ...(Option.isSome(retryAfter) ? { retryAfter: retryAfter.value } : {})
      })
    }
  }
}

/**
 * Options of {@link fromResponse}: where the answer came from and the
 * current time (epoch milliseconds, for HTTP dates and reset timestamps).
 *
 * @since 0.1.0
 * @category models
 */
export interface MapOptions extends Origin {
  readonly now: number
}

/**
 * Maps a non-success HTTP answer to its typed error through {@link table}.
 *
 * @since 0.1.0
 * @category mapping
 */
export const fromResponse = (answer: UpstreamAnswer, options: MapOptions): MappedError => {
  const body = parseErrorBody(answer.body)
  const row = classify({ status: answer.status, body })
  const advice = RateLimitHeaders.getHeader(answer.headers, "x-should-retry")?.trim().toLowerCase()
  // `x-should-retry` (both official SDKs honour it) overrides the table's retry verdict, never its tag's other rules:
  // `true` on an answer the retry would not retry makes it a ProviderUnavailableError (the provider says it is
  // temporarily unable); `false` marks the error final for the retry.
  const tag = advice === "true" && !Errors.isRetryable({ _tag: row.tag }) ? "ProviderUnavailableError" : row.tag
  const shouldRetry = advice === "false" ? false : advice === "true" ? true : undefined
  return build(tag, answer.status, answer.headers, body, options, options.now, shouldRetry)
}

/**
 * Reads a non-success `HttpClientResponse` and maps it. A body that cannot
 * be read is treated as empty: the status alone decides. Reads the time from
 * the `Clock`.
 *
 * @since 0.1.0
 * @category mapping
 */
export const fromClientResponse: (
  response: HttpClientResponse.HttpClientResponse,
  where?: Origin
) => Effect.Effect<MappedError> = Effect.fn("ErrorMapping.fromClientResponse")(function*(
  response: HttpClientResponse.HttpClientResponse,
  where?: Origin
) {
  const body = yield* Effect.orElseSucceed(response.text, () => "")
  const now = yield* Clock.currentTimeMillis
  return fromResponse({ status: response.status, headers: response.headers, body }, { ...where, now })
})

// ---------------------------------------------------------------------------
// errors inside a 200 stream
// ---------------------------------------------------------------------------

/**
 * The HTTP status an error *type* stands for, for error events inside a 200
 * stream (where there is no status). Anthropic's documented types first,
 * then OpenAI's types and codes.
 *
 * @since 0.1.0
 * @category stream errors
 */
export const statusOfErrorType: { readonly [type: string]: number } = {
  // Anthropic
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
  // OpenAI
  invalid_api_key: 401,
  insufficient_quota: 429,
  rate_limit_exceeded: 429,
  requests: 429,
  tokens: 429,
  context_length_exceeded: 400,
  content_filter: 400,
  server_error: 500,
  service_unavailable: 503
}

/**
 * Maps the payload of an error event inside a 200 stream: Anthropic's
 * `event: error` / `{"type":"error","error":{"type":"overloaded_error",...}}`,
 * an OpenAI-compatible `{"error":{...}}` data chunk (OpenRouter puts the
 * upstream status in a numeric `code`). The status is inferred: a numeric
 * 4xx/5xx `code` as is, else {@link statusOfErrorType} of the code or type,
 * else 500 (an unnamed failure mid-stream is the provider's). Then the same
 * {@link table} decides.
 *
 * @since 0.1.0
 * @category stream errors
 */
export const fromStreamError = (kind: ProviderKind, payload: string, options: MapOptions): MappedError => {
  const body = parseErrorBody(payload)
  const numeric = body.code !== undefined && /^[45]\d\d$/.test(body.code) ? Number(body.code) : undefined
  const byName = kind === "anthropic"
    ? statusOfErrorType[body.type ?? ""] ?? statusOfErrorType[body.code ?? ""]
    : statusOfErrorType[body.code ?? ""] ?? statusOfErrorType[body.type ?? ""]
  const status = numeric ?? byName ?? 500
  const row = classify({ status, body })
  return build(row.tag, status, {}, body, options, options.now, undefined)
}

/**
 * A finish reason that means the provider filtered the output of a
 * *successful* answer: OpenAI `finish_reason: "content_filter"`, Anthropic
 * `stop_reason: "refusal"`. The client decides whether that is an error.
 *
 * @since 0.1.0
 * @category stream errors
 */
export const fromFinishReason = (
  reason: string | null | undefined,
  where: Origin = {}
): Option.Option<Errors.ContentFilterError> =>
  reason === "content_filter" || reason === "refusal"
    ? Option.some(new Errors.ContentFilterError({ ...origin(where), detail: `finish reason ${reason}` }))
    : Option.none()

// ---------------------------------------------------------------------------
// transport, decoding, timeouts
// ---------------------------------------------------------------------------

/**
 * Error codes of a transport failure (Node system errors, undici, TLS).
 *
 * @since 0.1.0
 * @category transport
 */
export const connectionCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EPROTO",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "UND_ERR_DESTROYED",
  "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "ERR_TLS_CERT_ALTNAME_INVALID"
])

/**
 * An error code found in a cause chain, with the message of the error that carries it.
 *
 * @since 0.1.0
 * @category transport
 */
export interface FoundCode {
  readonly code?: string
  readonly message?: string
}

/**
 * The deepest error code in a cause chain (`cause`, and the `errors` of an
 * `AggregateError`, as Node's happy-eyeballs connect throws), with the
 * message of the error that carries it.
 *
 * @since 0.1.0
 * @category transport
 */
export const findErrorCode = (cause: unknown): FoundCode => {
  let found: FoundCode = {}
  const seen = new Set<unknown>()
  const visit = (u: unknown, depth: number): void => {
    if (depth > 8 || u === null || typeof u !== "object" || seen.has(u)) return
    seen.add(u)
    const code = field(u, "code")
    if (typeof code === "string" && code !== "") {
      found = { code, ...pick("message", str(field(u, "message"))) }
    } else if (found.message === undefined) {
      found = { ...found, ...pick("message", str(field(u, "message"))) }
    }
    visit(field(u, "cause"), depth + 1)
    const errors = field(u, "errors")
    if (Array.isArray(errors)) for (const e of errors) visit(e, depth + 1)
  }
  visit(cause, 0)
  return found
}

/**
 * A transport failure (DNS, refused, reset, TLS, socket timeout) as a
 * `ConnectionError`; `detail` is `CODE: message` of the deepest coded cause.
 *
 * @since 0.1.0
 * @category transport
 */
export const connectionError = (cause: unknown, where: Origin = {}): Errors.ConnectionError => {
  const { code, message } = findErrorCode(cause)
  const text = code === undefined ? message : message === undefined || message.includes(code) ? message : `${code}: ${message}`
  return new Errors.ConnectionError({ ...origin(where), ...pick("detail", sanitize(text ?? code)) })
}

/**
 * An `@effect/platform` `RequestError`: `Transport` is a `ConnectionError`;
 * `InvalidUrl` and `Encode` mean the request itself is wrong, a
 * `BadRequestError` (no status: it never reached the provider).
 *
 * @since 0.1.0
 * @category transport
 */
export const fromRequestError = (
  error: HttpClientError.RequestError,
  where: Origin = {}
): Errors.ConnectionError | Errors.BadRequestError =>
  error.reason === "Transport"
    ? connectionError(error.cause ?? error, where)
    : new Errors.BadRequestError({
      ...origin(where),
      ...pick("detail", sanitize(`${error.reason}${error.description === undefined ? "" : `: ${error.description}`}`))
    })

/**
 * An `@effect/platform` `ResponseError`. `StatusCode` maps by status alone
 * (read the body with {@link fromClientResponse} when you can); `Decode` and
 * `EmptyBody` are a `MalformedResponseError`, unless the cause is a
 * transport failure (the body was cut), which is a `ConnectionError`.
 *
 * @since 0.1.0
 * @category transport
 */
export const fromResponseError = (
  error: HttpClientError.ResponseError,
  options: MapOptions
): MappedError | Errors.MalformedResponseError | Errors.ConnectionError => {
  if (error.reason === "StatusCode") {
    return fromResponse({ status: error.response.status, headers: error.response.headers, body: "" }, options)
  }
  const { code } = findErrorCode(error.cause)
  if (code !== undefined && connectionCodes.has(code)) return connectionError(error.cause, options)
  return malformed(error.description ?? error.cause ?? error.reason, { ...options, status: error.response.status })
}

/**
 * A body that does not decode: `detail` is the schema's message (or the
 * error's), cleaned and cut to {@link maxDetailLength}.
 *
 * @since 0.1.0
 * @category decoding
 */
/**
 * A decode failure as the paths of the body that were wrong and what was
 * expected there (`choices.0.message.content: expected string, got 42`),
 * not the schema's type signature.
 */
const issuesOf = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const shown = issues.slice(0, 3).map((issue) =>
    `${issue.path.length === 0 ? "body" : issue.path.map(String).join(".")}: ${issue.message}`
  )
  return issues.length > 3 ? `${shown.join("; ")}; and ${issues.length - 3} more` : shown.join("; ")
}

export const malformed = (
  error: unknown,
  where: Origin & { readonly status?: number } = {}
): Errors.MalformedResponseError => {
  const text = typeof error === "string"
    ? error
    : ParseResult.isParseError(error)
    ? issuesOf(error)
    : str(field(error, "message"))
  return new Errors.MalformedResponseError({
    ...origin(where),
    ...(where.status === undefined ? {} : { status: where.status }),
    ...pick("detail", sanitize(text))
  })
}

/**
 * An attempt ran out of time (the `attemptTimeout` policy interrupted the
 * HTTP call).
 *
 * @since 0.1.0
 * @category timeouts
 */
export const attemptTimeout = (timeout: Duration.DurationInput, where: Origin = {}): Errors.TimeoutError =>
  new Errors.TimeoutError({ phase: "attempt", timeout: Duration.decode(timeout), ...origin(where) })
