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
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import type { BudgetExhaustedError } from "../Errors.js"
import * as RequestBudget from "../RequestBudget.js"
import { clockOf } from "./fiberClock.js"
import { refundAttempt, spendOn } from "./ledger.js"

/** One charged run, as its nested runs see it. */
interface Charge {
  /** A nested run took this charge over: it was paid for by that run. */
  takenOver: boolean
  /** A policy inside may refuse without running: give the charge back unless a nested run took it over. */
  delegated: boolean
}

const currentCharge: FiberRef.FiberRef<Charge | undefined> = globalValue(
  Symbol.for("@resilient-ai/core/internal/attemptCharge/currentCharge"),
  () => FiberRef.unsafeMake<Charge | undefined>(undefined)
)

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
  const ledger = fiber.getFiberRef(RequestBudget.currentLedger)
  if (ledger === undefined) return effect
  const outer = fiber.getFiberRef(currentCharge)
  const takesOver = outer !== undefined && !outer.takenOver
  const refused = spendOn(ledger, clockOf(fiber).unsafeCurrentTimeMillis(), { ...charge, attempt: !takesOver })
  if (refused !== undefined) return Effect.fail(refused)
  if (takesOver) outer.takenOver = true
  const own: Charge = { takenOver: false, delegated: false }
  return Effect.ensuring(
    Effect.locally(effect, currentCharge, own),
    Effect.sync(() => {
      // A policy inside refused before running anything: this run reached no provider.
      if (own.delegated && !own.takenOver) refundAttempt(ledger)
    })
  )
}

/** A policy that may refuse before running the effect is about to decide, inside the current charged run. */
export const delegated = (fiber: Fiber.RuntimeFiber<unknown, unknown>): void => {
  const outer = fiber.getFiberRef(currentCharge)
  if (outer !== undefined && !outer.takenOver) outer.delegated = true
}
