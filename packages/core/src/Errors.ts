/**
 * The error taxonomy of resilient-ai.
 *
 * Every failure an LLM call can meet is one of these tagged errors, so
 * `Effect.catchTag` narrows and the fallback chain can be typed by tag. They
 * are `Schema.TaggedError`s: they encode to JSON and cross Redis and the
 * gateway intact. None of them carries a secret: a key is named, never shown.
 *
 * What to do with each tag (retry it? fall back? does the breaker count it?)
 * is decided once, in {@link policyOf}.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** Where an error came from, named for logs and status pages. Never a key. */
const Origin = {
  provider: Schema.optional(Schema.String),
  deployment: Schema.optional(Schema.String),
  keyName: Schema.optional(Schema.String)
}

/** Upstream HTTP status and the provider's own words, when there was an answer. */
const Upstream = {
  ...Origin,
  status: Schema.optional(Schema.Number),
  detail: Schema.optional(Schema.String),
  /**
   * The provider's own advice (`x-should-retry`, honoured by both official
   * SDKs): `false` makes an error the retry would retry final.
   */
  shouldRetry: Schema.optional(Schema.Boolean)
}

const where = (e: { readonly provider?: string | undefined; readonly deployment?: string | undefined; readonly keyName?: string | undefined }): string => {
  const parts = [e.deployment ?? e.provider, e.keyName === undefined ? undefined : `key ${e.keyName}`].filter(
    (p): p is string => p !== undefined
  )
  return parts.length === 0 ? "" : ` (${parts.join(", ")})`
}

const withDetail = (text: string, detail: string | undefined): string =>
  detail === undefined ? text : `${text}: ${detail}`

/**
 * Too many requests: an upstream 429, or a local limiter that refused.
 * `retryAfter` is when a retry may succeed (exact for a local limiter, the
 * server's `Retry-After` for an upstream one).
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimitError extends Schema.TaggedError<RateLimitError>()("RateLimitError", {
  source: Schema.Literal("upstream", "local"),
  retryAfter: Schema.optional(Schema.DurationFromMillis),
  ...Upstream
}) {
  override get message(): string {
    const after = this.retryAfter === undefined ? "" : `, retry after ${Duration.format(this.retryAfter)}`
    return withDetail(`rate limited (${this.source})${where(this)}${after}`, this.detail)
  }
}

/**
 * A deadline passed. `phase` says which one: a single attempt, the wait for
 * the first token of a stream, a stall between chunks, or the whole call.
 *
 * @since 0.1.0
 * @category errors
 */
export class TimeoutError extends Schema.TaggedError<TimeoutError>()("TimeoutError", {
  phase: Schema.Literal("attempt", "first-token", "stall", "total"),
  timeout: Schema.DurationFromMillis,
  ...Origin
}) {
  override get message(): string {
    return `${this.phase} timed out after ${Duration.format(this.timeout)}${where(this)}`
  }
}

/**
 * The circuit breaker of a deployment refused the call. `retryAt` (epoch
 * milliseconds) is when it will next admit a trial call, if known.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpenError extends Schema.TaggedError<CircuitOpenError>()("CircuitOpenError", {
  breaker: Schema.String,
  state: Schema.Literal("open", "half-open", "forced-open"),
  retryAt: Schema.optional(Schema.Number),
  ...Origin
}) {
  override get message(): string {
    const at = this.retryAt === undefined ? "" : `, next trial at ${new Date(this.retryAt).toISOString()}`
    return `circuit breaker "${this.breaker}" is ${this.state}${at}`
  }
}

/**
 * The bulkhead of a deployment had no permit, and its queue was full or the
 * wait in it ran out.
 *
 * @since 0.1.0
 * @category errors
 */
