import { Errors } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import type * as Chat from "../Chat.js"

/** Fields of an object, as the wire schemas keep them. */
export type Fields = { readonly [key: string]: unknown }

/** A translation that cannot be made: the request asks for something the target cannot do. */
export const unsupported = (provider: string, detail: string): Effect.Effect<never, Errors.BadRequestError> =>
  Effect.fail(new Errors.BadRequestError({ provider, detail }))

/** The fields of `obj` other than `known`, or `undefined` when there are none. */
export const unknownFields = (obj: Fields, known: ReadonlyArray<string>): Fields | undefined => {
  let out: Record<string, unknown> | undefined
  for (const [key, value] of Object.entries(obj)) {
    if (!known.includes(key)) {
      out ??= {}
      out[key] = value
    }
  }
  return out
}

/**
 * `base` with the fields of `extra` that `base` does not set: the mapped
 * fields win, the verbatim ones follow them.
 */
export const extend = <A extends object>(base: A, extra: Fields | undefined): A & Fields => {
  const rest: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(extra ?? {})) {
    if (!(key in base)) rest[key] = value
  }
  return { ...base, ...rest }
}

/** `{ extra: { openai } }` when there are OpenAI-only fields, else nothing. */
export const openAiExtra = (fields: Fields | undefined): { readonly extra?: Chat.Extra } =>
  fields === undefined ? {} : { extra: { openai: fields } }

/** `{ extra: { anthropic } }` when there are Anthropic-only fields, else nothing. */
export const anthropicExtra = (fields: Fields | undefined): { readonly extra?: Chat.Extra } =>
  fields === undefined ? {} : { extra: { anthropic: fields } }

/** Epoch seconds from the `Clock` (OpenAI's `created`). */
export const nowSeconds: Effect.Effect<number> = Effect.clockWith((clock) =>
  Effect.map(clock.currentTimeMillis, (millis) => Math.floor(millis / 1000))
)

/** `data:<media type>;base64,<data>` → its parts, or `undefined` when `url` is not such a URL. */
export const parseDataUrl = (
  url: string
): { readonly mediaType: string; readonly data: string } | "not-base64" | undefined => {
  if (!url.startsWith("data:")) return undefined
  const comma = url.indexOf(",")
  if (comma < 0) return "not-base64"
  const [mediaType = "", ...params] = url.slice("data:".length, comma).split(";")
  if (mediaType === "" || !params.includes("base64")) return "not-base64"
  return { mediaType, data: url.slice(comma + 1) }
}
