/**
 * One budget per logical request, drawn from by every layer.
 *
 * Peers count retries per layer, so a request can make retries × keys ×
 * fallbacks × hedges calls and its user pays for the product. Here a request
 * carries one ledger: every attempt that is about to reach a provider (a
 * first try, a retry, another key, a fallback deployment, a hedge) spends one
 * attempt and its estimated cost from it, and is refused with
 * `BudgetExhaustedError` once the request's attempts, deadline or money are
 * spent. `BudgetExhaustedError` is neither retryable nor fallbackable, so the
 * whole chain stops instead of multiplying calls.
 *
 * The ledger also keeps what the request met on the way (attempts made,
 * money spent, the errors of failed attempts by tag), which the fallback
 * chain reports with its answer.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { BudgetExhaustedError } from "./Errors.js"
import { clockOf } from "./internal/fiberClock.js"
import { spendOn } from "./internal/ledger.js"
import * as RequestScope from "./internal/requestScope.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Limits {
  /** Calls that may reach a provider, across retries, keys, fallbacks and hedges. */
  readonly maxAttempts?: number
  /**
   * Wall-clock time for the whole request. It sets the `Deadline`: every
   * attempt made through a `Policy` is cut at it (a `TimeoutError`, which a
   * fallback step can take over), retries do not sleep past it, and no
   * attempt starts after it.
   */
  readonly deadline?: Duration.DurationInput
  /** Estimated money (USD) the request may spend. */
  readonly maxCostUsd?: number
}

/**
 * A failed attempt, by name and tag only: nothing secret, nothing large.
 *
 * @since 0.1.0
 * @category models
 */
export interface MetError {
  readonly tag: string
  readonly deployment: string | undefined
  readonly keyName: string | undefined
}

/**
 * What a request has spent so far.
 *
 * @since 0.1.0
 * @category models
 */
export interface Spent {
  readonly attempts: number
  readonly costUsd: number
  readonly errors: ReadonlyArray<MetError>
}

/**
 * The mutable ledger of one request. It is shared by the fibers of that
 * request (hedges run concurrently), and JavaScript runs each `spend`
 * atomically, so no lock is needed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ledger {
  readonly limits: Limits
  readonly deadlineAt: number | undefined
  attempts: number
  costUsd: number
  readonly errors: Array<MetError>
}

/**
 * Runs `self` as one logical request with `limits`. A request already
 * tracked keeps its ledger: nested calls draw from the outer budget.
 *
 * @since 0.1.0
 * @category combinators
 */
export const track = (limits: Limits = {}) => {
  // Decoded once per `track(limits)`, not per run.
  const deadlineMillis = limits.deadline === undefined ? undefined : Duration.toMillis(Duration.decode(limits.deadline))
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime<A, E, R>((fiber) => {
      if (RequestScope.ledgerOf(fiber) !== undefined) return self
      const deadlineAt = deadlineMillis === undefined ? undefined : clockOf(fiber).unsafeCurrentTimeMillis() + deadlineMillis
      const ledger: Ledger = { limits, deadlineAt, attempts: 0, costUsd: 0, errors: [] }
      // The ledger and the deadline in the request's scope, put back whatever the exit (`Effect.locally`
      // of both, without a fiber ref write of its own once the fiber has a scope).
      return RequestScope.within(fiber, (scope) => {
        const before = { ledger: scope.ledger, deadline: scope.deadline }
        scope.ledger = ledger
        if (deadlineAt !== undefined) scope.deadline = before.deadline === undefined ? deadlineAt : Math.min(before.deadline, deadlineAt)
        return () => {
          scope.ledger = before.ledger
          scope.deadline = before.deadline
        }
      }, self)
    })
}

/**
 * Spends one attempt and its estimated cost, or fails with
 * `BudgetExhaustedError` naming the budget that ran out. Outside a tracked
 * request it always succeeds.
 *
 * @since 0.1.0
 * @category spending
 */
export const spendAttempt = (
  charge: { readonly deployment: string; readonly estimatedCostUsd?: number | undefined }
): Effect.Effect<void, BudgetExhaustedError> =>
  Effect.withFiberRuntime((fiber) => {
    const ledger = RequestScope.ledgerOf(fiber)
    if (ledger === undefined) return Effect.void
    const refused = spendOn(ledger, clockOf(fiber).unsafeCurrentTimeMillis(), { ...charge, attempt: true }, true)
    return refused === undefined ? Effect.void : Effect.fail(refused)
  })

/**
 * Corrects the money spent once the real cost is known (from the answer's
 * usage): adds `actualUsd − estimatedUsd`.
 *
 * @since 0.1.0
 * @category spending
 */
export const settleCost = (estimatedUsd: number, actualUsd: number): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    const ledger = RequestScope.ledgerOf(fiber)
    if (ledger !== undefined && Number.isFinite(actualUsd) && actualUsd >= 0) {
      ledger.costUsd += actualUsd - estimatedUsd
    }
    return Effect.void
  })

/**
 * Notes a failed attempt's tag in the ledger.
 *
 * @since 0.1.0
 * @category spending
 */
export const noteError = (error: MetError): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    const ledger = RequestScope.ledgerOf(fiber)
    if (ledger !== undefined) ledger.errors.push(error)
    return Effect.void
  })

/**
 * What the current request has spent, if it is tracked.
 *
 * @since 0.1.0
 * @category getters
 */
export const spent: Effect.Effect<Option.Option<Spent>> = Effect.withFiberRuntime((fiber) => {
  const l = RequestScope.ledgerOf(fiber)
  return Effect.succeed(
    l === undefined ? Option.none() : Option.some({ attempts: l.attempts, costUsd: l.costUsd, errors: [...l.errors] })
  )
})