export class BulkheadFullError extends Schema.TaggedError<BulkheadFullError>()("BulkheadFullError", {
  bulkhead: Schema.String,
  /** `adaptive-limit`: the calls in flight reached the limit an `AdaptiveLimit` learned (`maxConcurrent`). */
  reason: Schema.Literal("queue-full", "queue-timeout", "adaptive-limit"),
  maxConcurrent: Schema.Number,
  maxQueue: Schema.Number,
  /** How long the call waited for a slot of the adaptive limit before it gave up; absent when it was refused at once. */
  waitedMillis: Schema.optional(Schema.Number),
  ...Origin
}) {
  override get message(): string {
    switch (this.reason) {
      case "queue-full":
        return `bulkhead "${this.bulkhead}" is full (${this.maxConcurrent} running, ${this.maxQueue} queued)`
      case "queue-timeout":
        return `bulkhead "${this.bulkhead}": no permit within the queue's wait limit`
      case "adaptive-limit":
        return this.waitedMillis === undefined
          ? `bulkhead "${this.bulkhead}" is at its adaptive limit (${this.maxConcurrent} running)`
          : `bulkhead "${this.bulkhead}" is at its adaptive limit (${this.maxConcurrent} running) and no slot freed within ${Math.round(this.waitedMillis)} ms`
    }
  }
}

/**
 * The provider failed: 5xx, 529 overloaded, 408 / 409. `retryAfter` is the
 * server's `Retry-After` when it sent one (RFC 9110 sends it with a 503): it
 * binds the deployment, not a key, so the next attempt waits for it whichever
 * key it would use (docs/semantics.md rule 24).
 *
 * @since 0.1.0
 * @category errors
 */
export class ProviderUnavailableError extends Schema.TaggedError<ProviderUnavailableError>()(
  "ProviderUnavailableError",
  {
    retryAfter: Schema.optional(Schema.DurationFromMillis),
    ...Upstream
  }
) {
  override get message(): string {
    const after = this.retryAfter === undefined ? "" : `, retry after ${Duration.format(this.retryAfter)}`
    return withDetail(
      `provider unavailable${this.status === undefined ? "" : ` (HTTP ${this.status})`}${where(this)}${after}`,
      this.detail
    )
  }
}

/**
 * The request never got an answer: DNS, refused, reset.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionError extends Schema.TaggedError<ConnectionError>()("ConnectionError", Upstream) {
  override get message(): string {
    return withDetail(`connection failed${where(this)}`, this.detail)
  }
}

/**
 * 401 / 403: the key is revoked or wrong. The key pool disables that key.
 *
 * @since 0.1.0
 * @category errors
 */
export class AuthError extends Schema.TaggedError<AuthError>()("AuthError", Upstream) {
  override get message(): string {
    return withDetail(`authentication failed${where(this)}`, this.detail)
  }
}

/**
 * The account behind the key is out of quota or credit. The key pool parks it.
 *
 * @since 0.1.0
 * @category errors
 */
export class QuotaExhaustedError extends Schema.TaggedError<QuotaExhaustedError>()("QuotaExhaustedError", {
  ...Upstream,
  resetAt: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    return withDetail(`quota exhausted${where(this)}`, this.detail)
  }
}

/**
 * Every key of a pool is cooling down or disabled. `availableAt` (epoch
 * milliseconds) is when the first comes back, if any will.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoKeyAvailableError extends Schema.TaggedError<NoKeyAvailableError>()("NoKeyAvailableError", {
  pool: Schema.String,
  availableAt: Schema.optional(Schema.Number),
  ...Origin
}) {
  override get message(): string {
    const at = this.availableAt === undefined ? "" : `; the first is back at ${new Date(this.availableAt).toISOString()}`
    return `no key of pool "${this.pool}" is available${at}`
  }
}

/**
 * The prompt is too long for the model. Only a larger-context model helps.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContextLengthError extends Schema.TaggedError<ContextLengthError>()("ContextLengthError", Upstream) {
  override get message(): string {
    return withDetail(`context length exceeded${where(this)}`, this.detail)
  }
}

/**
 * The provider refused the content.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContentFilterError extends Schema.TaggedError<ContentFilterError>()("ContentFilterError", Upstream) {
  override get message(): string {
    return withDetail(`content filtered${where(this)}`, this.detail)
  }
}

/**
 * Any other 4xx: the request itself is wrong, and no retry or fallback fixes it.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadRequestError extends Schema.TaggedError<BadRequestError>()("BadRequestError", Upstream) {
  override get message(): string {
    return withDetail(`bad request${this.status === undefined ? "" : ` (HTTP ${this.status})`}${where(this)}`, this.detail)
  }
}

/**
 * A stream failed after its first chunk: an error event inside a 200 stream,
 * or a cut without the terminator.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamInterruptedError extends Schema.TaggedError<StreamInterruptedError>()("StreamInterruptedError", {
  ...Upstream,
  chunksReceived: Schema.Number
}) {
  override get message(): string {
    return withDetail(`stream interrupted after ${this.chunksReceived} chunks${where(this)}`, this.detail)
  }
}

/**
 * The request's own budget is spent: attempts, deadline or money.
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetExhaustedError extends Schema.TaggedError<BudgetExhaustedError>()("BudgetExhaustedError", {
  budget: Schema.Literal("attempts", "deadline", "cost"),
  limit: Schema.Number,
  ...Origin
}) {
  override get message(): string {
    return `${this.budget} budget exhausted (limit ${this.limit})${where(this)}`
  }
}

/**
 * The upstream answered with a body that does not decode.
 *
 * @since 0.1.0
 * @category errors
 */
