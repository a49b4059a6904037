import * as Schema from "effect/Schema"

/** Any further fields of an object, kept as they came. */
export const Rest = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * A struct that keeps the fields it does not know. A relay must not drop
 * what a provider added after this schema was written.
 */
export const open = <Fields extends Schema.Struct.Fields>(fields: Fields) => Schema.Struct(fields, Rest)

/** An optional field that is either present with a value or absent (never `undefined`). */
export const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

/** An optional field that may also be `null` on the wire. */
export const optNull = <S extends Schema.Schema.All>(schema: S) =>
  Schema.optionalWith(Schema.NullOr(schema), { exact: true })

/** Any string except the given ones: the `type` of a variant this schema does not know yet. */
export const otherThan = (...known: ReadonlyArray<string>) => {
  const set = new Set(known)
  return Schema.String.pipe(
    Schema.filter((value) => !set.has(value), { description: `a type other than ${known.join(", ")}` })
  )
}

/** A JSON object: tool parameters, tool input. */
export const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })
