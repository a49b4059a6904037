import { BudgetExhaustedError } from "../Errors.js"
import type { Ledger } from "../RequestBudget.js"

/**
 * Charges one run to `ledger` at `now`: its estimated cost, and one attempt
 * unless the run takes over a charge already paid (`attempt: false`). The
 * refusal when the budget cannot pay, with nothing charged; `undefined` when
 * it is charged, or only could be when `pays` is false.
 */
export const spendOn = (
  ledger: Ledger,
  now: number,
  charge: { readonly deployment: string; readonly estimatedCostUsd?: number | undefined; readonly attempt: boolean },
  pays: boolean
): BudgetExhaustedError | undefined => {
  const { maxAttempts, maxCostUsd } = ledger.limits
  const refuse = (budget: "attempts" | "deadline" | "cost", limit: number) =>
    new BudgetExhaustedError({ budget, limit, deployment: charge.deployment })
  const attempts = charge.attempt ? 1 : 0
  if (maxAttempts !== undefined && ledger.attempts + attempts > maxAttempts) return refuse("attempts", maxAttempts)
  const cost = charge.estimatedCostUsd ?? 0
  if (maxCostUsd !== undefined && ledger.costUsd + cost > maxCostUsd) return refuse("cost", maxCostUsd)
  if (ledger.deadlineAt !== undefined && now >= ledger.deadlineAt) return refuse("deadline", ledger.deadlineAt)
  if (!pays) return undefined
  ledger.attempts += attempts
  ledger.costUsd += cost
  return undefined
}

/** Gives back an attempt charged to a run that reached no provider. */
export const refundAttempt = (ledger: Ledger): void => {
  ledger.attempts = Math.max(0, ledger.attempts - 1)
}
