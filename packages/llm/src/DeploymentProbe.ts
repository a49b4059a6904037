/**
 * A configured deployment's health probe (docs/semantics.md rule 30), as
 * the configuration file asks for it (`probe` per deployment: by default
 * every deployment of the cascade but its first). Shared by the LLM
 * client and the @effect/ai layer, so a deployment is probed the same way
 * whichever of them calls it: its model list, or a 1-token completion
 * with `kind: "completion"`, through the deployment's breaker and key pool.
 *
 * @since 0.1.0
 */
import { Errors, HealthProbe } from "@resilient-ai/core"
import type { CircuitBreaker, KeyPool } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as ClientConfig from "./ClientConfig.js"
import type * as Provider from "./Provider.js"

/**
 * What a probe of one deployment reads and calls.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly circuitBreaker: CircuitBreaker.Service | undefined
  readonly keyPool: KeyPool.Service | undefined
  /** When real traffic last reached the deployment (epoch ms). */
  readonly lastUsed: Effect.Effect<number | undefined>
  /** The deployment's provider over HTTP: the probe's questions are its `probe` and `chat`. */
  readonly provider: Provider.Provider
}

/**
 * The probe of the `index`-th deployment of `config`, or `undefined` when
 * it has none. A bad option fails with its path in the configuration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: ClientConfig.ClientConfig,
  index: number,
  target: Target
): Effect.Effect<HealthProbe.Service | undefined, Errors.InvalidConfigError, Scope.Scope> => {
  const d = config.deployments[index]
  if (d === undefined) return Effect.succeed(undefined)
  const options = d.probe ?? (config.cascade[0] === d.name ? false : {})
  if (options === false) return Effect.succeed(undefined)
  const { provider } = target
  return Effect.mapError(
    HealthProbe.make({
      name: d.name,
      ...(options.every === undefined ? {} : { every: options.every }),
      ...(options.idleFor === undefined ? {} : { idleFor: options.idleFor }),
      ...(options.maxPerMinute === undefined ? {} : { maxPerMinute: options.maxPerMinute })
    }, {
      circuitBreaker: target.circuitBreaker,
      keyPool: target.keyPool,
      lastUsed: target.lastUsed,
      call: (key) => {
        const context = { deployment: d.name, model: d.model, key: key?.key, keyName: key?.name }
        return options.kind === "completion" || provider.probe === undefined
          ? Effect.asVoid(provider.chat({ model: d.model, messages: [{ role: "user", content: "ping" }], maxTokens: 1 }, context))
          : provider.probe(context)
      }
    }),
    (e) => Errors.withConfigPaths(e, Errors.configPathUnder(`deployments.${index}.probe`))
  )
}
