/**
 * What a simulated provider deployment does over time: its latency, and the
 * faults a script injects at given virtual times.
 *
 * A script is plain data (times are virtual milliseconds since the start of
 * the run), so a scenario reads like an incident report: "the primary is
 * down from 0:30 to 2:30", "key `primary-2` is revoked at 0:10", "60 % of
 * calls get a 429 with Retry-After 10 s for ten minutes". {@link decide}
 * turns the script, the time, the key and a few uniform draws into the
 * outcome of one call; it is pure, so the same draws give the same outcome.
 *
 * @since 0.1.0
 */

/**
 * A latency distribution, in milliseconds.
 *
 * - `fixed`: always `ms`;
 * - `uniform`: between `minMs` and `maxMs`;
 * - `lognormal`: a median and a 99th percentile (the tail); LLM latencies
 *   are close to log-normal, with a long right tail.
 *
 * @since 0.1.0
 * @category models
 */
export type Latency =
  | { readonly kind: "fixed"; readonly ms: number }
  | { readonly kind: "uniform"; readonly minMs: number; readonly maxMs: number }
  | { readonly kind: "lognormal"; readonly medianMs: number; readonly p99Ms: number }

/**
 * @since 0.1.0
 * @category constructors
 */
export const fixed = (ms: number): Latency => ({ kind: "fixed", ms })

/**
 * @since 0.1.0
 * @category constructors
 */
export const uniform = (minMs: number, maxMs: number): Latency => ({ kind: "uniform", minMs, maxMs })

/**
 * @since 0.1.0
 * @category constructors
 */
export const lognormal = (medianMs: number, p99Ms: number): Latency => ({ kind: "lognormal", medianMs, p99Ms })

/** z of the 99th percentile of the standard normal. */
const Z99 = 2.3263478740408408

/**
 * A latency for two uniform draws in `[0, 1)` (Box–Muller for the
 * log-normal; `fixed` and `uniform` use the first draw or none).
 *
 * @since 0.1.0
 * @category sampling
 */
export const sample = (latency: Latency, u1: number, u2: number): number => {
  switch (latency.kind) {
    case "fixed":
      return latency.ms
    case "uniform":
      return latency.minMs + u1 * (latency.maxMs - latency.minMs)
    case "lognormal": {
      const sigma = Math.log(Math.max(latency.p99Ms, latency.medianMs) / latency.medianMs) / Z99
      const z = Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2)
      return latency.medianMs * Math.exp(sigma * z)
    }
  }
}

/**
 * How a failing call fails:
 *
 * - `unavailable`: HTTP 503 (`ProviderUnavailableError`);
 * - `internal-error`: HTTP 500, the provider's own failure (`server_error`,
 *   Anthropic `api_error`; `ProviderUnavailableError`);
 * - `bad-gateway`: HTTP 502 with a proxy's HTML page, as a CDN in front of
 *   the API answers when the backend is gone (`ProviderUnavailableError`);
 * - `overloaded`: HTTP 529, Anthropic's `overloaded_error`
 *   (`ProviderUnavailableError`);
 * - `gateway-timeout`: HTTP 504 (`ProviderUnavailableError`);
 * - `connection`: refused or reset (`ConnectionError`);
 * - `hang`: no answer at all; the connection is reset after `hangMs` (a
 *   client without its own timeout waits that long);
 * - `malformed`: a 200 whose body does not decode (`MalformedResponseError`).
 *
 * @since 0.1.0
 * @category models
 */
export type FailureKind =
  | "unavailable"
  | "internal-error"
  | "bad-gateway"
  | "overloaded"
  | "gateway-timeout"
  | "connection"
  | "hang"
  | "malformed"

/**
 * One fault of a script. Windows are `[from, to)` in virtual milliseconds.
 *
 * - `Outage`: every call fails (`error`, default `unavailable`).
 * - `Flapping`: inside the window the deployment alternates `downMs` down
 *   (as an outage) and `upMs` up, starting down.
 * - `ErrorRate`: a share `rate` of calls fails.
 * - `Latency`: the deployment's latency is replaced by `latency`.
 * - `RateLimitStorm`: a share `rate` of calls gets a 429 with `Retry-After`.
 * - `KeyRevoked`: from `at` on, every call with key `keyName` gets a 401.
 * - `QuotaExhausted`: from `at` until `resetAt`, every call with key
 *   `keyName` (every key when absent) gets an insufficient-quota error.
 * - `SlowStream`: streamed chunks come `interChunk` apart.
 * - `StreamStall`: a share `rate` of streams stops after `afterChunks`
 *   chunks (the opening, role-only chunk counts as one, so 0 or 1 is a stall
 *   before the first token). `as` says how ({@link StallKind}); a
 *   deployment's own default when absent (`"hang"`).
 *
 * @since 0.1.0
 * @category models
 */
