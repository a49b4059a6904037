/**
 * The timeout behind `Timeout.attempt`, `Timeout.total` and the policy's
 * deadline (docs/semantics.md rule 19): at the deadline the effect is interrupted
 * and awaited, so its finalizers have run when the timeout error is
 * returned, and a value it produced after the deadline is dropped.
 *
 * Why not `Effect.timeoutFail` (effect 3.22.4, `internal/effect/circular.ts`
 * `timeoutTo`): it races the effect against a sleep with `raceFibersWith`,
 * two fibers started through the scheduler, so every call pays two
 * scheduler hops, a timer, and the interruption (awaited) of the loser. An
 * earlier version here still ran the effect in one fiber of its own; around
 * a call that resolves on the next `setImmediate` that fork cost 28-40 µs of
 * CPU a call, sequentially and at 100 concurrent fibers (2-core VM, busy),
 * more than all the other policies together. Here: 1.3-1.9 µs.
 *
 * How, with no fiber per call:
 * - an `Exit` is returned as it is: it has completed, nothing of it can run
 *   past a deadline (`timeoutFail` returns it too);
 * - anything else runs on the caller's own fiber, under `restore` (the
 *   caller's interruptibility) inside an uninterruptible mask whose handler
 *   sees how it ended. One timer is set on the clock's scheduler (effect's
 *   live clock and the testkit's virtual clock hand one out); a clock
 *   without one (`TestClock`) is slept on by a fiber instead.
 * - When the timer fires before the effect has settled, it interrupts the
 *   caller's fiber as a `FiberId` made at that moment, unique to this
 *   timeout. The effect unwinds (its finalizers run) up to the handler,
 *   which cancels the timer and, if the timer fired, takes exactly its own
 *   interruption back out of the fiber's interrupted cause and fails with
 *   `onTimeout()`. So the fiber is not left interrupted, a nested timeout
 *   never takes another's interruption for its own, and an interruption
 *   from outside (the caller's, or an enclosing timeout's) stays and goes
 *   on unwinding the caller. If the timer fired while the effect ran
 *   uninterruptibly, its late value (or error) is dropped all the same.
 * - A timer that fires after the effect settled finds it settled and does
 *   nothing; an interruption sent just before the effect settled is taken
 *   in before the handler's next op (a fiber drains its mailbox at every
 *   op), so the handler always removes a cause that is there.
 *
 * The interrupted cause is effect's fiber ref `core.currentInterruptedCause`,
 * not exported; `globalValue` with its key returns effect's own instance.
 * Writing it is what effect itself does around scope finalizers
 * (`addFinalizer` in `internal/fiberRuntime.ts` saves and restores it), and
 * it is what makes the fork unnecessary.
 *
 * What the 1.3-1.9 µs are, measured: the mask, `restore` and handler
 * frames 0.8-1.0 µs (the least any handler that must run while its own
 * fiber is interrupted costs: the `effect-bracket` row of
 * `bench/overhead.ts`), and the timer. On effect's live clock a configured
 * duration's deadlines share one Node timer (`deadlineQueue.ts`), which
 * took the whole timeout from 2.3-2.5 to 1.7-1.9 µs a call at concurrency
 * 1 and from 1.6 to 1.3-1.4 µs at 100 (interleaved runs of
 * `bench/overhead.ts --quick --body io --stack ours-timeout`, 2-core VM,
 * 2026-12-06): a timer per call makes Node drop and rebuild its timer list
 * for the duration each time the list empties.
 *
 * Two cases keep `Effect.timeoutFail`'s fibers; they are rare, and there
 * the cost is not what matters:
 * - `disconnect` (return at the deadline exactly, the loser finishes in the
 *   background): the effect cannot go on running on a fiber that has moved
 *   on, so it runs under `Effect.disconnect`;
 * - a caller with running children of its own (forked before the timeout):
 *   interrupting a fiber interrupts its children, which are not part of the
 *   attempt.
 *
 * Since the effect runs on the caller's fiber, what it does to the fiber
 * stays as it would without a timeout: fiber refs it sets stay set
 * (`timeoutFail` joins them back on success only), and fibers it forks with
 * a bare `Effect.fork` are its caller's children (told to stop when the
 * timeout interrupts, but not awaited as a fiber of its own would await
 * them).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as DeadlineQueue from "./deadlineQueue.js"
import { clockOf } from "./fiberClock.js"

/**
 * Effect's `core.currentInterruptedCause`: the interruptions a fiber has
 * received. The initializer runs only if effect stopped registering it under
 * this key; the timeout tests would then see fibers left interrupted.
 */
