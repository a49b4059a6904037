/**
 * A type-checked fallback chain.
 *
 * A chain starts with a primary step; each further step names the errors it
 * takes over from the steps before it (by tag, or with a type guard such as
 * `Errors.isFallbackable`). The chain's error type is exactly the union of
 * the errors no step handles, so a chain that ends in a static reply has
 * error type `never`, and forgetting a case is a compile error where the
 * result is used.
 *
 * Why not effect's `ExecutionPlan`: a plan re-runs one effect with another
 * Layer per step, which fits a program written against one provider service
 * (the @effect/ai bridge uses it). A chain here mixes different kinds of
 * steps (another deployment, a cache read, a static reply) that each produce
 * the answer differently; its error type shrinks with every step (a plan
 * keeps the effect's error type whole); and it reports who answered.
 *
 * `run` tracks the chain as one logical request (`RequestBudget`): every
 * attempt of every step draws from one budget, and the answer says how many
 * attempts were made, what they cost and which errors they met.
 *
 * A step that has a later step to go to runs under `Deadline.maxWait`
 * (docs/semantics.md rule 25): that is what tells its policies to hand a
 * long wait on instead of sitting it out (a Retry-After, a cooling key) and
 * its adaptive limit to refuse a call over the limit at once instead of
 * queueing it. `ResilientClient`'s cascade and the `@effect/ai` layer set it
 * on every such step; a chain built here sets it where its steps are made.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { dual } from "effect/Function"
import * as Option from "effect/Option"
import type { Pipeable } from "effect/Pipeable"
import { pipeArguments } from "effect/Pipeable"
import * as Predicate from "effect/Predicate"
import * as AttemptEvents from "./AttemptEvents.js"
import type { FallbackableError } from "./Errors.js"
import { isFallbackable, tagOf } from "./Errors.js"
import * as RequestBudget from "./RequestBudget.js"
import { clockOf } from "./internal/fiberClock.js"
import * as RequestScope from "./internal/requestScope.js"

/**
 * Who answered.
 *
 * @since 0.1.0
 * @category models
 */
export type Source = "primary" | "backup-key" | "fallback-provider" | "cache" | "stale-cache" | "static"

/**
 * What one step produced.
 *
 * @since 0.1.0
 * @category models
 */
export interface StepAnswer<A> {
  readonly value: A
  readonly step: string
  readonly source: Source
  readonly deployment: string | undefined
  /** For a cached answer: milliseconds since it was stored. */
  readonly ageMs: number | undefined
}

/**
 * A step that failed and the step that took over from it.
 *
 * @since 0.1.0
 * @category models
 */
export interface FallbackTaken {
  readonly from: string
  readonly to: string
  readonly tag: string
}

/**
 * The chain's answer and how it came about.
 *
 * @since 0.1.0
 * @category models
 */
