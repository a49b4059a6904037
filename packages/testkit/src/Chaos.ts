/**
 * Chaos for your own tests, as Polly's chaos strategies: wrap any effect
 * with a strategy and a share of its runs goes wrong on purpose.
 *
 * - {@link fault}: fails with a typed error instead of running;
 * - {@link defect}: dies with a defect instead of running (a bug, a thrown
 *   exception in a callback);
 * - {@link latency}: runs late, after a sleep on effect's `Clock`;
 * - {@link outcome}: answers with another outcome (success or failure)
 *   instead of running.
 *
 * Every strategy has an `injectionRate` (0–1): each run draws one number
 * from effect's `Random` and is injected when the draw falls below it (no
 * draw at 0 or 1). Under `TestClock` and a seeded `Random`
 * (`Effect.withRandom(Random.make(seed))`) a test is deterministic. Each
 * has an `enabled` switch read on every run: a boolean, a `Ref<boolean>`
 * (flip it mid-test, as Polly's `EnabledGenerator`), a
 * `Config.boolean("CHAOS")` flag, or any `Effect<boolean>`; a switch whose
 * config cannot be read is off, so a missing flag never breaks a call.
 * Strategies compose with `pipe`: the first applied is the innermost.
 *
 * {@link layerProviders} swaps chaos into a `Provider.Providers` service,
 * so the whole `ResilientClient` (retries, breakers, fallbacks) is tested
 * against the faults a real provider shows, without a network.
 *
 * Why not `ChaosUpstream` or `SimulatedProviders`: those are whole fake
 * providers driven by a `FaultScript` timeline; this wraps the effect you
 * already have (a real provider, a tool call, a database query) and needs
 * neither a script nor virtual time.
 *
 * @since 0.1.0
 */
import type { Errors } from "@resilient-ai/core"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as Chunks from "@resilient-ai/llm/Chunks"
import * as Provider from "@resilient-ai/llm/Provider"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"

/**
 * Whether a strategy is on, read on every run: a constant, a
 * `Ref<boolean>`, a `Config<boolean>`, or any effect giving a boolean.
 *
 * @since 0.1.0
 * @category models
 */
export type Switch = boolean | Effect.Effect<boolean, ConfigError.ConfigError>

/**
 * What every strategy takes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Common {
  /** Share of runs injected, 0–1. */
  readonly injectionRate: number
  /** Default `true`. */
  readonly enabled?: Switch
}

/**
 * A strategy: wraps an effect, may add its own error type `E2` and
 * success type `A2`.
 *
 * @since 0.1.0
 * @category models
 */
export type Strategy<A2 = never, E2 = never> = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A | A2, E | E2, R>

const isOn = (enabled: Switch | undefined): Effect.Effect<boolean> =>
  enabled === undefined || typeof enabled === "boolean"
    ? Effect.succeed(enabled ?? true)
    : Effect.orElseSucceed(enabled, () => false)

/**
 * True when this run is to be injected: the switch is on and the draw falls
 * below the rate. A rate of 0 or less never draws and never injects; 1 or
 * more always injects without a draw.
 *
 * @since 0.1.0
 * @category combinators
 */
export const shouldInject = (common: Common): Effect.Effect<boolean> =>
  Effect.flatMap(isOn(common.enabled), (on) =>
    !on || common.injectionRate <= 0
      ? Effect.succeed(false)
      : common.injectionRate >= 1
      ? Effect.succeed(true)
      : Effect.map(Random.next, (u) => u < common.injectionRate))

const injecting = <A2, E2, R2>(common: Common, instead: Effect.Effect<A2, E2, R2>) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A | A2, E | E2, R | R2> =>
  Effect.flatMap(shouldInject(common), (inject): Effect.Effect<A | A2, E | E2, R | R2> => (inject ? instead : self))

/**
 * Fails with `error` instead of running, for a share of runs.
 *
 * @since 0.1.0
 * @category strategies
 */
export const fault = <E2>(options: Common & { readonly error: E2 }): Strategy<never, E2> =>
  injecting(options, Effect.fail(options.error))

/**
 * Dies with `defect` instead of running, for a share of runs.
 *
 * @since 0.1.0
 * @category strategies
 */
export const defect = (options: Common & { readonly defect: unknown }): Strategy =>
  injecting(options, Effect.die(options.defect))

