/**
 * A Server-Sent Events decoder for provider streams, following the WHATWG
 * "event stream interpretation" rules
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
 *
 * - bytes are UTF-8 (invalid sequences become U+FFFD); a chunk boundary may
 *   fall anywhere, inside a multi-byte character or between `\r` and `\n`;
 * - one leading byte-order mark is dropped;
 * - lines end with `\r\n`, `\r` or `\n`;
 * - a line starting with `:` is a comment (OpenRouter's `: OPENROUTER
 *   PROCESSING` keep-alives) and is ignored;
 * - `field:value` with one leading space of the value removed; a line
 *   without a colon is a field with an empty value;
 * - `data` lines are joined with `\n`; `event` names the event (absent means
 *   the default type, "message"); `id` sets the last event id, which every
 *   following event carries until another `id` changes it (an `id`
 *   containing NUL is ignored); `retry` and unknown fields are ignored
 *   (reconnecting is not this decoder's business);
 * - a blank line dispatches the event; an event without any `data` line is
 *   not dispatched (`data:` with nothing after it is an event with empty data).
 *
 * **End of stream.** The spec discards an event that the stream ends before
 * its blank line, and so does {@link decode} by default
 * (`endOfStream: "discard"`): the stream guard then sees no terminator
 * (`data: [DONE]`, `message_stop`) and reports a cut stream, which is what
 * happened. `endOfStream: "dispatch"` dispatches such a pending event when
 * its lines are complete; a last line without its line ending is always
 * dropped, because it may be cut in the middle (`data: {"choi`).
 *
 * **Why not `@effect/experimental/Sse`.** Its parser (adapted from
 * eventsource-parser 1.x), checked on 0.61.1: (1) a `\r\n` split across two
 * chunks is read as two line endings, so a `\r` at a chunk's end followed
 * by `\n` dispatches the event early and splits one event in two; (2) a
 * `\r\n` line followed later in the same chunk by a `\n\n` swallows the blank
 * line, so events are lost (`"data: a\r\ndata: b\n\ndata: c\n\n"` gives no
 * event at all); (3) the byte-order-mark check compares the three UTF-8 BOM
 * bytes against decoded characters, so a BOM in a string input is never
 * removed and the first field is lost; (4) `makeChannel` turns a `retry:`
 * field into a sleep-and-resubscribe of the channel, which stalls an LLM
 * stream; (5) it takes strings only. It also drops the last event id after
 * each event, where the spec keeps it. So this module has its own decoder.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Stream from "effect/Stream"

/**
 * One dispatched event.
 *
 * @since 0.1.0
 * @category models
 */
export interface Event {
  /** The `event` field; absent when none was given (the spec's default type "message"). */
  readonly event?: string
  readonly data: string
  /** The last event id seen so far in the stream, if any and not empty. */
  readonly id?: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DecodeOptions {
  /**
   * What to do with an event whose blank line never came before the stream
   * ended: `"discard"` it (the spec's rule, the default), or `"dispatch"` it
   * if it has data (a last line without its line ending is dropped either way).
   */
  readonly endOfStream?: "discard" | "dispatch"
}

/**
 * A push decoder over text: feed decoded text in any pieces, then `end`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Decoder {
  /** Decodes the next piece of text; returns the events it completed. */
  readonly feed: (text: string) => ReadonlyArray<Event>
  /** The stream ended: returns a pending event per `endOfStream`, and resets. */
  readonly end: () => ReadonlyArray<Event>
}

