import { Errors, StateStore } from "@resilient-ai/core"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Chat from "../src/Chat.js"
import * as ClientConfig from "../src/ClientConfig.js"
import * as Provider from "../src/Provider.js"
import * as ResilientClient from "../src/ResilientClient.js"

type Behaviour = (request: Chat.ChatRequest, context: Provider.CallContext) => Effect.Effect<Chat.ChatResponse, Errors.ResilienceError>

interface Call {
  readonly deployment: string
  readonly model: string
  readonly keyName: string | undefined
  readonly key: string | undefined
}

/** Providers whose answers a test scripts per deployment; every call is logged. */
const scripted = (behaviours: Record<string, Behaviour>) => {
  const calls: Array<Call> = []
  const layer = Layer.succeed(Provider.Providers, {
    forTarget: (target) => ({
      kind: target.kind,
      chat: (request, context) => {
        calls.push({
          deployment: context.deployment,
          model: context.model,
          keyName: context.keyName,
          key: context.key === undefined ? undefined : Redacted.value(context.key)
        })
        const behaviour = behaviours[target.name]
        return behaviour === undefined
          ? Effect.fail(new Errors.ConnectionError({ detail: `no script for ${target.name}` }))
          : Effect.map(behaviour(request, context), (response) => ({ response, rateLimit: undefined }))
      },
      stream: () => Effect.fail(new Errors.BadRequestError({ detail: "not scripted" })),
      // Health probes (on for fallbacks by default) answer and are not logged as calls.
      probe: () => Effect.void
    })
  })
  return { calls, layer }
}

const answer = (text: string, model = "m"): Chat.ChatResponse => ({
  id: "r",
  model,
  text,
  toolCalls: [],
  finishReason: "stop",
  usage: { inputTokens: 1000, outputTokens: 500 }
})
const ok = (text: string): Behaviour => (_, context) => Effect.succeed(answer(`${text} via ${context.keyName}`, context.model))
const failing = (error: Errors.ResilienceError): Behaviour => () => Effect.fail(error)
const down = new Errors.ProviderUnavailableError({ status: 503 })

const env = ConfigProvider.fromMap(
  new Map([
    ["OPENAI_KEY_1", "sk-openai-one"],
    ["OPENAI_KEY_2", "sk-openai-two"],
    ["ANTHROPIC_KEY", "sk-ant-secret"],
    ["DEEPSEEK_KEY", "sk-deepseek"]
  ])
)

const baseConfig = {
  deployments: [
    {
      name: "gpt-4o",
      provider: "openai",
      model: "gpt-4o",
      keys: [{ name: "openai-1", env: "OPENAI_KEY_1" }, { name: "openai-2", env: "OPENAI_KEY_2" }],
      contextWindow: 128_000,
      price: { inputPerMillion: 2.5, outputPerMillion: 10 },
      policy: { retry: { maxRetries: 1, jitter: "none", baseDelay: "100 millis" } }
    },
    {
      name: "claude",
      provider: "anthropic",
      model: "claude-sonnet",
      keys: [{ name: "anthropic-1", env: "ANTHROPIC_KEY" }],
      contextWindow: 200_000,
      capabilities: { vision: true },
      price: { inputPerMillion: 3, outputPerMillion: 15 },
      policy: { retry: false }
    },
    {
      name: "deepseek",
      provider: "openai",
      baseUrl: "https://api.deepseek.com/v1",
      model: "deepseek-chat",
      keys: [{ name: "deepseek-1", env: "DEEPSEEK_KEY" }],
      contextWindow: 64_000,
      capabilities: { tools: false },
      price: { inputPerMillion: 0.27, outputPerMillion: 1.1 },
      policy: { retry: false }
    }
  ],
  cascade: ["gpt-4o", "claude", "deepseek"]
}

const request: Chat.ChatRequest = { model: "any", messages: [{ role: "user", content: "Summarise the news" }] }

const withClient = <A, E>(
  providers: Layer.Layer<Provider.Providers>,
  use: (client: ResilientClient.Service) => Effect.Effect<A, E>,
  config: unknown = baseConfig,
  extras?: ResilientClient.Extras
) =>
  Effect.gen(function*() {
    const decoded = yield* ClientConfig.decode(config)
    const client = yield* ResilientClient.make(decoded, extras)
    return yield* use(client)
  }).pipe(
    Effect.scoped,
    Effect.provide(providers),
    Effect.provide(StateStore.layerMemory),
    Effect.withConfigProvider(env)
  )