/**
 * Runs after a delay of `latency` (on effect's `Clock`), for a share of runs.
 *
 * @since 0.1.0
 * @category strategies
 */
export const latency = (options: Common & { readonly latency: Duration.DurationInput }): Strategy => {
  const delay = Duration.decode(options.latency)
  return (self) => Effect.flatMap(shouldInject(options), (inject) => (inject ? Effect.delay(self, delay) : self))
}

/**
 * Answers with `outcome` instead of running, for a share of runs: an
 * effect, so a success (`Effect.succeed`) or a failure (`Effect.fail`).
 *
 * @since 0.1.0
 * @category strategies
 */
export const outcome = <A2, E2>(options: Common & { readonly outcome: Effect.Effect<A2, E2> }): Strategy<A2, E2> =>
  injecting(options, options.outcome)

/**
 * Chaos for the providers of a `Provider.Providers` service.
 *
 * @since 0.1.0
 * @category options
 */
export interface ProviderChaos {
  /** The deployments (target names) it applies to. Default: every one. */
  readonly deployments?: ReadonlyArray<string>
  /** A typed error instead of the call (a chat, a stream's opening). */
  readonly fault?: Common & { readonly error: (target: Provider.Target) => Errors.ResilienceError }
  /** A defect instead of the call. */
  readonly defect?: Common & { readonly defect: unknown }
  /** A delay before the call (a stream: before it opens). */
  readonly latency?: Common & { readonly latency: Duration.DurationInput }
  /** Another answer instead of the call; a stream hands it on as chunks. */
  readonly outcome?: Common & { readonly response: (request: Chat.ChatRequest, target: Provider.Target) => Chat.ChatResponse }
}

/**
 * The providers of `providers` with `chaos` applied to the deployments it
 * names: latency first, then an outcome, a fault or a defect (each drawn
 * on its own, in that order), then the real call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const wrapProvider = (provider: Provider.Provider, target: Provider.Target, chaos: ProviderChaos): Provider.Provider => {
  if (chaos.deployments !== undefined && !chaos.deployments.includes(target.name)) return provider
  const around = <A>(
    self: Effect.Effect<A, Errors.ResilienceError>,
    replaced: (response: Chat.ChatResponse) => A,
    request: Chat.ChatRequest
  ): Effect.Effect<A, Errors.ResilienceError> => {
    let call = self
    if (chaos.defect !== undefined) call = defect(chaos.defect)(call)
    if (chaos.fault !== undefined) call = fault({ ...chaos.fault, error: chaos.fault.error(target) })(call)
    if (chaos.outcome !== undefined) {
      const o = chaos.outcome
      call = outcome({ ...o, outcome: Effect.sync(() => replaced(o.response(request, target))) })(call)
    }
    if (chaos.latency !== undefined) call = latency(chaos.latency)(call)
    return call
  }
  return {
    ...provider,
    chat: (request, context) =>
      around(provider.chat(request, context), (response): Provider.ProviderAnswer => ({ response, rateLimit: undefined }), request),
    stream: (request, context) =>
      around(
        provider.stream(request, context),
        (response): Provider.StreamAnswer => ({ chunks: Stream.fromIterable(Chunks.fromResponse(response)), rateLimit: undefined }),
        request
      )
  }
}

/**
 * A `Provider.Providers` layer over the one it is given, with `chaos`
 * applied: provide it between your providers and the client.
 *
 * ```ts
 * const providers = Chaos.layerProviders({
 *   fault: { injectionRate: 0.2, enabled: chaosOn, error: (t) => new Errors.ProviderUnavailableError({ deployment: t.name, status: 503 }) }
 * }).pipe(Layer.provide(HttpProviders.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerProviders = (chaos: ProviderChaos): Layer.Layer<Provider.Providers, never, Provider.Providers> =>
  Layer.effect(
    Provider.Providers,
    Effect.map(Provider.Providers, (inner) => {
      // One wrapped provider per target name, as the inner service keeps one provider per target.
      const wrapped = new Map<string, Provider.Provider>()
      return {
        forTarget: (target: Provider.Target) => {
          const done = wrapped.get(target.name)
          if (done !== undefined) return done
          const provider = wrapProvider(inner.forTarget(target), target, chaos)
          wrapped.set(target.name, provider)
          return provider
        }
      }
    })
  )