export interface Answer<A> extends StepAnswer<A> {
  /** Calls that reached a provider, across retries, keys, fallbacks and hedges. */
  readonly attempts: number
  readonly costUsd: number
  /** Errors of failed attempts, by tag, deployment and key name. */
  readonly errors: ReadonlyArray<RequestBudget.MetError>
  readonly fallbacks: ReadonlyArray<FallbackTaken>
  readonly latencyMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Chain<A, E, R> extends Pipeable {
  readonly steps: ReadonlyArray<string>
  /** Runs the steps; `taken` collects the fallbacks of this run. */
  readonly attempt: (taken: Array<FallbackTaken>) => Effect.Effect<StepAnswer<A>, E, R>
}

/**
 * A step after the first: whether it takes over from an error, and how it
 * answers then. Its types are erased: the errors that reach a step are, by
 * construction, those of the chain before it (`stepAfter` restores them).
 */
interface Takeover {
  readonly handles: (error: unknown) => boolean
  readonly run: (taken: Array<FallbackTaken>, error: unknown) => Effect.Effect<StepAnswer<unknown>, unknown, unknown>
}

/** A chain as its first step and the steps that may take over, in order. */
interface Plan {
  readonly first: (taken: Array<FallbackTaken>) => Effect.Effect<StepAnswer<unknown>, unknown, unknown>
  readonly takeovers: ReadonlyArray<Takeover>
}

const PlanId: unique symbol = Symbol.for("@resilient-ai/core/Fallback/Plan")

interface Planned<A, E, R> extends Chain<A, E, R> {
  readonly [PlanId]: Plan
}

const isPlanned = <A, E, R>(chain: Chain<A, E, R>): chain is Planned<A, E, R> => Predicate.hasProperty(chain, PlanId)

/**
 * Runs a plan as the nested `Effect.catchIf`s of its steps would, with one
 * continuation in place of one per step: an error is offered to the steps
 * after the one that failed, in order; the first that handles it runs, and
 * its own error goes on to the steps after it. What a step does not handle
 * passes on unchanged, and a cause with no failure (a defect, an
 * interruption) ends the chain, as in `catchIf`.
 *
 * A chain that fails keeps every step's failure in its cause: the surfaced
 * one first, then the earlier steps', newest to oldest, each once (a step
 * that fails with the very error it was handed, as a cache miss does, passed
 * it on). They are joined with `Cause.sequential`, not `Cause.parallel`: the
 * steps ran one after another, never at once (the hedge, whose attempts do
 * overlap, uses `parallel`). The surfaced failure leads so that
 * `Cause.failureOption`, `catchAll` and `either` see exactly the error the
 * chain's type names, while `Cause.failures` and `Cause.pretty` show what
 * every step met. A defect or an interruption ends the chain with its own
 * cause alone: an earlier step's failure beside it would let `catchAll`
 * recover from a defect.
 */
const attemptOf = (plan: Plan) => (taken: Array<FallbackTaken>): Effect.Effect<StepAnswer<unknown>, unknown, unknown> => {
  const { first, takeovers } = plan
  if (takeovers.length === 0) return first(taken)
  /** `earlier`: the causes of the steps that failed before `cause`, newest first; `handed`: the error the failed step was given. */
  const recover = (
    from: number,
    cause: Cause.Cause<unknown>,
    earlier: ReadonlyArray<Cause.Cause<unknown>>,
    handed: unknown
  ): Effect.Effect<StepAnswer<unknown>, unknown, unknown> => {
    const failure = Cause.failureOrCause(cause)
    if (Either.isRight(failure)) return Effect.failCause(failure.right)
    const before = earlier.length > 0 && failure.left === handed ? earlier.slice(1) : earlier
    for (let i = from; i < takeovers.length; i++) {
      const step = takeovers[i]
      if (step === undefined || !step.handles(failure.left)) continue
      const met = [cause, ...before]
      return Effect.catchAllCause(step.run(taken, failure.left), (c) => recover(i + 1, c, met, failure.left))
    }
    return Effect.failCause(before.reduce((all, c) => Cause.sequential(all, c), cause))
  }
  return Effect.catchAllCause(first(taken), (cause) => recover(0, cause, [], undefined))
}

const make = <A, E, R>(steps: ReadonlyArray<string>, plan: Plan): Chain<A, E, R> => {
  const attempt = attemptOf(plan)
  const chain: Planned<unknown, unknown, unknown> = {
    steps,
    attempt,
    [PlanId]: plan,
    pipe() {
      return pipeArguments(this, arguments)
    }
  }
  // The plan's steps were typed when they were added (`primary`, `stepAfter`): this is their union.
  return chain as Chain<A, E, R>
}

const planOf = <A, E, R>(chain: Chain<A, E, R>): Plan =>
  isPlanned(chain) ? chain[PlanId] : { first: chain.attempt, takeovers: [] }

/**
 * Describes a step: its name, who answers when it does, and the deployment
 * it calls, if any.
 *
 * @since 0.1.0
 * @category models
 */
export interface StepOptions {
  readonly name: string
  readonly source?: Source
  readonly deployment?: string
}

const answerOf = <A>(options: StepOptions, fallbackSource: Source) => (value: A): StepAnswer<A> => ({
  value,
  step: options.name,
  source: options.source ?? fallbackSource,
  deployment: options.deployment,
  ageMs: undefined
})

/**
 * The first step.
 *
 * @since 0.1.0
 * @category constructors
 */
export const primary = <A, E, R>(options: StepOptions, effect: Effect.Effect<A, E, R>): Chain<A, E, R> =>
  make([options.name], { first: () => Effect.map(effect, answerOf<A>(options, "primary")), takeovers: [] })

/**
 * A first step that reports its own answer (for a step that knows it used a
 * backup key, or served from a cache).
 *
 * @since 0.1.0
 * @category constructors
 */
export const primaryAnswer = <A, E, R>(name: string, effect: Effect.Effect<StepAnswer<A>, E, R>): Chain<A, E, R> =>
  make([name], { first: () => effect, takeovers: [] })


/**
 * `AttemptEvents.emit` of an event made at the current time, reading neither
 * the clock nor the event without the service in context.
 */
const emitTaken = (event: (at: number) => AttemptEvents.AttemptEvent): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    const events = Context.getOption(fiber.currentContext, AttemptEvents.AttemptEvents)
    if (Option.isNone(events)) return Effect.void
    return events.value.publish(event(clockOf(fiber).unsafeCurrentTimeMillis()))
  })