/** Runs `effect` forked, moving the TestClock far enough for its retries. */
const settle = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust("5 minutes")
    return yield* Fiber.join(fiber)
  })

describe("ResilientClient: the cascade", () => {
  it.effect("the primary answers with the deployment's model and key; metadata says so", () => {
    const { calls, layer } = scripted({ "gpt-4o": ok("hello") })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* client.chat(request)
        expect(result).toMatchObject({
          source: "primary",
          deployment: "gpt-4o",
          keyName: "openai-1",
          attempts: 1,
          usage: { inputTokens: 1000, outputTokens: 500 },
          fallbacks: []
        })
        expect(result.response.text).toBe("hello via openai-1")
        expect(result.costUsd).toBeCloseTo((1000 * 2.5 + 500 * 10) / 1e6)
        expect(calls).toEqual([{ deployment: "gpt-4o", model: "gpt-4o", keyName: "openai-1", key: "sk-openai-one" }])
      }))
  })

  it.effect("a failing primary is retried, then the next deployment answers", () => {
    const { calls, layer } = scripted({ "gpt-4o": failing(down), claude: ok("claude") })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* settle(client.chat(request))
        expect(result).toMatchObject({ source: "fallback-provider", deployment: "claude", keyName: "anthropic-1", attempts: 3 })
        expect(result.fallbacks).toEqual([{ from: "gpt-4o", to: "claude", tag: "ProviderUnavailableError" }])
        expect(calls.map((c) => `${c.deployment}/${c.keyName}`)).toEqual([
          "gpt-4o/openai-1",
          "gpt-4o/openai-2", // the retry goes to the key not tried yet
          "claude/anthropic-1"
        ])
      }))
  })

  it.effect("a 429 on one key is answered by the other key: source backup-key", () => {
    const { layer } = scripted({
      "gpt-4o": (_, context) =>
        context.keyName === "openai-1"
          ? Effect.fail(new Errors.RateLimitError({ source: "upstream", retryAfter: Duration.seconds(20) }))
          : Effect.succeed(answer("second key"))
    })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* settle(client.chat(request))
        expect(result).toMatchObject({ source: "backup-key", deployment: "gpt-4o", keyName: "openai-2", attempts: 2 })
      }))
  })

  it.effect("idempotent: false — a timeout (the upstream may have started work) is not retried; a refused connection is", () => {
    const timedOut = new Errors.TimeoutError({ phase: "attempt", timeout: Duration.seconds(30) })
    const refused = new Errors.ConnectionError({ detail: "ECONNREFUSED 10.0.0.1:443" })
    const run = (error: Errors.ResilienceError, idempotent: boolean) => {
      const { calls, layer } = scripted({ "gpt-4o": failing(error), claude: ok("backup") })
      return withClient(layer, (client) =>
        Effect.map(settle(client.chat(request, { idempotent })), () => calls.filter((c) => c.deployment === "gpt-4o").length))
    }
    return Effect.gen(function*() {
      expect(yield* run(timedOut, true)).toBe(2) // retried once (maxRetries 1)
      expect(yield* run(timedOut, false)).toBe(1) // not paid twice
      expect(yield* run(refused, false)).toBe(2) // nothing was sent: safe to retry
    })
  })

  it.effect("a non-fallbackable error (bad request) stops the cascade", () => {
    const { calls, layer } = scripted({ "gpt-4o": failing(new Errors.BadRequestError({ status: 400, detail: "bad" })) })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(client.chat(request))
        expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: "BadRequestError" } })
        expect(calls).toHaveLength(1)
      }))
  })
})

