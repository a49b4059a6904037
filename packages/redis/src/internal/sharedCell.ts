/**
 * One slot's state, shared through one Redis key by optimistic concurrency.
 *
 * The key holds `{v: version, s: JSON state}`. The process keeps the last
 * (version, state) it saw. An operation is a pure step of the slot's machine
 * (`state => [result, next]`): it runs here, on that state, and the script
 * writes `next` only if the key is still at that version; otherwise the
 * script answers with the key's (version, state) and the step runs again on
 * it, up to `maxRetries` times, after which the operation proceeds on the
 * state it last saw. The rules stay in TypeScript, written once; Redis only
 * orders the writes.
 *
 * - Group commit: while a script is out for a slot, the operations that
 *   arrive queue, and the next script commits all of them, run in order on
 *   the state the previous one left. N fibers of one process never race each
 *   other for a version (a race would cost N round trips each); they share one.
 * - A step that leaves the state as it is (a closed breaker's admission, an
 *   open breaker's refusal) answers from the state seen less than
 *   `refreshMillis` ago, by the `now` the policy passed, when none of this
 *   process's steps is still on its way: no round trip. Older
 *   than that, it costs one read, so a change made elsewhere (a breaker opened
 *   by another process) is seen here within `refreshMillis`.
 * - Every operation has `operationMillis` to be answered; after that, or at
 *   once while the link is down, it runs on the local state, as the memory
 *   store would, and keeps that state for the next one. A script that answers
 *   late still counts: its write happened, and the slot takes its state.
 * - When Redis has lost the key (restarted without persistence, or the TTL
 *   ran out), the local state is written back rather than started afresh: an
 *   open breaker stays open across a Redis restart.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { CasReply, Link } from "./link.js"

export interface CellOptions {
  readonly operationMillis: number
  readonly refreshMillis: number
  readonly ttlMillis: number
  readonly maxRetries: number
}

/** One queued operation: a step of the machine and whoever waits for its result. */
interface Op<S> {
  readonly now: number
  /** Runs the step on `state`, keeping its result for `settle`; returns the next state. */
  readonly apply: (state: S) => S
  /** Hands the result of the last `apply` to the caller; called once. */
  readonly settle: () => void
  settled: boolean
  timer: ReturnType<typeof setTimeout> | undefined
}

export interface Cell<S> {
  /**
   * Runs `step` on the slot's state and returns its result: from the cache
   * when the step changes nothing and the cache is fresh, else after one
   * script (or on local state, on trouble).
   */
  readonly modify: <A>(now: number, step: (state: S) => readonly [A, S]) => Effect.Effect<A>
  /** Like `modify` for a step whose caller needs no answer: returns at once and commits behind. */
  readonly modifyBehind: (now: number, step: (state: S) => S) => Effect.Effect<void>
}

export const makeCell = <S>(
  key: string,
  link: Link,
  options: CellOptions,
  empty: S,
  decode: (json: string) => S | undefined
): Cell<S> => {
  let version = 0
  let state: S = empty
  /** The `now` of the last answer from Redis; -Infinity before the first. */
  let seenAt = Number.NEGATIVE_INFINITY
  let queue: Array<Op<S>> = []
  let inFlight = false

  const fresh = (now: number) => now >= seenAt && now - seenAt < options.refreshMillis

  /** Runs `op` on the local state (trouble, or no answer in time) and settles it. */
  const settleLocally = (op: Op<S>) => {
    if (op.settled) return
    state = op.apply(state)
    finish(op)
  }

  const finish = (op: Op<S>) => {
    if (op.settled) return
    op.settled = true
    if (op.timer !== undefined) clearTimeout(op.timer)
    op.settle()
  }

  const takeReply = (reply: CasReply & { readonly _tag: "current" }, base: S) => {
    const remote = reply.json === undefined ? undefined : decode(reply.json)
    // A key that is gone (or unreadable) is rebuilt from what this process knows.
    state = remote === undefined ? base : remote
    version = reply.version
  }

  const send = (batch: ReadonlyArray<Op<S>>, tries: number) => {
    const base = state
    let next = base
    for (const op of batch) next = op.apply(next)
    const write = next === base ? "" : JSON.stringify(next)
    const now = batch.reduce((latest, op) => Math.max(latest, op.now), Number.NEGATIVE_INFINITY)
    link.cas(key, version, write, options.ttlMillis).then(
      (reply) => {
        seenAt = now
        if (reply._tag === "written") {
          version = reply.version
          state = next
          for (const op of batch) finish(op)
          return done()
        }
        takeReply(reply, base)
        if (tries < options.maxRetries) return send(batch, tries + 1)
        // Contended past the retries: answer from the state just read, without writing.
        for (const op of batch) {
          if (!op.settled) state = op.apply(state)
          finish(op)
        }
        done()
      },
      (error: unknown) => {
        link.lost(`a Redis command failed (${error instanceof Error ? error.message : String(error)})`)
        for (const op of batch) settleLocally(op)
        done()
      }
    )
  }

  const done = () => {
    inFlight = false
    flush()
  }

  const flush = () => {
    if (inFlight || queue.length === 0) return
    const batch = queue
    queue = []
    if (!link.up()) {
      for (const op of batch) settleLocally(op)
      return
    }
    inFlight = true
    send(batch, 0)
  }

  const enqueue = (op: Op<S>) => {
    op.timer = setTimeout(() => {
      if (op.settled) return
      queue = queue.filter((o) => o !== op)
      link.lost(`a Redis command had no answer within ${options.operationMillis} ms`)
      settleLocally(op)
    }, options.operationMillis)
    op.timer.unref()
    queue.push(op)
    // Operations of the same tick join one batch.
    if (!inFlight && queue.length === 1) queueMicrotask(flush)
  }

  const modify = <A>(now: number, step: (state: S) => readonly [A, S]): Effect.Effect<A> => {
    if (!link.up()) {
      const [result, next] = step(state)
      state = next
      return Exit.succeed(result)
    }
    // Only an idle cell's state has every step of this process in it.
    if (!inFlight && queue.length === 0 && fresh(now)) {
      const [result, next] = step(state)
      if (next === state) return Exit.succeed(result)
    }
    return Effect.async<A>((resume) => {
      let result: A | undefined
      let has = false
      const op: Op<S> = {
        now,
        apply: (s) => {
          const [a, next] = step(s)
          result = a
          has = true
          return next
        },
        settle: () => {
          // `apply` always runs before `settle`, so the result is there.
          if (has) resume(Exit.succeed(result as A))
        },
        settled: false,
        timer: undefined
      }
      enqueue(op)
      return Effect.sync(() => {
        // An interrupted caller's step is dropped if it has not left yet.
        if (op.settled) return
        queue = queue.filter((o) => o !== op)
        op.settled = true
        if (op.timer !== undefined) clearTimeout(op.timer)
      })
    })
  }

  const modifyBehind = (now: number, step: (state: S) => S): Effect.Effect<void> => {
    if (!link.up()) {
      state = step(state)
      return Exit.void
    }
    enqueue({ now, apply: step, settle: () => {}, settled: false, timer: undefined })
    return Exit.void
  }

  return { modify, modifyBehind }
}