/**
 * A fresh text decoder. Stateful: use one per stream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeDecoder = (options: DecodeOptions = {}): Decoder => {
  const dispatchAtEnd = options.endOfStream === "dispatch"
  let started = false
  let pending = ""
  let skipLineFeed = false
  let data: Array<string> = []
  let eventType = ""
  let lastEventId = ""

  const dispatch = (out: Array<Event>): void => {
    if (data.length > 0) {
      out.push({
        ...(eventType === "" ? {} : { event: eventType }),
        data: data.join("\n"),
        ...(lastEventId === "" ? {} : { id: lastEventId })
      })
    }
    data = []
    eventType = ""
  }

  const line = (text: string, out: Array<Event>): void => {
    if (text === "") return dispatch(out)
    const colon = text.indexOf(":")
    if (colon === 0) return // comment
    const name = colon < 0 ? text : text.slice(0, colon)
    let value = colon < 0 ? "" : text.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    switch (name) {
      case "data":
        data.push(value)
        return
      case "event":
        eventType = value
        return
      case "id":
        if (!value.includes("\u0000")) lastEventId = value
        return
      default:
        return // "retry" and unknown fields
    }
  }

  const feed = (text: string): ReadonlyArray<Event> => {
    const out: Array<Event> = []
    if (text.length === 0) return out
    let i = 0
    if (!started) {
      started = true
      if (text.charCodeAt(0) === 0xfeff) i = 1
    }
    if (skipLineFeed && i < text.length) {
      if (text.charCodeAt(i) === 10) i++
      skipLineFeed = false
    }
    const length = text.length
    while (i < length) {
      let j = i
      while (j < length) {
        const c = text.charCodeAt(j)
        if (c === 10 || c === 13) break
        j++
      }
      if (j === length) break
      const content = pending === "" ? text.slice(i, j) : pending + text.slice(i, j)
      pending = ""
      line(content, out)
      if (text.charCodeAt(j) === 13) {
        if (j + 1 < length) {
          if (text.charCodeAt(j + 1) === 10) j++
        } else {
          skipLineFeed = true
        }
      }
      i = j + 1
    }
    if (i < length) pending += text.slice(i)
    return out
  }

  const end = (): ReadonlyArray<Event> => {
    const out: Array<Event> = []
    if (dispatchAtEnd) dispatch(out)
    started = false
    pending = ""
    skipLineFeed = false
    data = []
    eventType = ""
    lastEventId = ""
    return out
  }

  return { feed, end }
}

/**
 * A push decoder over bytes (or text): feed the pieces of a stream as they
 * come, then `end`. Bytes are decoded as UTF-8 across piece boundaries; a
 * string piece is taken as already decoded text (bytes of an unfinished
 * character before it become U+FFFD). Stateful: use one per stream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeByteDecoder = (options: DecodeOptions = {}): {
  /** Decodes the next piece; returns the events it completed. */
  readonly feed: (piece: Uint8Array | string) => ReadonlyArray<Event>
  /** The stream ended: the events its last bytes complete, then a pending event per `endOfStream`; resets. */
  readonly end: () => ReadonlyArray<Event>
} => {
  const decoder = makeDecoder(options)
  // The BOM is the text decoder's business (exactly one, at the start).
  const utf8 = new TextDecoder("utf-8", { ignoreBOM: true })
  return {
    feed: (piece) => decoder.feed(typeof piece === "string" ? utf8.decode() + piece : utf8.decode(piece, { stream: true })),
    end: () => [...decoder.feed(utf8.decode()), ...decoder.end()]
  }
}

/**
 * Decodes a stream of bytes (or text) into events, as {@link makeByteDecoder}
 * does. Upstream failures pass through untouched; state is fresh for every
 * run of the stream.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode =
  (options: DecodeOptions = {}) =>
  <E, R>(self: Stream.Stream<Uint8Array | string, E, R>): Stream.Stream<Event, E, R> =>
    Stream.suspend(() => {
      const decoder = makeByteDecoder(options)
      return self.pipe(
        Stream.mapChunks((chunk) => {
          const out: Array<Event> = []
          for (const piece of chunk) for (const event of decoder.feed(piece)) out.push(event)
          return Chunk.unsafeFromArray(out)
        }),
        Stream.concat(Stream.suspend(() => Stream.fromIterable(decoder.end())))
      )
    })

/**
 * Decodes a whole text at once (tests, recorded streams).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeAll = (text: string, options: DecodeOptions = {}): ReadonlyArray<Event> => {
  const decoder = makeDecoder(options)
  return [...decoder.feed(text), ...decoder.end()]
}

/**
 * Encodes an event as SSE text (`event:`, `id:`, one `data:` line per line
 * of data, a blank line). Used by simulated providers and the gateway.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (event: Event): string => {
  let out = ""
  if (event.event !== undefined) out += `event: ${event.event}\n`
  if (event.id !== undefined) out += `id: ${event.id}\n`
  for (const line of event.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`
  return `${out}\n`
}
