/**
 * The core's `ResponseCache.Store` on Redis: one response cache for every
 * process that shares a prefix, and single-flight across them.
 *
 * - An entry is one key, `<prefix>cache:<name>:{<request hash>}`, holding
 *   the entry's JSON (`ResponseCache.entrySchema` over the response's
 *   schema) and expiring when the entry may no longer answer, even stale
 *   (`staleUntil`; an entry that never expires gets the store's `ttl`).
 * - A claim is a second key beside it (same hash tag, so both live on one
 *   Cluster node), set with `NX` and an expiry: the process that sets it
 *   computes. The others read the entry every `pollMillis` and answer with it
 *   once it lands; when the claim is gone without an answer (the holder's
 *   computation failed, or the holder died and the claim expired) the next
 *   one to set it computes. Storing the answer ends the claim in the same
 *   transaction.
 * - Polling, not pub/sub: a subscriber needs a connection of its own, and
 *   an answer that lands is seen within `pollMillis` (25 ms) either way,
 *   small beside an LLM call.
 * - Trouble (the link down, a command late or failed) is a miss, a claim
 *   nobody holds, or a write not made: the cache never fails a call.
 *
 * @internal
 */
import type * as ResponseCache from "@resilient-ai/core/ResponseCache"
import * as CoreCache from "@resilient-ai/core/ResponseCache"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomUUID } from "node:crypto"
import { type Link, within } from "./link.js"

export interface CacheStoreOptions {
  readonly prefix: string
  readonly operationMillis: number
  /** The expiry of an entry that never expires. */
  readonly ttlMillis: number
  readonly pollMillis: number
}

/** Deletes the claim only if it is still the caller's (a late release must not drop the next holder's). */
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

export const makeCacheStore = <A, I>(
  link: Link,
  options: CacheStoreOptions,
  name: string,
  schema: Schema.Schema<A, I>
): ResponseCache.Store<A> => {
  const base = `${options.prefix}cache:${name}:`
  const entryKey = (key: string) => `${base}{${key}}`
  const claimKey = (key: string) => `${base}{${key}}:claim`
  const json = Schema.parseJson(CoreCache.entrySchema(schema))
  const decode = Schema.decodeUnknownOption(json)
  const encode = Schema.encodeOption(json)

  const currentMillis = Effect.clockWith((clock) => clock.currentTimeMillis)

  /** One command within the store's timeout; `None` on any trouble (and the link learns of it). */
  const command = <B>(run: () => Promise<B>): Effect.Effect<Option.Option<B>> =>
    link.up()
      ? Effect.promise(() =>
        within(run(), options.operationMillis, "response cache").then(Option.some, (e: unknown) => {
          link.lost(`a Redis command failed (${e instanceof Error ? e.message : String(e)})`)
          return Option.none<B>()
        })
      )
      : Effect.succeed(Option.none())

  const read = (key: string): Effect.Effect<Option.Option<ResponseCache.Entry<A>>> =>
    Effect.map(command(() => link.client.get(entryKey(key))), (got) =>
      Option.flatMap(got, (raw) => (raw === null ? Option.none() : decode(raw))))

  /** Every key of this cache (on every node of a Cluster). */
  const keys: Effect.Effect<ReadonlyArray<string>> = Effect.map(
    command(() => link.scan(`${base}*`)),
    (found) => Option.getOrElse(found, () => [])
  )

  const claim = (key: string, holdMillis: number): Effect.Effect<ResponseCache.Claim<A>> => {
    const token = randomUUID()
    const leader: ResponseCache.Claim<A> = {
      _tag: "Leader",
      release: Effect.asVoid(command(() => link.client.eval(releaseScript, 1, claimKey(key), token)))
    }
    const attempt: Effect.Effect<ResponseCache.Claim<A>> = Effect.flatMap(
      command(() => link.client.set(claimKey(key), token, "PX", holdMillis, "NX")),
      (set): Effect.Effect<ResponseCache.Claim<A>> => {
        if (Option.isNone(set)) return Effect.succeed({ _tag: "Unclaimed" })
        return set.value === "OK" ? Effect.succeed(leader) : wait
      }
    )
    const wait: Effect.Effect<ResponseCache.Claim<A>> = Effect.flatMap(
      Effect.zip(command(() => link.client.multi().get(entryKey(key)).exists(claimKey(key)).exec()), currentMillis),
      ([replies, now]): Effect.Effect<ResponseCache.Claim<A>> => {
        if (Option.isNone(replies) || replies.value === null) return Effect.succeed({ _tag: "Unclaimed" })
        const [entry, held] = replies.value
        const raw = entry?.[1]
        const landed = typeof raw === "string" ? decode(raw) : Option.none()
        // Only a fresh entry is the holder's answer: an expired one, kept for stale-if-error, is what it computes again.
        if (Option.isSome(landed) && now < landed.value.expiresAt) return Effect.succeed({ _tag: "Landed", entry: landed.value })
        // The holder let go (its computation failed) or died (its claim expired): try to take over.
        if (held?.[1] === 0) return attempt
        // The caller claims uninterruptibly; waiting on another holder is what it may be interrupted in.
        return Effect.zipRight(Effect.interruptible(Effect.sleep(options.pollMillis)), wait)
      }
    )
    return attempt
  }

  return {
    claim,
    get: read,
    set: (key, entry) =>
      Effect.flatMap(currentMillis, (now) => {
        const encoded = encode(entry)
        if (Option.isNone(encoded)) return Effect.void
        const left = entry.staleUntil - now
        const px = Math.max(1, Math.round(Number.isFinite(left) ? Math.min(left, options.ttlMillis) : options.ttlMillis))
        return Effect.asVoid(
          command(() => link.client.multi().set(entryKey(key), encoded.value, "PX", px).del(claimKey(key)).exec())
        )
      }),
    delete: (key) => Effect.asVoid(command(() => link.client.del(entryKey(key)))),
    clear: Effect.flatMap(keys, (found) =>
      Effect.forEach(found, (k) => command(() => link.client.del(k)), { discard: true, concurrency: 16 })),
    size: Effect.map(keys, (found) => found.filter((k) => !k.endsWith(":claim")).length)
  }
}
