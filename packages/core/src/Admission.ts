/**
 * The admission contract of every stateful policy (docs/semantics.md rule 27):
 * the circuit breaker, the key pool, the rate limiter and the bulkhead each
 * offer one {@link Gate}. A gate's `acquire` gives a {@link Permit} for one
 * call, or a typed refusal that says when to come back; the permit's
 * `release` takes the outcome of the call it admitted (its `Exit`: success,
 * failure and its tag, interruption), the time it ended and the time it
 * began (after every gate, so a duration counts no wait in our own gates). resilience4j's
 * `tryAcquirePermission` / `onSuccess` / `onError` is the model.
 *
 * Each policy's own `execute` is {@link execute} over its gate, and `Policy`
 * runs the gates of rule 18 in order with {@link executeAll}: the rules of a
 * policy live in its gate, once, and this module is the only place where a
 * permit is taken, a call made and the permits given back.
 *
 * A gate over a store whose operations suspend (Redis) returns effects that
 * suspend; over the in-memory store its `acquire` and `release` return a
 * finished `Exit`, which is taken in the same op: admitting a call through
 * four gates and giving the permits back costs one uninterruptible region
 * and one handler, whatever the number of gates.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import { exitOf } from "./internal/done.js"
import { clockOf } from "./internal/fiberClock.js"
import * as internalTimeout from "./internal/timeout.js"

/**
 * Gives an effect back the caller's interruptibility, inside the
 * uninterruptible region an admission runs in.
 *
 * @since 0.1.0
 * @category models
 */
export type Restore = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/**
 * What an `acquire` is told besides its request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Context {
  /** Epoch ms on the fiber's `Clock`, read once for the whole admission (read again after a wait). */
  readonly now: number
  /**
   * The caller's interruptibility: `acquire` runs uninterruptibly and
   * makes only its waits interruptible with it.
   */
  readonly restore: Restore
  /** The admitting fiber, for its refs (the request's deadline, metric labels). */
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
}

/**
 * A call admitted by a gate.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  /**
   * The outcome of the admitted call, which ended at epoch ms `now`: gives
   * back what the permit holds and learns what the outcome says. Runs
   * uninterruptibly, exactly once per permit; never fails. `started` is when
   * the call itself began, once every gate had admitted it: the time it
   * waited in the gates after this one (a bulkhead's queue, a limiter's
   * tokens) is ours, not the provider's. A call refused by a later gate
   * never began: `started` is `now`.
   */
  readonly release: (exit: Exit.Exit<unknown, unknown>, now: number, started: number) => Effect.Effect<void>
}

/**
 * One policy's admission.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gate<in Request, out P extends Permit, out Refusal> {
  /**
   * A permit for one call, or a refusal (a typed error that says when a call
   * could be admitted). When it fails or is interrupted it holds nothing.
   */
  readonly acquire: (request: Request, context: Context) => Effect.Effect<P, Refusal>
}

/**
 * Runs `use` under a permit of `gate`, and releases it with `use`'s outcome.
 *
 * @since 0.1.0
 * @category combinators
 */
