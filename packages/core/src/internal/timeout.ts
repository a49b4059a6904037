/**
 * The timeout behind `Timeout.attempt`, `Timeout.total` and the policy's
 * deadline (docs/semantics.md rule 19), built to cost nothing when the effect
 * completes at once.
 *
 * Why not `Effect.timeoutFail` (effect 3.22.4, `internal/effect/circular.ts`
 * `timeoutTo`): it races the effect against a sleep with `raceFibersWith`,
 * which makes two child fibers and starts both through the scheduler, so even
 * an effect that is already done costs two scheduler hops, a timer set and
 * cleared, and the interruption (awaited) of the loser: about 20 µs a call,
 * more than all the other policies together.
 *
 * Here:
 * - an `Exit` is returned as it is: it has completed, nothing of it can run
 *   past a deadline (`timeoutFail` returns it too: its fiber always wins the
 *   race against the sleep);
 * - anything else runs in one fiber made from the caller's runtime (context,
 *   fiber refs, runtime flags) and started synchronously (`Runtime.runFork`
 *   runs a fiber on the current stack until it first suspends). If it is done
 *   by then, its exit is returned, fiber refs joined back on success as
 *   `timeoutFail` does, and no timer was ever set;
 * - only an effect that suspends gets a timer: a second fiber sleeping on the
 *   caller's `Clock` (so `TestClock` drives it), started the same way. When
 *   the timer wins, the effect's fiber is interrupted and awaited before the
 *   timeout error is returned (never a value that came after the deadline);
 *   with `disconnect` the error is returned at once and the interruption
 *   finishes in the background. When the effect wins, the timer is
 *   interrupted. A caller interrupted while waiting interrupts the effect and
 *   awaits it (not with `disconnect`).
 *
 * The effect's fiber is not a child of the caller's fiber: the caller never
 * leaves it behind (it awaits or interrupts it on every path), and the
 * caller's interruption reaches it through the wait's canceler instead of
 * through the child list.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Predicate from "effect/Predicate"
import type * as FiberRefs from "effect/FiberRefs"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import { clockOf } from "./fiberClock.js"

const ignoredFlags = RuntimeFlags.Interruption | RuntimeFlags.WindDown

/**
 * Whether a fiber set (or unset) a fiber ref since its refs were `start`.
 * Fiber refs are copied on write, stack by stack, so identity tells; the
 * fiber's own `getFiberRefs()` always returns a fresh copy.
 */
const changedSince = (start: FiberRefs.FiberRefs | undefined, now: FiberRefs.FiberRefs): boolean => {
  if (start === undefined || start.locals.size !== now.locals.size) return true
  for (const [ref, stack] of now.locals) {
    const before = start.locals.get(ref)
    if (before === stack) continue
    // Every fiber ends with `WindDown` on, and `inheritAll` takes neither it nor `Interruption`.
    if (ref === FiberRef.currentRuntimeFlags && before !== undefined && ((before[0][1] ^ stack[0][1]) & ~ignoredFlags) === 0) {
      continue
    }
    return true
  }
  return false
}

/**
 * The exit of the effect's fiber, joining its fiber refs into the caller's
 * on success as `timeoutFail` does (only when it changed some: the join costs
 * two ops and a copy of every ref).
 */
const settle = <A, E>(
  fiber: Fiber.RuntimeFiber<A, E>,
  exit: Exit.Exit<A, E>,
  startRefs: FiberRefs.FiberRefs | undefined
): Effect.Effect<A, E> =>
  Exit.isSuccess(exit) && changedSince(startRefs, fiber.getFiberRefs())
    ? Effect.zipRight(Fiber.inheritAll(fiber), exit)
    : exit

/**
 * A clock that hands out its scheduler (effect's live clock and the
 * testkit's virtual clock do; it is not in the `Clock` interface).
 */
interface WithScheduler {
  readonly scheduler: () => Effect.Effect<Clock.ClockScheduler>
}

const hasScheduler = (clock: Clock.Clock): clock is Clock.Clock & WithScheduler =>
  Predicate.hasProperty(clock, "scheduler") && Predicate.isFunction(clock.scheduler)

