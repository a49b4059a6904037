/**
 * The permit book of a bulkhead: a counter of held permits and a FIFO queue
 * of waiters, kept in plain mutable fields and changed only by the
 * synchronous methods below. JavaScript runs one fiber step at a time, so
 * every method is atomic with respect to every other fiber: no `Ref`, no
 * lock, and the hot path (a free permit) is one comparison and one increment.
 *
 * Why not effect's `Semaphore` (3.22.4, `internal/effect/circular.ts`):
 * - a release only decrements `taken` and *schedules* a wake-up of the
 *   waiters; a newcomer that runs before that task sees a free permit and
 *   takes it (barging); the woken waiter then finds nothing free, calls
 *   `take` again and joins the back of the waiter set, losing its place;
 * - the waiter set is unbounded and not observable, so neither a bounded
 *   queue (rule 20: full queue → reject at once) nor `queued` in the status
 *   can be built on it;
 * - `Effect.timeout` around `take` forks the take and interrupts it when the
 *   timer wins; a take that completed in that same instant has counted its
 *   permit, and the permit is dropped with the discarded result.
 * Here a freed permit is handed directly to the oldest waiter (the counter
 * does not move), a waiter that gives up is reconciled from its own state,
 * and the wait limit is decided in the same synchronous step that removes
 * the waiter from the queue.
 *
 * The capacity is fixed for a `Bulkhead` and moves with an `AdaptiveLimit`
 * ({@link Permits.resize}); both wait here, with {@link waitForPermit}.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as RequestScope from "./requestScope.js"

/** @internal */
export type WaiterState =
  /** In the queue, no permit yet. */
  | "waiting"
  /** A permit was handed to it; it holds that permit until it runs and releases, or leaves and passes it on. */
  | "granted"
  /** Its `maxQueueWait` ran out while it was waiting; it holds nothing. */
  | "timed-out"
  /** It gave up (interrupted); whatever it held has been passed on. */
  | "left"

/**
 * One caller waiting for a permit: a node of an intrusive doubly-linked
 * list, so leaving from the middle of the queue is O(1).
 *
 * @internal
 */
export class Waiter {
  state: WaiterState = "waiting"
  prev: Waiter | undefined = undefined
  next: Waiter | undefined = undefined
  /** Called once when the state leaves "waiting" by a grant or a timeout. */
  onSettle: (() => void) | undefined = undefined
}

/** @internal */
export class Permits {
  /** Permits held: running calls plus waiters granted a permit that have not resumed yet. */
  running = 0
  /** Waiters in the queue (state "waiting"). */
  queued = 0
  private head: Waiter | undefined = undefined
  private tail: Waiter | undefined = undefined

  constructor(public capacity: number, readonly maxQueue: number) {}

  /**
   * Takes a free permit if there is one. No check of the queue is needed:
   * a permit freed while someone waits goes to that waiter, and room a
   * larger capacity adds goes to the waiters first, so a non-empty queue
   * implies `running >= capacity` and a newcomer cannot barge.
   */
  tryTake(): boolean {
    if (this.running < this.capacity) {
      this.running++
      return true
    }
    return false
  }

  /** Joins the back of the queue, or returns `undefined` when the queue is full. */
  enqueue(): Waiter | undefined {
    if (this.queued >= this.maxQueue) {
      return undefined
    }
    const waiter = new Waiter()
    waiter.prev = this.tail
    if (this.tail === undefined) {
      this.head = waiter
    } else {
      this.tail.next = waiter
    }
    this.tail = waiter
    this.queued++
    return waiter
  }

  /**
   * Gives a permit back: to the oldest waiter if there is one (direct
   * hand-off), else to the pool. A capacity that shrank below the permits
   * held takes it back instead.
   */
  release(): void {
    const waiter = this.head
    if (waiter === undefined || this.running > this.capacity) {
      this.running--
      return
    }
    this.grant(waiter)
  }

