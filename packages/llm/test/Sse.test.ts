import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Stream from "effect/Stream"
import * as Sse from "../src/Sse.js"

const utf8 = new TextEncoder()

const collect = <E>(stream: Stream.Stream<Uint8Array | string, E>, options?: Sse.DecodeOptions) =>
  Effect.runSync(Effect.either(Stream.runCollect(Sse.decode(options)(stream)))).pipe(
    Either.map((events) => Chunk.toArray(events))
  )

const decodeChunks = (chunks: ReadonlyArray<Uint8Array | string>, options?: Sse.DecodeOptions) => {
  const result = collect(Stream.fromIterable(chunks), options)
  return Either.getOrThrow(result)
}

/** Splits `bytes` at the given offsets. */
const splitAt = (bytes: Uint8Array, offsets: ReadonlyArray<number>): Array<Uint8Array> => {
  const cuts = [...new Set(offsets)].filter((o) => o > 0 && o < bytes.length).sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let from = 0
  for (const cut of cuts) {
    out.push(bytes.slice(from, cut))
    from = cut
  }
  out.push(bytes.slice(from))
  return out
}

// A stream with every feature the rules cover: CRLF, lone CR, LF, comments, ids,
// event names, multi-line data, empty data, a field without a colon, a value
// without the space, multi-byte characters (2, 3 and 4 bytes), retry and unknown fields.
const known = [
  "\uFEFF: a comment first\r\n",
  "retry: 10000\r\n",
  "event: message_start\r\n",
  "data: {\"type\":\"message_start\",\"note\":\"héllo € 😀\"}\r\n",
  "\r\n",
  "id: 42\r",
  "data: line one\r",
  "data:line two\r",
  "\r",
  "data: after id\n",
  "unknown: field\n",
  "\n",
  "data\n",
  "\n",
  ": keep-alive\n",
  "event: content_block_delta\n",
  "data: {\"text\":\"日本語 🎉 done\"}\n",
  "\n",
  "id\n",
  "data:  two leading spaces\n",
  "\n",
  "data: [DONE]\n",
  "\n"
].join("")

const knownEvents: ReadonlyArray<Sse.Event> = [
  { event: "message_start", data: "{\"type\":\"message_start\",\"note\":\"héllo € 😀\"}" },
  { data: "line one\nline two", id: "42" },
  { data: "after id", id: "42" },
  { data: "", id: "42" },
  { event: "content_block_delta", data: "{\"text\":\"日本語 🎉 done\"}", id: "42" },
  { data: " two leading spaces" },
  { data: "[DONE]" }
]

const knownBytes = utf8.encode(known)