export class MalformedResponseError extends Schema.TaggedError<MalformedResponseError>()("MalformedResponseError", Upstream) {
  override get message(): string {
    return withDetail(`malformed response${where(this)}`, this.detail)
  }
}

/**
 * A policy or deployment was configured with a value it cannot work with.
 * `path` names the field (`"breaker.failureRateThreshold"`), so the fix is
 * obvious from the message alone. Raised at construction, never per call.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfigError extends Schema.TaggedError<InvalidConfigError>()("InvalidConfigError", {
  component: Schema.String,
  path: Schema.String,
  detail: Schema.String,
  /** Every problem found, when there were more than one (`path` and `detail` are the first). */
  problems: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String, detail: Schema.String })))
}) {
  override get message(): string {
    const one = (p: { readonly path: string; readonly detail: string }) => `${p.path === "" ? "" : `${p.path}: `}${p.detail}`
    const all = this.problems === undefined || this.problems.length < 2 ? [this] : this.problems
    return `invalid config for ${this.component}: ${all.map(one).join("; ")}`
  }
}

/**
 * An `InvalidConfigError` from a schema's parse error, naming the deepest
 * field at fault: for a union such as `false | { ... }` the first issue is
 * "expected false", while the useful one names the field inside the object.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidConfig = (component: string, error: ParseResult.ParseError): InvalidConfigError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const keyOf = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")
  // A union such as `false | { ... }` reports "expected false" at the field and the real problem inside it:
  // an issue with a deeper one under it is dropped; issues at one path (a union's members) are one problem.
  const under = (outer: ReadonlyArray<PropertyKey>, inner: ReadonlyArray<PropertyKey>) =>
    inner.length > outer.length && outer.every((step, i) => inner[i] === step)
  // A union of objects (`{ maxConcurrent } | { adaptive }`) whose every member failed: the member that does not take
  // the input's keys says its own field is missing and the input's key unexpected, next to the real problem found
  // under that key by the member that does take it. That missing field is not what was meant.
  const misfits = issues.filter((issue) => issue._tag === "Unexpected" && issues.some((other) => under(issue.path, other.path)))
  const strayMissing = (issue: ParseResult.ArrayFormatterIssue) =>
    issue._tag === "Missing" && misfits.some((u) => u.path.length === issue.path.length && under(u.path.slice(0, -1), issue.path))
  const deepest = issues.filter((issue) => !issues.some((other) => under(issue.path, other.path)) && !strayMissing(issue))
  const byPath = new Map<string, Array<ParseResult.ArrayFormatterIssue>>()
  for (const issue of deepest) {
    const key = keyOf(issue.path)
    byPath.set(key, [...(byPath.get(key) ?? []), issue])
  }
  const problems = [...byPath.entries()].map(([path, group]) => ({ path, detail: alternatives(group) }))
  const first = problems[0]
  return new InvalidConfigError({
    component,
    path: first?.path ?? "",
    detail: first?.detail ?? error.message,
    ...(problems.length > 1 ? { problems } : {})
  })
}

/**
 * `e` told in the terms of the config that holds the part that raised it:
 * its path and every problem's path mapped by `path` (its component
 * replaced when `component` is given). Every problem keeps a path of its
 * own, so a file with several bad fields still names each of them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const withConfigPaths = (
  e: InvalidConfigError,
  path: (path: string) => string,
  component?: string
): InvalidConfigError =>
  new InvalidConfigError({
    component: component ?? e.component,
    path: path(e.path),
    detail: e.detail,
    ...(e.problems === undefined ? {} : { problems: e.problems.map((p) => ({ path: path(p.path), detail: p.detail })) })
  })

/**
 * Several parts' config errors as one, every problem of each kept: a file
 * with bad fields in several parts names them all at once. One error is
 * returned as it is; several are told as `component`'s.
 *
 * @since 0.1.0
 * @category constructors
 */
