/**
 * The public models of the gateway: one `ResilientClient` over every
 * deployment, and each model a cascade of them, picked per request
 * (`ChatOptions.cascade`).
 *
 * One client means one breaker, one key pool, one bulkhead, one set of
 * rate-limit buckets, one health probe and one response cache per
 * deployment, whichever model a request names. The cache keys on the
 * request's `model` (the public name or alias the client sent), so one
 * model's answers never answer another's requests.
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
  /** Deployment names, tried in this order. */
  readonly cascade: ReadonlyArray<string>
  /** What the route's requests pass to the client: `{ cascade }`. */
  readonly options: ResilientClient.ChatOptions
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The one client every model is served by. */
  readonly client: ResilientClient.Service
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
  Effect.map(ResilientClient.make(config.client, GatewayConfig.clientExtras(config.gateway)), (client) => {
    const routes: ReadonlyArray<Route> = config.models.map(([model, cascade]) => ({ model, cascade, options: { cascade } }))
    const byModel = new Map(routes.map((r) => [r.model, r]))
    return {
      client,
      routes,
      resolve: (model) => {
        const name = GatewayConfig.resolveModel(config, model)
        return name === undefined ? undefined : byModel.get(name)
      },
      deployments: client.deployments,
      names: [...routes.map((r) => r.model), ...Object.keys(config.aliases)]
    }
  })
