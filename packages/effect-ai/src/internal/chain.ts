/**
 * The cascade of one call: each deployment under its `Policy`, the fallback
 * chain across them (`Fallback`, on the fallbackable tags), optionally a
 * static reply, all as one request with one budget (`Fallback.run`).
 *
 * It is the same chain for an answer and for a stream: what an attempt does
 * is the caller's (`Attempt`). An attempt runs with `Policy.CurrentAttempt`
 * in its context, which is where `KeyRotation` finds the key for the
 * request, and its `AiError`s are read as our errors before any policy sees
 * them.
 */
import * as AiError from "@effect/ai/AiError"
import type * as Response from "@effect/ai/Response"
import { Deadline, Errors, Fallback, Policy } from "@resilient-ai/core"
import type { RequestBudget } from "@resilient-ai/core"
import { ClientConfig } from "@resilient-ai/llm"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as AiErrors from "../AiErrors.js"
import type { Answered, Method, Skipped } from "../ResilientLanguageModel.js"
import type { Handle } from "./deployments.js"

export type { Answered, Method }

/** What every call of one resilient model shares. */
export interface Cascade {
  readonly steps: ReadonlyArray<Handle>
  /** The deployments that take over a `ContextLengthError`, in order, each with the errors it takes. */
  readonly largerWindows: ReadonlyArray<{ readonly handle: Handle; readonly takesOver: (e: Errors.ResilienceError) => boolean }>
  readonly limits: RequestBudget.Limits
  /** Rule 25: a step with a later step to go to waits at most this long (ms) for a Retry-After or a key. */
  readonly maxWaitBeforeFallback: number
}

/** One attempt on one deployment. */
export type Attempt<A, E, R> = (h: Handle, attempt: Policy.Attempt) => Effect.Effect<A, E, R>

/** How a call is run through the cascade. */
export interface Call<A> {
  readonly method: Method
  readonly usage: (a: A) => Response.Usage | undefined
  /** A stream applies the attempt's time limit to its opening only (rule 28). */
  readonly streams: boolean
  /** A deployment not to call (one that was cut off and is not asked to continue itself). */
  readonly exclude?: string
  /** The cache's stale entry, served before the static reply (stale-if-error, rule 18). */
  readonly stale?: Effect.Effect<Option.Option<{ readonly value: A; readonly ageMs: number; readonly stale: boolean }>>
  /** The static reply, when the layer has one: `None` when it has none for this call. */
  readonly staticReply: ((error: Errors.ResilienceError) => Option.Option<A>) | undefined
}

/**
 * A tool handler's own error, carried through the deployment's `Policy` as
 * the attempt's value: the provider answered, so the breaker, the adaptive
 * limit and the key pool learn a success, and the retry and the fallback
 * chain leave it alone. It fails the call again once out of the policy.
 */
interface HandlerFailure<E> {
  readonly [handlerFailure]: true
  readonly error: E
}
const handlerFailure: unique symbol = Symbol.for("@resilient-ai/effect-ai/HandlerFailure")
const isHandlerFailure = (u: unknown): u is HandlerFailure<unknown> =>
  typeof u === "object" && u !== null && handlerFailure in u

/**
 * An attempt's errors as the policy must see them: the provider's `AiError`s
 * as our errors, with the deployment and key they came from; ours as they
 * are; anything else (a tool handler's own error) as the attempt's value.
 */
const asOurs = <A, E, R>(
  h: Handle,
  attempt: Policy.Attempt,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A | HandlerFailure<Exclude<E, AiError.AiError>>, Errors.ResilienceError, R> =>
  Effect.catchAll(self, (e): Effect.Effect<HandlerFailure<Exclude<E, AiError.AiError>>, Errors.ResilienceError> => {
    if (AiError.isAiError(e)) {
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.fail(AiErrors.toResilienceError(e, {
          now,
          provider: h.config.provider,
          deployment: h.config.name,
          ...(attempt.key === undefined ? {} : { keyName: attempt.key.name })
        })))
    }
    if (Errors.isResilienceError(e)) return Effect.fail(e)
    return Effect.succeed({ [handlerFailure]: true, error: e as Exclude<E, AiError.AiError> })
  })

const costOf = (d: ClientConfig.Deployment, usage: Response.Usage | undefined): number | undefined =>
  d.price === undefined || usage === undefined
    ? undefined
    : ClientConfig.costUsd(d.price, usage.inputTokens ?? 0, usage.outputTokens ?? 0)

const tokensOf = (usage: Response.Usage | undefined): number | undefined =>
  usage === undefined || usage.inputTokens === undefined ? undefined : usage.inputTokens + (usage.outputTokens ?? 0)

/**
 * Runs `attempt` through the cascade and says who answered. Errors that are
 * not ours (a tool handler's) end the chain as they are.
 */
