import { describe, expect, it } from "@effect/vitest"
import { Errors, Retry } from "@resilient-ai/core"
import * as Duration from "effect/Duration"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as ClientConfig from "../src/ClientConfig.js"

const withRetry = (retry: Record<string, unknown>, policy: Record<string, unknown> = {}) => ({
  deployments: [{ name: "a", provider: "openai", model: "gpt-4o", keys: [], policy: { retry, ...policy } }],
  cascade: ["a"]
})

describe("ClientConfig: limits that are off", () => {
  it.effect("retry.maxDelay and maxRetryAfter take \"infinity\" from JSON and Infinity from code, and the retry built from them has no limit", () =>
    Effect.gen(function*() {
      const fromFile = yield* ClientConfig.fromJson(JSON.stringify(withRetry({ maxDelay: "infinity", maxRetryAfter: "Infinity" })))
      const fromCode = yield* ClientConfig.decode(withRetry({ maxDelay: Infinity, maxRetryAfter: Infinity }))
      for (const config of [fromFile, fromCode]) {
        const retry = ClientConfig.policyOptions(config.deployments[0]).retry
        expect(retry).toEqual({ maxDelay: Number.POSITIVE_INFINITY, maxRetryAfter: Number.POSITIVE_INFINITY })
        if (retry === undefined || retry === false) return expect.unreachable()
        // The core takes it as "no limit": a 2-hour Retry-After is waited for, not given up on.
        const policy = yield* Retry.make({ ...retry, jitter: "none" })
        let attempts = 0
        const down = new Errors.ProviderUnavailableError({ status: 503, retryAfter: Duration.hours(2) })
        const fiber = yield* Effect.fork(policy.execute(Effect.suspend(() => ++attempts === 1 ? Effect.fail(down) : Effect.succeed("ok"))))
        yield* TestClock.adjust(Duration.toMillis(Duration.hours(2)) - 1)
        expect(attempts).toBe(1)
        yield* TestClock.adjust(1)
        expect(yield* Fiber.join(fiber)).toBe("ok")
        expect(attempts).toBe(2)
      }
    }))

  it.effect("a config with a limit off survives JSON both ways: Infinity is encoded \"infinity\", not null", () =>
    Effect.gen(function*() {
      const config = yield* ClientConfig.decode(withRetry({ maxDelay: Infinity, maxRetryAfter: "30 seconds" }))
      const json = JSON.stringify(Schema.encodeSync(ClientConfig.ClientConfig)(config))
      expect(JSON.parse(json).deployments[0].policy.retry).toEqual({ maxDelay: "infinity", maxRetryAfter: "30 seconds" })
      expect(yield* ClientConfig.fromJson(json)).toEqual(config)
    }))

  it.effect("the limiter's maxWait, the bulkhead's maxQueueWait and the breaker's maxHalfOpenDuration take \"infinity\" too", () =>
    Effect.gen(function*() {
      const config = yield* ClientConfig.fromJson(JSON.stringify(withRetry({}, {
        rateLimiter: { requestsPerMinute: 10, maxWait: "infinity" },
        bulkhead: { maxConcurrent: 2, maxQueueWait: "infinity" },
        circuitBreaker: { maxHalfOpenDuration: "infinity" }
      })))
      const options = ClientConfig.policyOptions(config.deployments[0])
      expect(options.rateLimiter).toMatchObject({ maxWait: Number.POSITIVE_INFINITY })
      expect(options.bulkhead).toMatchObject({ maxQueueWait: Number.POSITIVE_INFINITY })
      expect(options.circuitBreaker).toMatchObject({ maxHalfOpenDuration: Number.POSITIVE_INFINITY })
    }))

  it.effect("anything else names the field; a duration that is not a limit (attemptTimeout) takes no infinity", () =>
    Effect.gen(function*() {
      const forever = yield* Effect.flip(ClientConfig.decode(withRetry({ maxDelay: "forever" })))
      expect(forever.path).toBe("deployments.0.policy.retry.maxDelay")
      expect(forever.detail).toContain("\"infinity\" for no limit")
      const timeout = yield* Effect.flip(ClientConfig.decode(withRetry({}, { attemptTimeout: "infinity" })))
      expect(timeout.path).toBe("deployments.0.policy.attemptTimeout")
    }))
})