const interruptedCause = globalValue(
  Symbol.for("effect/FiberRef/currentInterruptedCause"),
  () => FiberRef.unsafeMake<Cause.Cause<never>>(Cause.empty)
)

/** `cause` without the interruption by `id` (compared by reference: ids are made per timeout). */
const withoutInterruption = (cause: Cause.Cause<never>, id: FiberId.FiberId): Cause.Cause<never> => {
  switch (cause._tag) {
    case "Interrupt":
      return cause.fiberId === id ? Cause.empty : cause
    case "Sequential":
    case "Parallel": {
      const left = withoutInterruption(cause.left, id)
      const right = withoutInterruption(cause.right, id)
      if (left === cause.left && right === cause.right) return cause
      // Dropping the empty side keeps the cause from growing by a node at every timeout of a long-lived fiber.
      if (left._tag === "Empty") return right
      if (right._tag === "Empty") return left
      return cause._tag === "Sequential" ? Cause.sequential(left, right) : Cause.parallel(left, right)
    }
    default:
      return cause
  }
}

/** Fails with `onTimeout()` once the timeout's own interruption is out of the fiber's interrupted cause. */
const timedOut = <E1>(id: FiberId.FiberId, onTimeout: () => E1): Effect.Effect<never, E1> =>
  Effect.zipRight(
    FiberRef.update(interruptedCause, (cause) => withoutInterruption(cause, id)),
    Effect.failSync(onTimeout)
  )

/**
 * A clock that hands out its scheduler (effect's live clock and the
 * testkit's virtual clock do; it is not in the `Clock` interface).
 */
interface WithScheduler {
  readonly scheduler: () => Effect.Effect<Clock.ClockScheduler>
}

const hasScheduler = (clock: Clock.Clock): clock is Clock.Clock & WithScheduler =>
  Predicate.hasProperty(clock, "scheduler") && Predicate.isFunction(clock.scheduler)

const isClockScheduler = (u: unknown): u is Clock.ClockScheduler =>
  Predicate.hasProperty(u, "unsafeSchedule") && Predicate.isFunction(u.unsafeSchedule)

/**
 * The clock's scheduler when the clock hands it out at once (the live clock,
 * a virtual clock): its timers fire as the clock's `sleep` would wake.
 */
const ownScheduler = (clock: Clock.Clock): Clock.ClockScheduler | undefined => {
  if (!hasScheduler(clock)) return undefined
  const scheduler = clock.scheduler()
  if (!Exit.isExit(scheduler) || !Exit.isSuccess(scheduler)) return undefined
  const value: unknown = scheduler.value
  return isClockScheduler(value) ? value : undefined
}

/** effect's live clock's scheduler (Node's `setTimeout` behind it): there, configured durations share a timer. */
const liveScheduler = globalValue(
  Symbol.for("@resilient-ai/core/internal/timeout/liveScheduler"),
  () => ownScheduler(Clock.make())
)

let lastClock: Clock.Clock | undefined
let lastScheduler: Clock.ClockScheduler | undefined

/**
 * {@link ownScheduler}, for the last clock seen: a fiber's clock changes
 * only when one is provided.
 */
const schedulerOf = (clock: Clock.Clock): Clock.ClockScheduler | undefined => {
  if (clock === lastClock) return lastScheduler
  lastClock = clock
  lastScheduler = ownScheduler(clock)
  return lastScheduler
}

