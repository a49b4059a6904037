/**
 * A cache of LLM responses, the outermost policy (ARCHITECTURE.md): identical
 * requests get a fresh answer from the cache, share one upstream call while
 * it is in flight (single-flight), and, when the upstream call fails with a
 * fallbackable error, may get an expired answer instead (stale-if-error).
 *
 * Rules:
 * - The key is the hex SHA-256 of the canonical JSON (object keys sorted) of
 *   the request fields that change the answer ({@link defaultFields}, or
 *   `fields`), or a custom `key(request)`. It is the same in every process,
 *   so a shared store can serve N replicas. Fields not listed (`user`,
 *   `stream`, `metadata`, ...) do not change it.
 * - An entry is fresh while `now < storedAt + timeToLive` (a hit at
 *   `ttl - 1` ms, a miss at `ttl`). The in-memory store holds at most
 *   `maxEntries` and evicts the least recently used: a read counts as a use.
 * - Only successes are stored; a failure is never cached, so the next call
 *   computes again.
 * - Stale-if-error: when the computation fails with an error for which
 *   `serveStaleOn` holds (default `Errors.isFallbackable`), an expired entry
 *   answers with `source: "stale"` while `now < expiresAt + maxStale`. Other
 *   errors, defects and interruptions are never masked.
 * - Single-flight: concurrent `get`s of one key share one computation, run
 *   in its own fiber (in the cache's scope, with the context and fiber refs of
 *   the caller that started it, e.g. its deadline). A waiter that is
 *   interrupted leaves; the others keep waiting. When the last waiter leaves,
 *   the computation is interrupted (nobody wants the answer any more, and an
 *   LLM call costs money), so it does not fill the cache. Closing the cache's
 *   scope interrupts every computation in flight. Across processes, a
 *   shared store that can `claim` a key makes it single-flight for all of
 *   them: the process that claims the key computes; the others wait for its
 *   answer to land in the store and answer with it (`source: "hit"`); a
 *   claim expires after `claimFor` (default 30 s), so a holder that died
 *   holds nobody up for longer, and a holder whose computation failed lets
 *   the claim go at once (the next waiter computes). A store without
 *   `claim` is single-flight per process.
 *
 * Why not effect's `Cache` (effect/Cache, internal/cache.ts)? It has TTL,
 * capacity and shared in-flight lookups, but: its lookup function is fixed at
 * construction, while here each call brings its own computation (its own
 * provider chain and context); it stores failures as an `Exit` for the TTL
 * unless `timeToLive` is a function of the `Exit`; it removes an expired entry
 * on access, so it has nothing to serve stale; its lookup runs in the first
 * caller's fiber, so interrupting that caller interrupts every waiter; its
 * keys use per-process `Equal`/`Hash`, and its state has no seam for a shared
 * store; its eviction is LRU-ish by access order. What we keep from it is the
 * shape: a pending `Deferred` per key that later callers await (here a
 * lighter one-shot of the same behaviour, see `Flight`).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { InvalidConfigError, isFallbackable } from "./Errors.js"
import { decodeOptions, LimitMillis, PositiveInt, PositiveLimitMillis } from "./internal/config.js"
import * as CacheKey from "./internal/responseCacheKey.js"
import { Lru } from "./internal/responseCacheLru.js"
import { clockOf } from "./internal/fiberClock.js"

/**
 * The request fields that make up the default key: what changes the answer
 * of an OpenAI chat / responses request, an Anthropic messages request or an
 * embeddings request. Not in it: `user`, `stream`, `stream_options`,
 * `metadata`, `store`, `service_tier`, `safety_identifier`,
 * `prompt_cache_key`, `prompt_cache_retention`, `moderation`.
 *
 * @since 0.1.0
 * @category keys
 */
export const defaultFields: ReadonlyArray<string> = CacheKey.defaultFields

/**
 * The stable key of `request` under `fields` (default {@link defaultFields}):
 * the hex SHA-256 of the canonical JSON of those fields, object keys sorted.
 * A request that is not a plain object, or has none of the fields, is hashed
 * whole.
 *
 * @since 0.1.0
 * @category keys
 */
export const hashRequest = (request: unknown, fields: ReadonlyArray<string> = defaultFields): string =>
  CacheKey.keyOf(request, fields)