  /** A new capacity: the room it adds goes to the waiters, oldest first; a smaller one takes permits back as they are released. */
  resize(capacity: number): void {
    this.capacity = capacity
    while (this.running < capacity && this.head !== undefined) {
      this.running++
      this.grant(this.head)
    }
  }

  /** The wait limit of `waiter` ran out: it leaves the queue, unless a permit reached it first. */
  expire(waiter: Waiter): void {
    if (waiter.state === "waiting") {
      this.unlink(waiter)
      waiter.state = "timed-out"
      waiter.onSettle?.()
    }
  }

  /**
   * The caller behind `waiter` gave up (interrupted while queued, or at the
   * very moment a permit was handed to it): it leaves the queue, and a
   * permit it was handed goes on to the next waiter or back to the pool.
   */
  leave(waiter: Waiter): void {
    const state = waiter.state
    waiter.state = "left"
    if (state === "waiting") {
      this.unlink(waiter)
    } else if (state === "granted") {
      this.release()
    }
  }

  private grant(waiter: Waiter): void {
    this.unlink(waiter)
    waiter.state = "granted"
    waiter.onSettle?.()
  }

  private unlink(waiter: Waiter): void {
    if (waiter.prev === undefined) {
      this.head = waiter.next
    } else {
      waiter.prev.next = waiter.next
    }
    if (waiter.next === undefined) {
      this.tail = waiter.prev
    } else {
      waiter.next.prev = waiter.prev
    }
    waiter.prev = undefined
    waiter.next = undefined
    this.queued--
  }
}

/**
 * Waits in `permits`' queue as `waiter` (the caller's interruptibility
 * given back by `restore`) until a permit is handed to it, or fails with
 * `timedOut()` when `maxWaitMillis` runs out first (no limit: `Infinity`). A
 * waiter interrupted or timed out leaves the queue, and a permit handed to
 * it in that same instant goes on to the next waiter.
 *
 * The wait limit is a timer fiber on effect's Clock (so TestClock drives it)
 * that removes the waiter in the same synchronous step as it decides the
 * timeout, so a permit arriving in that instant is never lost. Not
 * `Effect.timeout`: the waiter is reconciled from its state, not from which
 * fiber of a race finished first.
 */
export const waitForPermit = <E>(
  permits: Permits,
  waiter: Waiter,
  restore: <A, E1, R>(self: Effect.Effect<A, E1, R>) => Effect.Effect<A, E1, R>,
  maxWaitMillis: number,
  timedOut: () => Exit.Exit<never, E>
): Effect.Effect<void, E> => {
  // The register function takes one parameter, so effect adds no AbortController and no canceler: a waiter that
  // gives up is reconciled by `leave` from its own state, whatever the order of grant and interruption.
  const settled = Effect.async<void, E>((resume) => {
    const settle = () => resume(waiter.state === "granted" ? Exit.void : timedOut())
    if (waiter.state === "waiting") {
      waiter.onSettle = settle
    } else {
      settle()
    }
  })
  const wait = maxWaitMillis === Number.POSITIVE_INFINITY
    ? restore(settled)
    : Effect.flatMap(
      Effect.fork(Effect.interruptible(Effect.zipRight(Effect.sleep(maxWaitMillis), Effect.sync(() => permits.expire(waiter))))),
      (timer) => Effect.ensuring(restore(settled), Effect.fiberIdWith((id) => timer.interruptAsFork(id)))
    )
  return Effect.onError(wait, () => Effect.sync(() => permits.leave(waiter)))
}

/**
 * How long a caller arriving at `now` on `fiber` may wait for a permit:
 * `maxWaitMillis` (`Infinity`: no limit of its own), and never past the
 * request's deadline, after which a permit is no use to it.
 */
export const waitLimit = (maxWaitMillis: number, fiber: Fiber.RuntimeFiber<unknown, unknown>, now: number): number => {
  const deadline = RequestScope.deadlineOf(fiber)
  return deadline === undefined ? maxWaitMillis : Math.min(maxWaitMillis, deadline - now)
}
