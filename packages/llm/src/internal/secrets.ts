/**
 * The key values this process was configured with, so that a provider's
 * text that quotes one (a 401 body "Key 'relay-SECRET123xyz' is not valid")
 * is masked even when the key has no shape a pattern knows.
 *
 * One registry per process (`globalValue`: a second copy of this module
 * masks the same keys). Keys are registered where they enter (the config's
 * environment variables, every key a request is sent with) and never leave
 * it: the registry is write-only to the rest of the package.
 *
 * @internal
 */
import { globalValue } from "effect/GlobalValue"
import * as Redacted from "effect/Redacted"

const known = globalValue(Symbol.for("@resilient-ai/llm/Secrets/known"), () => new Set<string>())
/** The `Redacted` keys already registered: a request's key is read out of it once, not on every call. */
const seen = globalValue(Symbol.for("@resilient-ai/llm/Secrets/seen"), () => new WeakSet<Redacted.Redacted<string>>())

/** Too short a value would mask ordinary words: such a key is not a secret worth the name anyway. */
const MIN_LENGTH = 8

export const register = (secret: string): void => {
  const value = secret.trim()
  if (value.length >= MIN_LENGTH) known.add(value)
}

export const registerKey = (key: Redacted.Redacted<string>): void => {
  if (seen.has(key)) return
  seen.add(key)
  register(Redacted.value(key))
}

/** `text` with every registered key value replaced by `***`. */
export const mask = (text: string): string => {
  let out = text
  for (const secret of known) {
    if (out.includes(secret)) out = out.split(secret).join("***")
  }
  return out
}