describe("ResilientClient: capabilities, context window and price", () => {
  it.effect("a ContextLengthError goes only to a larger-context deployment, never to a smaller one", () => {
    const { calls, layer } = scripted({
      "gpt-4o": failing(new Errors.ContextLengthError({ status: 400 })),
      claude: ok("long"),
      deepseek: ok("small")
    })
    const config = { ...baseConfig, cascade: ["gpt-4o", "deepseek"] }
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* client.chat(request)
        expect(result).toMatchObject({ deployment: "claude", source: "fallback-provider" })
        expect(result.fallbacks).toEqual([{ from: "gpt-4o", to: "claude", tag: "ContextLengthError" }])
        expect(calls.map((c) => c.deployment)).toEqual(["gpt-4o", "claude"])
      }), config)
  })

  it.effect("an incompatible deployment is skipped with a reason, not called", () => {
    const { calls, layer } = scripted({ "gpt-4o": failing(down), claude: failing(down), deepseek: ok("cheap") })
    const withTools: Chat.ChatRequest = {
      ...request,
      tools: [{ name: "lookup", parameters: { type: "object", properties: {} } }]
    }
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(settle(client.chat(withTools)))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(calls.some((c) => c.deployment === "deepseek")).toBe(false)
        const images: Chat.ChatRequest = {
          model: "any",
          messages: [{ role: "user", content: [{ _tag: "Image", source: { _tag: "Url", url: "https://x/y.png" } }] }]
        }
        const result = yield* settle(Effect.either(client.chat(images)))
        expect(calls.filter((c) => c.deployment !== "claude").length).toBe(2) // gpt-4o has no vision: never called for images
        expect(result._tag).toBe("Left")
      }))
  })

  it.effect("a deployment whose estimated cost passes the request's ceiling is skipped; the cheaper one answers", () => {
    const { calls, layer } = scripted({ "gpt-4o": ok("expensive"), claude: ok("mid"), deepseek: ok("cheap") })
    const config = { ...baseConfig, maxCostUsdPerRequest: 0.0005 }
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* client.chat({ ...request, maxTokens: 100 })
        expect(result.deployment).toBe("deepseek")
        expect(result.skipped.map((s) => s.deployment)).toEqual(["gpt-4o", "claude"])
        expect(result.skipped[0]?.reason).toMatch(/above the ceiling of 0.0005 USD/)
        expect(calls.map((c) => c.deployment)).toEqual(["deepseek"])
      }), config)
  })

  it.effect("the request is transformed for its target: its model, and another provider's fields stripped", () => {
    const seen: Array<Chat.ChatRequest> = []
    const { layer } = scripted({
      "gpt-4o": failing(down),
      claude: (r) => Effect.sync(() => (seen.push(r), answer("ok")))
    })
    const tagged: Chat.ChatRequest = {
      ...request,
      extra: { openai: { logit_bias: {} }, anthropic: { top_k: 5 } },
      messages: [{ role: "user", content: [{ _tag: "Text", text: "hi", extra: { anthropic: { cache_control: { type: "ephemeral" } }, openai: { x: 1 } } }] }]
    }
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        yield* settle(client.chat(tagged))
        expect(seen[0]?.model).toBe("claude-sonnet")
        expect(seen[0]?.extra).toEqual({ anthropic: { top_k: 5 } })
        expect(seen[0]?.messages[0]).toEqual({
          role: "user",
          content: [{ _tag: "Text", text: "hi", extra: { anthropic: { cache_control: { type: "ephemeral" } } } }]
        })
      }))
  })
})

describe("ResilientClient: cache and static replies", () => {
  it.effect("an identical request is answered from the cache; when every provider fails, a stale entry answers", () => {
    let healthy = true
    const { calls, layer } = scripted({
      "gpt-4o": () => (healthy ? Effect.succeed(answer("fresh")) : Effect.fail(down)),
      claude: failing(down),
      deepseek: failing(down)
    })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        expect((yield* client.chat(request)).source).toBe("primary")
        expect(yield* client.chat(request)).toMatchObject({ source: "cache", attempts: 0 })
        expect(calls).toHaveLength(1)
        healthy = false
        yield* TestClock.adjust("2 hours")
        const stale = yield* settle(client.chat(request))
        expect(stale).toMatchObject({ source: "stale-cache", ageMs: 2 * 3600_000 + 100 }) // + the retry backoff before the primary gave up
        expect(stale.response.text).toBe("fresh")
      }), baseConfig, { cache: { timeToLive: "1 hour" } })
  })

  it.effect("chatOrStatic answers with a static reply by intent when everything failed", () => {
    const { layer } = scripted({ "gpt-4o": failing(down), claude: failing(down), deepseek: failing(down) })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* settle(client.chatOrStatic({ model: "x", messages: [{ role: "user", content: "hello!" }] }))
        expect(result).toMatchObject({ source: "static", response: { id: "static-greeting", finishReason: "stop" } })
        expect(result.fallbacks).toEqual([{ from: "chain", to: "static", tag: "ProviderUnavailableError" }])
      }))
  })
})