/**
 * A stored answer. Times are epoch milliseconds on the effect `Clock`. The
 * entry is plain data apart from `value`: a store that encodes entries (Redis)
 * does so with {@link entrySchema} over a `Schema` of the value.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry<A> {
  readonly value: A
  readonly storedAt: number
  /** Fresh while `now < expiresAt`; `Infinity` when the time to live is. */
  readonly expiresAt: number
  /**
   * May answer stale while `now < staleUntil`; the store may forget the entry
   * after. `Infinity` when `maxStale` (or the time to live) is: never.
   */
  readonly staleUntil: number
}

/**
 * Epoch milliseconds, or `Infinity` written as `"Infinity"`: JSON has no
 * Infinity and `JSON.stringify` writes `null` for it, which would lose an
 * entry that never expires the first time a store encodes it.
 */
const EpochOrNever = Schema.Union(
  Schema.Number.pipe(Schema.finite()),
  Schema.transform(Schema.Literal("Infinity"), Schema.Literal(Number.POSITIVE_INFINITY), {
    strict: true,
    decode: () => Number.POSITIVE_INFINITY,
    encode: () => "Infinity" as const
  })
)

/**
 * The schema of an {@link Entry}, for a store that keeps entries as JSON.
 *
 * @since 0.1.0
 * @category schemas
 */
export const entrySchema = <A, I, R>(value: Schema.Schema<A, I, R>): Schema.Schema<
  Entry<A>,
  {
    readonly value: I
    readonly storedAt: number
    readonly expiresAt: number | "Infinity"
    readonly staleUntil: number | "Infinity"
  },
  R
> => Schema.Struct({ value, storedAt: Schema.Number, expiresAt: EpochOrNever, staleUntil: EpochOrNever })

/**
 * Where entries live. The in-memory LRU ({@link makeMemoryStore}) is the
 * default; a shared store (Redis, with {@link entrySchema} to encode values
 * and `staleUntil` as the key's expiry) slots in here. Like the policies'
 * `StateStore`, a store has no error channel: a shared store degrades to a
 * miss on trouble, it never fails a request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store<A> {
  /**
   * Cross-process single-flight, for a shared store: claims the computation
   * of `key` for at most `holdMillis`. `Leader`: compute, then `set` the
   * answer and `release` the claim (released whatever `set` did);
   * `Landed`: another holder's fresh answer, read once it landed (an
   * expired entry is not one: it is what is being computed again);
   * `Unclaimed`: the store cannot say (trouble), compute as if alone. It
   * runs in an uninterruptible region, so that a won claim always reaches
   * its release: it must make its waits for another holder interruptible.
   */
  readonly claim?: (key: string, holdMillis: number) => Effect.Effect<Claim<A>>
  /** Reads an entry; counts as a use for eviction. */
  readonly get: (key: string) => Effect.Effect<Option.Option<Entry<A>>>
  readonly set: (key: string, entry: Entry<A>) => Effect.Effect<void>
  readonly delete: (key: string) => Effect.Effect<void>
  readonly clear: Effect.Effect<void>
  readonly size: Effect.Effect<number>
}

/**
 * What {@link Store.claim} answers.
 *
 * @since 0.1.0
 * @category models
 */
export type Claim<A> =
  | { readonly _tag: "Leader"; readonly release: Effect.Effect<void> }
  | { readonly _tag: "Landed"; readonly entry: Entry<A> }
  | { readonly _tag: "Unclaimed" }

/**
 * An in-memory store of at most `maxEntries` entries that evicts the least
 * recently used (a read or a write is a use).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemoryStore = <A>(maxEntries: number): Store<A> => lruStore(new Lru<Entry<A>>(maxEntries))

const lruStore = <A>(lru: Lru<Entry<A>>): Store<A> => ({
  get: (key) => Effect.sync(() => Option.fromNullable(lru.get(key))),
  set: (key, entry) => Effect.sync(() => void lru.set(key, entry)),
  delete: (key) => Effect.sync(() => void lru.delete(key)),
  clear: Effect.sync(() => lru.clear()),
  size: Effect.sync(() => lru.size)
})

/** The clock of the running fiber, read without an op. */
const nowOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): number =>
  clockOf(fiber).unsafeCurrentTimeMillis()

/**
 * @since 0.1.0
 * @category options
 */