const stepAfter = <A, E, R, EH extends E, A2, E2, R2>(
  self: Chain<A, E, R>,
  handles: (e: E) => e is EH,
  name: string,
  next: (e: EH) => Effect.Effect<StepAnswer<A2>, E2, R2>
): Chain<A | A2, Exclude<E, EH> | E2, R | R2> => {
  const plan = planOf(self)
  const firstStep = self.steps[0] ?? "primary"
  const takeover: Takeover = {
    // What reaches this step is an error of the chain before it: an `E`.
    handles: (e) => handles(e as E),
    run: (taken, e) => {
      const from = taken.length === 0 ? firstStep : (taken[taken.length - 1]?.to ?? "primary")
      const fallback = { from, to: name, tag: tagOf(e) }
      taken.push(fallback)
      return Effect.zipRight(
        emitTaken((at) => ({ _tag: "FallbackTaken", at, from, to: name, errorTag: fallback.tag })),
        // Only run once `handles` accepted it: an `EH`.
        next(e as EH)
      )
    }
  }
  return make([...self.steps, name], { first: plan.first, takeovers: [...plan.takeovers, takeover] })
}

type TagOf<E> = E extends { readonly _tag: infer T extends string } ? T : never

/**
 * On any of the named tags, run `effect` (which may read the error).
 *
 * @since 0.1.0
 * @category combinators
 */
export const orElse: {
  <E, const Tags extends ReadonlyArray<TagOf<E>>, A2, E2, R2>(
    options: StepOptions & { readonly on: Tags },
    effect: (error: Extract<E, { readonly _tag: Tags[number] }>) => Effect.Effect<A2, E2, R2>
  ): <A, R>(
    self: Chain<A, E, R>
  ) => Chain<A | A2, Exclude<E, { readonly _tag: Tags[number] }> | E2, R | R2>
  <A, E, R, const Tags extends ReadonlyArray<TagOf<E>>, A2, E2, R2>(
    self: Chain<A, E, R>,
    options: StepOptions & { readonly on: Tags },
    effect: (error: Extract<E, { readonly _tag: Tags[number] }>) => Effect.Effect<A2, E2, R2>
  ): Chain<A | A2, Exclude<E, { readonly _tag: Tags[number] }> | E2, R | R2>
} = dual(3, <A, E, R, const Tags extends ReadonlyArray<TagOf<E>>, A2, E2, R2>(
  self: Chain<A, E, R>,
  options: StepOptions & { readonly on: Tags },
  effect: (error: Extract<E, { readonly _tag: Tags[number] }>) => Effect.Effect<A2, E2, R2>
): Chain<A | A2, Exclude<E, { readonly _tag: Tags[number] }> | E2, R | R2> => {
  const tags = new Set<string>(options.on)
  const handles = (e: E): e is Extract<E, { readonly _tag: Tags[number] }> => tags.has(tagOf(e))
  return stepAfter(self, handles, options.name, (e) => Effect.map(effect(e), answerOf<A2>(options, "fallback-provider"))) as Chain<
    A | A2,
    Exclude<E, { readonly _tag: Tags[number] }> | E2,
    R | R2
  >
})