export type Fault =
  | { readonly _tag: "Outage"; readonly from: number; readonly to: number; readonly error?: FailureKind }
  | {
    readonly _tag: "Flapping"
    readonly from: number
    readonly to: number
    readonly downMs: number
    readonly upMs: number
    readonly error?: FailureKind
  }
  | { readonly _tag: "ErrorRate"; readonly from: number; readonly to: number; readonly rate: number; readonly error?: FailureKind }
  | { readonly _tag: "Latency"; readonly from: number; readonly to: number; readonly latency: Latency }
  | {
    readonly _tag: "RateLimitStorm"
    readonly from: number
    readonly to: number
    readonly rate: number
    readonly retryAfterMs: number
  }
  | { readonly _tag: "KeyRevoked"; readonly keyName: string; readonly at: number }
  | {
    readonly _tag: "QuotaExhausted"
    readonly keyName?: string
    readonly at: number
    readonly resetAt?: number
  }
  | { readonly _tag: "SlowStream"; readonly from: number; readonly to: number; readonly interChunk: Latency }
  | {
    readonly _tag: "StreamStall"
    readonly from: number
    readonly to: number
    readonly rate: number
    readonly afterChunks: number
    readonly as?: StallKind
  }

/**
 * How a stalled stream shows:
 *
 * - `hang`: the connection stays open and silent until the client's
 *   transport gives up (its first-token or stall timeout);
 * - `cut`: the connection closes mid-body, without the protocol's
 *   terminator (a `ConnectionError`);
 * - `error-event`: an error event inside the 200 stream (Anthropic's
 *   `overloaded_error`), then the end.
 *
 * @since 0.1.0
 * @category models
 */
export type StallKind = "hang" | "cut" | "error-event"

/**
 * @since 0.1.0
 * @category models
 */
export type Script = ReadonlyArray<Fault>

/**
 * What a call meets.
 *
 * - `answer`: an answer after `latencyMs`.
 * - `fail`: an error after `afterMs`. `down` is true when the script made the
 *   failure certain (an outage, a flap, a revoked key, an exhausted quota):
 *   such a call is "sent to a provider while it was down".
 *
 * @since 0.1.0
 * @category models
 */
export type Decision =
  | { readonly _tag: "answer"; readonly latencyMs: number }
  | {
    readonly _tag: "fail"
    readonly failure: Failure
    readonly afterMs: number
    readonly down: boolean
  }

/**
 * @since 0.1.0
 * @category models
 */
export type Failure =
  | { readonly _tag: "kind"; readonly kind: FailureKind }
  | { readonly _tag: "rate-limit"; readonly retryAfterMs: number }
  | { readonly _tag: "auth" }
  | { readonly _tag: "quota"; readonly resetAt: number | undefined }

/**
 * The part of a deployment {@link decide} needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface Behaviour {
  readonly latency: Latency
  /** How long an error takes to come back. Default 50–150 ms. */
  readonly errorLatency?: Latency
  /** An answer slower than this becomes a 504 at this time (the provider's own gateway timeout). Off unless set. */
  readonly serverTimeoutMs?: number
  /** How long a `hang` lasts before the connection is reset. Default 10 minutes. */
  readonly hangMs?: number
  readonly script: Script
}

const defaultErrorLatency: Latency = uniform(50, 150)

const inWindow = (f: { readonly from: number; readonly to: number }, now: number): boolean => now >= f.from && now < f.to

/**
 * True when the script has the deployment down at `now` for every call
 * (an outage or the down half of a flap), whatever the key.
 *
 * @since 0.1.0
 * @category evaluation
 */
export const isDown = (script: Script, now: number): boolean => {
  for (const f of script) {
    if (f._tag === "Outage" && inWindow(f, now)) return true
    if (f._tag === "Flapping" && inWindow(f, now) && (now - f.from) % (f.downMs + f.upMs) < f.downMs) return true
  }
  return false
}

/**
 * The outcome of one call at `now` with key `keyName`, for uniform draws
 * `u` (four numbers in `[0, 1)`: two for a probability roll and two for the
 * latency). Key faults come first, then outages and flaps, then the 429
 * storm, then error rates, then latency.
 *
 * @since 0.1.0
 * @category evaluation
 */