export const run = <A, E, R>(
  cascade: Cascade,
  call: Call<A>,
  attempt: Attempt<A, E, R>
): Effect.Effect<{ readonly value: A; readonly answered: Answered }, Exclude<E, AiError.AiError> | Errors.ResilienceError, R> =>
  Effect.suspend(() => {
    const keyOf = new Map<string, string | undefined>()
    const step = (h: Handle, isFirst: boolean) => {
      const d = h.config
      const detailed = Effect.zipRight(h.used, h.policy.executeDetailed(
        (current) =>
          Effect.provideService(asOurs(h, current, attempt(h, current)), Policy.CurrentAttempt, current),
        {
          // A handler's failure took the place of the answer: its usage is not known.
          usage: (a: A | HandlerFailure<Exclude<E, AiError.AiError>>) => isHandlerFailure(a) ? undefined : tokensOf(call.usage(a)),
          costUsd: (a: A | HandlerFailure<Exclude<E, AiError.AiError>>) => isHandlerFailure(a) ? undefined : costOf(d, call.usage(a)),
          ...(call.streams ? { appliesTimeLimit: true } : {})
        }
      ))
      return Effect.flatMap(detailed, (answer): Effect.Effect<Fallback.StepAnswer<A>, Exclude<E, AiError.AiError>> => {
        keyOf.set(d.name, answer.keyName)
        const value = answer.value
        if (isHandlerFailure(value)) return Effect.fail(value.error)
        return Effect.succeed({
          value,
          step: d.name,
          source: isFirst ? (answer.backupKey ? "backup-key" : "primary") : "fallback-provider",
          deployment: d.name,
          ageMs: undefined
        })
      })
    }
    // Rule 25: a step with a later step to go to does not sit out a long Retry-After or key wait.
    const bounded = <X, Y>(self: Effect.Effect<X, Y, R>, hasNext: boolean) =>
      hasNext && cascade.maxWaitBeforeFallback !== Infinity ? Deadline.maxWait(cascade.maxWaitBeforeFallback)(self) : self
    // Rule 30: what the probes say only skips a deployment while another can be tried.
    const skipped: Array<Skipped> = []
    const able = cascade.steps.filter((h) => h.config.name !== call.exclude)
    const fit = able.filter((h) => h.probe?.unfit() === undefined)
    for (const h of fit.length === 0 ? [] : able) {
      const unfit = h.probe?.unfit()
      if (unfit !== undefined) skipped.push({ deployment: h.config.name, reason: `its health probe says it cannot serve: ${unfit}` })
    }
    const [first, ...rest] = fit.length === 0 ? able : fit
    if (first === undefined) {
      return Effect.fail(new Errors.BadRequestError({ detail: "no deployment can serve this request" }))
    }
    type Failure = Exclude<E, AiError.AiError> | Errors.ResilienceError
    let chain: Fallback.Chain<A, Failure, R> = Fallback.primaryAnswer(first.config.name, bounded(step(first, true), rest.length > 0))
    for (const [i, h] of rest.entries()) {
      chain = Fallback.orElseWhen(
        chain,
        h.config.name,
        (e: Failure): e is Failure => Errors.isFallbackable(e),
        () => bounded(step(h, false), i < rest.length - 1)
      )
    }
    for (const { handle, takesOver } of cascade.largerWindows) {
      if (handle.config.name === call.exclude) continue
      chain = Fallback.orElseWhen(
        chain,
        handle.config.name,
        (e: Failure): e is Failure => Errors.isResilienceError(e) && takesOver(e),
        () => step(handle, false)
      )
    }
    if (call.stale !== undefined) chain = Fallback.orCache(chain, "stale-cache", call.stale)
    const staticReply = call.staticReply
    if (staticReply !== undefined) {
      chain = Fallback.orElseWhen(
        chain,
        "static",
        (e: Failure): e is Errors.ResilienceError => Errors.isResilienceError(e),
        (e) =>
          Option.match(staticReply(e), {
            onNone: () => Effect.fail(e),
            onSome: (value) =>
              Effect.succeed<Fallback.StepAnswer<A>>({ value, step: "static", source: "static", deployment: undefined, ageMs: undefined })
          })
      )
    }
    return Effect.map(Fallback.run(chain, cascade.limits), (answer) => {
      const h = cascade.steps.find((s) => s.config.name === answer.deployment)
      return {
        value: answer.value,
        answered: {
          method: call.method,
          source: answer.source,
          deployment: answer.deployment,
          provider: h?.config.provider,
          model: h?.config.model,
          keyName: answer.deployment === undefined ? undefined : keyOf.get(answer.deployment),
          attempts: answer.attempts,
          fallbacks: answer.fallbacks,
          errors: answer.errors,
          costUsd: answer.costUsd,
          latencyMs: answer.latencyMs,
          skipped
        }
      }
    })
  })