export interface Options<Req, Res> {
  /** Names the cache in metrics and status. Default `"response-cache"`. */
  readonly name?: string
  /** The request fields that make up the key. Default {@link defaultFields}. Not with `key`. */
  readonly fields?: ReadonlyArray<string>
  /** A custom key instead of the hash of `fields`; used as is. */
  readonly key?: (request: Req) => string
  /** How long an entry is fresh. Default 1 hour; `Duration.infinity`: for ever. */
  readonly timeToLive?: Duration.DurationInput
  /** Capacity of the in-memory store (LRU eviction). Default 10 000. Not with `store`. */
  readonly maxEntries?: number
  /**
   * How long after expiry an entry may still answer when the computation
   * failed. Default 24 hours; 0 turns stale-if-error off; `Duration.infinity`
   * sets no limit.
   */
  readonly maxStale?: Duration.DurationInput
  /** Which errors may be answered with a stale entry. Default `Errors.isFallbackable`. */
  readonly serveStaleOn?: (error: unknown) => boolean
  /** Whether a computed response is stored (e.g. not a truncated one). Default: every success. */
  readonly cacheable?: (response: Res) => boolean
  /** Where entries live. Default {@link makeMemoryStore} of `maxEntries`. */
  readonly store?: Store<Res>
  /** How long a claim on a key (a store with `claim`) holds the other processes off. Default 30 seconds. */
  readonly claimFor?: Duration.DurationInput
}

/**
 * An answer and where it came from. `ageMs` is the milliseconds since the
 * answer was stored (0 for `"computed"`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Cached<A> {
  readonly value: A
  readonly source: "computed" | "hit" | "stale"
  readonly ageMs: number
  readonly key: string
}

/**
 * Counters since the cache was made (this process only, even on a shared store).
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  readonly name: string
  /** Entries in the store, fresh or not. */
  readonly entries: number
  /** Lookups answered by a fresh entry. */
  readonly hits: number
  /** Lookups with no fresh entry (each `get` miss computes or joins a computation). */
  readonly misses: number
  /** Answers served from an expired entry. */
  readonly staleServed: number
  /** Misses that joined a computation already in flight instead of starting one. */
  readonly coalesced: number
  /** Computations in flight now. */
  readonly inFlight: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service<in Req, in out Res> {
  readonly name: string
  /** The key of `request`. */
  readonly keyOf: (request: Req) => string
  /**
   * A fresh entry if there is one; else `compute` (shared with identical
   * requests in flight), stored on success. When it fails with an error
   * `serveStaleOn` accepts, an expired entry within `maxStale` answers
   * instead; otherwise the error is the caller's. Identical requests are
   * assumed to bring the same computation: a caller that joins a flight gets
   * the answer (or error) of the computation that started it.
   */
  readonly get: <E, R>(request: Req, compute: Effect.Effect<Res, E, R>) => Effect.Effect<Cached<Res>, E, R>
  /** A fresh entry, without computing. */
  readonly lookup: (request: Req) => Effect.Effect<Option.Option<Cached<Res>>>
  /** A fresh or stale (within `maxStale` of expiry) entry, for a fallback step that serves the cache. */
  readonly lookupStale: (request: Req) => Effect.Effect<Option.Option<Cached<Res>>>
  /** Stores `response` as the fresh answer to `request`. */
  readonly set: (request: Req, response: Res) => Effect.Effect<void>
  readonly invalidate: (request: Req) => Effect.Effect<void>
  readonly invalidateAll: Effect.Effect<void>
  readonly status: Effect.Effect<Status>
}

const component = "ResponseCache"

const fn = Schema.declare(Predicate.isFunction, { message: () => "expected a function" })
const storeSchema = Schema.declare(
  (u: unknown): u is object =>
    Predicate.hasProperty(u, "get") && Predicate.isFunction(u.get) &&
    Predicate.hasProperty(u, "set") && Predicate.isFunction(u.set) &&
    Predicate.hasProperty(u, "delete") && Predicate.isFunction(u.delete),
  { message: () => "expected a store with get, set, delete, clear and size" }
)

