/**
 * The core's `StateStore` on Redis: N processes that provide this layer with
 * one URL and prefix share one breaker per deployment, one rate budget per
 * key, one view of key health, one retry budget and one adaptive limit; and,
 * through {@link responseCacheStore}, one response cache. The application
 * changes nothing but the layer it provides (and the cache's `store`).
 *
 * How (see `internal/sharedCell.ts`): each slot is one Redis key under
 * `prefix`, `{version, state}`, the state the JSON of the core's own state
 * machine. An operation runs that machine here on the last state this process
 * saw and commits it with one compare-and-set script; on a version clash the
 * script answers with the current state and the step runs again on it. So
 * every rule keeps its single TypeScript implementation: nothing is written
 * twice in Lua. The keys carry the slot name as a hash tag (`{name}`), so
 * the one-key script also runs on Redis Cluster.
 *
 * Costs: at most one round trip on the latency path of a call. The store
 * reads the slots it uses in the background every `refreshInterval / 2`
 * (100 ms / 2), so each keeps a view of the shared state at most
 * `refreshInterval` old. From that view, with no round trip: a closed
 * breaker's admission, an open one's refusal, a key pick, and every outcome
 * record (breaker, key health, adaptive limit), whose writes commit behind
 * the call. The one operation that waits for Redis is the one that must be
 * exact across processes: the limiter's reservation (and a half-open
 * breaker's trial, which happens once per opening). Concurrent operations of
 * one process on one slot share a script (group commit). A slot unused for
 * `idleTimeout` (10 s) is no longer refreshed; its next operation waits for
 * one read.
 *
 * What the behind writes cost the breaker's view: an outcome reaches Redis
 * one script after the call ends (the slot's queue, then one round trip),
 * and other processes see it at their next refresh: at most
 * `refreshInterval` plus that round trip after the call.
 *
 * Trouble: Redis never fails a call. An operation unanswered within
 * `operationTimeout` (50 ms), or any while Redis is unreachable, runs on this
 * process's local state with the same machines; one warning is logged, and
 * {@link status} and the gauge `resilient_ai_redis_connected` say so until
 * a probe finds Redis again (ioredis reconnects with backoff), when shared
 * state resumes.
 *
 * Why not @effect/experimental's Redis `RateLimiter` store: its token bucket
 * is a Lua script of its own, a second implementation of rule 21 beside the
 * core's (reservations into a negative balance, pauses, refunds), and it has
 * no breaker, key health or retry budget.
 *
 * The adaptive limit (rule 29) shares what it learns: one window of
 * outcomes and one learned limit for all processes; each process holds at
 * most that limit in flight of its own calls.
 *
 * @since 0.1.0
 */
import type * as ResponseCache from "@resilient-ai/core/ResponseCache"
import * as StateStore from "@resilient-ai/core/StateStore"
import type * as Errors from "@resilient-ai/core/Errors"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { makeCacheStore } from "./internal/cacheStore.js"
import { type Link, makeLink } from "./internal/link.js"
import { type Cell, type Counters as CellCounters, makeCell, makeCounters } from "./internal/sharedCell.js"
import * as slots from "./internal/slots.js"
import * as target from "./internal/target.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Options = CommonOptions & (
  | {
    /** `redis://[:password@]host:port[/db]`; a `Redacted` URL keeps its password out of logs. */
    readonly url: string | Redacted.Redacted<string>
  }
  | {
    /**
     * The nodes of a Redis Cluster to start from (`redis://[:password@]host:port`; the
     * first one's password is used for all). The keys of one slot share a hash tag, so
     * every script runs on one node.
     */
    readonly cluster: ReadonlyArray<string | Redacted.Redacted<string>>
  }
)

