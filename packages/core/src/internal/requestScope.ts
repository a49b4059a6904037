/**
 * What a fiber's running request changes while parts of it run: its ledger
 * (`RequestBudget.track`), its deadline (`Deadline.at`), the charge of the
 * attempt in progress (`attemptCharge.ts`) and the longest wait worth
 * making before a fallback (`Deadline.maxWait`, rule 25). One mutable box,
 * its fields set around a part and put back when the part ends, whatever
 * the exit, as `Effect.locally` would.
 *
 * Why not a `FiberRef` per field with `Effect.locally`: every `FiberRef`
 * write copies the fiber's whole map of refs (effect 3.22.4,
 * `FiberRefs.updateAs` does `new Map(locals)`), and `Effect.locally` is two
 * writes inside acquire-use-release: 3.8 µs a call (2-core VM), against 0.8
 * µs for a set and put back in one uninterruptible frame here. A chat
 * request made six of them (its ledger and deadline, a charge per attempt,
 * a wait limit per step with a later step).
 *
 * Who sees what: the box belongs to the fiber that installed it (the first
 * part that needed one, in one `FiberRef` write). Only that fiber changes
 * it in place. A fiber forked from it reads the same box, and the first
 * time it changes something it installs a copy of its own (a `FiberRef`
 * write, paid once by a forked fiber that sets a field, such as a hedged
 * attempt's charge, and kept for its later parts): siblings never see each
 * other's changes, and a joined fiber's box never replaces its parent's. Why not a copy at every fork (a
 * `FiberRef` `fork`): then every fork of every fiber under a request (a
 * stream forks several) pushes a new value on the child's refs, and every
 * join compares it and patches it back.
 *
 * What this gives up: until its first change, a fiber still running when
 * the fiber that forked it changes the box sees the change (after it, the
 * fiber has its copy, as a `FiberRef` forked at that moment would). Each field is only changed around a part
 * by the fiber that runs that part, and a part's forks end with it (a
 * hedge's losers are interrupted), so no reader is left to see it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import type { Ledger } from "../RequestBudget.js"

/** One charged run, as the runs nested in it see it. */
export interface Charge {
  /** A nested run took this charge over: it was paid for by that run. */
  takenOver: boolean
  /** A policy inside may refuse without running: give the charge back unless a nested run took it over. */
  delegated: boolean
}

export interface RequestScope {
  /**
   * The id of the fiber that installed it, the only one that changes it in
   * place (its id, not the fiber: a fiber forked from it, which holds the
   * box, must not keep the whole fiber alive).
   */
  readonly owner: FiberId.FiberId
  /** The ledger of the request being tracked, if any. */
  ledger: Ledger | undefined
  /** Epoch milliseconds: the request's deadline, if it has one. */
  deadline: number | undefined
  /** The charged run in progress, if any. */
  charge: Charge | undefined
  /** Milliseconds: the longest wait worth making before giving up (rule 25); `Infinity` for none. */
  maxWait: number
}

export const currentScope: FiberRef.FiberRef<RequestScope | undefined> = globalValue(
  // One ref however many copies of this module are loaded: a second copy must see the same charge.
  Symbol.for("@resilient-ai/core/internal/requestScope/currentScope"),
  () => FiberRef.unsafeMake<RequestScope | undefined>(undefined, { join: (parent) => parent })
)

/** The scope `fiber` changes in place: the one it owns, or a copy of what it inherited (or a fresh one). */
export const ownScope = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  scope: RequestScope | undefined
): RequestScope =>
  scope !== undefined && scope.owner === fiber.id()
    ? scope
    : {
      owner: fiber.id(),
      ledger: scope?.ledger,
      deadline: scope?.deadline,
      charge: scope?.charge,
      maxWait: scope?.maxWait ?? Number.POSITIVE_INFINITY
    }

/** The ledger of the request `fiber` runs, if it is tracked. */
export const ledgerOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Ledger | undefined =>
  fiber.getFiberRef(currentScope)?.ledger

/** The deadline (epoch ms) where `fiber` is, if there is one. */
export const deadlineOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): number | undefined =>
  fiber.getFiberRef(currentScope)?.deadline

/** The wait limit of rule 25 where `fiber` is. */
export const maxWaitOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): number =>
  fiber.getFiberRef(currentScope)?.maxWait ?? Number.POSITIVE_INFINITY

/**
 * `self` with the fiber's scope changed by `enter` (which returns what puts
 * it back) while it runs. `enter` runs uninterruptibly, with the frame that
 * puts the scope back already decided, so no interruption comes between
 * them. A fiber that does not own its scope gets one of its own, a copy of
 * what it inherited, installed in that same frame (one `FiberRef.set`, without
 * the acquire-use-release of `Effect.locally`) and kept after `self`, its
 * fields put back. `fiber` is the fiber it runs on.
 */
export const within = <A, E, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  enter: (scope: RequestScope) => () => void,
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) => {
    const previous = fiber.getFiberRef(currentScope)
    const scope = ownScope(fiber, previous)
    const leave = enter(scope)
    const run = Effect.matchCauseEffect(restore(self), {
      onFailure: (cause) => {
        leave()
        return Effect.failCause(cause)
      },
      onSuccess: (a) => {
        leave()
        return Effect.succeed(a)
      }
    })
    // Installed for good, not put back: `leave` has put its fields back, and the next part this
    // fiber runs then changes them in place instead of paying two more writes.
    return scope === previous ? run : Effect.zipRight(FiberRef.set(currentScope, scope), run)
  })
