/**
 * The deployments of a configuration as @effect/ai provider models, each
 * with its key pool and its `Policy`.
 *
 * A deployment's provider client is built once, without `apiKey`: the key
 * of each attempt is set per request by `KeyRotation.transformClient`, so
 * one client serves the whole pool, and a pool shared by name between
 * deployments of one account shares its key health.
 */
import type * as LanguageModel from "@effect/ai/LanguageModel"
import * as AnthropicClient from "@effect/ai-anthropic/AnthropicClient"
import * as AnthropicLanguageModel from "@effect/ai-anthropic/AnthropicLanguageModel"
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { Errors, HealthProbe, KeyPool, Policy, StateStore } from "@resilient-ai/core"
import { ClientConfig, DeploymentPolicies, DeploymentProbe, HttpProviders } from "@resilient-ai/llm"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as KeyRotation from "../KeyRotation.js"

/** One configured deployment, ready to be called. */
export interface Handle {
  readonly config: ClientConfig.Deployment
  readonly policy: Policy.Service
  /** None for a keyless deployment (a relay with its own auth, a local server). */
  readonly keyPool: KeyPool.Service | undefined
  /** The @effect/ai provider model of the deployment. */
  readonly model: LanguageModel.Service
  /** Its health probe (rule 30), when it has one. */
  readonly probe: HealthProbe.Service | undefined
  /** Notes real traffic: a deployment is probed only while idle. */
  readonly used: Effect.Effect<void>
}

/** The deployment's own headers (a relay's header, an organisation id) and the pool's keys, per request. */
const transformFor = (d: ClientConfig.Deployment, pool: KeyPool.Service | undefined) => {
  const keyed = KeyRotation.transformClient(d.provider, pool)
  const headers = d.headers
  return (client: HttpClient.HttpClient): HttpClient.HttpClient =>
    keyed(headers === undefined ? client : HttpClient.mapRequest(client, HttpClientRequest.setHeaders(headers)))
}

const providerModel = (
  d: ClientConfig.Deployment,
  pool: KeyPool.Service | undefined
): Effect.Effect<LanguageModel.Service, never, HttpClient.HttpClient | Scope.Scope> => {
  const transformClient = transformFor(d, pool)
  const apiUrl = d.baseUrl === undefined ? {} : { apiUrl: d.baseUrl }
  return d.provider === "openai"
    ? Effect.flatMap(OpenAiClient.make({ ...apiUrl, transformClient }), (client) =>
      Effect.provideService(OpenAiLanguageModel.make({ model: d.model }), OpenAiClient.OpenAiClient, client))
    : Effect.flatMap(AnthropicClient.make({ ...apiUrl, transformClient }), (client) =>
      Effect.provideService(AnthropicLanguageModel.make({ model: d.model }), AnthropicClient.AnthropicClient, client))
}

/**
 * The deployment's probe (rule 30), as the LLM client probes it: its
 * questions go over the LLM client's HTTP provider for the deployment, with
 * the key the pool picked for the probe.
 */
const probeOf = (
  config: ClientConfig.ClientConfig,
  index: number,
  d: ClientConfig.Deployment,
  policy: Policy.Service,
  keyPool: KeyPool.Service | undefined
) =>
  Effect.gen(function*() {
    let lastUsed: number | undefined
    const client = yield* HttpClient.HttpClient
    const target = { name: d.name, kind: d.provider, baseUrl: d.baseUrl, model: d.model, headers: d.headers }
    // The configuration's transport limits (first byte): a probe that hangs ends as the client's call would.
    const providerOptions = ClientConfig.providerOptions(config)
    const provider = d.provider === "openai"
      ? HttpProviders.openAiCompatible(client, target, providerOptions)
      : HttpProviders.anthropic(client, target, providerOptions)
    const probe = yield* DeploymentProbe.make(config, index, {
      circuitBreaker: policy.circuitBreaker,
      keyPool,
      lastUsed: Effect.sync(() => lastUsed),
      provider
    })
    const used = probe === undefined
      ? Effect.void
      : Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => void (lastUsed = now)))
    return { probe, used }
  })

/** Builds every deployment of `config`; pools are shared by `keyPool` name. */
export const make = (
  config: ClientConfig.ClientConfig
): Effect.Effect<
  ReadonlyArray<Handle>,
  Errors.InvalidConfigError,
  HttpClient.HttpClient | StateStore.StateStore | Scope.Scope
> =>
  Effect.gen(function*() {
    const handles: Array<Handle> = []
    for (const { config: d, index, keyPool, policy } of yield* DeploymentPolicies.make(config)) {
      const model = yield* providerModel(d, keyPool)
      const { probe, used } = yield* probeOf(config, index, d, policy, keyPool)
      handles.push({ config: d, policy, keyPool, model, probe, used })
    }
    return handles
  })

/** The handles of `names`, in that order (the cascade). */
export const inOrder = (handles: ReadonlyArray<Handle>, names: ReadonlyArray<string>): ReadonlyArray<Handle> =>
  names.flatMap((name) => handles.filter((h) => h.config.name === name))