/**
 * What {@link Options} has whether the store talks to one server or a Cluster.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommonOptions {
  /** Prepended to every key; instances that share state use the same prefix. Default `"resilient-ai:"`. */
  readonly prefix?: string | undefined
  /** How long an operation waits for Redis before it proceeds on local state. Default 50 millis. */
  readonly operationTimeout?: Duration.DurationInput | undefined
  /** How old a cached state may be for an operation that changes nothing. Default 100 millis. */
  readonly refreshInterval?: Duration.DurationInput | undefined
  /** Every key expires this long after its last write. Default 24 hours. */
  readonly ttl?: Duration.DurationInput | undefined
  /** How long `make` waits for the first connection before it starts degraded. Default 1 second. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Version clashes an operation retries before it proceeds on the state it last read, without writing. Default 50. */
  readonly maxRetries?: number | undefined
  /** A slot unused this long is no longer read in the background. Default 10 seconds. */
  readonly idleTimeout?: Duration.DurationInput | undefined
}

/**
 * What the store knows of Redis.
 *
 * @since 0.1.0
 * @category models
 */
export interface Status {
  /** Whether operations go to Redis (false: they run on this process's local state). */
  readonly connected: boolean
  /** When (epoch ms, wall clock) the current degraded episode began. */
  readonly degradedSince?: number
}

/**
 * What the store's operations cost, counted since it was made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counters {
  /** Operations whose caller waited for a Redis round trip. */
  readonly awaited: number
  /** Operations answered at once (from the slot's view, or local state while degraded). */
  readonly answered: number
  /** Scripts sent to Redis: the operations' commits (awaited or behind), retries after a clash, background reads. */
  readonly scripts: number
  /** Scripts that met a newer version (another process wrote first) and ran their steps again. */
  readonly clashes: number
  /** Batches that lost `maxRetries` clashes in a row and answered without writing. */
  readonly contended: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly status: Effect.Effect<Status>
  readonly counters: Effect.Effect<Counters>
  /**
   * A `ResponseCache` store on this connection: entries shared by every
   * process with the same prefix and `name`, encoded with `schema`, and
   * single-flight across processes (a claim with an expiry; see
   * `ResponseCache.Store.claim`).
   */
  readonly responseCacheStore: <A, I>(name: string, schema: Schema.Schema<A, I>) => ResponseCache.Store<A>
}

/**
 * The Redis store's own service, beside the `StateStore` it provides.
 *
 * @since 0.1.0
 * @category tags
 */
export class RedisStore extends Context.Tag("@resilient-ai/redis/RedisStore")<RedisStore, Service>() {}

/**
 * The store's connection state.
 *
 * @since 0.1.0
 * @category accessors
 */
export const status: Effect.Effect<Status, never, RedisStore> = Effect.flatMap(RedisStore, (s) => s.status)

const plain = (url: string | Redacted.Redacted<string>): string => Redacted.isRedacted(url) ? Redacted.value(url) : url

const millis = (d: Duration.DurationInput | undefined, fallback: number): number =>
  d === undefined ? fallback : Duration.toMillis(Duration.decode(d))

const defaultPrefix = "resilient-ai:"

const ttlMillisOf = (options: Options): number => Math.max(1, Math.round(millis(options.ttl, 24 * 60 * 60 * 1000)))

/**
 * A `ResponseCache` store on the layer's Redis connection (see {@link Service}).
 *
 * @since 0.1.0
 * @category accessors
 */
export const responseCacheStore = <A, I>(
  name: string,
  schema: Schema.Schema<A, I>
): Effect.Effect<ResponseCache.Store<A>, never, RedisStore> =>
  Effect.map(RedisStore, (s) => s.responseCacheStore(name, schema))

