/**
 * Client authentication with gateway keys.
 *
 * Rules:
 * - A gateway with no keys configured lets every request in.
 * - Otherwise a request presents a key as `Authorization: Bearer <key>` (what
 *   the OpenAI SDKs send) or `x-api-key: <key>` (what the Anthropic SDKs send);
 *   a missing or unknown key is refused (the server answers 401).
 * - Keys stay `Redacted`. The comparison is constant-time: the presented key
 *   and every configured key are hashed (SHA-256, so lengths never differ and
 *   `timingSafeEqual` applies), and every configured key is compared, match
 *   or not, so the time taken says nothing about which key or how much of it
 *   matched. What a match yields is the key's name, never the key.
 *
 * @since 0.1.0
 */
import { Errors } from "@resilient-ai/core"
import * as Config from "effect/Config"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"

/**
 * @since 0.1.0
 * @category models
 */
export interface GatewayKey {
  readonly name: string
  readonly key: Redacted.Redacted<string>
  /** The key's own rate limit, if any. */
  readonly requestsPerMinute?: number | undefined
  /** The key's spend limit, if any (see `ClientLimits`). */
  readonly spendLimit?: { readonly usd: number; readonly per: Duration.DurationInput } | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** False when no key is configured: every request is let in. */
  readonly enabled: boolean
  /** The name of the key the headers present, or undefined when none matches. */
  readonly authenticate: (headers: Readonly<Record<string, string | undefined>>) => string | undefined
}

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/**
 * The key a request presents: the bearer token, else `x-api-key`.
 *
 * @since 0.1.0
 * @category authentication
 */
export const presentedKey = (headers: Readonly<Record<string, string | undefined>>): string | undefined => {
  const authorization = headers["authorization"]
  if (authorization !== undefined) {
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim())
    if (m?.[1] !== undefined) return m[1].trim()
  }
  const apiKey = headers["x-api-key"]?.trim()
  return apiKey === undefined || apiKey === "" ? undefined : apiKey
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (keys: ReadonlyArray<GatewayKey>): Service => {
  const hashed = keys.map((k) => ({ name: k.name, hash: digest(Redacted.value(k.key)) }))
  return {
    enabled: hashed.length > 0,
    authenticate: (headers) => {
      const presented = presentedKey(headers)
      if (presented === undefined) return undefined
      const hash = digest(presented)
      let found: string | undefined
      // No early exit: every key is compared whichever matches.
      for (const k of hashed) if (timingSafeEqual(hash, k.hash) && found === undefined) found = k.name
      return found
    }
  }
}

/**
 * Reads each gateway key from its environment variable (through the current
 * `ConfigProvider`), as `Redacted`. An unset or empty variable fails at start,
 * naming the field and the variable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolveKeys = (
  refs: ReadonlyArray<Omit<GatewayKey, "key"> & { readonly env: string }>
): Effect.Effect<ReadonlyArray<GatewayKey>, Errors.InvalidConfigError> =>
  Effect.forEach(refs, (ref, i) => {
    const refused = (why: string) =>
      new Errors.InvalidConfigError({
        component: "Gateway",
        path: `gateway.gatewayKeys.${i}.env`,
        detail: `environment variable ${ref.env} (gateway key "${ref.name}") ${why}`
      })
    return Effect.flatMap(
      Effect.mapError(Config.redacted(ref.env), () => refused("is not set")),
      (key) =>
        Redacted.value(key).trim() === ""
          ? Effect.fail(refused("is set but empty"))
          : Effect.succeed<GatewayKey>({ name: ref.name, key, requestsPerMinute: ref.requestsPerMinute, spendLimit: ref.spendLimit })
    )
  })