/**
 * Whether the fiber has running children, which an interruption of the fiber
 * would interrupt too. `getChildren` is not in the `RuntimeFiber` interface:
 * a fiber without it is taken to have some (the safe answer).
 */
export const hasChildren = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean => {
  if (!Predicate.hasProperty(fiber, "getChildren") || !Predicate.isFunction(fiber.getChildren)) return true
  const children: unknown = fiber.getChildren()
  return !Predicate.hasProperty(children, "size") || children.size !== 0
}

/**
 * Runs `task` after `millis` on `clock`; returns its canceller. On effect's
 * live clock a configured duration shares one Node timer with every other
 * deadline of that duration (`deadlineQueue.ts`). A clock without a
 * scheduler (`TestClock`) is slept on by a fiber of its own (its `sleep`
 * needs nothing from the caller's fiber), started on the scheduler's next
 * turn: an effect done by then leaves no sleep on the clock.
 */
const startTimer = (clock: Clock.Clock, millis: number, task: () => void): () => unknown => {
  const scheduler = schedulerOf(clock)
  if (scheduler !== undefined) {
    const queue = scheduler === liveScheduler ? DeadlineQueue.of(millis) : undefined
    return queue === undefined ? scheduler.unsafeSchedule(task, Duration.millis(millis)) : queue.schedule(task)
  }
  const sleeper = Effect.runFork(Effect.zipRight(clock.sleep(Duration.millis(millis)), Effect.sync(task)), {
    immediate: false
  })
  return () => sleeper.unsafeInterruptAsFork(FiberId.none)
}

/**
 * Sets the timer of one attempt on `caller`. Returns what the attempt's end,
 * in an uninterruptible frame, calls: it cancels the timer and, if the timer
 * fired, returns the effect that takes the timeout's interruption back and
 * fails with `onTimeout()` (undefined when the attempt ended in time).
 * `Admission.executeAll` calls it too, so a `Policy` attempt has one
 * uninterruptible region for its gates and its timeout.
 */
export const arm = <E1>(
  caller: Fiber.RuntimeFiber<unknown, unknown>,
  millis: number,
  onTimeout: () => E1
): () => Effect.Effect<never, E1> | undefined => {
  let settled = false
  let firedAs: FiberId.FiberId | undefined
  const cancel = startTimer(clockOf(caller), millis, () => {
    if (settled) return
    firedAs = FiberId.unsafeMake()
    caller.unsafeInterruptAsFork(firedAs)
  })
  return () => {
    settled = true
    cancel()
    return firedAs === undefined ? undefined : timedOut(firedAs, onTimeout)
  }
}

/**
 * `self`, failing with `onTimeout()` when it has not completed `millis` after
 * it started. `millis` is finite and 0 or more.
 */
export const timeout = <E1>(millis: number, onTimeout: () => E1, disconnect: boolean) => {
  const duration = Duration.millis(millis)
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | E1, R> => {
    if (Exit.isExit(self)) return self
    if (disconnect) return Effect.timeoutFail(Effect.disconnect(self), { duration, onTimeout })
    // The timer is set inside the mask: no interruption from outside can come between it and the handler that cancels it.
    return Effect.uninterruptibleMask((restore) => {
      // The fiber running this mask, read without a `withFiberRuntime` (one op less).
      const caller = Fiber.getCurrentFiber()
      if (Option.isNone(caller) || hasChildren(caller.value)) return restore(Effect.timeoutFail(self, { duration, onTimeout }))
      const settle = arm(caller.value, millis, onTimeout)
      return Effect.matchCauseEffect(restore(self), {
        onFailure: (cause): Effect.Effect<never, E | E1> => settle() ?? Exit.failCause(cause),
        onSuccess: (value): Effect.Effect<A, E1> => settle() ?? Exit.succeed(value)
      })
    })
  }
}
