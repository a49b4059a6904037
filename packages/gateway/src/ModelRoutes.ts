/**
 * The public models of the gateway, each a `ResilientClient` over its own
 * cascade.
 *
 * `ResilientClient` runs one cascade per client, whatever a request's
 * `model`, so a model with a cascade of its own is a client of its own.
 * Every client is built from the same deployments over the same
 * `StateStore`, and the store shares state by policy kind and name: a
 * deployment has one breaker, one key health, one set of rate-limit buckets
 * and one retry budget whichever model a request names. What is still per
 * client: a fixed bulkhead's permits, health probes and the response cache
 * (see the package README's list of what the client would need for one
 * client per gateway).
 *
 * @since 0.1.0
 */
import type { Errors, StateStore } from "@resilient-ai/core"
import type * as Provider from "@resilient-ai/llm/Provider"
import * as ResilientClient from "@resilient-ai/llm/ResilientClient"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as GatewayConfig from "./GatewayConfig.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Route {
  /** The public model name. */
  readonly model: string
  readonly cascade: ReadonlyArray<string>
  readonly client: ResilientClient.Service
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** In the order `/v1/models` lists them. */
  readonly routes: ReadonlyArray<Route>
  /** The route a request's `model` names (directly or by alias), if any. */
  readonly resolve: (model: string) => Route | undefined
  /** Each configured deployment once, for status and readiness. */
  readonly deployments: ReadonlyArray<ResilientClient.DeploymentHandle>
  /** Model names and aliases, for `/v1/models`. */
  readonly names: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: GatewayConfig.GatewayConfig
): Effect.Effect<Service, Errors.InvalidConfigError, Provider.Providers | StateStore.StateStore | Scope.Scope> =>
  Effect.gen(function*() {
    const extras = GatewayConfig.clientExtras(config.gateway)
    const routes: Array<Route> = []
    for (const [model, cascade] of config.models) {
      const [first, ...rest] = cascade
      if (first === undefined) continue
      // Only the deployments this model may reach: the others would be built (and probed) once per model.
      const reach = new Set([...cascade, ...(config.client.contextFallback ?? [])])
      const deployments = config.client.deployments.filter((d) => reach.has(d.name))
      const [d0, ...ds] = deployments
      if (d0 === undefined) continue
      const client = yield* ResilientClient.make({ ...config.client, deployments: [d0, ...ds], cascade: [first, ...rest] }, extras)
      routes.push({ model, cascade, client })
    }
    const byModel = new Map(routes.map((r) => [r.model, r]))
    const seen = new Map<string, ResilientClient.DeploymentHandle>()
    for (const route of routes) {
      for (const h of route.client.deployments) if (!seen.has(h.config.name)) seen.set(h.config.name, h)
    }
    return {
      routes,
      resolve: (model) => {
        const name = GatewayConfig.resolveModel(config, model)
        return name === undefined ? undefined : byModel.get(name)
      },
      deployments: [...seen.values()],
      names: [...routes.map((r) => r.model), ...Object.keys(config.aliases)]
    }
  })
