/**
 * No key ever leaks: a run with keys of six shapes provokes every error path
 * over real HTTP on 127.0.0.1, with upstream bodies quoting the key they
 * were sent, and greps everything the process writes or returns for each
 * key: errors (JSON, String, Cause.pretty), answers, logs at every level
 * (effect's own "Fiber terminated" debug logs included), status, metrics
 * (tags included) and spans (names, attributes, events, exits).
 */
import { describe, expect, it } from "@effect/vitest"
import { StateStore } from "@resilient-ai/core"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type * as Http from "node:http"
import type * as Chat from "../src/Chat.js"
import * as ResilientClient from "../src/ResilientClient.js"
import * as ResilientHttp from "../src/ResilientHttp.js"
import { json, upstream } from "./support/loopback.js"

const keys: ReadonlyArray<readonly [env: string, value: string, kind: "openai" | "anthropic"]> = [
  ["RELAY_KEY", "relay-SECRET123xyz", "openai"],
  ["OPENAI_KEY", "sk-proj-Q2w3e4r5t6y7u8i9o0pA", "openai"],
  ["ANTHROPIC_KEY", "sk-ant-api03-Zx9cv8bn7m6l5k4j3h", "anthropic"],
  ["GOOGLE_KEY", "AIzaSyB1c2d3e4f5g6h7i8j9k0lmnopqrstu", "openai"],
  ["HF_KEY", "hf_QwErTyUiOpAsDfGhJkLzXcVbNm", "openai"],
  ["AZURE_KEY", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "openai"]
]

/** A relay's own token, sent as a deployment header from the config file: as secret as a key. */
const relayToken = "relaytok-7Hq2Lm9Xc4Vb"

/** The key a request was sent with, as the upstream saw it. */
const keyOf = (req: Http.IncomingMessage): string =>
  String(req.headers["x-api-key"] ?? req.headers.authorization?.replace(/^Bearer /, "") ?? "")

const openAiChunk = (content: string) => ({
  id: "c",
  object: "chat.completion.chunk",
  created: 1,
  model: "m",
  choices: [{ index: 0, delta: { content }, finish_reason: null }]
})
const anthropicStart = [
  { type: "message_start", message: { id: "m", type: "message", role: "assistant", model: "m", content: [], stop_reason: null, usage: { input_tokens: 1, output_tokens: 0 } } },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }
]
const anthropicText = (text: string) => ({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text } })

const sse = (res: Http.ServerResponse, events: ReadonlyArray<readonly [event: string | undefined, data: string]>) => {
  res.writeHead(200, { "content-type": "text/event-stream" })
  for (const [event, data] of events) res.write(`${event === undefined ? "" : `event: ${event}\n`}data: ${data}\n\n`)
  res.end()
}

/** One way for an upstream to fail, quoting the key it was sent; `stream`: the request asked for a stream. */
type Mode = (res: Http.ServerResponse, key: string, stream: boolean, kind: "openai" | "anthropic") => void

const quoted = (key: string) => `Incorrect API key provided: '${key}' (key=${key}, token ${relayToken})`
const errorBody = (key: string, type: string) => ({ error: { message: quoted(key), type, code: `bad_key_${key}`, param: key } })

