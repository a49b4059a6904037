import { hash as cryptoHash } from "node:crypto"

/**
 * The request fields that change a chat / completion / embedding answer, for
 * OpenAI (chat completions and responses), Anthropic messages and embeddings.
 * Left out on purpose, because they never change the answer: `user`,
 * `stream`, `stream_options`, `metadata`, `store`, `service_tier`,
 * `safety_identifier`, `prompt_cache_key`, `prompt_cache_retention`,
 * `moderation`.
 */
export const defaultFields: ReadonlyArray<string> = [
  "model",
  "messages",
  "system",
  "input",
  "instructions",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "functions",
  "function_call",
  "temperature",
  "top_p",
  "top_k",
  "max_tokens",
  "max_completion_tokens",
  "max_output_tokens",
  "response_format",
  "text",
  "seed",
  "stop",
  "stop_sequences",
  "n",
  "presence_penalty",
  "frequency_penalty",
  "logit_bias",
  "logprobs",
  "top_logprobs",
  "reasoning",
  "reasoning_effort",
  "thinking",
  "verbosity",
  "modalities",
  "audio",
  "prediction",
  "web_search_options",
  "dimensions",
  "encoding_format"
]

const isPlainObject = (u: unknown): u is Readonly<Record<string, unknown>> => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) return false
  const proto: unknown = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

/** `JSON.stringify(key)`, remembered: requests repeat the same few keys. */
const quotedKeys = new Map<string, string>()
const quotedKey = (key: string): string => {
  let quoted = quotedKeys.get(key)
  if (quoted === undefined) {
    quoted = JSON.stringify(key)
    // Bounded: keys of free-form objects (tool schemas, metadata) are not worth keeping forever.
    if (quotedKeys.size < 1024) quotedKeys.set(key, quoted)
  }
  return quoted
}

/**
 * `keys.sort()`, in place: an insertion sort for the few keys of a request's
 * objects (a message has two), where `Array.prototype.sort` allocates its
 * work arrays for every call (2 % of a drill request's allocation). Same
 * order: both compare by UTF-16 code units.
 */
const sortKeys = (keys: Array<string>): void => {
  if (keys.length > 16) {
    keys.sort()
    return
  }
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i]
    if (key === undefined) continue
    let j = i - 1
    for (let before = keys[j]; before !== undefined && before > key; before = keys[j]) {
      keys[j + 1] = before
      j--
    }
    keys[j + 1] = key
  }
}

/**
 * Canonical JSON: object keys sorted (so `{a, b}` and `{b, a}` agree), and the
 * same omissions as `JSON.stringify` (an `undefined` property is absent;
 * functions and symbols vanish). Values with a `toJSON` (dates) use it; a
 * cycle becomes the string `"[Circular]"` instead of throwing. Numbers that
 * JSON cannot carry (NaN, Infinity) are written as JSON would: `null`.
 */
export const canonicalJson = (value: unknown): string => {
  const ancestors: Array<unknown> = []
  const write = (u: unknown): string | undefined => {
    if (u === null) return "null"
    switch (typeof u) {
      case "string":
      case "boolean":
        return JSON.stringify(u)
      case "number":
        return Number.isFinite(u) ? JSON.stringify(u) : "null"
      case "bigint":
        return JSON.stringify(u.toString())
      case "undefined":
      case "function":
      case "symbol":
        return undefined
    }
    const withJson = u as { readonly toJSON?: unknown }
    if (typeof withJson.toJSON === "function") return write((withJson.toJSON as () => unknown).call(u))
    if (ancestors.includes(u)) return JSON.stringify("[Circular]")
    ancestors.push(u)
    let out: string
    if (Array.isArray(u)) {
      out = "["
      for (let i = 0; i < u.length; i++) {
        const item: unknown = u[i]
        out += (i === 0 ? "" : ",") + (write(item) ?? "null")
      }
      out += "]"
    } else {
      const record = u as Readonly<Record<string, unknown>>
      const keys = Object.keys(record)
      sortKeys(keys)
      out = "{"
      let first = true
      for (const k of keys) {
        const v = write(record[k])
        if (v === undefined) continue
        out += (first ? "" : ",") + quotedKey(k) + ":" + v
        first = false
      }
      out += "}"
    }
    ancestors.pop()
    return out
  }
  return write(value) ?? "null"
}

/**
 * The hex SHA-256 of the canonical JSON of `value`: the same in every process
 * and on every machine (unlike effect's `Hash`, which is per process). The
 * `v1` prefix lets a future change of the canonical form start a fresh key
 * space instead of colliding with the old one.
 */
export const hash = (value: unknown): string =>
  // One-shot `crypto.hash` is the same digest as `createHash().update().digest()`, without the stream object.
  cryptoHash("sha256", `v1\n${canonicalJson(value)}`, "hex")

/**
 * Only the `fields` of `request` (absent or `undefined` ones left out). A
 * request that is not a plain object, or that has none of the fields, is
 * taken whole: keying every such request to the same empty object would make
 * unrelated requests share one answer.
 */
export const pick = (request: unknown, fields: ReadonlyArray<string>): unknown => {
  if (!isPlainObject(request)) return request
  const picked: Record<string, unknown> = {}
  let found = 0
  for (const field of fields) {
    const v = request[field]
    if (v !== undefined) {
      picked[field] = v
      found++
    }
  }
  return found === 0 ? request : picked
}

/** The cache key of `request` under `fields`. */
export const keyOf = (request: unknown, fields: ReadonlyArray<string>): string => hash(pick(request, fields))
