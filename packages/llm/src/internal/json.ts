import * as Option from "effect/Option"

/** `JSON.parse` as an `Option`: `None` for a text that is not JSON. */
export const parseJson: (text: string) => Option.Option<unknown> = Option.liftThrowable((text: string): unknown =>
  JSON.parse(text)
)

let lastData: string | undefined
let lastParsed: Option.Option<unknown> = Option.none()

/**
 * {@link parseJson} for a stream event's data, the last one remembered: the
 * stream guard's classification parses an event's data, and the provider's
 * reader reads the same data right after it, in one synchronous step, so
 * the second parse is the first's result. Both only read the parsed value.
 */
export const parseEventData = (data: string): Option.Option<unknown> => {
  if (data !== lastData) {
    lastParsed = parseJson(data)
    lastData = data
  }
  return lastParsed
}
