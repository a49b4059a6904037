/**
 * What makes a chat request one no provider can serve, found before any
 * attempt is spent on it (an attempt would cost a retry budget slot, a
 * limiter grant and a round trip, to get a 400 back).
 *
 * @internal
 */
import type * as Chat from "../Chat.js"

const imageDetails: ReadonlySet<string> = new Set(["auto", "low", "high"])

/** The first problem of `request`, as a path and what was expected; `undefined` when it can be sent. */
export const firstProblem = (
  request: Chat.ChatRequest,
  limits: { readonly maxStopSequences: number | undefined }
): string | undefined => {
  if (request.messages.length === 0) return "messages: expected at least one message"
  const { maxTokens, stop, temperature } = request
  if (temperature !== undefined && !(temperature >= 0 && temperature <= 2)) {
    return `temperature: expected a number from 0 to 2, got ${temperature}`
  }
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 1)) {
    return `maxTokens: expected a whole number of 1 or more, got ${maxTokens}`
  }
  if (stop !== undefined && limits.maxStopSequences !== undefined && stop.length > limits.maxStopSequences) {
    return `stop: expected at most ${limits.maxStopSequences} stop sequences, got ${stop.length}`
  }
  for (const [i, message] of request.messages.entries()) {
    const content = message.content
    if (content === undefined || typeof content === "string") continue
    for (const [j, part] of content.entries()) {
      if (part._tag === "Image" && part.detail !== undefined && !imageDetails.has(part.detail)) {
        return `messages.${i}.content.${j}.detail: expected "auto", "low" or "high", got ${JSON.stringify(part.detail)}`
      }
    }
  }
  return undefined
}
