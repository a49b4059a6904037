/**
 * The store's connection to Redis and what it knows of its health.
 *
 * Redis trouble must never fail or stall a call, so the link answers one
 * question fast: is Redis worth asking right now? It is not after the
 * connection closes or a command misses its deadline; from then on every slot
 * works on its local state (no command is sent, so no call waits), and a
 * probe (PING, every `probeMillis`) brings the link back once Redis answers in
 * time. The first loss of an episode logs one warning; the return logs one
 * line too, and the gauge `resilient_ai_redis_connected` follows both.
 *
 * ioredis reconnects by itself (backoff below). Its offline queue is off and
 * no request is retried: a command that cannot go out now fails now, and the
 * slot proceeds locally instead of waiting for a reconnect.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { Cluster, Redis } from "ioredis"
import { createHash } from "node:crypto"
import type { Target } from "./target.js"

/** What the link reports (`RedisStore.status`). */
export interface Health {
  readonly connected: boolean
  /** Wall-clock time (epoch ms) the current degraded episode began. */
  readonly degradedSince?: number
}

/** A compare-and-set's answer: written (the new version), or the slot as it is. */
export type CasReply =
  | { readonly _tag: "written"; readonly version: number }
  | { readonly _tag: "current"; readonly version: number; readonly json: string | undefined }

/**
 * One script for every slot, so every operation costs one round trip.
 * KEYS[1] the slot; ARGV[1] the version the caller's state came from;
 * ARGV[2] the new state, or "" to only read; ARGV[3] the TTL in ms.
 * Replies `{version}` when the caller is current (and wrote, if it asked),
 * `{version, state}` otherwise (state "" when the slot does not exist, its
 * version 0). The state is a JSON string: Lua never looks inside it.
 *
 * A slot written afresh (its first write, or after Redis lost the key to a
 * restart or its TTL) starts its versions at Redis's clock in microseconds,
 * not at 1: a process that still holds a version of the lost key must never
 * find it again in the new one, or its compare-and-set would pass and write
 * its stale state over what the others wrote since. A key's versions grow
 * by one a write, far slower than its clock, so a later key's first version
 * is above every version of the earlier ones (a 16-digit number, exact in a
 * double; written with `%d`, as Lua's own conversion would round it).
 */
export const casScript = `
local cur = redis.call('HMGET', KEYS[1], 'v', 's')
local v = tonumber(cur[1]) or 0
if v ~= tonumber(ARGV[1]) then
  return {v, cur[2] or ''}
end
if ARGV[2] ~= '' then
  if cur[1] then
    v = v + 1
  else
    local t = redis.call('TIME')
    v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  redis.call('HSET', KEYS[1], 'v', string.format('%d', v), 's', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {v}
`

const casSha = createHash("sha1").update(casScript).digest("hex")

/** Run an effect in the background (logs, gauge) from ioredis callbacks. */
export type Report = (effect: Effect.Effect<void>) => void

export interface LinkOptions {
  /** One server (`url`), or the nodes of a Redis Cluster to start from: checked (`target.ts`). */
  readonly target: Target
  readonly operationMillis: number
  readonly probeMillis: number
  readonly connectMillis: number
  /** Epoch ms on the layer's `Clock`: the link's callbacks run outside any fiber. */
  readonly now: () => number
  readonly report: Report
  readonly log: {
    readonly lost: (reason: string) => Effect.Effect<void>
    readonly back: (downMillis: number) => Effect.Effect<void>
  }
}

export interface Link {
  /** Whether commands go to Redis now (false: slots work on local state). */
  readonly up: () => boolean
  readonly health: () => Health
  /** Runs the compare-and-set script; rejects on any Redis trouble. */
  readonly cas: (key: string, version: number, state: string, ttlMillis: number) => Promise<CasReply>
  /** A command failed or missed its deadline: stop asking Redis until a probe answers. */
  readonly lost: (reason: string) => void
  /** Resolves once the first connection is ready, or after `connectMillis` (then degraded). */
  readonly started: Promise<void>
  readonly close: () => Promise<void>
  /** The ioredis client: for the response cache's commands, tests and measurements. */
  readonly client: Redis | Cluster
  /** The keys that match `pattern`. */
  readonly scan: (pattern: string) => Promise<ReadonlyArray<string>>
}

/** 1 while shared state is in use, 0 while degraded to local state. */
export const connectedGauge = Metric.gauge("resilient_ai_redis_connected", {
  description: "1 while the Redis store shares state, 0 while it works on local state"
})

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const parseReply = (reply: unknown): CasReply | undefined => {
  if (!Array.isArray(reply)) return undefined
  const version = Number(reply[0])
  if (!Number.isSafeInteger(version)) return undefined
  if (reply.length === 1) return { _tag: "written", version }
  const json = reply[1]
  return { _tag: "current", version, json: typeof json === "string" && json !== "" ? json : undefined }
}

