/**
 * A concurrency limit that learns (docs/semantics.md rule 29): the bulkhead
 * of a deployment without a hand-set number. It grows while the provider
 * keeps up with what is asked of it and shrinks when it stops; a call over
 * the limit is refused at once with `BulkheadFullError` (reason
 * `adaptive-limit`), so the fallback chain answers it elsewhere instead of
 * piling it onto a provider that hangs. Where nothing else can answer it
 * (no later step of the chain, rule 25), it waits for a slot instead, first
 * come first served, as Netflix's `BlockingLimiter` does: refusing it helps
 * no one (a burst of 100 through a gateway with one deployment of a healthy
 * 300 ms provider got 50 immediate 503s), and the wait is bounded by how
 * long a call may run before it counts as hung, so a provider that does
 * hang still refuses its waiters.
 *
 * Why this shape (the machine is `internal/adaptiveLimitState.ts`):
 * - AIMD over windows, as Netflix's concurrency-limits `AIMDLimit`: a window
 *   with a drop halves the limit; a window whose calls pressed against the
 *   limit and ended well as fast as they were admitted doubles it (TCP's
 *   slow start), at once back to half the last limit that held. A limit
 *   that is not reached never grows; a provider that starts to hang fills
 *   it, and from then on every call is refused and falls back at once.
 * - It starts generous (50) and never goes below 4: a fallback that is
 *   handed a whole primary's traffic must not refuse it while it keeps up
 *   (in the drill, a start at 20 growing by √limit lost 43 % of the
 *   provider-outage requests to static replies), and a provider back from
 *   an outage must not be held at one call (a floor of 1 made the primary
 *   take its traffic back 2.6 s later).
 * - Drops are what the breaker counts as failures (`Errors.breakerVerdict`:
 *   timeouts, 5xx and 529, connection failures, cut streams), and windows
 *   whose answers are far slower than usual for their size. A window's mean
 *   is judged, not one answer: latency is heavy-tailed (p99 3× the median
 *   in the simulator), and judging each answer halved the limit every few
 *   seconds on a healthy provider. Size is the answer's tokens (the
 *   call's `work`), so long answers are not read as congestion: latency
 *   gradients (Netflix's Gradient2, Envoy's adaptive concurrency filter)
 *   assume calls of one size, and LLM calls vary 100× with the answer.
 * - A hang sends no outcome at all: a window in which no call ended well
 *   while two or more calls were in flight for longer than `slowFactor`
 *   usual call times is a drop too, and a hang closes the window as soon as
 *   it shows. Its cut starts from the calls in flight when they are below
 *   the limit (TCP's FlightSize, RFC 5681): a limit of 50 over a provider
 *   that needs 3 refuses nothing once halved. In the drill's
 *   primary-hang (answers in 60 ms, 50 req/s, a 2.5 s attempt timeout) the
 *   first fallback answer came 1.3 s after the hang began with the
 *   window's verdict alone, 0.33 s with both (15 calls sent to the hung
 *   primary in 2 minutes, against 56).
 * - Both verdicts on latency have a floor, `minJudgedLatency` (100 ms): a
 *   call is hung only after max(`slowFactor` × usual, floor), a window is
 *   slow only when its mean exceeds both. Against a provider that answers
 *   in under a millisecond (a local vLLM, a cache relay), 3 usual call
 *   times is a few ms, and a pause of this process is that long: 10
 *   callers of an instant upstream on loopback (median 0.65 ms, 2 busy
 *   cores, `bench/fastProviderLimit.ts`) saw spans of 32-38 ms with no call
 *   ending and event-loop delays up to 44 ms; without the floor, 4 hang
 *   verdicts took the limit from 50 to 4 and refused 12,676 calls of a
 *   provider that never failed, in 10 s. 100 ms is about 3× the longest
 *   stall measured there, and under what congestion of an LLM provider
 *   looks like (a hosted model's time to first token is hundreds of ms;
 *   the drill's hung 60 ms primary is judged at 180 ms, unchanged). Its
 *   cost: a provider faster than 33 ms that hangs is seen after 100 ms, not
 *   3 call times.
 *
 * The calls in flight are this process's own (a permit belongs to a live
 * fiber, as the bulkhead's does); the learned limit lives in the
 * `StateStore`, so a shared store shares it.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Admission from "./Admission.js"
import { breakerVerdict, BulkheadFullError, type InvalidConfigError } from "./Errors.js"
import * as machine from "./internal/adaptiveLimitState.js"
import { Permits, waitForPermit, waitLimit } from "./internal/bulkhead.js"
import { decodeOptions, LimitMillis, Millis, PositiveInt, PositiveMillis, Ratio } from "./internal/config.js"
import { exitOf } from "./internal/done.js"
import { clockOf } from "./internal/fiberClock.js"
import * as metrics from "./internal/metrics.js"
import * as RequestScope from "./internal/requestScope.js"
import * as StateStore from "./StateStore.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Names the limit in errors, status and the store, usually the deployment's name. */
  readonly name: string
  /** Default 50: generous until the provider shows trouble, so a fallback takes a sudden load at once. */
  readonly initialLimit?: number
  /** Default 4 (or `initialLimit` when that is lower): a limit never shuts a provider out, and one back from an outage is not held at one call. */
  readonly minLimit?: number
  /** Default 1000. */
  readonly maxLimit?: number
  /** How long outcomes are gathered before the limit moves once. Default 1 s. */
  readonly window?: Duration.DurationInput
  /** A window whose answers are this many times slower than usual for their size is a drop; so is a hang this long. Default 3. */
  readonly slowFactor?: number
  /** The limit's factor on a window with a drop. Default 0.5. */
  readonly backoff?: number
  /** The share of the limit in flight that counts as pressing against it. Default 0.8. */
  readonly saturation?: number
  /** Answer tokens that stand for the time to the first token, in a call's size. Default 50. */
  readonly workBase?: number
  /** How long a call may stay in flight before it counts as hung, until a usual latency is learned. Default 10 s. */
  readonly initialHangAfter?: Duration.DurationInput
  /**
   * The latency floor of the hang and slowness verdicts: a call is hung only once in flight this long (and
   * `slowFactor` usual call times), a window is slow only when its mean latency is this long (and `slowFactor` times
   * the usual), so a stall of the process over a provider that answers in a millisecond is not read as congestion.
   * Default 100 ms; 0 judges every latency.
   */
  readonly minJudgedLatency?: Duration.DurationInput
  /**
   * How long a call over the limit waits for a slot when no later step of the fallback chain can take it (rule 25:
   * the request has no `Deadline.maxWait`), first come first served. Default: as long as a call in flight may run
   * before it counts as hung (`slowFactor` usual call times, at least `minJudgedLatency`; `initialHangAfter` until a
   * usual latency is learned). 0: refused at once, as with a later step; `Duration.infinity`: as long as it takes
   * (the request's deadline still ends it).
   */
  readonly maxQueueWait?: Duration.DurationInput
  /** Told every change of the limit. */
  readonly onChange?: (change: Change) => Effect.Effect<void>
}

