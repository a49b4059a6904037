/**
 * The key pool and `Policy` of every deployment of a configuration, as the
 * LLM client and the @effect/ai layer both build them: pools shared by
 * `keyPool` name (one account's keys share their health), a deployment
 * without keys has no pool, and a bad option fails with its path in the
 * user's file (a policy's own fields under `policy`, the pool's under
 * `keys`, `keyStrategy` and `keyHealth`).
 *
 * @since 0.1.0
 */
import { Errors, KeyPool, Policy } from "@resilient-ai/core"
import type { StateStore } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as ClientConfig from "./ClientConfig.js"

/**
 * One deployment's policies.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeploymentPolicies {
  readonly config: ClientConfig.Deployment
  /** Its place in `config.deployments`, for the paths of later errors. */
  readonly index: number
  /** None for a keyless deployment (self-hosted vLLM or Ollama, a relay with its own auth). */
  readonly keyPool: KeyPool.Service | undefined
  readonly policy: Policy.Service
}

/** The path in the user's file of a pool's or policy's config error. */
const prefixed = (index: number) => (e: Errors.InvalidConfigError): Errors.InvalidConfigError =>
  Errors.withConfigPaths(e, (path) =>
    `deployments.${index}.${
      e.component.startsWith("KeyPool")
        ? path === "strategy"
          ? "keyStrategy"
          : path === "" || path.startsWith("keys")
          ? (path === "" ? "keys" : path)
          : `keyHealth.${path}`
        : path === "" ? "policy" : `policy.${path}`
    }`)

/**
 * Every deployment's pool and policy, in the order of `config.deployments`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: ClientConfig.ClientConfig
): Effect.Effect<ReadonlyArray<DeploymentPolicies>, Errors.InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const pools = new Map<string, KeyPool.Service>()
    const out: Array<DeploymentPolicies> = []
    for (const [index, d] of config.deployments.entries()) {
      const poolName = d.keyPool ?? d.name
      let keyPool = pools.get(poolName)
      // A deployment without keys sends no credentials: no pool to pick from.
      if (keyPool === undefined && d.keys.length > 0) {
        const keys = yield* ClientConfig.resolveKeys(d, index)
        keyPool = yield* Effect.mapError(KeyPool.make(ClientConfig.keyPoolOptions(d, keys)), prefixed(index))
        pools.set(poolName, keyPool)
      }
      const policy = yield* Effect.mapError(
        Policy.make({ ...ClientConfig.policyOptions(d), deployment: d.name, ...(keyPool === undefined ? {} : { keyPool }) }),
        prefixed(index)
      )
      out.push({ config: d, index, keyPool, policy })
    }
    return out
  })
