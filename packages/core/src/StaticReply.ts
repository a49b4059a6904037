/**
 * Friendly static replies, the last step of a fallback chain.
 *
 * Which reply fits depends on what the user asked: a greeting deserves a
 * greeting, an urgent request a pointer to a human. Intents are data (a
 * name, keywords or regular expressions, and the reply), checked in order;
 * the first that matches answers, and a default intent answers the rest.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { InvalidConfigError } from "./Errors.js"
import { decodeOptions } from "./internal/config.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Intent {
  readonly name: string
  /** Whole words or phrases, matched case-insensitively. */
  readonly keywords?: ReadonlyArray<string>
  /** Regular expression sources, matched case-insensitively. */
  readonly patterns?: ReadonlyArray<string>
  readonly reply: string
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Checked in order; the first match answers. */
  readonly intents: ReadonlyArray<Intent>
  /** The intent that answers when none matches; it needs no keywords. */
  readonly defaultIntent: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  readonly intent: string
  readonly text: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly reply: (userText: string) => Reply
}

/**
 * The defaults: greeting, urgent, general.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: Options = {
  intents: [
    {
      name: "greeting",
      patterns: ["^\\s*(hi|hello|hey|good (morning|afternoon|evening))\\b[\\s!.,]*$"],
      reply: "Hello! Our assistant is briefly unavailable. Please try again in a minute."
    },
    {
      name: "urgent",
      keywords: ["urgent", "emergency", "asap", "immediately", "outage", "down"],
      reply:
        "Our assistant is temporarily unavailable. For anything urgent, please contact our support team directly; they are ready to help."
    },
    {
      name: "general",
      reply: "Sorry, our assistant is temporarily unavailable. Please try again shortly."
    }
  ],
  defaultIntent: "general"
}

const IntentSchema = Schema.Struct({
  name: Schema.NonEmptyTrimmedString,
  keywords: Schema.optionalWith(Schema.Array(Schema.NonEmptyTrimmedString), { exact: true }),
  patterns: Schema.optionalWith(
    Schema.Array(Schema.String.pipe(Schema.filter((source) => compiles(source) || `not a valid regular expression`))),
    { exact: true }
  ),
  reply: Schema.NonEmptyTrimmedString
})

/**
 * {@link Options} as data (a config file's `staticReplies`): every intent
 * checked, each pattern compiled, and the default intent one of them; a bad
 * value names its path.
 *
 * @since 0.1.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  intents: Schema.NonEmptyArray(IntentSchema),
  defaultIntent: Schema.NonEmptyTrimmedString
}).pipe(
  Schema.filter((o) =>
    o.intents.some((i) => i.name === o.defaultIntent) || {
      path: ["defaultIntent"],
      message: `no intent is named "${o.defaultIntent}" (intents: ${o.intents.map((i) => i.name).join(", ")})`
    }
  )
)

function compiles(source: string): boolean {
  try {
    new RegExp(source, "i")
    return true
  } catch {
    return false
  }
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * Validates the intents once and compiles their matchers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = defaults): Effect.Effect<Service, InvalidConfigError> =>
  Effect.map(decodeOptions("StaticReply", OptionsSchema, options), (o) => {
    // The schema has checked that the default intent is one of them.
    const fallback = o.intents.find((i) => i.name === o.defaultIntent) ?? o.intents[0]
    const matchers = o.intents.map((intent) => ({
      intent,
      tests: [
        ...(intent.keywords ?? []).map((k) => new RegExp(`\\b${escape(k)}\\b`, "i")),
        ...(intent.patterns ?? []).map((p) => new RegExp(p, "i"))
      ]
    }))
    return {
      reply: (userText: string): Reply => {
        const found = matchers.find((m) => m.tests.some((t) => t.test(userText)))
        const intent = found?.intent ?? fallback
        return { intent: intent.name, text: intent.reply }
      }
    }
  })