/** Settles `promise`, or rejects after `millis` (a timer that never keeps the process alive). */
export const within = <A>(promise: Promise<A>, millis: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${millis} ms`)), millis)
    timer.unref()
    promise.then(
      (a) => {
        clearTimeout(timer)
        resolve(a)
      },
      (e: unknown) => {
        clearTimeout(timer)
        reject(e)
      }
    )
  })

export const makeLink = (options: LinkOptions): Link => {
  const backoff = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000)
  const client: Redis | Cluster = "url" in options.target
    ? new Redis(options.target.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Commands issued in one tick (many slots, many fibers) leave in one write.
      enableAutoPipelining: true,
      connectTimeout: options.connectMillis,
      retryStrategy: backoff
    })
    : new Cluster([...options.target.cluster], {
      lazyConnect: true,
      enableOfflineQueue: false,
      // Off: ioredis 5.9 fails an auto-pipeline whose commands map to different slots ("All keys in the
      // pipeline should belong to the same slots allocation group"); each slot's operations share a
      // script anyway (group commit).
      enableAutoPipelining: false,
      clusterRetryStrategy: backoff,
      redisOptions: { maxRetriesPerRequest: 0, connectTimeout: options.connectMillis, ...options.target.credentials }
    })
  let up = false
  let degradedSince: number | undefined
  let closed = false
  let probe: ReturnType<typeof setInterval> | undefined
  let probing = false

  const setUp = () => {
    if (probe !== undefined) clearInterval(probe)
    probe = undefined
    const since = degradedSince
    up = true
    degradedSince = undefined
    options.report(Metric.set(connectedGauge, 1))
    if (since !== undefined) options.report(options.log.back(options.now() - since))
  }

  const runProbe = () => {
    if (probing || closed || client.status !== "ready") return
    probing = true
    within(client.ping(), options.operationMillis, "PING").then(
      () => {
        probing = false
        if (!closed && !up) setUp()
      },
      () => {
        probing = false
      }
    )
  }

  const lost = (reason: string) => {
    if (closed) return
    const wasUp = up
    up = false
    if (degradedSince === undefined) {
      degradedSince = options.now()
      options.report(Metric.set(connectedGauge, 0))
      options.report(options.log.lost(reason))
    } else if (wasUp) {
      options.report(Metric.set(connectedGauge, 0))
    }
    if (probe === undefined) {
      probe = setInterval(runProbe, options.probeMillis)
      probe.unref()
    }
  }

  // Without a listener ioredis prints every connection error; the link reports them once instead.
  client.on("error", () => {})
  client.on("close", () => lost("the connection to Redis closed"))

  // Each connection (a restarted Redis has lost its scripts) loads the script first, so operations
  // cost one EVALSHA, not a NOSCRIPT and an EVAL.
  client.on("ready", () => {
    client.script("LOAD", casScript).catch(() => {})
  })

  const started = within(client.connect(), options.connectMillis, "connect").then(
    () => setUp(),
    (e: unknown) => {
      lost(`Redis unreachable at start (${errorText(e)})`)
      // lazyConnect: after a failed first attempt ioredis keeps reconnecting with the backoff above.
    }
  )

  const cas = (key: string, version: number, state: string, ttlMillis: number): Promise<CasReply> => {
    const args = [key, String(version), state, String(ttlMillis)] as const
    return client.evalsha(casSha, 1, ...args).catch((e: unknown) =>
      errorText(e).startsWith("NOSCRIPT") ? client.eval(casScript, 1, ...args) : Promise.reject(e)
    ).then((reply) => {
      const parsed = parseReply(reply)
      return parsed === undefined ? Promise.reject(new Error("unexpected reply from the store script")) : parsed
    })
  }

  const scan = async (pattern: string): Promise<ReadonlyArray<string>> => {
    const found: Array<string> = []
    // A Cluster's keys are spread over its masters: each is scanned.
    for (const node of client instanceof Cluster ? client.nodes("master") : [client]) {
      let cursor = "0"
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000)
        cursor = next
        found.push(...keys)
      } while (cursor !== "0")
    }
    return found
  }

  return {
    scan,
    up: () => up,
    health: () => (degradedSince === undefined ? { connected: up } : { connected: up, degradedSince }),
    cas,
    lost,
    started,
    client,
    close: () => {
      closed = true
      up = false
      if (probe !== undefined) clearInterval(probe)
      probe = undefined
      return client.quit().then(() => undefined, () => client.disconnect())
    }
  }
}
