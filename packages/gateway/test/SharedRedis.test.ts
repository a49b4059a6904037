/**
 * Two gateways on one real Redis (`gateway.redisUrl`) share their state: a
 * breaker opened through one is open on the other, and a gateway key's
 * spend limit is one budget across both.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import { inject } from "vitest"
import { get, harness, post } from "./support/harness.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** From packages/redis/test/globalSetup.ts: a Redis for the tests, or "" when there is none. */
    readonly redisUrl: string
  }
}

const redisUrl = inject("redisUrl")
/** A loaded test machine's scheduling pause is not Redis trouble: operations wait 2 s before going local. */
const onRedis = () => ({ redisUrl, redisPrefix: `gw-test-${randomUUID()}:`, redisOperationTimeout: "2 seconds" })
const body = JSON.stringify({ model: "primary", messages: [{ role: "user", content: "hi" }] })
const down = [{ _tag: "Outage", from: 0, to: Infinity, error: "unavailable" }] as const

interface Status {
  readonly deployments: ReadonlyArray<{ readonly name: string; readonly circuitBreaker: { readonly state: string } }>
}
const breakerOf = (status: unknown, name: string) =>
  (status as Status).deployments.find((d) => d.name === name)?.circuitBreaker.state

describe.skipIf(redisUrl === "")("two gateways on one Redis", () => {
  it.live("a breaker opened through one gateway is open on the other: its requests go to the backup without calling the primary", () =>
    Effect.scoped(Effect.gen(function*() {
      const shared = onRedis()
      const a = yield* harness({ primary: { script: down }, gateway: shared })
      const b = yield* harness({ chaos: a.chaos, gateway: shared })
      expect(breakerOf((yield* get(`${b.gateway.url}/status`)).json, "primary")).toBe("closed")
      // Consecutive 3 opens it; each request makes 2 attempts (one retry).
      for (let i = 0; i < 2; i++) expect((yield* post(`${a.gateway.url}/v1/chat/completions`, body)).status).toBe(200)
      expect(breakerOf((yield* get(`${a.gateway.url}/status`)).json, "primary")).toBe("open")
      // B's cached view of the breaker is at most 100 ms old (RedisStore's refreshInterval).
      yield* Effect.sleep("300 millis")
      expect(breakerOf((yield* get(`${b.gateway.url}/status`)).json, "primary")).toBe("open")
      const primaryCalls = (yield* a.chaos.calls)["primary"]?.calls
      const through = yield* post(`${b.gateway.url}/v1/chat/completions`, body)
      expect(through.status).toBe(200)
      expect(through.headers.get("x-resilient-deployment")).toBe("backup")
      expect(through.headers.get("x-resilient-attempts")).toBe("1")
      expect((yield* a.chaos.calls)["primary"]?.calls).toBe(primaryCalls)
    })))

  it.live("a gateway key's spend limit is one budget across both gateways", () =>
    Effect.scoped(Effect.gen(function*() {
      const gateway = {
        ...onRedis(),
        gatewayKeys: [{ name: "team-a", env: "GATEWAY_KEY_TEAM_A", spendLimit: { usd: 1, per: "1 hour" } }]
      }
      const pricey = { price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 } }
      const a = yield* harness({ gateway, deploymentFields: pricey })
      const b = yield* harness({ chaos: a.chaos, gateway, deploymentFields: pricey })
      const asA = { authorization: "Bearer gw-team-a-secret" }
      expect((yield* post(`${a.gateway.url}/v1/chat/completions`, body, asA)).status).toBe(200)
      yield* Effect.sleep("300 millis")
      expect((yield* post(`${b.gateway.url}/v1/chat/completions`, body, asA)).status).toBe(429)
    })))
})

describe("a redisUrl that cannot connect anywhere", () => {
  it.live("fails the gateway's start with a config error naming gateway.redisUrl, without the password", () =>
    Effect.scoped(Effect.gen(function*() {
      const error = yield* Effect.flip(harness({ gateway: { redisUrl: "redis://:hunter2@localhost:0" } }))
      expect(error).toMatchObject({ _tag: "InvalidConfigError", component: "Gateway", path: "gateway.redisUrl" })
      expect(String(error)).not.toContain("hunter2")
    })))
})
