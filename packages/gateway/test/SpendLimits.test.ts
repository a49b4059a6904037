import { describe, expect, it } from "@effect/vitest"
import { StateStore } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as ClientLimits from "../src/ClientLimits.js"
import { harness, post } from "./support/harness.js"

const body = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "primary", messages: [{ role: "user", content: "hi" }], ...extra })
const asA = { authorization: "Bearer gw-team-a-secret" }
const asB = { authorization: "Bearer gw-team-b-secret" }

// One USD a token: any answer costs more than the 1 USD budget.
const pricey = { price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 } }

describe("spend limits per gateway key (ClientLimits, rule 36)", () => {
  it.live("a key over its budget gets 429 insufficient_quota until its overspend is paid back (Retry-After); other keys are served", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({
        deploymentFields: pricey,
        gateway: {
          gatewayKeys: [
            { name: "team-a", env: "GATEWAY_KEY_TEAM_A", spendLimit: { usd: 1, per: "1 hour" } },
            { name: "team-b", env: "GATEWAY_KEY_TEAM_B" }
          ]
        }
      })
      const first = yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)
      expect(first.status).toBe(200)
      const refused = yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)
      expect(refused.status).toBe(429)
      expect(refused.json).toMatchObject({ error: { type: "insufficient_quota", code: "insufficient_quota" } })
      expect((refused.json as { error: { message: string } }).error.message).toContain(`"team-a": 1 USD per 1h`)
      // The answer cost T USD (T tokens) of a 1 USD hourly budget: T - 1 USD over, so T hourly refills until it is served again.
      const tokens = (first.json as { usage: { total_tokens: number } }).usage.total_tokens
      expect(tokens).toBeGreaterThan(1)
      const retryAfter = Number(refused.headers.get("retry-after"))
      expect(retryAfter).toBeGreaterThan(tokens * 3_600 - 100)
      expect(retryAfter).toBeLessThanOrEqual(tokens * 3_600)
      // Anthropic's endpoint refuses in Anthropic's shape.
      const messages = yield* post(
        `${gateway.url}/v1/messages`,
        JSON.stringify({ model: "primary", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }),
        asA
      )
      expect(messages.status).toBe(429)
      expect(messages.json).toMatchObject({ type: "error", error: { type: "rate_limit_error" } })
      expect((yield* post(`${gateway.url}/v1/chat/completions`, body(), asB)).status).toBe(200)
      // Refused requests reached no upstream.
      expect((yield* chaos.calls)["primary"]?.calls).toBe(2)
    })))

  it.live("a stream's cost is charged when it ends: the next request of the key is refused", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({
        deploymentFields: pricey,
        gateway: { gatewayKeys: [{ name: "team-a", env: "GATEWAY_KEY_TEAM_A", spendLimit: { usd: 1, per: "1 hour" } }] }
      })
      const streamed = yield* post(`${gateway.url}/v1/chat/completions`, body({ stream: true }), asA)
      expect(streamed.status).toBe(200)
      expect(streamed.text.trimEnd().endsWith("data: [DONE]")).toBe(true)
      expect((yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)).status).toBe(429)
    })))

  it.live("a stream cut and continued elsewhere (continue-with-prefix) ends whole and is charged its continuation's cost", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({
        deploymentFields: pricey,
        client: { midStreamPolicy: "continue-with-prefix" },
        // Every primary stream is cut after its opening event and one token: the backup continues each.
        primary: { script: [{ _tag: "StreamStall", from: 0, to: Number.MAX_SAFE_INTEGER, rate: 1, afterChunks: 2, as: "cut" }] },
        gateway: { gatewayKeys: [{ name: "team-a", env: "GATEWAY_KEY_TEAM_A", spendLimit: { usd: 1, per: "1 hour" } }] }
      })
      const streamed = yield* post(`${gateway.url}/v1/chat/completions`, body({ stream: true }), asA)
      expect(streamed.status).toBe(200)
      expect(streamed.text.trimEnd().endsWith("data: [DONE]")).toBe(true)
      expect((yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)).status).toBe(429)
    })))

  it.live("a request refused for its spend takes nothing from the key's requests per minute: the key is told it is out of money each time", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({
        deploymentFields: pricey,
        gateway: {
          gatewayKeys: [{ name: "team-a", env: "GATEWAY_KEY_TEAM_A", requestsPerMinute: 2, spendLimit: { usd: 1, per: "1 hour" } }]
        }
      })
      expect((yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)).status).toBe(200)
      for (let i = 0; i < 3; i++) {
        const refused = yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)
        expect(refused.status).toBe(429)
        expect(refused.json).toMatchObject({ error: { code: "insufficient_quota" } })
      }
    })))

  it.effect("a request refused for its rate gives back the spend it was let in with: the key's last micro-dollar still lets it in once its rate allows", () =>
    Effect.gen(function*() {
      const limits = yield* ClientLimits.make([{ name: "team-a", requestsPerMinute: 1, spendLimit: { usd: 1, per: "1 hour" } }])
      const outcome = Effect.match(limits.admit("team-a"), { onFailure: (e) => e.body.error.code, onSuccess: () => "admitted" })
      // The first request is charged all but one micro-dollar of the hour's 1 USD.
      const first = yield* limits.admit("team-a")
      yield* first.charge(0.999999)
      // The second is let in by its spend (a micro-dollar is left), then refused for the key's rate.
      expect(yield* outcome).toBe("rate_limit_exceeded")
      // A minute on the rate allows one more, and the micro-dollar the refused request held is back to let it in.
      yield* TestClock.adjust("1 minute")
      expect(yield* outcome).toBe("admitted")
    }).pipe(Effect.provide(StateStore.layerMemory)))

  it.live("a key within its budget is served request after request", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({
        deploymentFields: { price: { inputPerMillion: 1, outputPerMillion: 1 } },
        gateway: { gatewayKeys: [{ name: "team-a", env: "GATEWAY_KEY_TEAM_A", spendLimit: { usd: 1, per: "1 hour" } }] }
      })
      for (let i = 0; i < 5; i++) expect((yield* post(`${gateway.url}/v1/chat/completions`, body(), asA)).status).toBe(200)
    })))

  it.effect("a spend limit of zero USD or a bad window is a config error naming its path", () =>
    Effect.gen(function*() {
      const { GatewayConfig } = yield* Effect.promise(() => import("../src/index.js"))
      const bad = yield* Effect.flip(GatewayConfig.decode({
        deployments: [{ name: "p", provider: "openai", model: "m", keys: [] }],
        cascade: ["p"],
        gateway: { gatewayKeys: [{ name: "a", env: "A", spendLimit: { usd: 0, per: "soon" } }] }
      }))
      const paths = (bad.problems ?? [{ path: bad.path }]).map((p) => p.path)
      expect(paths).toEqual(["gateway.gatewayKeys.0.spendLimit.usd", "gateway.gatewayKeys.0.spendLimit.per"])
    }))
})
