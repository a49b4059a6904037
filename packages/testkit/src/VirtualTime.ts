/**
 * Runs an effect in virtual time, as a discrete-event simulation.
 *
 * effect's `TestClock` is made for unit tests: after each wake-up it polls,
 * with real `setTimeout`s, until every fiber is suspended. That costs about a
 * millisecond per wake-up, so an hour of traffic with thousands of timers
 * takes minutes. Here every fiber runs on a `ControlledScheduler` that only
 * this loop steps, and time is a `Clock` whose timers sit in a heap: when no
 * fiber can run, the clock jumps to the next timer. Nothing waits on real
 * time, so hours of traffic run in seconds and the order of events is a pure
 * function of the program (and of its `Random` seed).
 *
 * The program must not wait on anything outside the simulation (real I/O,
 * promises): if it does while no timer is pending, the run ends with
 * `SimulationStalledError` instead of hanging.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import { ControlledScheduler } from "effect/Scheduler"

/**
 * The program was still running but nothing in the simulation could wake it.
 *
 * @since 0.1.0
 * @category errors
 */
export class SimulationStalledError extends Schema.TaggedError<SimulationStalledError>()("SimulationStalledError", {
  at: Schema.Number
}) {
  override get message(): string {
    return `the simulation stalled at virtual time ${this.at} ms: every fiber waits on something that is not a timer`
  }
}

interface Timer {
  readonly at: number
  readonly seq: number
  /** Dropped when cancelled: a cancelled timer stays in the heap until its time, and must not keep its fiber alive. */
  fire: () => void
  cancelled: boolean
}

const noop = (): void => {}

const before = (a: Timer, b: Timer): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/** A binary min-heap of timers by (time, arrival): equal times fire in the order they were set. */
class TimerHeap {
  private readonly items: Array<Timer> = []

  push(timer: Timer): void {
    const items = this.items
    items.push(timer)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]!
      if (!before(timer, p)) break
      items[i] = p
      i = parent
    }
    items[i] = timer
  }

  pop(): Timer | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    let i = 0
    const n = items.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const child = r < n && before(items[r]!, items[l]!) ? r : l
      if (!before(items[child]!, last)) break
      items[i] = items[child]!
      i = child
    }
    items[i] = last
    return top
  }
}

/**
 * A `Clock` whose time only moves when the simulation loop moves it.
 *
 * @since 0.1.0
 * @category models
 */
export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private readonly timers = new TimerHeap()
  private seq = 0

  constructor(public now: number) {}

  unsafeCurrentTimeMillis(): number {
    return this.now
  }

  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.now)

  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  /** Sets a timer `millis` from now; returns its canceller. */
  schedule(fire: () => void, millis: number): () => void {
    const timer: Timer = { at: this.now + Math.max(0, millis), seq: this.seq++, fire, cancelled: false }
    this.timers.push(timer)
    return () => {
      timer.cancelled = true
      timer.fire = noop
    }
  }

  scheduler(): Effect.Effect<Clock.ClockScheduler> {
    return Effect.succeed({
      unsafeSchedule: (task, duration) => {
        const cancel = this.schedule(task, Duration.toMillis(duration))
        return () => {
          cancel()
          return true
        }
      }
    })
  }

  /**
   * No canceler: effect wraps an `async` that has one in `onInterrupt` (a
   * mask and four more ops per sleep). An interrupted sleep's timer stays in
   * the heap and fires into a resume callback that ignores it (a fiber's
   * `async` resumes once); it moves the clock no further than the next live
   * timer would, since timers fire in time order.
   */
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      this.schedule(() => resume(Effect.void), Duration.toMillis(duration))
    })
  }

  /** Moves time to the next live timer and fires it; false when none is left. */
  fireNext(): boolean {
    for (;;) {
      const timer = this.timers.pop()
      if (timer === undefined) return false
      if (timer.cancelled) continue
      this.now = Math.max(this.now, timer.at)
      timer.fire()
      return true
    }
  }
}

/**
 * The milliseconds `Effect.sleep(Duration.millis(ms))` waits: a fraction is
 * held in whole nanoseconds (so a timer set with it fires when that sleep
 * would), NaN and negatives are 0.
 *
 * @since 0.1.0
 * @category models
 */
export const sleepMillis = (ms: number): number => Duration.toMillis(Duration.millis(ms))

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Virtual epoch milliseconds at the start. Default 0. */
  readonly start?: number
}

const drain = (scheduler: ControlledScheduler): void => {
  while (scheduler.tasks.buckets.length > 0) scheduler.step()
}

/**
 * Runs `effect` to completion in virtual time and returns its exit, with the
 * virtual time it ended at.
 *
 * @since 0.1.0
 * @category running
 */
export const runExit = <A, E>(
  effect: Effect.Effect<A, E>,
  options: Options = {}
): { readonly exit: Exit.Exit<A, E | SimulationStalledError>; readonly endedAt: number } => {
  const clock = new VirtualClock(options.start ?? 0)
  const scheduler = new ControlledScheduler()
  const fiber = Effect.runFork(Effect.withClock(effect, clock), { scheduler })
  for (;;) {
    drain(scheduler)
    const exit = fiber.unsafePoll()
    if (exit !== null) return { exit, endedAt: clock.now }
    if (!clock.fireNext()) {
      // Nothing can wake the program: stop it rather than hang.
      fiber.unsafeInterruptAsFork(fiber.id())
      drain(scheduler)
      return { exit: Exit.fail(new SimulationStalledError({ at: clock.now })), endedAt: clock.now }
    }
  }
}

/**
 * Runs `effect` in virtual time, as an effect: the simulation itself takes
 * no real time beyond the computation.
 *
 * @since 0.1.0
 * @category running
 */
export const run = <A, E>(effect: Effect.Effect<A, E>, options?: Options): Effect.Effect<A, E | SimulationStalledError> =>
  Effect.suspend(() => runExit(effect, options).exit)
