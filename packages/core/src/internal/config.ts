import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { type InvalidConfigError, invalidConfig } from "../Errors.js"

/**
 * A `Duration.DurationInput` in milliseconds, or why not; an infinite
 * duration is `Infinity` when `infinite` allows it.
 */
const millisOf = (input: unknown, infinite: boolean): Either.Either<number, string> => {
  // Duration.decode clamps a negative duration to zero ("-5 seconds" would be 0): a typo must not pass silently.
  if ((typeof input === "number" && !(input >= 0)) || (typeof input === "string" && input.trim().startsWith("-"))) {
    return Either.left(infinite ? "expected a non-negative duration" : "expected a finite, non-negative duration")
  }
  const decoded = Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) {
    return Either.left(
      infinite
        ? `expected a duration such as "30 seconds", a number of milliseconds, or Duration.infinity for no limit`
        : `expected a duration such as "30 seconds" or a number of milliseconds`
    )
  }
  if (!Duration.isFinite(decoded.value)) {
    return infinite ? Either.right(Number.POSITIVE_INFINITY) : Either.left("expected a finite, non-negative duration")
  }
  const ms = Duration.toMillis(decoded.value)
  return ms >= 0 ? Either.right(ms) : Either.left("expected a finite, non-negative duration")
}

const millisSchema = (infinite: boolean): Schema.Schema<number, unknown> =>
  Schema.transformOrFail(Schema.Unknown, Schema.Number, {
    strict: true,
    decode: (input, _, ast) =>
      Either.match(millisOf(input, infinite), {
        onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, input, message)),
        onRight: ParseResult.succeed
      }),
    encode: (ms) => ParseResult.succeed(ms)
  })

/**
 * A `Duration.DurationInput` (`"30 seconds"`, `500` ms, a `Duration`) decoded
 * to whole milliseconds. Policies keep times as numbers: they are compared on
 * every call and stored in plain JSON state.
 */
export const Millis: Schema.Schema<number, unknown> = millisSchema(false)

/**
 * A limit that may be off: a {@link Millis}, or `Duration.infinity` (or
 * `Infinity` milliseconds, the same to `Duration.decode`) for no limit,
 * decoded to `Infinity`. A reader keeps it to comparisons and `Math.min`,
 * where `Infinity` is a bound never reached: never `0 · limit` (NaN), and
 * never a sleep of it.
 */
export const LimitMillis: Schema.Schema<number, unknown> = millisSchema(true)

/** A strictly positive duration, for windows and intervals that divide time. */
export const PositiveMillis: Schema.Schema<number, unknown> = Millis.pipe(
  Schema.filter((ms) => ms > 0 || "expected a duration above zero")
)

/** A strictly positive limit that may be off (`Duration.infinity`): a lifetime, say. */
export const PositiveLimitMillis: Schema.Schema<number, unknown> = LimitMillis.pipe(
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
