import { ChaosUpstream, FaultScript } from "@resilient-ai/testkit"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Gateway from "../../src/Gateway.js"
import * as GatewayConfig from "../../src/GatewayConfig.js"

/** Secrets of the chaos upstream's keys, and the env the gateway reads them from. */
export const env = new Map([
  ["PRIMARY_KEY", "sk-primary-one"],
  ["BACKUP_KEY", "sk-backup-one"],
  ["GATEWAY_KEY_TEAM_A", "gw-team-a-secret"],
  ["GATEWAY_KEY_TEAM_B", "gw-team-b-secret"]
])

/** A fast chaos deployment: 5 ms answers, errors at once, short streams. */
export const quick = (name: string, extra: Partial<ChaosUpstream.Deployment> = {}): ChaosUpstream.Deployment => ({
  name,
  latency: FaultScript.fixed(5),
  errorLatency: FaultScript.fixed(0),
  script: [],
  stream: { chunks: 3, interChunk: FaultScript.fixed(2) },
  ...extra
})

export interface Harness {
  readonly chaos: ChaosUpstream.Service
  readonly gateway: Gateway.Service
  /** `http://127.0.0.1:PORT/v1`, an OpenAI client's base URL. */
  readonly baseURL: string
}

export interface HarnessOptions {
  readonly primary?: Partial<ChaosUpstream.Deployment>
  readonly backup?: Partial<ChaosUpstream.Deployment>
  readonly gateway?: Record<string, unknown>
  readonly primaryPolicy?: Record<string, unknown>
  readonly backupPolicy?: Record<string, unknown>
  readonly extraDeployments?: ReadonlyArray<Record<string, unknown>>
  /** An upstream of an earlier harness, to put a second gateway before it. */
  readonly chaos?: ChaosUpstream.Service
  /** Fields of the primary's and the backup's deployment (a price). */
  readonly deploymentFields?: Record<string, unknown>
  /** The primary's base URL, in place of the upstream's (a proxy in front of it). */
  readonly primaryBaseUrl?: (upstream: string) => string
  /** Top-level client fields of the config (`maxWaitBeforeFallback`). */
  readonly client?: Record<string, unknown>
}

/**
 * A chaos upstream with `primary` (spoken to in OpenAI's format) and `backup`
 * (Anthropic's), and a gateway in front on a free port; both stop with the scope.
 */
export const harness = (options: HarnessOptions = {}): Effect.Effect<Harness, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const chaos = options.chaos ?? (yield* ChaosUpstream.make({
      deployments: [
        quick("primary", { keys: { "primary-1": "sk-primary-one" }, ...options.primary }),
        quick("backup", { keys: { "backup-1": "sk-backup-one" }, ...options.backup })
      ]
    }))
    const config = yield* GatewayConfig.decode({
      deployments: [
        {
          name: "primary",
          provider: "openai",
          model: "chaos-gpt",
          baseUrl: (options.primaryBaseUrl ?? ((url: string) => url))(chaos.openAiBaseUrl("primary")),
          keys: [{ name: "primary-1", env: "PRIMARY_KEY" }],
          probe: false,
          ...options.deploymentFields,
          policy: {
            attemptTimeout: "3 seconds",
            retry: { maxRetries: 1, baseDelay: 5, jitter: "none" },
            circuitBreaker: { trigger: { kind: "consecutive", failures: 3 }, openDuration: "30 seconds" },
            ...options.primaryPolicy
          }
        },
        {
          name: "backup",
          provider: "anthropic",
          model: "chaos-claude",
          baseUrl: chaos.anthropicBaseUrl("backup"),
          keys: [{ name: "backup-1", env: "BACKUP_KEY" }],
          probe: false,
          ...options.deploymentFields,
          policy: { attemptTimeout: "3 seconds", retry: { maxRetries: 0 }, ...options.backupPolicy }
        },
        ...(options.extraDeployments ?? [])
      ],
      cascade: ["primary", "backup"],
      ...options.client,
      gateway: { port: 0, aliases: { "gpt-4o-mini": "primary" }, shutdownTimeout: "2 seconds", ...options.gateway }
    })
    const gateway = yield* Gateway.start({ config }, { proxyFromEnvironment: false, connectTimeout: "2 seconds" })
    return { chaos, gateway, baseURL: `${gateway.url}/v1` }
  }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(env)))

/** A raw HTTP call with fetch, for what the SDKs will not send. */
export const post = (url: string, body: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } })
    const text = await response.text()
    return { status: response.status, headers: response.headers, text, json: safeJson(text) }
  })

export const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers })
    const text = await response.text()
    return { status: response.status, headers: response.headers, text, json: safeJson(text) }
  })

const safeJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
