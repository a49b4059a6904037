/** Redis stores for the tests: each test's keys under a prefix of its own. */
import * as RedisStore from "@resilient-ai/redis/RedisStore"
import type * as StateStore from "@resilient-ai/core/StateStore"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import { inject } from "vitest"

export const redisUrl: string = inject("redisUrl")
export const redisServerBinary: boolean = inject("redisServerBinary")

export const freshPrefix = (): string => `test-${randomUUID()}:`

export interface Instance {
  readonly store: StateStore.Service
  readonly redis: RedisStore.Service
  readonly prefix: string
}

/**
 * `n` stores on their own connections, sharing one prefix: `n` processes in one.
 * Tests of sharing give Redis 2 s rather than the default 50 ms: on a loaded
 * test machine a scheduling pause is not Redis trouble (the fault tests use the default).
 */
export const instances = (
  n: number,
  options: Partial<RedisStore.Options> = {}
): Effect.Effect<ReadonlyArray<Instance>, never, Scope.Scope> => {
  const prefix = options.prefix ?? freshPrefix()
  return Effect.forEach(
    Array.from({ length: n }),
    () =>
      Effect.map(
        Effect.orDie(RedisStore.make({ url: redisUrl, prefix, operationTimeout: "2 seconds", ...options })),
        (made) => ({ ...made, prefix })
      )
  )
}

/** Real time passing, whatever the test's clock. */
export const realSleep = (ms: number): Effect.Effect<void> =>
  Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))