/**
 * A change of the limit, and why: a window with a drop, a hang, or calls
 * pressing against it that ended well.
 *
 * @since 0.1.0
 * @category models
 */
export interface Change {
  readonly name: string
  readonly at: number
  readonly from: number
  readonly to: number
  readonly reason: "drop" | "hang" | "slow" | "pressed"
}

/**
 * What a call tells the limit: the size of its answer (tokens), read from its value.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  readonly work?: ((value: unknown) => number | undefined) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly name: string
  /** Calls admitted at once now. */
  readonly limit: number
  readonly running: number
  /** Calls over the limit waiting for a slot (the last step of a chain). */
  readonly queued: number
  /** The usual latency learned from calls that went well, ms; undefined before the first. */
  readonly usualMillis: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  /** Tells an adaptive limit from a fixed bulkhead where either may be given. */
  readonly learns: true
  /**
   * The limit's admission: a permit while the calls in flight are below the limit; over it, `BulkheadFullError`
   * at once when a later step can take the call, else after waiting for a slot that did not come.
   */
  readonly gate: Admission.Gate<Request, Admission.Permit, BulkheadFullError>
  readonly execute: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: { readonly work?: (a: A) => number | undefined }
  ) => Effect.Effect<A, E | BulkheadFullError, R>
  readonly status: Effect.Effect<Status>
  /** A queue of every change of the limit from now on; unsubscribes when the scope closes. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Change>, never, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class AdaptiveLimit extends Context.Tag("@resilient-ai/core/AdaptiveLimit")<AdaptiveLimit, Service>() {}

const OptionsSchema = Schema.Struct({
  name: Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })),
  initialLimit: Schema.optional(PositiveInt),
  minLimit: Schema.optional(PositiveInt),
  maxLimit: Schema.optional(PositiveInt),
  window: Schema.optional(PositiveMillis),
  slowFactor: Schema.optional(Schema.Number.pipe(Schema.greaterThan(1, { message: () => "expected a number above 1" }))),
  backoff: Schema.optional(Ratio.pipe(Schema.lessThan(1, { message: () => "expected a ratio below 1" }))),
  saturation: Schema.optional(Ratio),
  workBase: Schema.optional(Schema.Number.pipe(Schema.positive({ message: () => "expected a number above zero" }))),
  initialHangAfter: Schema.optional(PositiveMillis),
  minJudgedLatency: Schema.optional(Millis),
  maxQueueWait: Schema.optional(LimitMillis)
}).pipe(
  Schema.filter((o) => {
    const min = o.minLimit ?? Math.min(4, o.initialLimit ?? 4)
    const max = o.maxLimit ?? 1000
    const initial = o.initialLimit ?? Math.max(min, Math.min(50, max))
    if (min > max) return { path: ["minLimit"], message: `expected at most maxLimit (${max})` }
    if (initial < min || initial > max) return { path: ["initialLimit"], message: `expected between minLimit (${min}) and maxLimit (${max})` }
    return undefined
  })
)

/**
 * Makes an adaptive limit, its learned limit in the `StateStore`. Fails with
 * `InvalidConfigError` naming the bad field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, InvalidConfigError, StateStore.StateStore> =>
  Effect.gen(function*() {
    const { onChange, ...data } = options
    const o = yield* decodeOptions(`AdaptiveLimit "${String(options.name)}"`, OptionsSchema, data)
    const maxLimit = o.maxLimit ?? 1000
    const config: machine.Config = {
      initialLimit: o.initialLimit ?? Math.max(o.minLimit ?? 4, Math.min(50, maxLimit)),
      // A limit set to start below 4 sets the floor too.
      minLimit: o.minLimit ?? Math.min(4, o.initialLimit ?? 4),
      maxLimit,
      windowMillis: o.window ?? 1000,
      slowFactor: o.slowFactor ?? 3,
      backoff: o.backoff ?? 0.5,
      saturation: o.saturation ?? 0.8,
      workBase: o.workBase ?? 50,
      smoothing: 0.1,
      initialHangMillis: o.initialHangAfter ?? 10_000,
      minJudgedMillis: o.minJudgedLatency ?? 100
    }
    const slot = (yield* StateStore.StateStore).adaptiveLimit(o.name, config)
    return unsafeMake(o.name, config, o.maxQueueWait, slot, yield* PubSub.unbounded<Change>(), onChange)
  })

/** A call in flight: when it started. */
interface Held {
  readonly start: number
}

