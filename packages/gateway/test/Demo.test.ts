import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import OpenAI from "openai"
import * as Demo from "../src/Demo.js"
import { get, post } from "./support/harness.js"

describe("the demo", () => {
  it.live("answers from the primary; after POST /admin/outage the backup answers; DELETE /admin/outage ends it", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* Demo.start({ port: 0 })
      const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "none", maxRetries: 0 })
      const ask = Effect.promise(() =>
        openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] }).withResponse()
      )
      const before = yield* ask
      expect(before.data.choices[0]?.message.content).toBe("answer from primary")
      expect(before.response.headers.get("x-resilient-source")).toBe("primary")

      const outage = yield* post(`${gateway.url}/admin/outage`, JSON.stringify({ seconds: 30 }))
      expect(outage.json).toEqual({ outage: { deployment: "primary", seconds: 30, kind: "unavailable" } })
      const during = yield* ask
      expect(during.data.choices[0]?.message.content).toBe("answer from backup")
      expect(during.response.headers.get("x-resilient-source")).toBe("fallback-provider")
      expect((yield* chaos.calls)["primary"]?.outcomes.unavailable).toBeGreaterThanOrEqual(1)

      expect((yield* post(`${gateway.url}/admin/outage`, "{\"seconds\":-1}")).status).toBe(400)
      const ended = yield* Effect.promise(() => fetch(`${gateway.url}/admin/outage`, { method: "DELETE" }).then((r) => r.json()))
      expect(ended).toEqual({ outage: null })
      expect((yield* get(`${gateway.url}/v1/models`)).json).toMatchObject({
        data: [{ id: "primary" }, { id: "backup" }, { id: "gpt-4o-mini" }, { id: "claude-haiku" }]
      })
    })))
})