describe("ClientConfig: keys", () => {
  it.effect("a key variable that is set but empty is refused at start, naming the variable and its path", () =>
    Effect.gen(function*() {
      const config = yield* ClientConfig.decode({
        deployments: [{ name: "a", provider: "openai", model: "gpt-4o", keys: [{ name: "main", env: "OPENAI_KEY" }, { name: "spare", env: "SPARE_KEY" }] }],
        cascade: ["a"]
      })
      const deployment = config.deployments[0]
      if (deployment === undefined) return expect.unreachable()
      const withEnv = (vars: ReadonlyArray<readonly [string, string]>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(vars)))
      const empty = yield* Effect.flip(ClientConfig.resolveKeys(deployment, 0).pipe(withEnv([["OPENAI_KEY", "sk-1"], ["SPARE_KEY", "  "]])))
      expect(empty.path).toBe("deployments.0.keys.1.env")
      expect(empty.detail).toContain("SPARE_KEY")
      expect(empty.detail).toContain("set but empty")
      const unset = yield* Effect.flip(ClientConfig.resolveKeys(deployment, 0).pipe(withEnv([["OPENAI_KEY", "sk-1"]])))
      expect(unset.detail).toContain("is not set")
      const keys = yield* ClientConfig.resolveKeys(deployment, 0).pipe(withEnv([["OPENAI_KEY", "sk-1"], ["SPARE_KEY", "sk-2"]]))
      expect(keys.map((k) => k.name)).toEqual(["main", "spare"])
    }))
})

describe("ClientConfig: every problem at once", () => {
  it.effect("names each bad field with what was allowed, not the first alone nor a schema signature", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ClientConfig.decode({
        deployments: [{ name: "a", provider: "openia", model: "m", keys: [], policy: { retry: { jitter: "fuzzy" } } }],
        cascade: ["a"]
      }))
      expect(error.path).toBe("deployments.0.provider")
      expect(error.detail).toBe("expected \"openai\" or \"anthropic\", got \"openia\"")
      expect(error.problems?.map((p) => p.path)).toEqual(["deployments.0.provider", "deployments.0.policy.retry.jitter"])
      const jitter = error.problems?.[1]?.detail ?? ""
      expect(jitter).toContain("\"none\", \"full\", \"equal\" or \"decorrelated\", got \"fuzzy\"")
      expect(jitter).not.toContain("readonly")
      expect(error.message).toContain("deployments.0.provider: expected")
      expect(error.message).toContain("; deployments.0.policy.retry.jitter: expected")
    }))
})

describe("ClientConfig: settings that were in code only", () => {
  const base = { deployments: [{ name: "a", provider: "openai", model: "m", keys: [] }], cascade: ["a"] }

  it.effect("transport time limits and static replies are in the file, and reach the HTTP layers' options", () =>
    Effect.gen(function*() {
      const config = yield* ClientConfig.fromJson(JSON.stringify({
        ...base,
        transport: { connectTimeout: "2 seconds", firstByteTimeout: 90_000, firstTokenTimeout: "20 seconds", stallTimeout: "15 seconds" },
        staticReplies: { intents: [{ name: "any", reply: "Back soon." }], defaultIntent: "any" }
      }))
      expect(ClientConfig.transportOptions(config)).toEqual({ connectTimeout: "2 seconds" })
      expect(ClientConfig.providerOptions(config)).toEqual({
        firstByteTimeout: 90_000,
        firstTokenTimeout: "20 seconds",
        stallTimeout: "15 seconds"
      })
      expect(config.staticReplies?.defaultIntent).toBe("any")
    }))

  it.effect("a bad transport limit or static reply names its path in the file, every one at once", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ClientConfig.decode({
        ...base,
        transport: { connectTimeout: 0, stallTimeout: "-5 seconds", firstByteTimeout: "soon" },
        staticReplies: { intents: [{ name: "any", reply: "x", patterns: ["(unclosed"] }], defaultIntent: "other" }
      }))
      expect(error.problems?.map((p) => p.path)).toEqual([
        "transport.connectTimeout",
        "transport.firstByteTimeout",
        "transport.stallTimeout",
        "staticReplies.intents.0.patterns.0"
      ])
      expect(error.problems?.[0]?.detail).toBe("expected a duration above zero")
      const missingDefault = yield* Effect.flip(ClientConfig.decode({
        ...base,
        staticReplies: { intents: [{ name: "any", reply: "x" }], defaultIntent: "other" }
      }))
      expect(missingDefault.path).toBe("staticReplies.defaultIntent")
      expect(missingDefault.detail).toContain("no intent is named \"other\"")
    }))
})