/**
 * Connects (waiting at most `connectTimeout`; an unreachable Redis is not an
 * error, the store starts degraded) and returns both services. The
 * connection closes with the scope. A URL that cannot connect anywhere (not
 * a `redis://` or `rediss://` URL, no host, port 0, a database that is not
 * a number, an empty cluster) fails with `InvalidConfigError` naming the
 * field (`url`, `cluster.N`), without repeating the URL.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<{ readonly store: StateStore.Service; readonly redis: Service }, Errors.InvalidConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    const checked = target.check("url" in options ? { url: plain(options.url) } : { cluster: options.cluster.map(plain) })
    if (Either.isLeft(checked)) return yield* checked.left
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const operationMillis = millis(options.operationTimeout, 50)
    const refreshMillis = millis(options.refreshInterval, 100)
    const link = yield* Effect.acquireRelease(
      Effect.sync(() =>
        makeLink({
          target: checked.right,
          operationMillis,
          probeMillis: refreshMillis,
          connectMillis: millis(options.connectTimeout, 1000),
          now: () => clock.unsafeCurrentTimeMillis(),
          report: (effect) => {
            Runtime.runFork(runtime)(effect)
          },
          log: {
            lost: (reason) =>
              Effect.logWarning(`Redis store degraded to local state: ${reason}. Calls go on; shared state resumes when Redis answers.`),
            back: (downMillis) => Effect.logInfo(`Redis store shares state again after ${downMillis} ms on local state.`)
          }
        })
      ),
      (link) => Effect.promise(() => link.close())
    )
    yield* Effect.promise(() => link.started)
    const counters = makeCounters()
    const { cells, store } = makeService(link, options, operationMillis, refreshMillis, counters)
    if (refreshMillis > 0) {
      const idleMillis = millis(options.idleTimeout, 10_000)
      // A plain timer, like the link's probe: the reads are fire-and-forget callbacks that never suspend a fiber.
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const timer = setInterval(() => {
            const now = clock.unsafeCurrentTimeMillis()
            for (const cell of cells.values()) cell.refresh(now, now - idleMillis)
          }, Math.max(1, Math.floor(refreshMillis / 2)))
          timer.unref()
          return timer
        }),
        (timer) => Effect.sync(() => clearInterval(timer))
      )
    }
    return {
      store,
      redis: {
        status: Effect.sync(link.health),
        counters: Effect.sync((): Counters => ({ ...counters })),
        responseCacheStore: (name, schema) =>
          makeCacheStore(link, {
            prefix: options.prefix ?? defaultPrefix,
            operationMillis,
            ttlMillis: ttlMillisOf(options),
            pollMillis: 25
          }, name, schema)
      }
    }
  })

const makeService = (
  link: Link,
  options: Options,
  operationMillis: number,
  refreshMillis: number,
  counters: CellCounters
): { readonly store: StateStore.Service; readonly cells: ReadonlyMap<string, Cell<unknown>> } => {
  const prefix = options.prefix ?? defaultPrefix
  const cellOptions = {
    operationMillis,
    refreshMillis,
    ttlMillis: ttlMillisOf(options),
    maxRetries: options.maxRetries ?? 50
  }
  // One cell per slot id: policies of one kind and name in this process share it, as on the memory store.
  const cells = new Map<string, Cell<unknown>>()
  const cellFor: slots.CellFor = <S>(id: string) => {
    const existing = cells.get(id)
    if (existing !== undefined) return existing as Cell<S | undefined>
    const cell = makeCell<S | undefined>(prefix + id, link, cellOptions, undefined, decode, counters)
    cells.set(id, cell as Cell<unknown>)
    return cell
  }
  return {
    cells,
    store: {
      breaker: (name, config) => slots.breakerSlot(cellFor, name, config),
      tokenBucket: (name, config) => slots.tokenBucketSlot(cellFor, name, config),
      keyHealth: (name, config) => slots.keyHealthSlot(cellFor, name, config),
      retryBudget: (name, config) => slots.retryBudgetSlot(cellFor, name, config),
      adaptiveLimit: (name, config) => slots.adaptiveLimitSlot(cellFor, name, config)
    }
  }
}

/** Stored state is this package's own JSON; anything else reads as "no state" and is rebuilt. */
const decode = <S>(json: string): S | undefined => {
  try {
    const value: unknown = JSON.parse(json)
    return typeof value === "object" && value !== null ? (value as S) : undefined
  } catch {
    return undefined
  }
}

/**
 * The `StateStore` on Redis, and {@link RedisStore} for its status.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StateStore.StateStore | RedisStore, Errors.InvalidConfigError> =>
  Layer.scopedContext(
    Effect.map(make(options), ({ redis, store }) =>
      Context.make(StateStore.StateStore, store).pipe(Context.add(RedisStore, redis)))
  )

/**
 * {@link layer} from configuration; by default the URL from `REDIS_URL`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<CommonOptions & { readonly url: string | Redacted.Redacted<string> }> = { url: Config.redacted("REDIS_URL") }
): Layer.Layer<StateStore.StateStore | RedisStore, ConfigError.ConfigError | Errors.InvalidConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))