const modes: ReadonlyArray<readonly [string, Mode]> = [
  ["401", (res, key) => json(res, 401, errorBody(key, "invalid_request_error"))],
  ["403", (res, key) => json(res, 403, errorBody(key, "permission_error"))],
  ["429", (res, key) => json(res, 429, errorBody(key, "rate_limit_error"), { "retry-after": "0", "x-ratelimit-remaining-requests": "0" })],
  ["429 quota", (res, key) => json(res, 429, errorBody(key, "insufficient_quota"))],
  ["400", (res, key) => json(res, 400, errorBody(key, "invalid_request_error"))],
  ["422", (res, key) => json(res, 422, { detail: [{ msg: quoted(key), loc: ["body", key] }] })],
  ["500 text", (res, key) => {
    res.writeHead(500, { "content-type": "text/plain" })
    res.end(`upstream crashed: ${quoted(key)}`)
  }],
  ["503", (res, key) => json(res, 503, errorBody(key, "overloaded_error"))],
  ["529", (res, key) => json(res, 529, { type: "error", error: { type: "overloaded_error", message: quoted(key) } })],
  ["200 not JSON", (res, key, stream) => {
    res.writeHead(200, { "content-type": stream ? "text/event-stream" : "application/json" })
    res.end(stream ? `data: {not json ${key}}\n\n` : `{not json ${quoted(key)}`)
  }],
  ["200 wrong shape", (res, key, stream, kind) =>
    stream
      ? sse(res, [[undefined, JSON.stringify({ id: key, choices: quoted(key), type: key })]])
      : json(res, 200, kind === "openai" ? { id: key, choices: quoted(key) } : { id: key, type: "message", content: quoted(key) })],
  ["200 JSON to a stream request", (res, key) => json(res, 200, { error: { message: quoted(key) } })],
  ["stream error event before content", (res, key, stream, kind) => {
    if (!stream) return json(res, 500, errorBody(key, "server_error"))
    sse(res, kind === "openai"
      ? [[undefined, JSON.stringify({ error: { message: quoted(key), type: "server_error", code: key } })]]
      : [...anthropicStart.map((e) => [e.type, JSON.stringify(e)] as const),
        ["error", JSON.stringify({ type: "error", error: { type: "overloaded_error", message: quoted(key) } })]])
  }],
  ["stream error event after content", (res, key, stream, kind) => {
    if (!stream) return json(res, 502, errorBody(key, "server_error"))
    sse(res, kind === "openai"
      ? [[undefined, JSON.stringify(openAiChunk("Hello "))], [undefined, JSON.stringify({ error: { message: quoted(key) } })]]
      : [...anthropicStart.map((e) => [e.type, JSON.stringify(e)] as const),
        ["content_block_delta", JSON.stringify(anthropicText("Hello "))],
        ["error", JSON.stringify({ type: "error", error: { type: "api_error", message: quoted(key) } })]])
  }],
  ["stream cut after content", (res, key, stream, kind) => {
    if (!stream) return json(res, 504, errorBody(key, "timeout"))
    res.writeHead(200, { "content-type": "text/event-stream" })
    res.write(kind === "openai"
      ? `data: ${JSON.stringify(openAiChunk(`partial ${key.slice(0, 3)}`))}\n\n`
      : anthropicStart.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("") +
        `event: content_block_delta\ndata: ${JSON.stringify(anthropicText("partial"))}\n\n`)
    res.write(`data: {"garbage": "${key}`)
    setTimeout(() => res.socket?.destroy(), 20)
  }]
]

/** Everything the run wrote or returned, as text, by where it came from. */
class Seen {
  readonly texts: Array<readonly [source: string, text: string]> = []
  add(source: string, text: string) {
    this.texts.push([source, text])
  }
  hits(secret: string): ReadonlyArray<string> {
    return this.texts.flatMap(([source, text]) => {
      const at = text.indexOf(secret)
      return at < 0 ? [] : [`${source}: …${text.slice(Math.max(0, at - 120), at + secret.length + 40)}…`]
    })
  }
  count(source: string): number {
    return this.texts.filter(([s]) => s === source).length
  }
}

const show = (u: unknown): string => {
  try {
    return typeof u === "string" ? u : `${String(u)} ${JSON.stringify(u, (_, v) => (typeof v === "bigint" ? String(v) : v))}`
  } catch {
    return String(u)
  }
}

const exitText = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isFailure(exit)
    ? [Cause.pretty(exit.cause), show(exit.cause), ...Cause.failures(exit.cause).pipe((c) => [...c].map((e) => `${String(e)} ${show(e)}`))].join("\n")
    : show(exit.value)

/** A logger at every level: message, cause, annotations and spans of each record. */
const capturingLogger = (seen: Seen) =>
  Logger.make(({ annotations, cause, logLevel, message, spans }) => {
    seen.add(`log ${logLevel.label}`, [show(message), Cause.isEmpty(cause) ? "" : Cause.pretty(cause), show(annotations), show(spans)].join(" "))
  })

/** A tracer that keeps each span's name, attributes, events, links and exit. */
const capturingTracer = (seen: Seen) =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const attributes = new Map<string, unknown>()
      let status: Tracer.SpanStatus = { _tag: "Started", startTime }
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId: Math.random().toString(16).slice(2),
        traceId: "trace",
        parent,
        context,
        get status() {
          return status
        },
        attributes,
        links,
        sampled: true,
        kind,
        end: (endTime, exit) => {
          status = { _tag: "Ended", startTime, endTime, exit }
          // What a tracer exports of an ended span: its attributes, and for a failure the exception (message, stack).
          const failure = Exit.isFailure(exit) ? [Cause.pretty(exit.cause), ...[...Cause.failures(exit.cause)].map(String)] : []
          seen.add(`span ${name}`, [name, show([...attributes]), ...failure].join(" "))
        },
        attribute: (key, value) => void attributes.set(key, value),
        event: (event, _, eventAttributes) => seen.add(`span event ${name}`, `${event} ${show(eventAttributes)}`),
        addLinks: (more) => seen.add(`span link ${name}`, show(more))
      }
      return span
    },
    context: (f) => f()
  })

