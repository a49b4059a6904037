/**
 * A `retryAfter` read from an error of any copy of this package: the
 * taxonomy keeps it as a `Duration`; a number of milliseconds or a duration
 * string from elsewhere is read too.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

/** Finite milliseconds, 0 or more; `undefined` for anything else (infinite included). */
export const millisOf = (d: unknown): number | undefined => {
  const decoded = Duration.decodeUnknown(d)
  if (Option.isNone(decoded) || !Duration.isFinite(decoded.value)) return undefined
  const millis = Duration.toMillis(decoded.value)
  return millis >= 0 ? millis : undefined
}