describe("Sse.decode: the WHATWG rules", () => {
  it("the known stream decodes to the expected events", () => {
    expect(decodeChunks([knownBytes])).toEqual(knownEvents)
  })

  it("joins data lines with \\n and dispatches on the blank line (spec example)", () => {
    expect(decodeChunks(["data: YHOO\ndata: +2\ndata: 10\n\n"])).toEqual([{ data: "YHOO\n+2\n10" }])
  })

  it("keeps the last event id until another id line changes it; an empty id clears it (spec example)", () => {
    const text = ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    expect(decodeChunks([text])).toEqual([
      { data: "first event", id: "1" },
      { data: "second event" },
      { data: " third event" }
    ])
    expect(decodeChunks(["id: 3\ndata: a\n\ndata: b\n\n"])).toEqual([{ data: "a", id: "3" }, { data: "b", id: "3" }])
    expect(decodeChunks(["id: 3\ndata: a\n\nid: x\u0000y\ndata: b\n\n"])).toEqual([
      { data: "a", id: "3" },
      { data: "b", id: "3" }
    ])
  })

  it("`data` with nothing after it is an empty-data event; an event without data lines is not dispatched", () => {
    expect(decodeChunks(["data\n\ndata\ndata\n\n"])).toEqual([{ data: "" }, { data: "\n" }])
    expect(decodeChunks(["event: ping\n\n", "id: 1\n\n"])).toEqual([])
  })

  it("the event name does not leak into the next event", () => {
    expect(decodeChunks(["event: a\ndata: 1\n\ndata: 2\n\n"])).toEqual([{ event: "a", data: "1" }, { data: "2" }])
  })

  it("comments, retry and unknown fields are ignored, and never pause the stream", () => {
    expect(decodeChunks([": hi\nretry: 3000\nfoo: bar\ndata: x\n\n: OPENROUTER PROCESSING\n\n"])).toEqual([{ data: "x" }])
  })

  it("lines end with \\n, \\r\\n or a lone \\r, mixed in one stream", () => {
    expect(decodeChunks(["data: a\r\ndata: b\n\ndata: c\r\rdata: d\n\r\n"])).toEqual([
      { data: "a\nb" },
      { data: "c" },
      { data: "d" }
    ])
  })

  it("a \\r\\n split across two chunks is one line ending (not a blank line)", () => {
    expect(decodeChunks(["data: a\r", "\ndata: b\r", "\n\r", "\n"])).toEqual([{ data: "a\nb" }])
  })

  it("drops exactly one leading byte-order mark, from bytes or from text", () => {
    expect(decodeChunks([new Uint8Array([0xef, 0xbb]), new Uint8Array([0xbf]), "data: a\n\n"])).toEqual([{ data: "a" }])
    expect(decodeChunks(["\uFEFFdata: a\n\n"])).toEqual([{ data: "a" }])
    // A second BOM is part of the first field's name, which is then unknown.
    expect(decodeChunks(["\uFEFF\uFEFFdata: a\n\ndata: b\n\n"])).toEqual([{ data: "b" }])
  })

  it("invalid UTF-8 becomes U+FFFD instead of failing", () => {
    expect(decodeChunks([new Uint8Array([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xff, 0x0a, 0x0a])])).toEqual([
      { data: "\uFFFD" }
    ])
  })
})

describe("Sse.decode: the end of the stream", () => {
  it("by default an event without its blank line is discarded (the spec's rule)", () => {
    expect(decodeChunks(["data: a\n\ndata: b\n"])).toEqual([{ data: "a" }])
  })

  it("with endOfStream: \"dispatch\" a pending event with complete lines is dispatched", () => {
    expect(decodeChunks(["data: a\n\ndata: b\ndata: c\n"], { endOfStream: "dispatch" })).toEqual([
      { data: "a" },
      { data: "b\nc" }
    ])
  })

  it("a last line without its line ending is dropped in both modes (it may be cut mid-JSON)", () => {
    expect(decodeChunks(["data: a\n\ndata: {\"choi"], { endOfStream: "dispatch" })).toEqual([{ data: "a" }])
    expect(decodeChunks(["data: x\ndata: {\"choi"], { endOfStream: "dispatch" })).toEqual([{ data: "x" }])
    expect(decodeChunks(["data: [DONE]"])).toEqual([])
  })

  it("an upstream failure passes through, after the events completed before it", () => {
    const stream = Stream.make("data: a\n\ndata: b").pipe(Stream.concat(Stream.fail("socket closed" as const)))
    const events: Array<Sse.Event> = []
    const result = Effect.runSync(Effect.either(Stream.runForEach(Sse.decode()(stream), (e) => Effect.sync(() => events.push(e)))))
    expect(events).toEqual([{ data: "a" }])
    expect(result).toEqual(Either.left("socket closed"))
  })

  it("every run of the decoded stream starts fresh", () => {
    const stream = Sse.decode()(Stream.make("id: 1\ndata: a\n\ndata: b"))
    const once = Effect.runSync(Stream.runCollect(stream))
    const twice = Effect.runSync(Stream.runCollect(stream))
    expect(Chunk.toArray(twice)).toEqual(Chunk.toArray(once))
    expect(Chunk.toArray(once)).toEqual([{ data: "a", id: "1" }])
  })
})

