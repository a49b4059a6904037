/**
 * The shared cell's answers when Redis is slow or loses a key: the steps a
 * process took on local state while a script was out survive that script's
 * late answer, and a process that still holds a version of a lost key never
 * writes over the state others wrote to the key made afresh.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { CasReply, Link } from "../src/internal/link.js"
import { makeLink } from "../src/internal/link.js"
import { makeCell, makeCounters } from "../src/internal/sharedCell.js"
import { check } from "../src/internal/target.js"
import { freshPrefix, redisUrl } from "./stores.js"

const options = { operationMillis: 50, refreshMillis: 1_000, ttlMillis: 60_000, maxRetries: 5 }
const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

/** A link whose scripts wait until the test answers them. */
const heldLink = () => {
  let up = true
  const pending: Array<(reply: CasReply) => void> = []
  const link: Pick<Link, "up" | "lost" | "cas"> = {
    up: () => up,
    lost: () => void (up = false),
    cas: () => new Promise<CasReply>((resolve) => void pending.push(resolve))
  }
  return {
    link,
    answer: (reply: CasReply) => pending.shift()?.(reply),
    back: () => void (up = true)
  }
}

describe("the shared cell", () => {
  it("steps taken on local state while a script was out survive its late answer, and the next script writes them", async () => {
    const held = heldLink()
    const cell = makeCell<number>("k", held.link, options, 0, (json) => JSON.parse(json) as number, makeCounters())
    await Effect.runPromise(cell.modifyBehind(1, (n) => n + 1))
    // No answer within operationMillis: the link is lost, and the step runs on local state.
    await sleep(80)
    expect(held.link.up()).toBe(false)
    for (let i = 0; i < 3; i++) await Effect.runPromise(cell.modify(2, (n) => [n + 1, n + 1] as const))
    // The first script's answer comes at last: it wrote 1.
    held.answer({ _tag: "written", version: 1 })
    await sleep(5)
    held.back()
    const seen = Effect.runPromise(cell.modify(5_000, (n) => [n, n + 1] as const))
    await sleep(5)
    held.answer({ _tag: "written", version: 2 })
    expect(await seen).toBe(4)
  })

  it.skipIf(redisUrl === "")("a process that holds a version of a lost key does not write over what another wrote to the key made afresh", async () => {
    const target = check({ url: redisUrl })
    if (Either.isLeft(target)) throw new Error(target.left.message)
    const linkOf = () =>
      makeLink({
        target: target.right,
        operationMillis: 500,
        probeMillis: 100,
        connectMillis: 2_000,
        now: () => Date.now(),
        report: (effect) => void Effect.runFork(effect),
        log: { lost: () => Effect.void, back: () => Effect.void }
      })
    const a = linkOf()
    const b = linkOf()
    await Promise.all([a.started, b.started])
    try {
      const key = `${freshPrefix()}lost`
      const decode = (json: string) => JSON.parse(json) as ReadonlyArray<string>
      const cellA = makeCell<ReadonlyArray<string>>(key, a, options, [], decode, makeCounters())
      const cellB = makeCell<ReadonlyArray<string>>(key, b, options, [], decode, makeCounters())
      const add = (cell: typeof cellA, now: number, item: string) =>
        Effect.runPromise(cell.modify(now, (items) => [undefined, [...items, item]] as const))
      for (const item of ["a1", "a2", "a3"]) await add(cellA, 1, item)
      // Redis restarted without persistence, or the TTL ran out while A was idle.
      await a.client.del(key)
      for (const item of ["b1", "b2", "b3"]) await add(cellB, 1, item)
      // A, no longer fresh, sends one script from the version it holds.
      await add(cellA, 100_000, "a4")
      const written = await a.client.hget(key, "s")
      expect(JSON.parse(written ?? "[]")).toEqual(["b1", "b2", "b3", "a4"])
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })
})
