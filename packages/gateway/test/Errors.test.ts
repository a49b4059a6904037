import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import { get, harness, post } from "./support/harness.js"

const ask = (model = "primary") => JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] })

describe("errors with the gateway's own status and Retry-After", () => {
  it.live("every fallback down: 503 all_fallbacks_exhausted; once both breakers are open, Retry-After is when the first comes back, and /health/ready says 503", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({
        primary: { script: [{ _tag: "Outage", from: 0, to: Infinity }] },
        backup: { script: [{ _tag: "Outage", from: 0, to: Infinity }] },
        primaryPolicy: { retry: false, circuitBreaker: { trigger: { kind: "consecutive", failures: 2 }, openDuration: "30 seconds" } },
        backupPolicy: { circuitBreaker: { trigger: { kind: "consecutive", failures: 2 }, openDuration: "20 seconds" } }
      })
      const first = yield* post(`${gateway.url}/v1/chat/completions`, ask())
      expect(first.status).toBe(503)
      expect(first.json).toMatchObject({ error: { type: "server_error", code: "all_fallbacks_exhausted", param: null } })
      // Both deployments could still serve (their breakers are closed): try again in a second.
      expect(first.headers.get("retry-after")).toBe("1")
      expect((yield* get(`${gateway.url}/health/ready`)).status).toBe(200)

      yield* post(`${gateway.url}/v1/chat/completions`, ask())
      const third = yield* post(`${gateway.url}/v1/chat/completions`, ask())
      expect(third.status).toBe(503)
      // The backup's breaker opened last, for 20 s: it is the first to come back.
      const retryAfter = Number(third.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThanOrEqual(19)
      expect(retryAfter).toBeLessThanOrEqual(20)
      // The third request met open breakers only: no upstream call.
      const calls = yield* chaos.calls
      expect(calls["primary"]?.calls).toBe(2)
      expect(calls["backup"]?.calls).toBe(2)
      const ready = yield* get(`${gateway.url}/health/ready`)
      expect(ready.status).toBe(503)
      expect(ready.json).toMatchObject({ status: "unavailable", canServe: [] })
      expect((yield* get(`${gateway.url}/health`)).status).toBe(200)
    })))

  it.live("an upstream 429 is a 429 with its Retry-After; then no key until T is a 429 naming T, with Retry-After until then", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({
        backup: { script: [{ _tag: "RateLimitStorm", from: 0, to: Infinity, rate: 1, retryAfterMs: 20_000 }] }
      })
      const first = yield* post(`${gateway.url}/v1/chat/completions`, ask("backup"))
      expect(first.status).toBe(429)
      expect(first.json).toMatchObject({ error: { type: "rate_limit_error", code: "rate_limit_exceeded" } })
      expect(first.headers.get("retry-after")).toBe("20")
      const second = yield* post(`${gateway.url}/v1/chat/completions`, ask("backup"))
      expect(second.status).toBe(429)
      expect(second.json).toMatchObject({ error: { type: "rate_limit_error", code: "no_key_available" } })
      expect((second.json as { error: { message: string } }).error.message).toMatch(/until \d{4}-\d\d-\d\dT/)
      const retryAfter = Number(second.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThanOrEqual(19)
      expect(retryAfter).toBeLessThanOrEqual(20)
      // No key was called again before its Retry-After.
      expect((yield* chaos.calls)["backup"]?.calls).toBe(1)
    })))

  it.live("an upstream refusal is passed through with its status, sanitized (no secret leaves), and is not fallen back from", () =>
    Effect.scoped(Effect.gen(function*() {
      // A provider that refuses every request, echoing a secret in its message.
      let calls = 0
      const refuser = yield* Effect.acquireRelease(
        Effect.async<Http.Server>((resume) => {
          const server = Http.createServer((request, response) => {
            calls += 1
            request.resume()
            response.writeHead(422, { "content-type": "application/json" })
            response.end(JSON.stringify({
              error: {
                message: "Invalid 'temperature' for key sk-proj-AbCdEfGhIjKlMnOpQrStUvWx: expected at most 2",
                type: "invalid_request_error",
                param: "temperature",
                code: "invalid_value"
              }
            }))
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.async<void>((resume) => {
            server.close(() => resume(Effect.void))
          })
      )
      const address = refuser.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const { gateway } = yield* harness({
        gateway: { models: { strict: ["refuser", "primary"] }, aliases: {} },
        extraDeployments: [{
          name: "refuser",
          provider: "openai",
          model: "m",
          baseUrl: `http://127.0.0.1:${port}/v1`,
          keys: [],
          probe: false,
          policy: { retry: false }
        }]
      })
      const response = yield* post(`${gateway.url}/v1/chat/completions`, ask("strict"))
      expect(response.status).toBe(422)
      expect(response.json).toMatchObject({ error: { type: "invalid_request_error" } })
      expect(response.text).toContain("Invalid 'temperature'")
      expect(response.text).not.toContain("AbCdEfGhIjKlMnOpQrStUvWx")
      // A refusal of the request itself is final: one call, no fallback to the primary.
      expect(calls).toBe(1)
    })))
})
