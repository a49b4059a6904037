/**
 * What a fiber's running request changes while parts of it run: the charge
 * of the attempt in progress (`attemptCharge.ts`) and the longest wait worth
 * making before a fallback (`Deadline.maxWait`, rule 25). One mutable box per
 * fiber, its fields set around a part and put back when the part ends,
 * whatever the exit, as `Effect.locally` would.
 *
 * Why not a `FiberRef` per field with `Effect.locally`: every `FiberRef`
 * write copies the fiber's whole map of refs (effect 3.22.4,
 * `FiberRefs.updateAs` does `new Map(locals)`), and `Effect.locally` is two
 * writes inside acquire-use-release: 3.8 µs a call (2-core VM), against 0.8
 * µs for a set and put back in one uninterruptible frame here. A chat
 * request made four of them (a charge per attempt, a wait limit per step
 * with a later step).
 *
 * The box is installed once, with the request's ledger by
 * `RequestBudget.track` (in the same write), or by the first part that needs
 * it outside a tracked request. A forked fiber gets a copy (what it changes
 * is its own, as with a `FiberRef`), and a joined fiber's box never replaces
 * its parent's.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"

/** One charged run, as the runs nested in it see it. */
export interface Charge {
  /** A nested run took this charge over: it was paid for by that run. */
  takenOver: boolean
  /** A policy inside may refuse without running: give the charge back unless a nested run took it over. */
  delegated: boolean
}

export interface RequestScope {
  /** The charged run in progress on this fiber, if any. */
  charge: Charge | undefined
  /** Milliseconds: the longest wait worth making before giving up (rule 25); `Infinity` for none. */
  maxWait: number
}

export const currentScope: FiberRef.FiberRef<RequestScope | undefined> = globalValue(
  // One ref however many copies of this module are loaded: a second copy must see the same charge.
  Symbol.for("@resilient-ai/core/internal/requestScope/currentScope"),
  () =>
    FiberRef.unsafeMake<RequestScope | undefined>(undefined, {
      fork: (scope) => (scope === undefined ? undefined : { charge: scope.charge, maxWait: scope.maxWait }),
      join: (parent) => parent
    })
)

/** A scope for a request that has none yet. */
export const fresh = (): RequestScope => ({ charge: undefined, maxWait: Number.POSITIVE_INFINITY })

/** The wait limit of rule 25 where `fiber` is. */
export const maxWaitOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): number =>
  fiber.getFiberRef(currentScope)?.maxWait ?? Number.POSITIVE_INFINITY

/**
 * `self` with the fiber's scope changed by `enter` (which returns what puts
 * it back) while it runs. `enter` runs uninterruptibly, with the frame that
 * puts the scope back already decided, so no interruption comes between
 * them. A fiber without a scope gets one for `self` (a `FiberRef` write,
 * the cost this module avoids, paid only outside a tracked request).
 */
export const within = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  enter: (scope: RequestScope) => () => void,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const scope = fiber.getFiberRef(currentScope)
  if (scope === undefined) {
    const installed = fresh()
    return Effect.locally(changed(installed, enter, self), currentScope, installed)
  }
  return changed(scope, enter, self)
}

const changed = <A, E, R>(
  scope: RequestScope,
  enter: (scope: RequestScope) => () => void,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) => {
    const leave = enter(scope)
    return Effect.matchCauseEffect(restore(self), {
      onFailure: (cause) => {
        leave()
        return Effect.failCause(cause)
      },
      onSuccess: (a) => {
        leave()
        return Effect.succeed(a)
      }
    })
  })
