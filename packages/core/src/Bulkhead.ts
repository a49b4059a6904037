/**
 * The bulkhead of one deployment (docs/semantics.md rule 20): at most
 * `maxConcurrent` calls run at once; the next `maxQueue` callers wait in a
 * FIFO queue, each at most `maxQueueWait`; anyone beyond that is refused at
 * once with `BulkheadFullError`, which the fallback chain may take over.
 *
 * A freed permit is handed directly to the oldest waiter: a caller that
 * arrives in the same instant cannot take it (no barging). A waiter that is
 * interrupted leaves the queue without taking a permit, and a permit handed
 * to it as it was interrupted goes on to the next waiter. A permit comes back
 * however the call ends: success, failure, defect or interruption.
 *
 * Make one bulkhead per deployment, so one deployment's slowness cannot
 * starve another's. Its place (rule 18) is inside the retry, the breaker and
 * the rate limiter, and outside the attempt timeout: a retry delay holds no
 * permit, and the attempt timeout does not count the wait in the queue.
 *
 * The state is local to this process, on purpose: a permit is held by a live
 * fiber of this process and given back when that fiber's call ends. A permit
 * held in a shared store could outlive a crashed holder and never come back;
 * a limit shared by several processes is the rate limiter's business.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Admission from "./Admission.js"
import { BulkheadFullError, type InvalidConfigError } from "./Errors.js"
import { Permits, waitForPermit, waitLimit } from "./internal/bulkhead.js"
import { decodeOptions, LimitMillis, NonNegativeInt, PositiveInt } from "./internal/config.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Names the bulkhead in errors and status, usually the deployment's name. */
  readonly name: string
  /** Calls allowed to run at once; an integer of 1 or more. */
  readonly maxConcurrent: number
  /** Callers allowed to wait for a permit; an integer of 0 or more. Default 0: no queue, refuse at once. */
  readonly maxQueue?: number | undefined
  /**
   * How long a queued caller waits for a permit before it fails with
   * `BulkheadFullError { reason: "queue-timeout" }`. Default (or `Duration.infinity`): no limit.
   * 0 means no waiting: with every permit taken a caller fails at once
   * (`"queue-timeout"`, or `"queue-full"` when `maxQueue` is 0).
   */
  readonly maxQueueWait?: Duration.DurationInput | undefined
}

/**
 * A snapshot of a bulkhead.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly name: string
  /** Permits held: running calls, plus waiters just handed a permit that have not resumed yet. */
  readonly running: number
  /** Callers waiting in the queue. */
  readonly queued: number
  readonly maxConcurrent: number
  readonly maxQueue: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** The bulkhead's admission: a permit per call, waiting in the queue if needed, or `BulkheadFullError`. */
  readonly gate: Admission.Gate<void, Admission.Permit, BulkheadFullError>
  /**
   * Runs `effect` holding a permit, waiting in the queue for one if needed.
   * Fails with `BulkheadFullError` when the queue is full (at once) or the
   * wait ran out; the permit is given back however `effect` ends.
   */
  readonly execute: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadFullError, R>
  readonly status: Effect.Effect<Status>
}

/**
 * The bulkhead of the current deployment.
 *
 * @since 0.1.0
 * @category tags
 */
export class Bulkhead extends Context.Tag("@resilient-ai/core/Bulkhead")<Bulkhead, Service>() {}

const OptionsSchema = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })),
  maxConcurrent: PositiveInt,
  maxQueue: Schema.optional(NonNegativeInt),
  maxQueueWait: Schema.optional(LimitMillis)
})

/**
 * Makes a bulkhead. Fails with `InvalidConfigError` naming the bad field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError> =>
  Effect.map(
    decodeOptions(`Bulkhead "${String(options.name)}"`, OptionsSchema, options),
    (config) =>
      unsafeMake(
        config.name,
        config.maxConcurrent,
        config.maxQueue ?? 0,
        // None given: no wait limit, as `Duration.infinity`.
        config.maxQueueWait ?? Number.POSITIVE_INFINITY
      )
  )

/**
 * A layer with the bulkhead of `options`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Bulkhead, InvalidConfigError> => Layer.effect(Bulkhead, make(options))

/**
 * A layer with a bulkhead whose options are read from `Config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<Bulkhead, InvalidConfigError | ConfigError.ConfigError> =>
  Layer.effect(Bulkhead, Effect.flatMap(Config.unwrap(config), make))

const unsafeMake = (
  name: string,
  maxConcurrent: number,
  maxQueue: number,
  maxQueueWait: number
): Service => {
  const permits = new Permits(maxConcurrent, maxQueue)

  const rejected = (reason: "queue-full" | "queue-timeout") =>
    Exit.fail(new BulkheadFullError({ bulkhead: name, reason, maxConcurrent, maxQueue }))

  // One permit object serves every call: a permit is a count, and it comes back however the call ended.
  const permit: Admission.Permit = {
    release: () => {
      permits.release()
      return Exit.void
    }
  }
  const granted: Effect.Effect<Admission.Permit> = Exit.succeed(permit)

  const gate: Admission.Gate<void, Admission.Permit, BulkheadFullError> = {
    acquire: (_, { fiber, now, restore }) => {
      if (permits.tryTake()) return granted
      const wait = waitLimit(maxQueueWait, fiber, now)
      if (wait <= 0) return rejected(permits.queued >= maxQueue ? "queue-full" : "queue-timeout")
      const waiter = permits.enqueue()
      if (waiter === undefined) return rejected("queue-full")
      return Effect.as(waitForPermit(permits, waiter, restore, wait, () => rejected("queue-timeout")), permit)
    }
  }

  const execute = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | BulkheadFullError, R> =>
    Admission.execute(gate, undefined, () => self)

  const status: Effect.Effect<Status> = Effect.sync(() => ({
    name,
    running: permits.running,
    queued: permits.queued,
    maxConcurrent,
    maxQueue
  }))

  return { name, gate, execute, status }
}