const OptionsSchema = Schema.Struct({
  name: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty name" })), {
    default: () => "response-cache"
  }),
  fields: Schema.optional(
    Schema.Array(Schema.String.pipe(Schema.minLength(1, { message: () => "expected a non-empty field name" }))).pipe(
      Schema.minItems(1, { message: () => "expected at least one field" })
    )
  ),
  key: Schema.optional(fn),
  timeToLive: Schema.optionalWith(PositiveLimitMillis, { default: () => 3_600_000 }),
  maxEntries: Schema.optional(PositiveInt),
  maxStale: Schema.optionalWith(LimitMillis, { default: () => 86_400_000 }),
  serveStaleOn: Schema.optional(fn),
  cacheable: Schema.optional(fn),
  store: Schema.optional(storeSchema),
  claimFor: Schema.optionalWith(PositiveLimitMillis, { default: () => 30_000 })
})

const lookups = Metric.counter("resilient_ai_cache_lookups_total", {
  description: "response cache lookups, by outcome (hit, miss, stale)",
  incremental: true
})

/**
 * One computation in flight. Its waiters wait on it as on a `Deferred`
 * (`exit` is the completed value, `joiners` the waiters' callbacks, woken in
 * the order they came), without making a `Deferred`: effect builds each one
 * by copying the whole effect prototype into a fresh object, a few µs apiece.
 */
interface Flight<Res> {
  exit: Exit.Exit<Res, unknown> | undefined
  /** The answer another process stored while this one waited on its claim. */
  landed: Entry<Res> | undefined
  readonly joiners: Array<(exit: Exit.Exit<Res, unknown>) => void>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  waiters: number
  done: boolean
}

/** `Deferred.done` of a flight: records the exit and wakes every waiter, first come first. */
const completeFlight = <Res>(flight: Flight<Res>, exit: Exit.Exit<Res, unknown>): void => {
  if (flight.exit !== undefined) return
  flight.exit = exit
  const joiners = flight.joiners.splice(0, flight.joiners.length)
  for (const resume of joiners) resume(exit)
}

