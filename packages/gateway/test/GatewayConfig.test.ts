import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as GatewayConfig from "../src/GatewayConfig.js"

const yaml = `
deployments:
  - name: primary
    provider: openai
    model: gpt-4o
    keys: [{ name: main, env: OPENAI_API_KEY }]
  - name: backup
    provider: anthropic
    model: claude-sonnet-4-5
    keys: [{ name: main, env: ANTHROPIC_API_KEY }]
  - name: local
    provider: openai
    model: llama
    baseUrl: http://127.0.0.1:11434/v1
    keys: []
cascade: [primary, backup]
gateway:
  port: 9000
  maxBodyBytes: 1048576
  gatewayKeys: [{ name: team-a, env: GATEWAY_KEY_TEAM_A }]
  aliases: { gpt-4o: primary }
`

describe("GatewayConfig", () => {
  it.effect("YAML: the client part by ClientConfig's schema, the gateway section beside it", () =>
    Effect.gen(function*() {
      const config = yield* GatewayConfig.parse(yaml)
      expect(config.client.cascade).toEqual(["primary", "backup"])
      expect(config.gateway).toMatchObject({ port: 9000, maxBodyBytes: 1048576 })
      // By default each deployment is a model: the cascade from it on, or itself alone.
      expect(config.models).toEqual([["primary", ["primary", "backup"]], ["backup", ["backup"]], ["local", ["local"]]])
      expect(GatewayConfig.resolveModel(config, "gpt-4o")).toBe("primary")
      expect(GatewayConfig.resolveModel(config, "backup")).toBe("backup")
      expect(GatewayConfig.resolveModel(config, "gpt-5")).toBeUndefined()
    }))

  it.effect("gateway.models replaces the default list", () =>
    Effect.gen(function*() {
      const config = yield* GatewayConfig.parse(`${yaml}  models: { smart: [primary, backup], cheap: [local] }\n  aliases: { fast: cheap }\n`
        .replace("  aliases: { gpt-4o: primary }\n", ""))
      expect(config.models).toEqual([["smart", ["primary", "backup"]], ["cheap", ["local"]]])
      expect(GatewayConfig.resolveModel(config, "fast")).toBe("cheap")
      expect(GatewayConfig.resolveModel(config, "primary")).toBeUndefined()
    }))

  it.effect("a bad file fails with every bad field's path, from both parts", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(GatewayConfig.decode({
        deployments: [{ name: "a", provider: "openai", keys: [] }, { name: "b", provider: "mistral", model: "m", keys: [] }],
        cascade: ["a"],
        gateway: { port: 70000, maxBodyBytes: -1, gatewayKeys: [{ name: "bad name", env: "X" }], colour: "red" }
      }))
      expect(error._tag).toBe("InvalidConfigError")
      const paths = (error.problems ?? []).map((p) => p.path)
      expect(paths).toEqual(expect.arrayContaining([
        "deployments.0.model",
        "deployments.1.provider",
        "gateway.port",
        "gateway.maxBodyBytes",
        "gateway.gatewayKeys.0.name",
        "gateway.colour"
      ]))
      expect(error.message).toContain("gateway.port: expected a port from 0 to 65535")
    }))

  it.effect("models and aliases must name what exists", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(GatewayConfig.decode({
        deployments: [{ name: "a", provider: "openai", model: "m", keys: [] }],
        cascade: ["a"],
        gateway: { models: { x: ["a", "zz"] }, aliases: { y: "a" } }
      }))
      expect(error.problems?.map((p) => `${p.path}: ${p.detail}`)).toEqual([
        "gateway.models.x.1: no deployment is named \"zz\"",
        "gateway.aliases.y: no model is named \"a\""
      ])
    }))

  it.effect("text that is not YAML, or a .json file that is not JSON, says so", () =>
    Effect.gen(function*() {
      expect((yield* Effect.flip(GatewayConfig.parse("deployments: [", "yaml"))).detail).toMatch(/^not valid YAML/)
      expect((yield* Effect.flip(GatewayConfig.parse("{", "json"))).detail).toMatch(/^not valid JSON/)
      expect((yield* Effect.flip(GatewayConfig.parse("- 1\n- 2"))).detail).toMatch(/expected an object/)
    }))

  it.effect("fromFile reads .json as JSON and anything else as YAML; a missing file names its path", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "gateway-config-"))
      try {
        const parsed = yield* GatewayConfig.parse(yaml)
        writeFileSync(join(dir, "c.json"), JSON.stringify({ ...parsed.client, gateway: parsed.gateway }))
        writeFileSync(join(dir, "c.yaml"), yaml)
        expect((yield* GatewayConfig.fromFile(join(dir, "c.json"))).models).toEqual(parsed.models)
        expect((yield* GatewayConfig.fromFile(join(dir, "c.yaml"))).gateway).toEqual(parsed.gateway)
        expect((yield* Effect.flip(GatewayConfig.fromFile(join(dir, "nope.yaml")))).detail).toContain("nope.yaml")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})

describe("the README's gateway config", () => {
  it.effect("decodes as it is written", () =>
    Effect.gen(function*() {
      const readme = readFileSync(fileURLToPath(new URL("../../../README.md", import.meta.url)), "utf8")
      const section = readme.split("## The gateway")[1] ?? ""
      const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1] ?? ""
      const config = yield* GatewayConfig.parse(block)
      expect(config.gateway.gatewayKeys).toEqual([
        { name: "team-a", env: "GATEWAY_KEY_TEAM_A", requestsPerMinute: 600, spendLimit: { usd: 50, per: "1 day" } }
      ])
      expect(GatewayConfig.resolveModel(config, "gpt-4o")).toBe("primary")
    }))
})
