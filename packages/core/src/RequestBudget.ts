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
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as FiberRefs from "effect/FiberRefs"
import * as Option from "effect/Option"
import type { BudgetExhaustedError } from "./Errors.js"
import * as Deadline from "./Deadline.js"
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
 * The ledger of the current request, if one is tracked. Not an `Option`:
 * a fiber ref compares old and new values with `Equal`, and an `Option` of
 * a plain object hashes it (a random hash per object, per request).
 *
 * @since 0.1.0
 * @category fiber refs
 */
export const currentLedger: FiberRef.FiberRef<Ledger | undefined> = globalValue(
  // One ref however many copies of this module are loaded: a second copy must spend from the same ledger.
  Symbol.for("@resilient-ai/core/RequestBudget/currentLedger"),
  () => FiberRef.unsafeMake<Ledger | undefined>(undefined)
)

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
    // What `Effect.locally(currentLedger)` around `Deadline.at` does (set, run, put back whatever
    // the exit, uninterruptibly around the run), without their acquire-use-release ops.
    Effect.uninterruptibleMask((restore) =>
      Effect.withFiberRuntime<A, E, R>((fiber) => {
        const existing = fiber.getFiberRef(currentLedger)
        if (existing !== undefined) return restore(self)
        const now = clockOf(fiber).unsafeCurrentTimeMillis()
        const ledger: Ledger = {
          limits,
          deadlineAt: deadlineMillis === undefined ? undefined : now + deadlineMillis,
          attempts: 0,
          costUsd: 0,
          errors: []
        }
        const deadlineAt = ledger.deadlineAt
        const previousDeadline = fiber.getFiberRef(Deadline.currentDeadline)
        const deadline = deadlineAt === undefined
          ? previousDeadline
          : Option.some(Option.isNone(previousDeadline) ? deadlineAt : Math.min(previousDeadline.value, deadlineAt))
        // The request's scope comes with its ledger, in the same write, unless the fiber owns one already.
        const scope = fiber.getFiberRef(RequestScope.currentScope)
        const set = setAll(ledger, deadline, RequestScope.ownScope(fiber, scope))
        const reset = setAll(undefined, previousDeadline, scope)
        return Effect.zipRight(
          set,
          Effect.matchCauseEffect(restore(self), {
            onFailure: (cause) => Effect.zipRight(reset, Effect.failCause(cause)),
            onSuccess: (a) => Effect.as(reset, a)
          })
        )
      })
    )
}

/**
 * Sets the ledger, the deadline and the request's scope in one op (one copy
 * of the fiber's refs), as three `FiberRef.set`s would: each is the fiber's
 * own write.
 */
const setAll = (
  ledger: Ledger | undefined,
  deadline: Option.Option<number>,
  scope: RequestScope.RequestScope | undefined
): Effect.Effect<void> =>
  Effect.updateFiberRefs((fiberId, refs) =>
    FiberRefs.updateManyAs(refs, {
      entries: [
        [currentLedger, [[fiberId, ledger]]],
        [Deadline.currentDeadline, [[fiberId, deadline]]],
        [RequestScope.currentScope, [[fiberId, scope]]]
      ]
    })
  )

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
    const ledger = fiber.getFiberRef(currentLedger)
    if (ledger === undefined) return Effect.void
    const refused = spendOn(ledger, clockOf(fiber).unsafeCurrentTimeMillis(), { ...charge, attempt: true })
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
    const ledger = fiber.getFiberRef(currentLedger)
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
    const ledger = fiber.getFiberRef(currentLedger)
    if (ledger !== undefined) ledger.errors.push(error)
    return Effect.void
  })

/**
 * What the current request has spent, if it is tracked.
 *
 * @since 0.1.0
 * @category getters
 */
export const spent: Effect.Effect<Option.Option<Spent>> = Effect.map(
  FiberRef.get(currentLedger),
  (l) => (l === undefined ? Option.none() : Option.some({ attempts: l.attempts, costUsd: l.costUsd, errors: [...l.errors] }))
)
