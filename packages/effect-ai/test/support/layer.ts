/**
 * The resilient layer over the test upstream (`wire.ts`): two deployments,
 * an OpenAI model with keys A and B, then an Anthropic model with key C,
 * and a runner that provides the layer to a program.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import type { Errors } from "@resilient-ai/core"
import { StateStore } from "@resilient-ai/core"
import { ClientConfig } from "@resilient-ai/llm"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ResilientLanguageModel from "../../src/ResilientLanguageModel.js"
import { type Answer, type Received, upstream } from "./wire.js"

const keys = ConfigProvider.fromMap(new Map([["KEY_A", "sk-test-a"], ["KEY_B", "sk-test-b"], ["KEY_C", "sk-ant-test-c"]]))

/** What a test changes in the configuration. */
export interface RunOptions {
  /** Over the OpenAI deployment's policy. */
  readonly gptPolicy?: Record<string, unknown>
  /** Over each deployment's fields, by name. */
  readonly deployments?: Readonly<Record<string, Record<string, unknown>>>
  readonly cascade?: ReadonlyArray<string>
  /** Over the configuration's top-level fields. */
  readonly config?: Record<string, unknown>
}

/** Two deployments on the test upstream: an OpenAI model with keys A and B, then an Anthropic model. */
const configFor = (url: string, options: RunOptions) =>
  ClientConfig.decode({
    deployments: [
      {
        name: "gpt",
        provider: "openai",
        baseUrl: `${url}/v1`,
        model: "gpt-4o",
        keys: [{ name: "key-a", env: "KEY_A" }, { name: "key-b", env: "KEY_B" }],
        policy: { retry: { maxRetries: 1, baseDelay: 1, jitter: "none" }, ...options.gptPolicy },
        ...options.deployments?.["gpt"]
      },
      {
        name: "claude",
        provider: "anthropic",
        baseUrl: url,
        model: "claude-test",
        keys: [{ name: "key-c", env: "KEY_C" }],
        policy: { retry: { maxRetries: 1, baseDelay: 1, jitter: "none" } },
        ...options.deployments?.["claude"]
      }
    ],
    cascade: options.cascade ?? ["gpt", "claude"],
    maxWaitBeforeFallback: "infinity",
    ...options.config
  })

/** The upstream's script: the answer to the n-th request (0-based) of a path, by the key it carried. */
export type Script = (path: string, key: string | undefined, n: number, request: Received) => Answer

/** Runs `program` with the layer `layerOf` makes over the test upstream, answering by `script`. */
export const runWith = <A, E, ROut>(
  layerOf: (config: ClientConfig.ClientConfig) => Layer.Layer<ROut, Errors.InvalidConfigError, HttpClient.HttpClient | StateStore.StateStore>,
  script: Script,
  program: Effect.Effect<A, E, ROut>,
  options: RunOptions = {}
) =>
  Effect.gen(function*() {
    const server = yield* upstream
    server.script = (request, n) => script(request.path, request.key, n, request)
    const config = yield* configFor(server.url, options)
    const layer = layerOf(config).pipe(
      Layer.provide(FetchHttpClient.layer),
      Layer.provide(StateStore.layerMemory),
      Layer.provide(Layer.setConfigProvider(keys))
    )
    const result = yield* Effect.provide(program, layer)
    return { result, received: server.received }
  })

/** `runWith` the resilient model, no static reply. */
export const withModel = <A, E>(
  script: Script,
  program: Effect.Effect<A, E, LanguageModel.LanguageModel>,
  options: RunOptions = {},
  layerOptions: ResilientLanguageModel.Options = {}
) => runWith((config) => ResilientLanguageModel.layer(config, layerOptions), script, program, options)

export const ok = (text: string, delayMs?: number): Answer =>
  delayMs === undefined ? { _tag: "Ok", text } : { _tag: "Ok", text, delayMs }

export const status = (code: number, headers: Record<string, string> = {}, error?: Record<string, unknown>): Answer => ({
  _tag: "Status",
  status: code,
  headers,
  body: { error: error ?? { message: `status ${code}`, type: code === 429 ? "rate_limit_exceeded" : "server_error" } }
})

/** Who answered the fiber's last call. */
export const answered = Effect.map(ResilientLanguageModel.lastAnswer, Option.getOrThrow)

/** The text of a stream's parts. */
export const textOf = (parts: Iterable<{ readonly type: string }>): string =>
  Array.from(parts).flatMap((p) => (p.type === "text-delta" && "delta" in p && typeof p.delta === "string" ? [p.delta] : [])).join("")