describe("ResilientClient: static replies from the config file", () => {
  const withReplies = {
    ...baseConfig,
    staticReplies: {
      intents: [{ name: "billing", keywords: ["invoice"], reply: "Billing is back shortly." }, { name: "other", reply: "Back soon." }],
      defaultIntent: "other"
    }
  }
  const invoice: Chat.ChatRequest = { model: "x", messages: [{ role: "user", content: "where is my invoice?" }] }

  it.effect("chatOrStatic answers with the config file's staticReplies", () => {
    const { layer } = scripted({ "gpt-4o": failing(down), claude: failing(down), deepseek: failing(down) })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const result = yield* settle(client.chatOrStatic(invoice))
        expect(result).toMatchObject({ source: "static", response: { id: "static-billing", text: "Billing is back shortly." } })
      }), withReplies)
  })

  it.effect("streamOrStatic streams the static reply when the stream fails before any chunk", () => {
    const { layer } = scripted({ "gpt-4o": failing(down), claude: failing(down), deepseek: failing(down) })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const chunks = yield* settle(Stream.runCollect(client.streamOrStatic(invoice)))
        const texts = [...chunks].flatMap((c) => (c.text === undefined ? [] : [c.text]))
        expect(texts.join("")).toBe("Billing is back shortly.")
        expect([...chunks].at(-1)?.finishReason).toBe("stop")
      }), withReplies)
  })

  it.effect("streamOrStatic never appends a static reply to a partial answer: after a chunk the stream's error stands", () => {
    const cut = new Errors.StreamInterruptedError({ chunksReceived: 1 })
    const layer = Layer.succeed(Provider.Providers, {
      forTarget: (target) => ({
        kind: target.kind,
        chat: () => Effect.fail(down),
        stream: () =>
          Effect.succeed({
            chunks: Stream.concat(Stream.make<[Chat.ChatChunk]>({ id: "s", model: "m", text: "Half an ans" }), Stream.fail(cut)),
            rateLimit: undefined
          }),
        probe: () => Effect.void
      })
    })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const exit = yield* settle(Effect.exit(Stream.runForEach(client.streamOrStatic(invoice), (c) =>
          Effect.sync(() => void (c.text === undefined ? undefined : seen.push(c.text))))))
        expect(seen.join("")).toBe("Half an ans")
        expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: "StreamInterruptedError" } })
      }), { ...withReplies, midStreamPolicy: "terminate" })
  })

  it.effect("a bad static reply in the config file names its path there", () => {
    const { layer } = scripted({})
    return Effect.gen(function*() {
      const exit = yield* Effect.exit(withClient(layer, () => Effect.void, {
        ...withReplies,
        staticReplies: { ...withReplies.staticReplies, defaultIntent: "nope" }
      }))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({
        error: { _tag: "InvalidConfigError", path: "staticReplies.defaultIntent" }
      })
    })
  })
})

describe("ResilientClient: a long wait never blocks a chain that can serve elsewhere (rule 25)", () => {
  const busy = new Errors.ProviderUnavailableError({ status: 503, retryAfter: Duration.seconds(30) })
  const answeredWithin = (config: unknown, millis: number) => {
    const { calls, layer } = scripted({ "gpt-4o": failing(busy), claude: ok("claude") })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const fiber = yield* Effect.fork(client.chat(request))
        yield* TestClock.adjust(millis)
        const done = yield* Fiber.poll(fiber)
        yield* Fiber.interrupt(fiber)
        return { done: Option.isSome(done), calls: calls.map((c) => c.deployment) }
      }), config)
  }

  it.effect("a 30 s Retry-After on the primary ends its step: the next deployment answers now", () =>
    Effect.gen(function*() {
      const result = yield* answeredWithin(baseConfig, 10)
      expect(result).toEqual({ done: true, calls: ["gpt-4o", "claude"] })
    }))

  it.effect("maxWaitBeforeFallback: \"infinity\" waits out the Retry-After on the same deployment", () =>
    Effect.gen(function*() {
      const result = yield* answeredWithin({ ...baseConfig, maxWaitBeforeFallback: "infinity" }, 10)
      expect(result).toEqual({ done: false, calls: ["gpt-4o"] })
    }))
})