/**
 * Makes a cache. Computations in flight run in the scope and are interrupted
 * when it closes. Fails with `InvalidConfigError` naming the bad field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <Req, Res>(
  options: Options<Req, Res> = {}
): Effect.Effect<Service<Req, Res>, InvalidConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    const o = yield* decodeOptions(component, OptionsSchema, options)
    if (options.key !== undefined && options.fields !== undefined) {
      return yield* new InvalidConfigError({ component, path: "key", detail: "give either key or fields, not both" })
    }
    if (options.store !== undefined && options.maxEntries !== undefined) {
      return yield* new InvalidConfigError({
        component,
        path: "maxEntries",
        detail: "maxEntries sizes the in-memory store; a custom store bounds itself"
      })
    }
    const inflight = new Map<string, Flight<Res>>()
    // Closing the cache's scope interrupts every computation in flight (each runs in a fiber of its own).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
        for (const flight of inflight.values()) if (flight.fiber !== undefined && !flight.done) fibers.push(flight.fiber)
        return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
      })
    )
    const ttl = o.timeToLive
    const maxStale = o.maxStale
    const fields = o.fields ?? defaultFields
    const customKey = options.key
    const keyOf = (request: Req): string =>
      customKey === undefined ? CacheKey.keyOf(request, fields) : customKey(request)
    const serveStaleOn = options.serveStaleOn ?? isFallbackable
    const cacheable = options.cacheable
    // The in-memory store is read and written in place (no op per access); a custom store through its effects.
    const lru = options.store === undefined ? new Lru<Entry<Res>>(o.maxEntries ?? 10_000) : undefined
    const store: Store<Res> = options.store ?? (lru === undefined ? makeMemoryStore<Res>(o.maxEntries ?? 10_000) : lruStore(lru))
    const name = o.name

    const counts = { hits: 0, misses: 0, staleServed: 0, coalesced: 0 }
    // Both labels in one `taggedWithLabels` (the order nested `Metric.tagged` gives): the metric's
    // hook is then found by the identity of its label array instead of a registry lookup per update.
    const counter = (outcome: "hit" | "miss" | "stale") =>
      Metric.taggedWithLabels(lookups, [MetricLabel.make("cache", name), MetricLabel.make("outcome", outcome)])
    const metrics = { hit: counter("hit"), miss: counter("miss"), stale: counter("stale") }
    /** `count`, in place: what `Metric.increment` does, with the fiber's metric labels. */
    const countNow = (fiber: Fiber.RuntimeFiber<unknown, unknown>, outcome: "hit" | "miss" | "stale"): void => {
      if (outcome === "hit") counts.hits++
      else if (outcome === "miss") counts.misses++
      else counts.staleServed++
      metrics[outcome].unsafeUpdate(1, fiber.getFiberRef(FiberRef.currentMetricLabels))
    }
    const count = (outcome: "hit" | "miss" | "stale"): Effect.Effect<void> =>
      Effect.withFiberRuntime((fiber) => {
        countNow(fiber, outcome)
        return Effect.void
      })

    const answer = (key: string, entry: Entry<Res>, now: number): Cached<Res> => ({
      value: entry.value,
      source: now < entry.expiresAt ? "hit" : "stale",
      ageMs: now - entry.storedAt,
      key
    })

    /** `read` on the in-memory store, in place. */
    const readNow = (memory: Lru<Entry<Res>>, key: string, stale: boolean, now: number): Option.Option<Cached<Res>> => {
      const entry = memory.get(key)
      if (entry === undefined) return Option.none()
      const alive = now < entry.staleUntil
      if (now < entry.expiresAt || (stale && alive)) return Option.some(answer(key, entry, now))
      if (!alive) memory.delete(key)
      return Option.none()
    }

    /** The entry of `key` if it may still answer (fresh, or stale when `stale`); a dead one is deleted. */
    const read = (key: string, stale: boolean): Effect.Effect<Option.Option<Cached<Res>>> =>
      lru !== undefined
        ? Effect.withFiberRuntime((fiber) => Effect.succeed(readNow(lru, key, stale, nowOf(fiber))))
        : Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(store.get(key), (found) => {
          if (Option.isNone(found)) return Effect.succeed(Option.none())
          const entry = found.value
          const alive = now < entry.staleUntil
          if (now < entry.expiresAt || (stale && alive)) return Effect.succeed(Option.some(answer(key, entry, now)))
          return alive ? Effect.succeed(Option.none()) : Effect.as(store.delete(key), Option.none())
        }))

    const entryAt = (value: Res, now: number): Entry<Res> => ({
      value,
      storedAt: now,
      expiresAt: now + ttl,
      staleUntil: now + ttl + maxStale
    })

    const put = (key: string, value: Res): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => store.set(key, entryAt(value, now)))

    const land = (key: string, flight: Flight<Res>, exit: Exit.Exit<Res, unknown>): void => {
      flight.done = true
      if (inflight.get(key) === flight) inflight.delete(key)
      // Only a flight not done is ever interrupted. Let go of the fiber: V8 keeps `inflight`'s replaced
      // tables, dead but promoted, pointing at the flights they held until a full collection, and each
      // scavenge until then would keep the finished fiber, and all it points at, alive and promote it (a
      // third of what a drill request through the client promoted; `node scripts/drill-cost.mjs`).
      flight.fiber = undefined
      completeFlight(flight, exit)
    }

    const keeps = (exit: Exit.Exit<Res, unknown>): exit is Exit.Success<Res, unknown> =>
      Exit.isSuccess(exit) && (cacheable === undefined || cacheable(exit.value))

    // Runs in the flight's own fiber (a custom store): stores a success, then wakes the waiters.
    const finish = (key: string, flight: Flight<Res>, exit: Exit.Exit<Res, unknown>): Effect.Effect<void> =>
      Effect.zipRight(
        keeps(exit) ? put(key, exit.value) : Effect.void,
        Effect.sync(() => land(key, flight, exit))
      )

    /**
     * The flight's work on a custom store: claim the key across processes when the store can, then
     * compute or take what landed. The claim is taken and its release tied to the computation in one
     * uninterruptible region (the store waits on another holder interruptibly): a flight interrupted
     * the moment its claim is won still lets it go, instead of holding every other process up for
     * `claimFor`. The release follows every computation, a stored answer's too: a store that could
     * not store it (an answer its schema cannot encode, a failed write) must not keep the claim.
     */
    const claimed = <E, R>(key: string, flight: Flight<Res>, compute: Effect.Effect<Res, E, R>): Effect.Effect<Res, E, R> => {
      const claim = store.claim
      if (claim === undefined) return Effect.onExit(compute, (exit) => finish(key, flight, exit))
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(claim(key, o.claimFor), (claimed): Effect.Effect<Res, E, R> => {
          if (claimed._tag === "Unclaimed") return Effect.onExit(restore(compute), (exit) => finish(key, flight, exit))
          if (claimed._tag === "Landed") {
            flight.landed = claimed.entry
            return Effect.sync(() => {
              land(key, flight, Exit.succeed(claimed.entry.value))
              return claimed.entry.value
            })
          }
          return Effect.onExit(restore(compute), (exit) => Effect.zipRight(finish(key, flight, exit), claimed.release))
        }))
    }

    const leave = (key: string, flight: Flight<Res>): Effect.Effect<void> =>
      Effect.suspend(() => {
        flight.waiters--
        if (flight.waiters > 0 || flight.done) return Effect.void
        // Every waiter left: nobody wants the answer; stop paying for it.
        if (inflight.get(key) === flight) inflight.delete(key)
        return flight.fiber === undefined ? Effect.void : Fiber.interrupt(flight.fiber)
      })

    /** What a waiter gets from the flight's exit: the answer, or on an error `serveStaleOn` accepts, an expired entry. */
    const settle = <E>(key: string, flight: Flight<Res>, exit: Exit.Exit<Res, unknown>): Effect.Effect<Cached<Res>, E> => {
      const landed = flight.landed
      if (landed !== undefined) {
        // Counted as the miss it was here; the answer is another process's, stored `ageMs` ago.
        return Effect.map(Clock.currentTimeMillis, (now) => answer(key, landed, now))
      }
      if (Exit.isSuccess(exit)) return Exit.succeed({ value: exit.value, source: "computed", ageMs: 0, key })
      // The flight ran the waiter's own computation (identical requests bring the same one): its error is an `E`.
      const cause = exit.cause as Cause.Cause<E>
      const failure = Cause.failureOption(cause)
      if (Option.isNone(failure) || !serveStaleOn(failure.value)) return Effect.failCause(cause)
      return Effect.flatMap(read(key, true), (stale) =>
        Option.isSome(stale)
          ? Effect.as(count(stale.value.source === "stale" ? "stale" : "hit"), stale.value)
          : Effect.failCause(cause))
    }

    /**
     * Starts `key`'s computation in a fiber of its own, made from the caller's runtime (context,
     * fiber refs) and run on this stack until it first suspends, with no scheduler hop to
     * start it. It runs interruptible whatever the caller's region, so that
     * a leaving last waiter or the closing scope can stop it. With the in-memory store the flight
     * lands from an observer of that fiber, with no `onExit` (a mask and five ops) around the
     * computation; observers run in the order they came, so it has landed before anyone who
     * interrupts the fiber and awaits it resumes.
     *
     * Why a fiber and not the caller's own: the caller that starts a flight may be interrupted (a
     * closed tab, its deadline) while identical requests wait on it, and they must still get that
     * call's answer. The fiber is the price of that rule: 13 of a drill request's 120 ops and 12 of
     * its 73 KB (`node scripts/drill-cost.mjs`). Run in the caller's fiber, a flight measured 18-22 %
     * less CPU through the protected client, but an interrupted starter would cost its waiters a
     * second paid call.
     */
    const launch = <E, R>(
      caller: Fiber.RuntimeFiber<unknown, unknown>,
      flags: RuntimeFlags.RuntimeFlags,
      key: string,
      compute: Effect.Effect<Res, E, R>
    ): Flight<Res> => {
      const flight: Flight<Res> = { exit: undefined, landed: undefined, joiners: [], fiber: undefined, waiters: 1, done: false }
      inflight.set(key, flight)
      const runtime = Runtime.make({
        // The caller's fiber runs with `R` in its context: this is where `R` comes from.
        context: caller.currentContext as Context.Context<R>,
        runtimeFlags: RuntimeFlags.enable(flags, RuntimeFlags.Interruption),
        fiberRefs: caller.getFiberRefs()
      })
      if (lru === undefined) {
        const fiber = Runtime.runFork(runtime)(claimed(key, flight, compute))
        if (!flight.done) flight.fiber = fiber
        return flight
      }
      // The flight's clock is the caller's: the computation's own changes to it end with it.
      const clock = clockOf(caller)
      const fiber = Runtime.runFork(runtime)(compute)
      fiber.addObserver((exit) => {
        if (keeps(exit)) lru.set(key, entryAt(exit.value, clock.unsafeCurrentTimeMillis()))
        land(key, flight, exit)
      })
      if (!flight.done) flight.fiber = fiber
      return flight
    }

    /**
     * A miss, in the caller's op: join `key`'s computation or start it, then wait for it. The
     * waiter is registered and its leaving is handled by one `Effect.async` (its canceler is the
     * `onInterrupt` that leaves) instead of a mask, an `onInterrupt` and an `async` of their own.
     * A computation done before it first suspends answers at once, with no wait at all.
     */
    const join = <E, R>(
      caller: Fiber.RuntimeFiber<unknown, unknown>,
      flags: RuntimeFlags.RuntimeFlags,
      key: string,
      compute: Effect.Effect<Res, E, R>
    ): Effect.Effect<Cached<Res>, E, R> => {
      let flight = inflight.get(key)
      if (flight === undefined) {
        flight = launch(caller, flags, key, compute)
      } else {
        counts.coalesced++
        flight.waiters++
      }
      if (flight.exit !== undefined) return settle<E>(key, flight, flight.exit)
      const joined = flight
      return Effect.async<Cached<Res>, E>((resume) => {
        const joiner = (exit: Exit.Exit<Res, unknown>) => resume(settle<E>(key, joined, exit))
        joined.joiners.push(joiner)
        return Effect.suspend(() => {
          const i = joined.joiners.indexOf(joiner)
          if (i >= 0) joined.joiners.splice(i, 1)
          return leave(key, joined)
        })
      })
    }

    const get = <E, R>(request: Req, compute: Effect.Effect<Res, E, R>): Effect.Effect<Cached<Res>, E, R> =>
      lru !== undefined
        ? Effect.withFiberRuntime<Cached<Res>, E, R>((fiber, status) => {
          // The in-memory store: key, read, count and join in this one op.
          const key = keyOf(request)
          const fresh = readNow(lru, key, false, nowOf(fiber))
          if (Option.isSome(fresh)) {
            countNow(fiber, "hit")
            return Effect.succeed(fresh.value)
          }
          countNow(fiber, "miss")
          return join(fiber, status.runtimeFlags, key, compute)
        })
        : Effect.suspend(() => {
          const key = keyOf(request)
          return Effect.flatMap(read(key, false), (fresh): Effect.Effect<Cached<Res>, E, R> => {
            if (Option.isSome(fresh)) return Effect.as(count("hit"), fresh.value)
            return Effect.zipRight(
              count("miss"),
              Effect.withFiberRuntime<Cached<Res>, E, R>((fiber, status) => join(fiber, status.runtimeFlags, key, compute))
            )
          })
        })

    const lookupWith = (stale: boolean) => (request: Req): Effect.Effect<Option.Option<Cached<Res>>> =>
      Effect.suspend(() =>
        Effect.tap(read(keyOf(request), stale), (found) =>
          count(Option.isNone(found) ? "miss" : found.value.source === "stale" ? "stale" : "hit"))
      )

    const status: Effect.Effect<Status> = Effect.map(store.size, (entries) => ({
      name,
      entries,
      hits: counts.hits,
      misses: counts.misses,
      staleServed: counts.staleServed,
      coalesced: counts.coalesced,
      inFlight: inflight.size
    }))

    return {
      name,
      keyOf,
      get,
      lookup: lookupWith(false),
      lookupStale: lookupWith(true),
      set: (request, response) => Effect.suspend(() => put(keyOf(request), response)),
      invalidate: (request) => Effect.suspend(() => store.delete(keyOf(request))),
      invalidateAll: store.clear,
      status
    } satisfies Service<Req, Res>
  })

/**
 * A layer with the cache of `options` under `tag`. The cache is generic in
 * its request and response, so the tag belongs to the package that knows
 * them (e.g. `class ChatCache extends Context.Tag("@resilient-ai/llm/ChatCache")<ChatCache, ResponseCache.Service<ChatRequest, ChatResponse>>() {}`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, Req, Res>(
  tag: Context.Tag<I, Service<Req, Res>>,
  options: Options<Req, Res> = {}
): Layer.Layer<I, InvalidConfigError> => Layer.scoped(tag, make(options))