export const execute = <Request, P extends Permit, Refusal, A, E, R>(
  gate: Gate<Request, P, Refusal>,
  request: Request,
  use: (permit: P) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | Refusal, R> =>
  admit([gate], request, (permit) => permit === undefined ? Effect.dieMessage("Admission: no permit") : use(permit))

/**
 * How long the admitted call may run, decided when it starts: `millis`, then
 * it is interrupted (and awaited) and fails with `onTimeout()` (docs/semantics.md
 * rule 19). `undefined`: no limit.
 *
 * @since 0.1.0
 * @category models
 */
export interface Timeout<E1> {
  readonly millis: number
  readonly onTimeout: () => E1
}

/**
 * Runs `use` under a permit of every gate, taken in order (outermost
 * first), and releases them innermost first with `use`'s outcome. A gate
 * that refuses fails the call with its refusal; the permits already taken
 * are released with that refusal, as if each gate wrapped the next.
 * `request` is handed to every gate, so a gate may leave something there
 * for the gates after it (the key a key pool picked, for a per-key limiter).
 *
 * `timeout` (read when the call starts) limits the call as
 * `Timeout.attempt` would, inside the same uninterruptible region as the
 * admission: the gates see the `TimeoutError` as the call's outcome.
 *
 * @since 0.1.0
 * @category combinators
 */
export const executeAll = <Request, Refusal, A, E, R, E1 = never>(
  gates: ReadonlyArray<Gate<Request, Permit, Refusal>>,
  request: Request,
  use: (fiber: Fiber.RuntimeFiber<unknown, unknown>) => Effect.Effect<A, E, R>,
  timeout?: (fiber: Fiber.RuntimeFiber<unknown, unknown>, now: number) => Timeout<E1> | undefined
): Effect.Effect<A, E | Refusal | E1, R> =>
  gates.length > 0
    ? admit(gates, request, (_, fiber) => use(fiber), timeout)
    // No gate: the region is only worth its cost when the call has a time limit.
    : Effect.withFiberRuntime((fiber) => {
      const limit = timeout?.(fiber, clockOf(fiber).unsafeCurrentTimeMillis())
      return limit === undefined ? use(fiber) : admit(gates, request, (_, f) => use(f), () => limit)
    })

const admit = <Request, P extends Permit, Refusal, A, E, R, E1 = never>(
  gates: ReadonlyArray<Gate<Request, P, Refusal>>,
  request: Request,
  use: (permit: P | undefined, fiber: Fiber.RuntimeFiber<unknown, unknown>) => Effect.Effect<A, E, R>,
  timeout?: (fiber: Fiber.RuntimeFiber<unknown, unknown>, now: number) => Timeout<E1> | undefined
): Effect.Effect<A, E | Refusal | E1, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.withFiberRuntime<A, E | Refusal | E1, R>((fiber) => {
      const clock = clockOf(fiber)
      const held: Array<P> = []
      const context = { now: clock.unsafeCurrentTimeMillis(), restore, fiber }

      const acquireFrom = (from: number): Effect.Effect<A, E | Refusal | E1, R> => {
        for (let i = from; i < gates.length; i++) {
          const gate = gates[i]!
          const acquired = gate.acquire(request, context)
          const done = exitOf(acquired)
          if (done === undefined) {
            // A store that suspends, or a wait: go on when it is done.
            return Effect.matchCauseEffect(acquired, {
              onFailure: (cause) => {
                const now = clock.unsafeCurrentTimeMillis()
                return releaseAll(held, Exit.failCause(cause), now, now)
              },
              onSuccess: (permit) => {
                held.push(permit)
                context.now = clock.unsafeCurrentTimeMillis()
                return acquireFrom(i + 1)
              }
            })
          }
          if (Exit.isFailure(done)) return releaseAll(held, Exit.failCause(done.cause), context.now, context.now)
          held.push(done.value)
        }
        return run()
      }

      const run = (): Effect.Effect<A, E | E1, R> => {
        let body: Effect.Effect<A, E, R>
        try {
          body = use(held[held.length - 1], fiber)
        } catch (defect) {
          // A `use` that throws is a defect of its call, never a permit left taken.
          body = Effect.die(defect)
        }
        // Done at once (an `Exit`): released in this op, with no handler and no timer.
        const done = exitOf(body)
        // `context.now` was read again after the last wait in a gate: the call began then.
        if (done !== undefined) return releaseAll(held, done, clock.unsafeCurrentTimeMillis(), context.now)
        const limit = timeout?.(fiber, context.now)
        if (limit !== undefined && internalTimeout.hasChildren(fiber)) {
          // Interrupting a fiber with children of its own would stop them too: the timeout's own fiber instead.
          return ended(restore(internalTimeout.timeout(limit.millis, limit.onTimeout, false)(body)), undefined)
        }
        const settle = limit === undefined ? undefined : internalTimeout.arm(fiber, limit.millis, limit.onTimeout)
        return ended(restore(body), settle)
      }

      /** Releases every permit with how `body` ended: its timeout's error if the timer fired first (rule 19). */
      const ended = <E2>(
        body: Effect.Effect<A, E2, R>,
        settle: (() => Effect.Effect<never, E1> | undefined) | undefined
      ): Effect.Effect<A, E2 | E1, R> => {
        const settled = <X>(exit: Exit.Exit<A, X>): Effect.Effect<A, X | E1> => {
          const timedOut = settle?.()
          return timedOut === undefined
            ? releaseAll(held, exit, clock.unsafeCurrentTimeMillis(), context.now)
            : Effect.catchAllCause(timedOut, (c) => releaseAll(held, Exit.failCause(c), clock.unsafeCurrentTimeMillis(), context.now))
        }
        return Effect.matchCauseEffect(body, {
          onFailure: (cause) => settled(Exit.failCause(cause)),
          onSuccess: (a) => settled(Exit.succeed(a))
        })
      }

      return acquireFrom(0)
    })
  )

/**
 * Releases `held` innermost first with `exit`, then ends with `exit`. A
 * release that has effects to run (transitions to publish) runs them before
 * the next release, so the order is that of gates wrapped one in another.
 */
const releaseAll = <P extends Permit, A, E>(
  held: ReadonlyArray<P>,
  exit: Exit.Exit<A, E>,
  now: number,
  started: number,
  from: number = held.length - 1
): Effect.Effect<A, E> => {
  for (let i = from; i >= 0; i--) {
    const released = held[i]!.release(exit, now, started)
    if (exitOf(released) === undefined) {
      const next = i - 1
      return Effect.zipRight(released, Effect.suspend(() => releaseAll(held, exit, now, started, next)))
    }
  }
  return exit
}