export const allConfigErrors = (
  component: string,
  errors: readonly [InvalidConfigError, ...Array<InvalidConfigError>]
): InvalidConfigError => {
  if (errors.length === 1) return errors[0]
  const problems = errors.flatMap((e) => e.problems ?? [{ path: e.path, detail: e.detail }])
  return new InvalidConfigError({ component, path: errors[0].path, detail: errors[0].detail, problems })
}

/**
 * A path under `prefix`: the part's root (`""`) is `prefix` itself.
 *
 * @since 0.1.0
 * @category constructors
 */
export const configPathUnder = (prefix: string) => (path: string): string => path === "" ? prefix : `${prefix}.${path}`

/**
 * One sentence for the issues of one field: "expected a or b, got x" for a
 * union's members, without the schema's `readonly` signatures.
 */
const alternatives = (group: ReadonlyArray<ParseResult.ArrayFormatterIssue>): string => {
  const expected: Array<string> = []
  let actual: string | undefined
  for (const issue of group) {
    const m = /^Expected (.*), actual (.*)$/s.exec(issue.message)
    if (m === null) return tidy(issue.message)
    expected.push(tidy(m[1] ?? ""))
    actual = m[2]
  }
  const choices = [...new Set(expected.flatMap((e) => e.split(" | ")))]
  const list = choices.length <= 1
    ? (choices[0] ?? "")
    : `${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}`
  return `expected ${list}, got ${actual ?? "something else"}`
}

const tidy = (text: string): string => text.replace(/readonly /g, "")

/**
 * Every error of the taxonomy.
 *
 * @since 0.1.0
 * @category models
 */
export type ResilienceError =
  | RateLimitError
  | TimeoutError
  | CircuitOpenError
  | BulkheadFullError
  | ProviderUnavailableError
  | ConnectionError
  | AuthError
  | QuotaExhaustedError
  | NoKeyAvailableError
  | ContextLengthError
  | ContentFilterError
  | BadRequestError
  | StreamInterruptedError
  | BudgetExhaustedError
  | MalformedResponseError

/**
 * The schema of any error of the taxonomy, to encode and decode it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ResilienceError: Schema.Union<
  [
    typeof RateLimitError,
    typeof TimeoutError,
    typeof CircuitOpenError,
    typeof BulkheadFullError,
    typeof ProviderUnavailableError,
    typeof ConnectionError,
    typeof AuthError,
    typeof QuotaExhaustedError,
    typeof NoKeyAvailableError,
    typeof ContextLengthError,
    typeof ContentFilterError,
    typeof BadRequestError,
    typeof StreamInterruptedError,
    typeof BudgetExhaustedError,
    typeof MalformedResponseError
  ]
> = Schema.Union(
  RateLimitError,
  TimeoutError,
  CircuitOpenError,
  BulkheadFullError,
  ProviderUnavailableError,
  ConnectionError,
  AuthError,
  QuotaExhaustedError,
  NoKeyAvailableError,
  ContextLengthError,
  ContentFilterError,
  BadRequestError,
  StreamInterruptedError,
  BudgetExhaustedError,
  MalformedResponseError
)

/**
 * @since 0.1.0
 * @category models
 */
export type Tag = ResilienceError["_tag"]

/**
 * How the circuit breaker counts an outcome (docs/semantics.md rule 1).
 *
 * @since 0.1.0
 * @category models
 */
export type BreakerVerdict = "failure" | "success" | "ignored"

/**
 * What a tag means for retry, fallback and the breaker.
 *
 * @since 0.1.0
 * @category models
 */
export interface TagPolicy {
  /** Worth another attempt against the same deployment. */
  readonly retryable: boolean
  /** A generic fallback step ("anything fallbackable") may take it over. */
  readonly fallbackable: boolean
  /** How the breaker of the deployment counts it, when the breaker admitted the call. */
  readonly breaker: BreakerVerdict
}