/**
 * On any error that `Errors.isFallbackable` accepts, run `effect`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const orElseFallbackable: {
  <E, A2, E2, R2>(
    options: StepOptions,
    effect: (error: Extract<E, FallbackableError>) => Effect.Effect<A2, E2, R2>
  ): <A, R>(self: Chain<A, E, R>) => Chain<A | A2, Exclude<E, FallbackableError> | E2, R | R2>
  <A, E, R, A2, E2, R2>(
    self: Chain<A, E, R>,
    options: StepOptions,
    effect: (error: Extract<E, FallbackableError>) => Effect.Effect<A2, E2, R2>
  ): Chain<A | A2, Exclude<E, FallbackableError> | E2, R | R2>
} = dual(3, <A, E, R, A2, E2, R2>(
  self: Chain<A, E, R>,
  options: StepOptions,
  effect: (error: Extract<E, FallbackableError>) => Effect.Effect<A2, E2, R2>
): Chain<A | A2, Exclude<E, FallbackableError> | E2, R | R2> =>
  stepAfter(
    self,
    (e: E): e is Extract<E, FallbackableError> => isFallbackable(e),
    options.name,
    (e) => Effect.map(effect(e), answerOf<A2>(options, "fallback-provider"))
  ) as Chain<A | A2, Exclude<E, FallbackableError> | E2, R | R2>)

/**
 * On any error a type guard accepts, run a step that reports its own answer
 * (a cache that knows whether it served a stale entry, say). The guard's
 * narrowed type is what the chain stops carrying.
 *
 * @since 0.1.0
 * @category combinators
 */
export const orElseWhen: {
  <E, EH extends E, A2, E2, R2>(
    name: string,
    handles: (e: E) => e is EH,
    effect: (error: EH) => Effect.Effect<StepAnswer<A2>, E2, R2>
  ): <A, R>(self: Chain<A, E, R>) => Chain<A | A2, Exclude<E, EH> | E2, R | R2>
  <A, E, R, EH extends E, A2, E2, R2>(
    self: Chain<A, E, R>,
    name: string,
    handles: (e: E) => e is EH,
    effect: (error: EH) => Effect.Effect<StepAnswer<A2>, E2, R2>
  ): Chain<A | A2, Exclude<E, EH> | E2, R | R2>
} = dual(4, <A, E, R, EH extends E, A2, E2, R2>(
  self: Chain<A, E, R>,
  name: string,
  handles: (e: E) => e is EH,
  effect: (error: EH) => Effect.Effect<StepAnswer<A2>, E2, R2>
): Chain<A | A2, Exclude<E, EH> | E2, R | R2> => stepAfter(self, handles, name, effect))

/**
 * A cached answer for the request, when every step before failed with a
 * fallbackable error or spent the request's budget: `lookup` returns the
 * entry and its age, or none. A miss keeps the error of the step before.
 *
 * @since 0.1.0
 * @category combinators
 */
