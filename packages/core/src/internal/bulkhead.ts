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
 * @internal
 */

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

  constructor(readonly maxConcurrent: number, readonly maxQueue: number) {}

  /**
   * Takes a free permit if there is one. No check of the queue is needed:
   * a permit freed while someone waits goes to that waiter, so a non-empty
   * queue implies `running === maxConcurrent` and a newcomer cannot barge.
   */
  tryTake(): boolean {
    if (this.running < this.maxConcurrent) {
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

  /** Gives a permit back: to the oldest waiter if there is one (direct hand-off), else to the pool. */
  release(): void {
    const waiter = this.head
    if (waiter === undefined) {
      this.running--
      return
    }
    this.unlink(waiter)
    waiter.state = "granted"
    waiter.onSettle?.()
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
