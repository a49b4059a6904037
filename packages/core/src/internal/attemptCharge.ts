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
 * never happened, the outer charge is given back. A retry whose effect
 * charges each run itself (a `Policy`'s own retry around its attempt) only
 * checks that the budget could pay ({@link checked}).
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
  const outer = takenOver(fiber)
  const refused = spendOn(ledger, clockOf(fiber).unsafeCurrentTimeMillis(), { ...charge, attempt: outer === undefined }, true)
  if (refused !== undefined) return Effect.fail(refused)
  if (outer !== undefined) outer.takenOver = true
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

/**
 * `effect`, or the refusal its run would meet: what {@link charged} checks,
 * without paying. For a run whose effect charges itself (a `Policy`
 * attempt inside the policy's own retry): paying here too would only be
 * taken over, or given back when a gate refuses, at the cost of a second
 * charged frame per attempt; checking first still refuses a spent budget
 * before any gate is passed.
 */
export const checked = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  charge: { readonly deployment: string },
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | BudgetExhaustedError, R> => {
  const ledger = RequestScope.ledgerOf(fiber)
  if (ledger === undefined) return effect
  const refused = spendOn(ledger, clockOf(fiber).unsafeCurrentTimeMillis(), { ...charge, attempt: takenOver(fiber) === undefined }, false)
  return refused === undefined ? effect : Effect.fail(refused)
}

/** The charge a run starting here takes over: the enclosing run's, unless a run already took it over. */
const takenOver = (fiber: Fiber.RuntimeFiber<unknown, unknown>): RequestScope.Charge | undefined => {
  const outer = fiber.getFiberRef(RequestScope.currentScope)?.charge
  return outer !== undefined && !outer.takenOver ? outer : undefined
}

/** A policy that may refuse before running the effect is about to decide, inside the current charged run. */
export const delegated = (fiber: Fiber.RuntimeFiber<unknown, unknown>): void => {
  const outer = fiber.getFiberRef(RequestScope.currentScope)?.charge
  if (outer !== undefined && !outer.takenOver) outer.delegated = true
}