const request: Chat.ChatRequest = { model: "m", messages: [{ role: "user", content: "hi" }] }

const configOf = (url: string) => ({
  deployments: keys.map(([env, , kind], i) => ({
    name: `d${i}`,
    provider: kind,
    baseUrl: url,
    model: "m",
    keys: [{ name: `k${i}`, env }],
    ...(i === 0 ? { headers: { "x-relay-token": relayToken } } : {}),
    policy: { retry: { maxRetries: 1, baseDelay: "1 millis", jitter: "none" } }
  })),
  cascade: keys.map((_, i) => `d${i}`),
  transport: { firstByteTimeout: "5 seconds", firstTokenTimeout: "5 seconds", stallTimeout: "1 second" }
})

/** Every call the client offers, on one fresh client, against one failing mode. */
const provoke = (seen: Seen, mode: string) =>
  Effect.gen(function*() {
    const client = yield* ResilientClient.ResilientClient
    const record = (what: string, exit: Exit.Exit<unknown, unknown>) => seen.add(`${mode} ${what}`, exitText(exit))
    // Forked and awaited: effect logs a fiber that ends in failure ("Fiber terminated …", at debug level).
    record("chat", yield* Fiber.await(yield* Effect.fork(client.chat(request))))
    record("chatOrStatic", yield* Effect.exit(client.chatOrStatic(request)))
    const collected = (s: Stream.Stream<Chat.ChatChunk, unknown>) => Effect.exit(Stream.runCollect(s))
    record("stream", yield* Fiber.await(yield* Effect.fork(collected(client.stream(request)))))
    record("streamOrStatic", yield* collected(client.streamOrStatic(request)))
    for (const d of client.deployments) {
      seen.add(`${mode} status ${d.config.name}`, show(yield* d.policy.status))
      if (d.keyPool !== undefined) seen.add(`${mode} key pool ${d.config.name}`, show(yield* d.keyPool.status))
    }
  })

describe("No key ever leaks (issue 10)", () => {
  it.live("six shapes of keys, every error path over real HTTP: zero hits in errors, answers, logs, status, metrics and spans", () => {
    const seen = new Seen()
    return Effect.gen(function*() {
      let mode: Mode = () => {}
      const sent = new Set<string>()
      const { url } = yield* upstream((req, body, res) => {
        const key = keyOf(req)
        sent.add(key)
        const streamed = body.includes("\"stream\":true")
        mode(res, key, streamed, req.url?.includes("/v1/messages") === true ? "anthropic" : "openai")
      })
      const env = ConfigProvider.fromMap(new Map(keys.map(([name, value]) => [name, value])))
      const clientLayer = ResilientHttp.layerFromJson(JSON.stringify(configOf(url)), { transport: { proxyFromEnvironment: false } }).pipe(
        Layer.provide(StateStore.layerMemory)
      )
      for (const [name, behaviour] of modes) {
        mode = behaviour
        yield* provoke(seen, name).pipe(Effect.provide(clientLayer), Effect.withConfigProvider(env))
      }
      const metrics = yield* Metric.snapshot
      for (const pair of metrics) {
        seen.add(
          `metric ${pair.metricKey.name}`,
          [pair.metricKey.name, pair.metricKey.description ?? "", ...pair.metricKey.tags.map((t) => `${t.key}=${t.value}`), show(pair.metricState)].join(" ")
        )
      }
      // The capture saw what it is meant to see: the grep below is not vacuous.
      expect(seen.texts.some(([s, t]) => s.startsWith("log DEBUG") && t.includes("Fiber terminated"))).toBe(true)
      expect(seen.texts.some(([s]) => s.startsWith("span "))).toBe(true)
      expect(seen.texts.some(([s]) => s.startsWith("metric resilient_ai_"))).toBe(true)
      expect(seen.texts.some(([, t]) => t.includes("Incorrect API key provided"))).toBe(true)
      // Every key was sent, and quoted back.
      expect([...sent].sort()).toEqual(keys.map(([, value]) => value).sort())
      for (const [env, value] of keys) {
        expect(seen.hits(value), `${env} leaked`).toEqual([])
      }
      expect(seen.hits(relayToken), "the relay's header leaked").toEqual([])
    }).pipe(
      Effect.scoped,
      Effect.withTracer(capturingTracer(seen)),
      Effect.provide(Logger.replace(Logger.defaultLogger, capturingLogger(seen))),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
  }, 60_000)
})
