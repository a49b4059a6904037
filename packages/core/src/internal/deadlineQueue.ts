/**
 * One Node timer for every deadline of one configured duration, behind the
 * timeouts that run on effect's live clock (`internal/timeout.ts`).
 *
 * Why not a timer per call, through the clock's scheduler as before: nearly
 * every call ends in time, so its timer is set when it starts and cleared
 * when it ends. Node keeps one timer list per duration and drops it when its
 * last timer is cleared, so at one call at a time each `setTimeout` +
 * `clearTimeout` builds the list again and moves libuv's timer: 1.27 µs a
 * call at concurrency 1 and 0.60 µs at 100 (the `node-timer` row of
 * `npx tsx bench/overhead.ts --body io --stack node-timer`, 2-core VM,
 * 2026-12-06), half of what a whole timeout costs. Here a deadline is an
 * entry in a queue, and deadlines of one duration arrive in the order they
 * fall due; one timer stays set for the first of them, and a call that ends
 * in time only marks its entry. The timer keeps the process alive only
 * while some deadline is pending (`ref` / `unref`, 0.02 µs), as the timers
 * it replaces did: a process whose calls all ended exits at once, and one
 * with a call still running lives until that call's timeout.
 *
 * Only durations a policy or a `Timeout` was configured with get a queue
 * ({@link register}): a time limit derived from a request's deadline is a
 * new duration at every call, and keeps a timer of its own.
 *
 * @internal
 */
import { globalValue } from "effect/GlobalValue"
import * as Predicate from "effect/Predicate"

interface Entry {
  /** `performance.now()` when it falls due. */
  readonly at: number
  /** Undefined once it fired or its call ended. */
  task: (() => void) | undefined
}

/**
 * How early a deadline may fire: Node measures a timer from the event loop's
 * time, read when the loop turned, so it may wake a fraction of a
 * millisecond before `performance.now()` says the duration has passed.
 * Waiting for that fraction would cost a second wake-up of at least 1 ms.
 */
const slackMillis = 1

/** Node's longest timer; a longer one would fire at once, and effect's live clock never fires it. */
const maxTimerMillis = 2 ** 31 - 1

/**
 * Ended entries a queue may hold behind a pending one before it moves the
 * pending ones down: a call that hangs at the head must not keep every call
 * that ended after it for a whole duration.
 */
const compactAfter = 1024

class DeadlineQueue {
  /**
   * Entries `head` to `tail`, in the order they fall due. Slots before
   * `head` are emptied, and reused from 0 once every entry has ended: at one
   * call at a time the array is never reallocated.
   */
  private entries: Array<Entry | undefined> = []
  private head = 0
  private tail = 0
  /** Entries not yet fired or ended. */
  private pending = 0
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  /** `fire` is running its tasks: it sets the timer when they are done. */
  private firing = false

  constructor(private readonly millis: number) {}

  /** Entries held: pending ones and ended ones not yet dropped. */
  get held(): number {
    return this.tail - this.head
  }

  /** Runs `task` when `millis` have passed, unless the returned canceller runs first. */
  schedule(task: () => void): () => void {
    const entry: Entry = { at: performance.now() + this.millis, task }
    this.entries[this.tail++] = entry
    this.pending++
    // A timer already set is due no later than this entry: entries only come later.
    if (this.timer === undefined) {
      if (!this.firing) this.timer = setTimeout(this.fire, this.millis)
    } else if (this.pending === 1) {
      this.timer.ref()
    }
    return () => {
      if (entry.task === undefined) return
      entry.task = undefined
      if (--this.pending === 0) this.timer?.unref()
      this.dropEnded()
    }
  }

  /** Ended entries at the head go, so that calls ending in order keep the queue short. */
  private dropEnded(): void {
    const entries = this.entries
    while (this.head < this.tail && entries[this.head]!.task === undefined) entries[this.head++] = undefined
    if (this.head === this.tail) {
      this.head = 0
      this.tail = 0
      // The slots are reused; after a burst far above what is left, the array is let go.
      if (entries.length > 4 * compactAfter) this.entries = []
      return
    }
    const held = this.tail - this.head
    if (held - this.pending > compactAfter && held > 2 * this.pending) this.compact()
  }

  /** Keeps only the pending entries, in order, from slot 0. */
  private compact(): void {
    const kept: Array<Entry | undefined> = []
    for (let i = this.head; i < this.tail; i++) {
      const entry = this.entries[i]!
      if (entry.task !== undefined) kept.push(entry)
    }
    this.entries = kept
    this.head = 0
    this.tail = kept.length
  }

  private readonly fire = (): void => {
    this.timer = undefined
    this.firing = true
    try {
      const now = performance.now()
      // Fields read at every turn: a task may schedule or cancel.
      while (this.head < this.tail) {
        const entry = this.entries[this.head]!
        const task = entry.task
        if (task !== undefined && entry.at - now > slackMillis) break
        this.entries[this.head++] = undefined
        if (task === undefined) continue
        entry.task = undefined
        this.pending--
        task()
      }
    } finally {
      // Set here, after every task, whatever they did: a timer a task would have set is due too late for the head.
      this.firing = false
      this.dropEnded()
      const next = this.head < this.tail ? this.entries[this.head] : undefined
      if (next !== undefined && this.timer === undefined) {
        this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(next.at - performance.now())))
        if (this.pending === 0) this.timer.unref()
      }
    }
  }
}

/**
 * The timer functions the queues were made for, and whether they are Node's
 * (`ref` / `unref`: elsewhere, a browser, a timer is a number and every
 * duration stays with the clock's scheduler). A test that fakes timers
 * (`vi.useFakeTimers`) swaps them: a queue's timer set by one would never
 * fire under the other, so while they are swapped every duration keeps a
 * timer of its own through the clock's scheduler, which calls the current
 * `setTimeout`.
 */
const native = globalValue(Symbol.for("@resilient-ai/core/internal/deadlineQueue/native"), () => {
  const timer = setTimeout(() => {}, 0)
  clearTimeout(timer)
  const probe: unknown = timer
  const node = Predicate.hasProperty(probe, "unref") && Predicate.isFunction(probe.unref) &&
    Predicate.hasProperty(probe, "ref") && Predicate.isFunction(probe.ref)
  return { setTimeout: globalThis.setTimeout, now: performance.now, node }
})

const queues = globalValue(
  Symbol.for("@resilient-ai/core/internal/deadlineQueue/queues"),
  () => new Map<number, DeadlineQueue>()
)

/**
 * Configured durations are a handful per process; past this many, a new one
 * keeps a timer per call (a program making a `Timeout.attempt` of a new
 * duration for every call must not grow this map without end).
 */
const maxQueues = 64

/**
 * Gives `millis` a queue of its own, from a policy's or a `Timeout`'s
 * configuration. A duration Node cannot time is left to the clock's
 * scheduler.
 */
export const register = (millis: number): void => {
  if (!native.node || !(millis > 0 && millis <= maxTimerMillis) || queues.has(millis) || queues.size >= maxQueues) return
  queues.set(millis, new DeadlineQueue(millis))
}

/** What a caller sees of a queue. */
export type Queue = Pick<DeadlineQueue, "schedule" | "held">

/** The queue of `millis`, when it was registered and the timers are the native ones. */
export const of = (millis: number): Queue | undefined =>
  globalThis.setTimeout === native.setTimeout && performance.now === native.now ? queues.get(millis) : undefined
