import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import { env, get, harness, post } from "./support/harness.js"

const ok = JSON.stringify({ model: "primary", messages: [{ role: "user", content: "hi" }] })
const secrets = [...env.values()]

describe("/status, /metrics and /v1/models", () => {
  it.live("/status: breakers with state and window counts, keys by name with health and cooldown end, limiters, bulkheads; never a secret", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({
        primaryPolicy: { bulkhead: { maxConcurrent: 4, maxQueue: 8 }, rateLimiter: { requestsPerMinute: 600 } },
        backup: { script: [{ _tag: "RateLimitStorm", from: 0, to: Infinity, rate: 1, retryAfterMs: 30_000 }] }
      })
      yield* post(`${gateway.url}/v1/chat/completions`, ok)
      // The backup's key gets a 429: it cools for 30 s.
      yield* post(`${gateway.url}/v1/chat/completions`, JSON.stringify({ model: "backup", messages: [{ role: "user", content: "hi" }] }))
      const status = yield* get(`${gateway.url}/status`)
      expect(status.status).toBe(200)
      expect(status.json).toMatchObject({
        ready: true,
        models: [{ model: "primary", cascade: ["primary", "backup"] }, { model: "backup", cascade: ["backup"] }],
        deployments: [
          {
            name: "primary",
            provider: "openai",
            canServe: true,
            circuitBreaker: { state: "closed", consecutiveFailures: 0, retryAt: null },
            keys: { healthy: 1, keys: [{ name: "primary-1", state: "healthy", cooldownUntil: null, picks: 1 }] },
            bulkhead: { maxConcurrent: 4, maxQueue: 8, running: 0, queued: 0 },
            // The limiter is per key when the deployment has keys.
            keyRateLimiters: { "primary-1": { requests: { capacity: 600 } } }
          },
          {
            name: "backup",
            canServe: false,
            keys: { healthy: 0, keys: [{ name: "backup-1", state: "cooling", lastError: "RateLimitError" }] }
          }
        ]
      })
      const backup = (status.json as { deployments: Array<{ keys: { keys: Array<{ cooldownUntil: string }> } }> }).deployments[1]
      const until = Date.parse(backup?.keys.keys[0]?.cooldownUntil ?? "")
      expect(until - Date.now()).toBeGreaterThan(25_000)
      for (const secret of secrets) expect(status.text).not.toContain(secret)
      expect((yield* chaos.calls)["primary"]?.calls).toBe(1)
    })))

  it.live("/metrics: Prometheus text with the client's and the gateway's counters, never a secret", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness()
      yield* post(`${gateway.url}/v1/chat/completions`, ok)
      const metrics = yield* get(`${gateway.url}/metrics`)
      expect(metrics.status).toBe(200)
      expect(metrics.headers.get("content-type")).toContain("text/plain; version=0.0.4")
      expect(metrics.text).toMatch(/^# TYPE resilient_ai_requests_total counter$/m)
      expect(metrics.text).toMatch(/^resilient_ai_requests_total\{source="primary"\} [1-9]\d*$/m)
      expect(metrics.text).toMatch(/^resilient_ai_gateway_requests_total\{route="\/v1\/chat\/completions",status="200"\} [1-9]\d*$/m)
      expect(metrics.text).toMatch(/^resilient_ai_request_latency_ms_bucket\{le="\+Inf"\} \d+$/m)
      for (const secret of secrets) expect(metrics.text).not.toContain(secret)
    })))

  it.live("/v1/models lists the models and aliases in OpenAI's shape", () =>
    Effect.scoped(Effect.gen(function*() {
      const { baseURL } = yield* harness()
      const openai = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 })
      const page = yield* Effect.promise(() => openai.models.list())
      expect(page.data.map((m) => m.id)).toEqual(["primary", "backup", "gpt-4o-mini"])
      expect(page.data[0]).toMatchObject({ object: "model", owned_by: "resilient-ai" })
    })))
})

describe("gateway keys", () => {
  const withKeys = { gateway: { gatewayKeys: [{ name: "team-a", env: "GATEWAY_KEY_TEAM_A" }] } }

  it.live("without a key or with a wrong one: 401 in OpenAI's shape; with the key (Bearer or x-api-key): served; health stays open", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, baseURL, chaos } = yield* harness(withKeys)
      const missing = yield* post(`${gateway.url}/v1/chat/completions`, ok)
      expect(missing.status).toBe(401)
      expect(missing.json).toMatchObject({ error: { type: "invalid_request_error", code: "invalid_api_key", param: null } })
      expect((missing.json as { error: { message: string } }).error.message).toContain("didn't provide an API key")
      const wrong = yield* post(`${gateway.url}/v1/chat/completions`, ok, { authorization: "Bearer gw-team-a-secreT" })
      expect(wrong.status).toBe(401)
      expect((wrong.json as { error: { message: string } }).error.message).toContain("Incorrect API key")
      expect((yield* get(`${gateway.url}/status`)).status).toBe(401)
      expect((yield* get(`${gateway.url}/v1/models`)).status).toBe(401)
      expect((yield* chaos.calls)["primary"]?.calls).toBe(0)

      const bearer = yield* post(`${gateway.url}/v1/chat/completions`, ok, { authorization: "Bearer gw-team-a-secret" })
      expect(bearer.status).toBe(200)
      const apiKey = yield* post(`${gateway.url}/v1/chat/completions`, ok, { "x-api-key": "gw-team-a-secret" })
      expect(apiKey.status).toBe(200)
      expect((yield* get(`${gateway.url}/health`)).status).toBe(200)
      expect((yield* get(`${gateway.url}/health/ready`)).status).toBe(200)

      const openai = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 })
      const refused = yield* Effect.flip(Effect.tryPromise(() => openai.chat.completions.create({ model: "primary", messages: [] })))
      expect(refused.error).toBeInstanceOf(OpenAI.AuthenticationError)
    })))

  it.live("a gateway key whose variable is not set fails the start, naming the field and the variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(harness({ gateway: { gatewayKeys: [{ name: "x", env: "NOT_SET_ANYWHERE" }] } })))
      expect(error).toMatchObject({ _tag: "InvalidConfigError", path: "gateway.gatewayKeys.0.env" })
      expect(String((error as { message: string }).message)).toContain("NOT_SET_ANYWHERE")
    }))
})