describe("ResilientClient: requests no provider can serve", () => {
  it.effect.each([
    [{ messages: [] }, "messages: expected at least one message"],
    [{ temperature: 2.5 }, "temperature: expected a number from 0 to 2, got 2.5"],
    [{ maxTokens: 10.5 }, "maxTokens: expected a whole number of 1 or more, got 10.5"],
    [{ stop: ["a", "b", "c", "d", "e"] }, "stop: expected at most 4 stop sequences, got 5"],
    [
      { messages: [{ role: "user", content: [{ _tag: "Image", source: { _tag: "Url", url: "https://x/y.png" }, detail: "ultra" }] }] },
      "messages.0.content.0.detail: expected \"auto\", \"low\" or \"high\", got \"ultra\""
    ]
  ] as const)("%j is refused with a BadRequestError naming the field, before any attempt", ([fields, detail]) => {
    const { calls, layer } = scripted({ "gpt-4o": ok("never") })
    return withClient(layer, (client) =>
      Effect.gen(function*() {
        const bad: Chat.ChatRequest = { ...request, ...fields }
        const error = yield* Effect.flip(client.chat(bad))
        expect(error).toMatchObject({ _tag: "BadRequestError" })
        expect(error.message).toContain(detail)
        const streamed = yield* Effect.flip(Stream.runDrain(client.stream(bad)))
        expect(streamed).toMatchObject({ _tag: "BadRequestError" })
        expect(calls).toEqual([])
      }))
  })
})