export const orCache: {
  <E, A2, R2>(
    name: string,
    lookup: Effect.Effect<Option.Option<{ readonly value: A2; readonly ageMs: number; readonly stale: boolean }>, never, R2>
  ): <A, R>(self: Chain<A, E, R>) => Chain<A | A2, E, R | R2>
  <A, E, R, A2, R2>(
    self: Chain<A, E, R>,
    name: string,
    lookup: Effect.Effect<Option.Option<{ readonly value: A2; readonly ageMs: number; readonly stale: boolean }>, never, R2>
  ): Chain<A | A2, E, R | R2>
} = dual(3, <A, E, R, A2, R2>(
  self: Chain<A, E, R>,
  name: string,
  lookup: Effect.Effect<Option.Option<{ readonly value: A2; readonly ageMs: number; readonly stale: boolean }>, never, R2>
): Chain<A | A2, E, R | R2> =>
  stepAfter(
    self,
    (e: E): e is E => isFallbackable(e) || tagOf(e) === "BudgetExhaustedError",
    name,
    (e) =>
      Effect.flatMap(lookup, (hit): Effect.Effect<StepAnswer<A2>, E> =>
        Option.isNone(hit)
          ? Effect.fail(e)
          : Effect.succeed({
            value: hit.value.value,
            step: name,
            source: hit.value.stale ? "stale-cache" : "cache",
            deployment: undefined,
            ageMs: hit.value.ageMs
          }))
  ))

/**
 * The last step: a reply built from the error, so the chain cannot fail.
 *
 * @since 0.1.0
 * @category combinators
 */
export const orStatic: {
  <E, A2>(name: string, reply: (error: E) => A2): <A, R>(self: Chain<A, E, R>) => Chain<A | A2, never, R>
  <A, E, R, A2>(self: Chain<A, E, R>, name: string, reply: (error: E) => A2): Chain<A | A2, never, R>
} = dual(3, <A, E, R, A2>(self: Chain<A, E, R>, name: string, reply: (error: E) => A2): Chain<A | A2, never, R> =>
  stepAfter(
    self,
    (_: E): _ is E => true,
    name,
    (e) => Effect.succeed({ value: reply(e), step: name, source: "static", deployment: undefined, ageMs: undefined })
  ) as Chain<A | A2, never, R>)

/**
 * `RequestBudget.track(limits)`, made once per limits object: a client runs
 * every request under the same limits, and `track` decodes the deadline
 * when it is made.
 */
const trackers = new WeakMap<RequestBudget.Limits, ReturnType<typeof RequestBudget.track>>()
const trackerOf = (limits: RequestBudget.Limits): ReturnType<typeof RequestBudget.track> => {
  let tracked = trackers.get(limits)
  if (tracked === undefined) {
    tracked = RequestBudget.track(limits)
    trackers.set(limits, tracked)
  }
  return tracked
}

/**
 * Runs the chain as one logical request under `limits` and reports who
 * answered. `taken`, when given, is the array the run collects its
 * fallbacks in (an empty one): a caller that hands an answer on before the
 * run ends (a stream's first chunk) reads the fallbacks taken so far there.
 *
 * @since 0.1.0
 * @category running
 */
export const run = <A, E, R>(
  self: Chain<A, E, R>,
  limits: RequestBudget.Limits = {},
  taken?: Array<FallbackTaken>
): Effect.Effect<Answer<A>, E, R> => {
  const tracked = trackerOf(limits)
  // The clock and the ledger are read from the running fiber, in place of
  // `Clock.currentTimeMillis` and `RequestBudget.spent` (same values, fewer ops).
  return Effect.withFiberRuntime((fiber) => {
    const start = clockOf(fiber).unsafeCurrentTimeMillis()
    // A fresh array per run unless the caller brought one: the same effect may run more than once.
    const collected = taken ?? []
    // The continuation runs on this same fiber: its refs and clock are read in place, without an op.
    return tracked(Effect.flatMap(self.attempt(collected), (answer) => {
      const ledger = RequestScope.ledgerOf(fiber)
      const end = clockOf(fiber).unsafeCurrentTimeMillis()
      return Effect.succeed<Answer<A>>({
        value: answer.value,
        step: answer.step,
        source: answer.source,
        deployment: answer.deployment,
        ageMs: answer.ageMs,
        attempts: ledger === undefined ? 0 : ledger.attempts,
        costUsd: ledger === undefined ? 0 : ledger.costUsd,
        errors: ledger === undefined ? [] : [...ledger.errors],
        fallbacks: collected,
        latencyMs: end - start
      })
    }))
  })
}