const unsafeMake = (
  name: string,
  config: machine.Config,
  maxQueueWait: number | undefined,
  slot: StateStore.AdaptiveLimitSlot,
  pubsub: PubSub.PubSub<Change>,
  onChange: ((change: Change) => Effect.Effect<void>) | undefined
): Service => {
  const inFlight = new Set<Held>()
  // Read only when a window closes (once a window), so a scan is cheaper than keeping an order.
  const inFlightSince = (start: number): number => {
    let n = 0
    for (const held of inFlight) if (held.start < start) n++
    return n
  }
  // Admission counts permits: the calls in flight and the waiters just handed a slot that have not begun yet.
  const permits = new Permits(config.initialLimit, Number.POSITIVE_INFINITY)
  const limitGauge = metrics.gauge("resilient_ai_adaptive_limit", "the calls an adaptive limit admits at once now", { limit: name })
  const queuedGauge = metrics.gauge(
    "resilient_ai_adaptive_limit_queued",
    "calls over an adaptive limit waiting for a slot (the last step of a chain)",
    { limit: name }
  )
  limitGauge.unsafeUpdate(config.initialLimit, [])
  // The state the last step returned: what status shows, and how long a waiter may wait.
  let last = machine.initial(config, 0)

  /** One step of the store; the limit and its change taken in, the change told. */
  const stepped = <A, E>(event: machine.Event, now: number, then: () => Effect.Effect<A, E>): Effect.Effect<A, E> => {
    const take = ([state, change]: readonly [machine.State, machine.Change | undefined]) => {
      const limit = machine.admitted(state)
      if (limit !== permits.capacity) {
        permits.resize(limit)
        // A shared store may have moved it without a change seen here: the gauge follows every step that moves it.
        limitGauge.unsafeUpdate(limit, [])
        queuedGauge.unsafeUpdate(permits.queued, [])
      }
      last = state
      if (change === undefined) return then()
      const named: Change = { name, at: now, ...change }
      const published = PubSub.publish(pubsub, named)
      // `then` only once the change is told: what it does (take a slot, join the queue) must not happen if telling dies.
      return Effect.flatMap(onChange === undefined ? published : Effect.zipRight(published, onChange(named)), then)
    }
    const step = slot.step(event, now, inFlightSince)
    const done = exitOf(step)
    return done !== undefined && Exit.isSuccess(done) ? take(done.value) : Effect.flatMap(step, take)
  }

  const refused = (waited?: number) =>
    Exit.fail(
      new BulkheadFullError({
        bulkhead: name,
        reason: "adaptive-limit",
        maxConcurrent: permits.capacity,
        maxQueue: 0,
        ...(waited === undefined ? {} : { waitedMillis: waited })
      })
    )

  /**
   * How long a call over the limit arriving at `now` may wait for a slot: only when nothing after it can serve
   * now (rule 25), and never past the request's deadline, when a slot would be no use to it.
   */
  const queueWait = (fiber: Fiber.RuntimeFiber<unknown, unknown>, now: number): number =>
    RequestScope.maxWaitOf(fiber) !== Number.POSITIVE_INFINITY
      ? 0
      : waitLimit(maxQueueWait ?? machine.hangMillis(config, last), fiber, now)

  /** The call holding a slot begins at `start`. */
  const begin = (request: Request, start: number): Effect.Effect<Admission.Permit> => {
    const held: Held = { start }
    inFlight.add(held)
    const giveBack = () => {
      inFlight.delete(held)
      permits.release()
    }
    const permit: Admission.Permit = {
      release: (exit, end) => {
        giveBack()
        return stepped(outcomeOf(exit, end - held.start, request), end, () => Exit.void)
      }
    }
    const admitted = stepped({ _tag: "Admitted", inFlight: inFlight.size }, start, () => Exit.succeed(permit))
    // A step that dies (a store's, an `onChange`'s defect) hands no permit to release: the slot is given back here.
    const done = exitOf(admitted)
    if (done === undefined) return Effect.onError(admitted, () => Effect.sync(giveBack))
    if (Exit.isFailure(done)) giveBack()
    return done
  }

  /** A call over the limit: refused, or queued (after the step, so a step that dies leaves no waiter behind). */
  const overLimit = (request: Request, context: Admission.Context): Effect.Effect<Admission.Permit, BulkheadFullError> => {
    const { fiber, restore } = context
    // After the step, which a shared store takes time over: the deadline's distance and a start are from then.
    const now = Math.max(context.now, clockOf(fiber).unsafeCurrentTimeMillis())
    // The step may have raised the limit: room it made is this call's, no waiter being ahead of it.
    if (permits.tryTake()) return begin(request, now)
    const wait = queueWait(fiber, now)
    const waiter = wait > 0 ? permits.enqueue() : undefined
    if (waiter === undefined) return refused()
    queuedGauge.unsafeUpdate(permits.queued, [])
    const waited = Effect.ensuring(
      waitForPermit(permits, waiter, restore, wait, () => refused(wait)),
      Effect.sync(() => queuedGauge.unsafeUpdate(permits.queued, []))
    )
    return Effect.flatMap(waited, () => begin(request, clockOf(fiber).unsafeCurrentTimeMillis()))
  }

  const gate: Admission.Gate<Request, Admission.Permit, BulkheadFullError> = {
    acquire: (request, context) =>
      permits.tryTake()
        ? begin(request, context.now)
        : stepped({ _tag: "OverLimit" }, context.now, () => overLimit(request, context))
  }

  const execute = <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: { readonly work?: (a: A) => number | undefined }
  ): Effect.Effect<A, E | BulkheadFullError, R> => {
    const work = options?.work
    // The value handed to `work` is the value of this `effect`: an `A`.
    const request: Request = work === undefined ? {} : { work: (value) => work(value as A) }
    return Admission.execute(gate, request, () => effect)
  }

  const status: Effect.Effect<Status> = Effect.flatMap(
    Clock.currentTimeMillis,
    (now) =>
      Effect.map(
        stepped({ _tag: "Read" }, now, () => Exit.void),
        () => ({ name, limit: permits.capacity, running: inFlight.size, queued: permits.queued, usualMillis: last.usualMillis })
      )
  )

  return { name, learns: true, gate, execute, status, subscribe: PubSub.subscribe(pubsub) }
}

/** What an ended call says about the provider's capacity. */
const outcomeOf = (exit: Exit.Exit<unknown, unknown>, millis: number, request: Request): machine.Outcome => {
  if (Exit.isSuccess(exit)) return { _tag: "Success", millis, work: request.work?.(exit.value) }
  const failure = Cause.failureOption(exit.cause)
  // An interruption or a defect says nothing about the provider; an error says what the breaker hears in it.
  return Option.isSome(failure) && breakerVerdict(failure.value) === "failure" ? { _tag: "Drop" } : { _tag: "Ignore" }
}