describe("Sse.decode: chunk boundaries anywhere", () => {
  it("a split at every byte position gives the same events (incl. inside multi-byte characters and CRLF)", () => {
    for (let i = 1; i < knownBytes.length; i++) {
      expect({ at: i, events: decodeChunks(splitAt(knownBytes, [i])) }).toEqual({ at: i, events: knownEvents })
    }
  })

  it("one byte per chunk gives the same events", () => {
    const bytes = Array.from(knownBytes, (b) => new Uint8Array([b]))
    expect(decodeChunks(bytes)).toEqual(knownEvents)
  })

  it("every pair of split positions gives the same events (the pure decoder)", () => {
    const text = new TextDecoder("utf-8", { ignoreBOM: true })
    const run = (chunks: ReadonlyArray<Uint8Array>) => {
      const decoder = Sse.makeDecoder()
      const out: Array<Sse.Event> = []
      for (const c of chunks) out.push(...decoder.feed(text.decode(c, { stream: true })))
      out.push(...decoder.feed(text.decode()), ...decoder.end())
      return out
    }
    for (let i = 1; i < knownBytes.length; i++) {
      for (let j = i + 1; j < knownBytes.length; j++) {
        const events = run(splitAt(knownBytes, [i, j]))
        if (JSON.stringify(events) !== JSON.stringify(knownEvents)) {
          expect({ at: [i, j], events }).toEqual({ at: [i, j], events: knownEvents })
        }
      }
    }
  })

  it("property: any set of split positions, as bytes or as text, gives the same events", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.integer({ min: 1, max: knownBytes.length - 1 }), { maxLength: 40 }),
        FastCheck.boolean(),
        (offsets, asText) => {
          const chunks = splitAt(knownBytes, offsets)
          const pieces = asText ? splitText(known, offsets) : chunks
          expect(decodeChunks(pieces)).toEqual(knownEvents)
        }
      ),
      { numRuns: 300 }
    )
  })

  it("property: encode then decode returns the events (line endings in data normalised to \\n)", () => {
    const noBreaks = FastCheck.string({ unit: "grapheme" }).map((s) => s.replace(/[\r\n\u0000]/g, ""))
    const event = FastCheck.record(
      {
        event: noBreaks.filter((s) => s !== ""),
        data: FastCheck.string({ unit: "grapheme" }),
        id: noBreaks.filter((s) => s !== "")
      },
      { requiredKeys: ["data"] }
    )
    FastCheck.assert(
      FastCheck.property(FastCheck.array(event, { maxLength: 8 }), FastCheck.integer({ min: 1, max: 7 }), (events, cut) => {
        const text = events.map(Sse.encode).join("")
        const bytes = utf8.encode(text)
        const decoded = decodeChunks(splitAt(bytes, [cut, cut * 5, cut * 11]))
        let lastId: string | undefined
        const expected = events.map((e) => {
          if (e.id !== undefined) lastId = e.id
          return {
            ...(e.event === undefined ? {} : { event: e.event }),
            data: e.data.split(/\r\n|\r|\n/).join("\n"),
            ...(lastId === undefined ? {} : { id: lastId })
          }
        })
        expect(decoded).toEqual(expected)
      }),
      { numRuns: 300 }
    )
  })
})

/** Splits a string at code-unit offsets, never inside a surrogate pair. */
const splitText = (text: string, offsets: ReadonlyArray<number>): Array<string> => {
  const cuts = [...new Set(offsets)]
    .filter((o) => o > 0 && o < text.length && !(/[\uDC00-\uDFFF]/.test(text[o] ?? "")))
    .sort((a, b) => a - b)
  const out: Array<string> = []
  let from = 0
  for (const cut of cuts) {
    out.push(text.slice(from, cut))
    from = cut
  }
  out.push(text.slice(from))
  return out
}

describe("Sse.decodeAll and Sse.encode", () => {
  it("encode writes event, id, one data line per line, and a blank line", () => {
    expect(Sse.encode({ event: "error", id: "7", data: "a\nb" })).toBe("event: error\nid: 7\ndata: a\ndata: b\n\n")
    expect(Sse.encode({ data: "" })).toBe("data: \n\n")
    expect(Sse.decodeAll("data: a\n\n")).toEqual([{ data: "a" }])
  })
})
