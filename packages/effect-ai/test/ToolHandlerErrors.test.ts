/**
 * A tool handler's own error is the program's: it reaches the program as
 * itself, through `generateText` and `streamText` alike, and says nothing
 * about the provider (no breaker failure, no retry, no fallback, no cut).
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Tool from "@effect/ai/Tool"
import * as Toolkit from "@effect/ai/Toolkit"
import { describe, expect, it } from "@effect/vitest"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { StateStore } from "@resilient-ai/core"
import { ClientConfig } from "@resilient-ai/llm"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as ResilientLanguageModel from "../src/ResilientLanguageModel.js"
import { ok, status, withModel } from "./support/layer.js"

class WeatherUnknown extends Schema.TaggedError<WeatherUnknown>()("WeatherUnknown", { city: Schema.String }) {}
const GetWeather = Tool.make("GetWeather", { parameters: { city: Schema.String }, success: Schema.String, failure: WeatherUnknown })
const tools = Toolkit.make(GetWeather)
const failingHandler = tools.toLayer({ GetWeather: ({ city }) => Effect.fail(new WeatherUnknown({ city })) })

const message = (content: ReadonlyArray<unknown>, stop: string | null) => ({
  id: "msg_1",
  type: "message",
  role: "assistant",
  model: "claude-test",
  content,
  stop_reason: stop,
  stop_sequence: null,
  usage: { input_tokens: 5, output_tokens: 2 }
})
const toolUse = { type: "tool_use", id: "toolu_1", name: "GetWeather", input: { city: "Oslo" } }

/** An Anthropic upstream on loopback that asks for the tool every time (a JSON answer, or a stream of it); counts calls. */
const toolAsker = Effect.acquireRelease(
  Effect.async<{ readonly server: Http.Server; readonly url: string; readonly calls: () => number }>((resume) => {
    let calls = 0
    const server = Http.createServer((req, res) => {
      let body = ""
      req.on("data", (c: Buffer) => (body += c.toString("utf8")))
      req.on("end", () => {
        calls++
        if ((JSON.parse(body) as { stream?: boolean }).stream === true) {
          res.writeHead(200, { "content-type": "text/event-stream" })
          for (
            const event of [
              { type: "message_start", message: message([], null) },
              { type: "content_block_start", index: 0, content_block: { ...toolUse, input: {} } },
              { type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: "{\"city\":\"Oslo\"}" } },
              { type: "content_block_stop", index: 0 },
              { type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: 2 } },
              { type: "message_stop" }
            ]
          ) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)
          res.end()
        } else {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify(message([toolUse], "tool_use")))
        }
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        server,
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        calls: () => calls
      })))
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

/** One Anthropic deployment whose breaker opens on a single failure, retried twice, with the failing tool handler. */
const modelOn = (url: string) =>
  Effect.map(
    ClientConfig.decode({
      deployments: [{
        name: "claude",
        provider: "anthropic",
        baseUrl: url,
        model: "claude-test",
        keys: [{ name: "key-c", env: "KEY_C" }],
        policy: {
          retry: { maxRetries: 2, baseDelay: 1, jitter: "none" },
          circuitBreaker: { trigger: { kind: "consecutive", failures: 1 }, openDuration: "1 minute" }
        }
      }],
      cascade: ["claude"]
    }),
    (config) =>
      Layer.merge(
        ResilientLanguageModel.layer(config).pipe(
          Layer.provide(FetchHttpClient.layer),
          Layer.provide(StateStore.layerMemory),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["KEY_C", "sk-ant-test-c"]]))))
        ),
        failingHandler
      )
  )

describe("a tool handler's error is the program's", () => {
  it.scopedLive("generateText fails with it as it is, after one call, and the breaker stays closed", () =>
    Effect.gen(function*() {
      const upstream = yield* toolAsker
      const layer = yield* modelOn(upstream.url)
      yield* Effect.gen(function*() {
        const error = yield* Effect.flip(LanguageModel.generateText({ prompt: "weather in Oslo?", toolkit: tools }))
        expect(error).toEqual(new WeatherUnknown({ city: "Oslo" }))
        // Not retried: the provider answered.
        expect(upstream.calls()).toBe(1)
        // Before: the handler's error counted as the provider's failure, and this call met an open breaker.
        yield* LanguageModel.generateText({ prompt: "weather in Oslo?", toolkit: tools }).pipe(Effect.flip)
        expect(upstream.calls()).toBe(2)
      }).pipe(Effect.provide(layer))
    }))

  it.scopedLive("streamText fails with it as it is, not as a cut stream, and the breaker stays closed", () =>
    Effect.gen(function*() {
      const upstream = yield* toolAsker
      const layer = yield* modelOn(upstream.url)
      yield* Effect.gen(function*() {
        const error = yield* Effect.flip(Stream.runDrain(LanguageModel.streamText({ prompt: "weather in Oslo?", toolkit: tools })))
        // Before: an `AiError` saying "StreamInterruptedError … WeatherUnknown".
        expect(error).toEqual(new WeatherUnknown({ city: "Oslo" }))
        expect(upstream.calls()).toBe(1)
        yield* Effect.flip(Stream.runDrain(LanguageModel.streamText({ prompt: "weather in Oslo?", toolkit: tools })))
        expect(upstream.calls()).toBe(2)
      }).pipe(Effect.provide(layer))
    }))
})

describe("lastAnswer after a streamText that failed", () => {
  it.scopedLive("is None, as after a generateText that failed: the answer before it is not kept", () =>
    Effect.gen(function*() {
      const { result } = yield* withModel(
        (path, _key, n) => (path === "/v1/responses" && n === 0 ? ok("hello") : status(500)),
        Effect.gen(function*() {
          yield* LanguageModel.generateText({ prompt: "hello" })
          const before = yield* ResilientLanguageModel.lastAnswer
          yield* Effect.flip(Stream.runDrain(LanguageModel.streamText({ prompt: "hello" })))
          return { before, after: yield* ResilientLanguageModel.lastAnswer }
        })
      )
      expect(Option.map(result.before, (a) => a.deployment)).toEqual(Option.some("gpt"))
      expect(result.after).toEqual(Option.none())
    }))
})