/**
 * The clock's scheduler when the clock hands it out at once (the live clock,
 * a virtual clock): its timers fire as the clock's `sleep` would wake. A
 * clock without one (`TestClock`) is slept on by a fiber instead.
 */
const schedulerOf = (clock: Clock.Clock): Clock.ClockScheduler | undefined => {
  if (!hasScheduler(clock)) return undefined
  const scheduler = clock.scheduler()
  if (!Exit.isExit(scheduler) || !Exit.isSuccess(scheduler)) return undefined
  const value: unknown = scheduler.value
  return isClockScheduler(value) ? value : undefined
}

const isClockScheduler = (u: unknown): u is Clock.ClockScheduler =>
  Predicate.hasProperty(u, "unsafeSchedule") && Predicate.isFunction(u.unsafeSchedule)

/**
 * `self`, failing with `onTimeout()` when it has not completed `millis` after
 * it started. `millis` is finite and 0 or more.
 */
export const timeout = <E1>(millis: number, onTimeout: () => E1, disconnect: boolean) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | E1, R> => {
  if (Exit.isExit(self)) return self
  return Effect.withFiberRuntime<A, E | E1, R>((caller, status) => {
    const runtime = Runtime.make({
      // The caller's fiber runs with `R` in its context: this is where `R` comes from.
      context: caller.currentContext as Context.Context<R>,
      runtimeFlags: status.runtimeFlags,
      fiberRefs: caller.getFiberRefs()
    })
    let startRefs: FiberRefs.FiberRefs | undefined
    const attempt = Runtime.runFork(runtime)(self, {
      updateRefs: (refs) => {
        startRefs = refs
        return refs
      }
    })
    const done = attempt.unsafePoll()
    if (done !== null) return settle(attempt, done, startRefs)

    const callerId = caller.id()
    const clockScheduler = schedulerOf(clockOf(caller))
    if (clockScheduler !== undefined) {
      // The clock's own timer, set straight on its scheduler: no fiber to sleep on it.
      return Effect.async<A, E | E1>((resume) => {
        let timedOut = false
        const cancel = clockScheduler.unsafeSchedule(() => {
          if (attempt.unsafePoll() !== null) return
          timedOut = true
          attempt.unsafeInterruptAsFork(callerId)
          if (disconnect) resume(Exit.fail(onTimeout()))
        }, Duration.millis(millis))
        attempt.addObserver((exit) => {
          cancel()
          if (timedOut) {
            if (!disconnect) resume(Exit.fail(onTimeout()))
          } else {
            resume(settle(attempt, exit, startRefs))
          }
        })
        // The caller was interrupted while waiting: stop both, and wait for the attempt unless disconnected.
        return Effect.suspend(() => {
          cancel()
          if (!disconnect) return Effect.asVoid(Fiber.interruptAs(attempt, callerId))
          attempt.unsafeInterruptAsFork(callerId)
          return Effect.void
        })
      }, attempt.id())
    }
    const timer = Runtime.runFork(runtime)(Effect.interruptible(Effect.sleep(millis)))
    return Effect.async<A, E | E1>((resume) => {
      let timedOut = false
      attempt.addObserver((exit) => {
        timer.unsafeInterruptAsFork(callerId)
        if (timedOut) {
          if (!disconnect) resume(Exit.fail(onTimeout()))
        } else {
          resume(settle(attempt, exit, startRefs))
        }
      })
      timer.addObserver((exit) => {
        if (Exit.isFailure(exit) || attempt.unsafePoll() !== null) return
        timedOut = true
        attempt.unsafeInterruptAsFork(callerId)
        if (disconnect) resume(Exit.fail(onTimeout()))
      })
      // The caller was interrupted while waiting: stop both, and wait for the attempt unless disconnected.
      return Effect.suspend(() => {
        timer.unsafeInterruptAsFork(callerId)
        if (!disconnect) return Effect.asVoid(Fiber.interruptAs(attempt, callerId))
        attempt.unsafeInterruptAsFork(callerId)
        return Effect.void
      })
    }, attempt.id())
  })
}