/**
 * The one table. Retryable, fallbackable and "counts against the breaker" are
 * three different questions; each row answers all three.
 *
 * - The provider answered (4xx other than 429): a success for the breaker, it is healthy.
 * - 429, auth-free local rejections (breaker, bulkhead, limiter, key pool, budget):
 *   ignored by the breaker; they say nothing about the provider's health.
 * - ContextLength and ContentFilter are not generically fallbackable: only a
 *   step that names them (a larger-context model, a provider allowed to see
 *   the content) takes them over.
 * - StreamInterrupted happens after output reached the caller; retrying or
 *   falling back would mix two answers, so only an explicit mid-stream policy
 *   may do either.
 *
 * @since 0.1.0
 * @category policy
 */
export const policyOf: { readonly [K in Tag]: TagPolicy } = {
  RateLimitError: { retryable: true, fallbackable: true, breaker: "ignored" },
  TimeoutError: { retryable: true, fallbackable: true, breaker: "failure" },
  CircuitOpenError: { retryable: false, fallbackable: true, breaker: "ignored" },
  BulkheadFullError: { retryable: false, fallbackable: true, breaker: "ignored" },
  ProviderUnavailableError: { retryable: true, fallbackable: true, breaker: "failure" },
  ConnectionError: { retryable: true, fallbackable: true, breaker: "failure" },
  AuthError: { retryable: false, fallbackable: true, breaker: "success" },
  QuotaExhaustedError: { retryable: false, fallbackable: true, breaker: "success" },
  NoKeyAvailableError: { retryable: false, fallbackable: true, breaker: "ignored" },
  ContextLengthError: { retryable: false, fallbackable: false, breaker: "success" },
  ContentFilterError: { retryable: false, fallbackable: false, breaker: "success" },
  BadRequestError: { retryable: false, fallbackable: false, breaker: "success" },
  StreamInterruptedError: { retryable: false, fallbackable: false, breaker: "failure" },
  BudgetExhaustedError: { retryable: false, fallbackable: false, breaker: "ignored" },
  MalformedResponseError: { retryable: true, fallbackable: true, breaker: "failure" }
}

const tags = new Set<string>(Object.keys(policyOf))

/**
 * @since 0.1.0
 * @category guards
 */
export const isResilienceError = (u: unknown): u is ResilienceError =>
  Predicate.hasProperty(u, "_tag") && typeof u._tag === "string" && tags.has(u._tag)

/**
 * The `_tag` of any failure, for logs, events and metrics: `"UnknownError"`
 * for one without a string tag.
 *
 * @since 0.1.0
 * @category guards
 */
export const tagOf = (e: unknown): string =>
  Predicate.hasProperty(e, "_tag") && typeof e._tag === "string" ? e._tag : "UnknownError"

/**
 * The tags {@link policyOf} marks retryable.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryableError =
  | RateLimitError
  | TimeoutError
  | ProviderUnavailableError
  | ConnectionError
  | MalformedResponseError

/**
 * The tags {@link policyOf} marks fallbackable.
 *
 * @since 0.1.0
 * @category models
 */
export type FallbackableError =
  | RateLimitError
  | TimeoutError
  | CircuitOpenError
  | BulkheadFullError
  | ProviderUnavailableError
  | ConnectionError
  | AuthError
  | QuotaExhaustedError
  | NoKeyAvailableError
  | MalformedResponseError

/**
 * Narrows any error to the retryable tags. Errors outside the taxonomy are not
 * retryable: we do not guess about failures we cannot name.
 *
 * @since 0.1.0
 * @category guards
 */
export const isRetryable = <E>(e: E): e is E & RetryableError =>
  isResilienceError(e) && policyOf[e._tag].retryable

/**
 * Narrows any error to the fallbackable tags.
 *
 * @since 0.1.0
 * @category guards
 */
export const isFallbackable = <E>(e: E): e is E & FallbackableError =>
  isResilienceError(e) && policyOf[e._tag].fallbackable

/**
 * How the breaker counts an error by default. Errors outside the taxonomy
 * are failures: an unknown defect of the call is not proof of health.
 *
 * @since 0.1.0
 * @category policy
 */
export const breakerVerdict = (e: unknown): BreakerVerdict => {
  if (!isResilienceError(e)) return "failure"
  // The request's own deadline cut the attempt: that measures the caller's patience, not the provider.
  if (e._tag === "TimeoutError" && e.phase === "total") return "ignored"
  return policyOf[e._tag].breaker
}
