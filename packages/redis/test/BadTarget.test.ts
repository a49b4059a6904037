/**
 * A Redis URL that cannot connect anywhere is a configuration error naming
 * its field, found before any connection: not a defect out of the layer, and not a store left degraded for ever as if Redis were down.
 * No error repeats the URL, which may carry a password.
 */
import { describe, expect, it } from "@effect/vitest"
import * as RedisStore from "@resilient-ai/redis/RedisStore"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"

const failureOf = (options: RedisStore.Options) =>
  Effect.map(Effect.exit(Effect.scoped(RedisStore.make({ ...options, connectTimeout: "100 millis" }))), (exit) => {
    expect(Exit.isFailure(exit)).toBe(true)
    // A typed failure, not a defect.
    const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
    expect(Option.isSome(failure)).toBe(true)
    return Option.getOrThrow(failure)
  })

describe("a Redis URL that cannot connect anywhere", () => {
  it.effect.each<readonly [string, string, string]>([
    ["redis://:hunter2@[bad", "url", "this is not a URL"],
    ["http://:hunter2@localhost:6379", "url", `the scheme is "http"`],
    ["redis://:hunter2@localhost:0", "url", "port 0"],
    ["redis://:hunter2@localhost:6379/first", "url", "the database must be a number"],
    ["not a url at all", "url", "this is not a URL"],
    ["redis://:hunter2%zz@localhost:6379", "url", "not valid percent-encoding"],
    ["redis://us%E0%A4%A:hunter2@localhost:6379", "url", "not valid percent-encoding"]
  ])("%s fails with InvalidConfigError at %s, without the password", ([url, path, detail]) =>
    Effect.gen(function*() {
      const e = yield* failureOf({ url: Redacted.make(url) })
      expect(e).toMatchObject({ _tag: "InvalidConfigError", component: "RedisStore", path })
      expect(e.detail).toContain(detail)
      expect(e.message).not.toContain("hunter2")
    }))

  it.effect("a port above 65535 is not a URL (no store degraded for ever on it)", () =>
    Effect.gen(function*() {
      const e = yield* failureOf({ url: "redis://localhost:99999" })
      expect(e).toMatchObject({ path: "url" })
    }))

  it.effect("a cluster names the bad node, and needs at least one", () =>
    Effect.gen(function*() {
      const bad = yield* failureOf({ cluster: ["redis://127.0.0.1:7000", "redis://:s3cret@[oops"] })
      expect(bad).toMatchObject({ path: "cluster.1" })
      expect(bad.message).not.toContain("s3cret")
      const badPassword = yield* failureOf({ cluster: ["redis://127.0.0.1:7000", "redis://:s3cret%C3%28@127.0.0.1:7001"] })
      expect(badPassword).toMatchObject({ path: "cluster.1" })
      expect(badPassword.detail).toContain("percent-encoding")
      expect(yield* failureOf({ cluster: [] })).toMatchObject({ path: "cluster", detail: "give at least one node to start from" })
    }))

  it.effect("the layer fails with the same error", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.build(RedisStore.layer({ url: "redis://[bad" })).pipe(Effect.scoped))
      expect(exit).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "InvalidConfigError", path: "url" } } })
    }))
})
