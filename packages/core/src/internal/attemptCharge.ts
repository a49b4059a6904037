/**
 * Which run of the caller's effect is an attempt the request's budget pays
 * for, when policies are nested in one another (a `Policy` inside a
 * standalone `Retry`, a `Retry` around a raw call, …).
 *
 * The rule: every policy that runs the caller's effect charges that run
 * ({@link charged}), but a run inside another policy's charged run takes
 * over the outer charge the first time instead of paying again. So a
 * standalone `Retry` around a raw call pays for each of its runs; a `Retry`
 * around a `Policy` pays for its first run and the policy's first attempt
 * takes that charge over, the policy's retries pay their own; nothing is
 * counted twice. A policy that may refuse before running anything (a
 * breaker inside a retry) says so first ({@link delegated}): when its run
 * never happened, the outer charge is given back.
 *
 * Without a request budget (`RequestBudget.track`, `Fallback.run`) it is
 * the effect itself, with no op of its own.
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type { BudgetExhaustedError } from "../Errors.js"
import { clockOf } from "./fiberClock.js"
import { refundAttempt, spendOn } from "./ledger.js"
import * as RequestScope from "./requestScope.js"

/**
 * `effect` as one attempt of the request on `deployment`: charged to the
 * request's budget (refused with `BudgetExhaustedError` when it is spent),
 * or the charge of the run it is nested in taken over.
 */
export const charged = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  charge: { readonly deployment: string; readonly estimatedCostUsd?: number | undefined },
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | BudgetExhaustedError, R> => {
  const ledger = RequestScope.ledgerOf(fiber)
  if (ledger === undefined) return effect
  const outer = fiber.getFiberRef(RequestScope.currentScope)?.charge
  const takesOver = outer !== undefined && !outer.takenOver
  const refused = spendOn(ledger, clockOf(fiber).unsafeCurrentTimeMillis(), { ...charge, attempt: !takesOver })
  if (refused !== undefined) return Effect.fail(refused)
  if (takesOver) outer.takenOver = true
  const own: RequestScope.Charge = { takenOver: false, delegated: false }
  return RequestScope.within(fiber, (scope) => {
    const before = scope.charge
    scope.charge = own
    return () => {
      scope.charge = before
      // A policy inside refused before running anything: this run reached no provider.
      if (own.delegated && !own.takenOver) refundAttempt(ledger)
    }
  }, effect)
}

/** A policy that may refuse before running the effect is about to decide, inside the current charged run. */
export const delegated = (fiber: Fiber.RuntimeFiber<unknown, unknown>): void => {
  const outer = fiber.getFiberRef(RequestScope.currentScope)?.charge
  if (outer !== undefined && !outer.takenOver) outer.delegated = true
}