describe("ResilientClient: configuration", () => {
  const failsWith = (config: unknown, path: string, detail?: RegExp) => {
    const { layer } = scripted({})
    return Effect.gen(function*() {
      const exit = yield* Effect.exit(withClient(layer, () => Effect.void, config))
      expect(Exit.isFailure(exit) && exit.cause).toMatchObject({ error: { _tag: "InvalidConfigError", path } })
      if (detail !== undefined && Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        expect(exit.cause.error.message).toMatch(detail)
      }
    })
  }

  it.effect("an unknown deployment in the cascade names the cascade entry", () =>
    failsWith({ ...baseConfig, cascade: ["gpt-4o", "gpt-5"] }, "cascade.1", /no deployment is named "gpt-5"/))

  it.effect("a bad policy value names the deployment, the policy and the field", () =>
    failsWith(
      {
        ...baseConfig,
        deployments: [
          {
            ...baseConfig.deployments[0],
            policy: { circuitBreaker: { trigger: { kind: "failure-rate", window: { kind: "count", size: 10 }, threshold: 2 } } }
          },
          ...baseConfig.deployments.slice(1)
        ]
      },
      "deployments.0.policy.circuitBreaker.trigger.threshold"
    ))

  it.effect("bulkhead: { adaptive } in the config file makes the deployment's adaptive limit (minJudgedLatency and maxQueueWait too); a bad value names its path", () =>
    Effect.gen(function*() {
      const withAdaptive = (adaptive: object) => ({
        ...baseConfig,
        deployments: [{ ...baseConfig.deployments[0], policy: { bulkhead: { adaptive } } }, ...baseConfig.deployments.slice(1)]
      })
      const { layer } = scripted({ "gpt-4o": ok("primary") })
      const status = yield* withClient(
        layer,
        (client) => client.deployments[0]!.policy.status,
        withAdaptive({ initialLimit: 3, minJudgedLatency: "0 millis", maxQueueWait: "2 seconds" })
      )
      expect(status.adaptiveLimit).toMatchObject({ name: "gpt-4o", limit: 3, running: 0 })
      expect(status.bulkhead).toBeUndefined()
      yield* failsWith(withAdaptive({ minLimit: 0 }), "deployments.0.policy.bulkhead.adaptive.minLimit")
      yield* failsWith(withAdaptive({ minJudgedLatency: "-5 millis" }), "deployments.0.policy.bulkhead.adaptive.minJudgedLatency")
      yield* failsWith(withAdaptive({ maxQueueWait: "soon" }), "deployments.0.policy.bulkhead.adaptive.maxQueueWait")
    }))

  it.effect("a burst over the adaptive limit: the earlier deployment hands its excess to the next at once, the last one queues it, and every request is answered", () =>
    Effect.gen(function*() {
      const slow = (text: string): Behaviour => (_, context) => Effect.as(Effect.sleep("300 millis"), answer(`${text} via ${context.keyName}`, context.model))
      const limited = (names: ReadonlyArray<string>) => ({
        ...baseConfig,
        deployments: baseConfig.deployments.filter((d) => names.includes(d.name)).map((d) => ({
          ...d,
          policy: { retry: false, bulkhead: { adaptive: { initialLimit: 4, maxLimit: 4 } } }
        })),
        cascade: names
      })
      const burst = (client: ResilientClient.Service) =>
        Effect.gen(function*() {
          const fiber = yield* Effect.fork(Effect.all(Array.from({ length: 10 }, () => client.chat(request)), { concurrency: "unbounded" }))
          yield* TestClock.adjust("1 second")
          return yield* Fiber.join(fiber)
        })

      // One deployment: 4 run, 6 wait for a slot (3 rounds of 300 ms), none is refused.
      const alone = scripted({ "gpt-4o": slow("primary") })
      const answers = yield* withClient(alone.layer, burst, limited(["gpt-4o"]))
      expect(answers.map((a) => a.deployment)).toEqual(Array(10).fill("gpt-4o"))
      expect(Math.max(...answers.map((a) => a.latencyMs))).toBe(900)

      // Two: the primary's excess goes to the backup at once (rule 25), whose own excess waits there.
      const both = scripted({ "gpt-4o": slow("primary"), claude: slow("backup") })
      const cascaded = yield* withClient(both.layer, burst, limited(["gpt-4o", "claude"]))
      const byDeployment = cascaded.map((a) => `${a.deployment} ${a.latencyMs}`).sort()
      expect(byDeployment).toEqual([...Array(4).fill("claude 300"), ...Array(2).fill("claude 600"), ...Array(4).fill("gpt-4o 300")])
    }))

  it.effect("the key pool's settings come from the config file (keyHealth), and a bad one names its path there", () =>
    Effect.gen(function*() {
      const { layer } = scripted({ "gpt-4o": failing(new Errors.RateLimitError({ source: "upstream" })), claude: ok("backup") })
      const withHealth = (keyHealth: unknown) => ({
        ...baseConfig,
        deployments: [{ ...baseConfig.deployments[0], keyHealth, policy: { retry: false } }, ...baseConfig.deployments.slice(1)]
      })
      yield* withClient(layer, (client) =>
        Effect.gen(function*() {
          yield* client.chat(request)
          const pool = client.deployments[0]?.keyPool
          if (pool === undefined) return expect.unreachable()
          const cooled = (yield* pool.status).keys.find((k) => k.state === "cooling")
          // A 429 without Retry-After cools its key for the configured rateLimitCooldown, not the default minute.
          expect(cooled?.until).toBe(5_000)
        }), withHealth({ rateLimitCooldown: "5 seconds" }))
      yield* failsWith(withHealth({ failureCooldown: "-3 seconds" }), "deployments.0.keyHealth.failureCooldown")
    }))

  it.effect("a missing key variable names the key and the variable, never a value", () =>
    failsWith(
      {
        ...baseConfig,
        deployments: [
          { ...baseConfig.deployments[0], keys: [{ name: "openai-9", env: "OPENAI_KEY_9" }] },
          ...baseConfig.deployments.slice(1)
        ]
      },
      "deployments.0.keys.0.env",
      /OPENAI_KEY_9/
    ))

  it.effect("bad fields in several stages of a policy are all named at once, each under its own path", () =>
    Effect.gen(function*() {
      const { layer } = scripted({})
      const bad = {
        ...baseConfig,
        deployments: [
          {
            ...baseConfig.deployments[0],
            policy: {
              retry: { maxRetries: -1 },
              bulkhead: { maxConcurrent: 0 },
              circuitBreaker: { trigger: { kind: "failure-rate", threshold: 0.5, window: { kind: "count", size: 0 } } }
            }
          },
          ...baseConfig.deployments.slice(1)
        ]
      }
      const exit = yield* Effect.exit(withClient(layer, () => Effect.void, bad))
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      expect(error?._tag).toBe("InvalidConfigError")
      const paths = error?._tag === "InvalidConfigError" ? (error.problems ?? []).map((p) => p.path) : []
      expect(paths).toEqual([
        "deployments.0.policy.circuitBreaker.trigger.window.size",
        "deployments.0.policy.retry.maxRetries",
        "deployments.0.policy.bulkhead.maxConcurrent"
      ])
      for (const path of paths) expect(error?.message).toContain(path)
    }))

  it.effect("a typo in a field name is refused, not ignored", () =>
    failsWith({ ...baseConfig, casade: [] }, "casade"))

  it.effect("a config is read from a JSON file and from effect Config; unreadable or invalid JSON is a config error", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.promise(() => import("node:fs/promises").then((fs) => fs.mkdtemp("/tmp/resilient-ai-")))
      const file = `${dir}/config.json`
      yield* Effect.promise(() => import("node:fs/promises").then((fs) => fs.writeFile(file, JSON.stringify(baseConfig))))
      const fromFile = yield* ClientConfig.fromFile(file)
      expect(fromFile.cascade).toEqual(["gpt-4o", "claude", "deepseek"])
      const fromEnv = yield* ClientConfig.fromConfig().pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["RESILIENT_AI_CONFIG", JSON.stringify(baseConfig)]])))
      )
      expect(fromEnv.deployments.length).toBe(3)
      const missing = yield* Effect.flip(ClientConfig.fromFile(`${dir}/nope.json`))
      expect(missing.message).toMatch(/cannot read .*nope.json/)
      const broken = yield* Effect.flip(ClientConfig.fromJson("{ nope"))
      expect(broken.message).toMatch(/not valid JSON/)
    }))

  for (
    const [openDuration, expected] of [
      [{ initial: "10 seconds", factor: 3, max: "1 minute" }, [10_000, 30_000, 60_000]], // 90 s capped at max
      [{ initial: "10 seconds", max: "1 minute" }, [10_000, 20_000, 40_000, 60_000]] // the factor is 2 unless given
    ] as const
  ) {
    it.effect(`a growing open duration is data: ${JSON.stringify(openDuration)} per consecutive opening`, () => {
      const { layer } = scripted({ "gpt-4o": failing(down), claude: ok("b"), deepseek: ok("c") })
      const config = {
        ...baseConfig,
        deployments: [
          {
            ...baseConfig.deployments[0],
            policy: { retry: false, circuitBreaker: { trigger: { kind: "consecutive", failures: 1 }, openDuration } }
          },
          ...baseConfig.deployments.slice(1)
        ]
      }
      return withClient(layer, (client) =>
        Effect.gen(function*() {
          const breaker = client.deployments[0]!.policy.circuitBreaker!
          const openFor = Effect.gen(function*() {
            yield* client.chat(request) // the primary fails (or its half-open trial does): open again
            const { retryAt } = yield* breaker.status
            return (retryAt ?? 0) - (yield* TestClock.currentTimeMillis)
          })
          const seen: Array<number> = []
          for (let i = 0; i < expected.length; i++) {
            seen.push(yield* openFor)
            yield* TestClock.adjust(seen[i]!)
          }
          expect(seen).toEqual(expected)
        }), config)
    })
  }

  it.effect("a growing open duration with a factor below 1 names the field", () =>
    failsWith(
      {
        ...baseConfig,
        deployments: [
          { ...baseConfig.deployments[0], policy: { circuitBreaker: { openDuration: { initial: 1000, factor: 0.5, max: 5000 } } } },
          ...baseConfig.deployments.slice(1)
        ]
      },
      "deployments.0.policy.circuitBreaker.openDuration.factor"
    ))

  it.effect("a bad base URL names it", () =>
    failsWith(
      { ...baseConfig, deployments: [{ ...baseConfig.deployments[0], baseUrl: "api.openai.com" }, ...baseConfig.deployments.slice(1)] },
      "deployments.0.baseUrl"
    ))
})
