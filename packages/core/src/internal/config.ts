import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { type InvalidConfigError, invalidConfig } from "../Errors.js"

/**
 * A `Duration.DurationInput` (`"30 seconds"`, `500` ms, a `Duration`) decoded
 * to whole milliseconds. Policies keep times as numbers: they are compared on
 * every call and stored in plain JSON state.
 */
export const Millis: Schema.Schema<number, unknown> = Schema.transformOrFail(Schema.Unknown, Schema.Number, {
  strict: true,
  decode: (input, _, ast) =>
    // Duration.decode clamps a negative number of milliseconds to zero; a typo must not pass silently.
    typeof input === "number" && !(input >= 0)
      ? ParseResult.fail(new ParseResult.Type(ast, input, "expected a finite, non-negative duration"))
      : Option.match(Duration.decodeUnknown(input), {
      onNone: () =>
        ParseResult.fail(new ParseResult.Type(ast, input, `expected a duration such as "30 seconds" or a number of milliseconds`)),
      onSome: (d) =>
        Duration.isFinite(d) && Duration.toMillis(d) >= 0
          ? ParseResult.succeed(Duration.toMillis(d))
          : ParseResult.fail(new ParseResult.Type(ast, input, "expected a finite, non-negative duration"))
    }),
  encode: (ms) => ParseResult.succeed(ms)
})

/** A strictly positive duration, for windows and intervals that divide time. */
export const PositiveMillis: Schema.Schema<number, unknown> = Millis.pipe(
  Schema.filter((ms) => ms > 0 || "expected a duration above zero")
)

export const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "expected an integer above zero" }))
export const NonNegativeInt = Schema.Int.pipe(
  Schema.nonNegative({ message: () => "expected an integer of zero or more" })
)

/** A rate in (0, 1]: a threshold of 0 would open the breaker on a success. */
export const Ratio = Schema.Number.pipe(
  Schema.filter((n) => (n > 0 && n <= 1) || "expected a rate above 0 and at most 1 (0.5 = 50 %)")
)

/**
 * Decodes user options with a schema; a failure names the bad field.
 */
export const decodeOptions = <A, I>(
  component: string,
  schema: Schema.Schema<A, I>,
  input: unknown
): Effect.Effect<A, InvalidConfigError> =>
  Effect.mapError(
    Schema.decodeUnknown(schema, { errors: "all", onExcessProperty: "error" })(input),
    (error) => invalidConfig(component, error)
  )