export const decide = (
  behaviour: Behaviour,
  now: number,
  keyName: string | undefined,
  u0: number,
  u1: number,
  u2: number,
  u3: number
): Decision => {
  const script = behaviour.script
  const errorAfter = () => sample(behaviour.errorLatency ?? defaultErrorLatency, u2, u3)
  const failWith = (kind: FailureKind, down: boolean): Decision => ({
    _tag: "fail",
    failure: { _tag: "kind", kind },
    afterMs: kind === "hang" ? behaviour.hangMs ?? 600_000 : errorAfter(),
    down
  })
  for (const f of script) {
    if (f._tag === "KeyRevoked" && keyName === f.keyName && now >= f.at) {
      return { _tag: "fail", failure: { _tag: "auth" }, afterMs: errorAfter(), down: true }
    }
    if (
      f._tag === "QuotaExhausted" && (f.keyName === undefined || f.keyName === keyName) && now >= f.at &&
      (f.resetAt === undefined || now < f.resetAt)
    ) {
      return { _tag: "fail", failure: { _tag: "quota", resetAt: f.resetAt }, afterMs: errorAfter(), down: true }
    }
  }
  for (const f of script) {
    if (f._tag === "Outage" && inWindow(f, now)) return failWith(f.error ?? "unavailable", true)
    if (f._tag === "Flapping" && inWindow(f, now) && (now - f.from) % (f.downMs + f.upMs) < f.downMs) {
      return failWith(f.error ?? "unavailable", true)
    }
  }
  // One roll for every probabilistic fault: the storms and error rates of a script are stacked, not independent.
  let roll = u0
  for (const f of script) {
    if (f._tag === "RateLimitStorm" && inWindow(f, now)) {
      if (roll < f.rate) {
        return { _tag: "fail", failure: { _tag: "rate-limit", retryAfterMs: f.retryAfterMs }, afterMs: errorAfter(), down: false }
      }
      roll -= f.rate
    } else if (f._tag === "ErrorRate" && inWindow(f, now)) {
      if (roll < f.rate) return failWith(f.error ?? "unavailable", false)
      roll -= f.rate
    }
  }
  let latency = behaviour.latency
  for (const f of script) {
    if (f._tag === "Latency" && inWindow(f, now)) latency = f.latency
  }
  const latencyMs = sample(latency, u1, u2)
  if (behaviour.serverTimeoutMs !== undefined && latencyMs > behaviour.serverTimeoutMs) {
    return { _tag: "fail", failure: { _tag: "kind", kind: "gateway-timeout" }, afterMs: behaviour.serverTimeoutMs, down: false }
  }
  return { _tag: "answer", latencyMs }
}

/**
 * For a stream at `now`: the delay between chunks, after how many chunks it
 * stalls (`undefined`: it does not) and how (`undefined`: the deployment's
 * default), for a roll `u` in `[0, 1)`.
 *
 * @since 0.1.0
 * @category evaluation
 */
export const streamShape = (
  script: Script,
  now: number,
  defaultInterChunk: Latency,
  u: number
): { readonly interChunk: Latency; readonly stallAfter: number | undefined; readonly stallAs: StallKind | undefined } => {
  let interChunk = defaultInterChunk
  let stallAfter: number | undefined
  let stallAs: StallKind | undefined
  let roll = u
  for (const f of script) {
    if (f._tag === "SlowStream" && inWindow(f, now)) interChunk = f.interChunk
    if (f._tag === "StreamStall" && inWindow(f, now) && stallAfter === undefined) {
      if (roll < f.rate) {
        stallAfter = f.afterChunks
        stallAs = f.as
      } else roll -= f.rate
    }
  }
  return { interChunk, stallAfter, stallAs }
}

/**
 * The script moved `byMs` later: every window, `at` and `resetAt` shifted
 * (an infinite bound stays infinite). A script written from "now" (0 = the
 * moment it is installed) becomes one on the run's clock, as a running
 * chaos upstream needs when its script is changed mid-run.
 *
 * @since 0.1.0
 * @category combinators
 */
export const shift = (script: Script, byMs: number): Script =>
  script.map((f): Fault => {
    switch (f._tag) {
      case "KeyRevoked":
        return { ...f, at: f.at + byMs }
      case "QuotaExhausted":
        return f.resetAt === undefined ? { ...f, at: f.at + byMs } : { ...f, at: f.at + byMs, resetAt: f.resetAt + byMs }
      default:
        return { ...f, from: f.from + byMs, to: f.to + byMs }
    }
  })
