/**
 * One slot's state, shared through one Redis key by optimistic concurrency.
 *
 * The key holds `{v: version, s: JSON state}`. The process keeps the last
 * (version, state) it saw. An operation is a pure step of the slot's machine
 * (`state => [result, next]`): it runs here, on that state, and the script
 * writes `next` only if the key is still at that version; otherwise the
 * script answers with the key's (version, state) and the step runs again on
 * it: at once when it writes nothing there (its answer is the state just
 * read), else with another script, up to `maxRetries` times, after which
 * the operation proceeds on the state it last saw without writing (4
 * processes that each win a clash in turn get there once in (3/4)^50). The rules stay in TypeScript, written once; Redis only
 * orders the writes.
 *
 * - Group commit: while a script is out for a slot, the operations that
 *   arrive queue, and the next script commits all of them, run in order on
 *   the state the previous one left. N fibers of one process never race each
 *   other for a version (a race would cost N round trips each); they share one.
 * - The view: the confirmed state with every step of this process still on
 *   its way applied, in order. It is what the next script will start from,
 *   so an answer read from it is the answer that script would give, unless
 *   another process wrote in between.
 * - Fresh: the confirmed state was read less than `refreshMillis` ago (by the
 *   `now` the policy passed). A store keeps the slots it uses fresh with a
 *   background read (`refresh`), so on the latency path of a call:
 *   - a step that leaves the view as it is (a closed breaker's admission, an
 *     open one's refusal) answers from the view: no round trip;
 *   - a step whose caller may act on a view at most `refreshMillis` old
 *     (`modifyAhead`: a key pick, an outcome record) answers from the view
 *     and commits behind the call; the commit re-runs the step on the state
 *     Redis holds then, so the shared state misses nothing;
 *   - a step that must be exact across processes (a limiter's reservation)
 *     costs one script.
 *   A stale cell (idle, or its refresh late) answers every step after one
 *   script, as if nothing were cached.
 * - Every operation has `operationMillis` to be answered; after that, or at
 *   once while the link is down, it runs on the local state, as the memory
 *   store would, and keeps that state for the next one. A script that answers
 *   late still counts: its write happened, and the slot takes its state,
 *   with the steps taken on local state meanwhile applied again on it (the
 *   next script writes them).
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
  /** The step's next state, for the view; records nothing. */
  readonly next: (state: S) => S
  /** Runs the step on `state`, keeping its result for `settle`; returns the next state. */
  readonly apply: (state: S) => S
  /** Hands the result of the last `apply` to the caller; called once. */
  readonly settle: () => void
  settled: boolean
  timer: ReturnType<typeof setTimeout> | undefined
}

export interface Cell<S> {
  /**
   * Runs `step` on the slot's state and returns its result: from the view
   * when the step changes nothing and the cell is fresh, else after one
   * script (or on local state, on trouble).
   */
  readonly modify: <A>(now: number, step: (state: S) => readonly [A, S]) => Effect.Effect<A>
  /**
   * Like `modify`, but when the cell is fresh the result comes from the view
   * at once and the step commits behind the call.
   */
  readonly modifyAhead: <A>(now: number, step: (state: S) => readonly [A, S]) => Effect.Effect<A>
  /** Like `modify` for a step whose caller needs no answer: returns at once and commits behind. */
  readonly modifyBehind: (now: number, step: (state: S) => S) => Effect.Effect<void>
  /** Reads the key in the background when the cell is idle and has been used since `idleSince`. */
  readonly refresh: (now: number, idleSince: number) => void
}

/** What a cell counts, for measurements (`RedisStore.counters`). */
export interface Counters {
  /** Operations whose caller waited for a script. */
  awaited: number
  /** Operations answered without waiting (view or local state); their writes, if any, went behind. */
  answered: number
  /** Scripts sent (operations' batches, retries after a clash, refreshes). */
  scripts: number
  /** Scripts answered with a newer version than the one they came from (another process wrote first). */
  clashes: number
  /** Batches that lost `maxRetries` clashes in a row and answered without writing. */
  contended: number
}

export const makeCounters = (): Counters => ({ awaited: 0, answered: 0, scripts: 0, clashes: 0, contended: 0 })

export const makeCell = <S>(
  key: string,
  /** What a cell asks of the link: its state, its scripts, and telling it they failed. */
  link: Pick<Link, "up" | "lost" | "cas">,
  options: CellOptions,
  empty: S,
  decode: (json: string) => S | undefined,
  counters: Counters
): Cell<S> => {
  let version = 0
  /** As of the last answer from Redis (or local, while degraded). */
  let state: S = empty
  /** `state` with the steps of `sending` and `queue` applied. */
  let view: S = empty
  /** The `now` of the last answer from Redis; -Infinity before the first. */
  let seenAt = Number.NEGATIVE_INFINITY
  let lastUsed = Number.NEGATIVE_INFINITY
  let queue: Array<Op<S>> = []
  let sending: ReadonlyArray<Op<S>> = []
  let inFlight = false
  /**
   * Steps applied to the local state (the link down) while a script was out:
   * its late answer replaces `state`, so they are applied again on it, and
   * the next script writes them. Steps of the script's own batch are not
   * here: its answer has them.
   */
  let localSteps: Array<(state: S) => S> = []

  /** A step just applied to the local state, kept for the answer of a script still out. */
  const remember = (step: (state: S) => S) => {
    if (inFlight) localSteps.push(step)
  }

  /** `state` as Redis answered it, with the local steps taken meanwhile applied again. */
  const answered = (remote: S) => {
    let s = remote
    for (const step of localSteps) s = step(s)
    localSteps = []
    state = s
  }

  const fresh = (now: number) => now >= seenAt && now - seenAt < options.refreshMillis

  const reproject = () => {
    let s = state
    for (const op of sending) s = op.next(s)
    for (const op of queue) s = op.next(s)
    view = s
  }

  /** Runs `op` on the local state (trouble, or no answer in time) and settles it. */
  const settleLocally = (op: Op<S>) => {
    if (op.settled) return
    state = op.apply(state)
    // An op of the batch that is out is in its script: its answer has it.
    if (!sending.includes(op)) remember(op.next)
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
    answered(remote === undefined ? base : remote)
    version = reply.version
  }

  const send = (batch: ReadonlyArray<Op<S>>, tries: number, readAt: number) => {
    // The local steps taken so far are in `state`, so in this script's write.
    localSteps = []
    const base = state
    let next = base
    for (const op of batch) next = op.apply(next)
    const write = next === base ? "" : JSON.stringify(next)
    const now = batch.reduce((latest, op) => Math.max(latest, op.now), readAt)
    counters.scripts++
    link.cas(key, version, write, options.ttlMillis).then(
      (reply) => {
        seenAt = now
        if (reply._tag === "written") {
          version = reply.version
          answered(next)
          for (const op of batch) finish(op)
          return done()
        }
        counters.clashes++
        takeReply(reply, base)
        let after = state
        for (const op of batch) after = op.next(after)
        // Steps that write nothing on the state just read answer from it: it was Redis's a moment ago.
        if (after !== state) {
          if (tries < options.maxRetries) return send(batch, tries + 1, readAt)
          // Contended past the retries (processes that each win a clash in turn rarely get here):
          // the write is not made, and the answers come from the state just read.
          counters.contended++
        }
        for (const op of batch) {
          if (!op.settled) state = op.apply(state)
          finish(op)
        }
        done()
      },
      (error: unknown) => {
        link.lost(`a Redis command failed (${error instanceof Error ? error.message : String(error)})`)
        // No answer replaces the local state: the steps taken meanwhile are in it already.
        localSteps = []
        for (const op of batch) settleLocally(op)
        done()
      }
    )
  }

  const done = () => {
    inFlight = false
    sending = []
    flush()
    reproject()
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
    sending = batch
    send(batch, 0, Number.NEGATIVE_INFINITY)
  }

  const enqueue = (op: Op<S>) => {
    op.timer = setTimeout(() => {
      if (op.settled) return
      queue = queue.filter((o) => o !== op)
      link.lost(`a Redis command had no answer within ${options.operationMillis} ms`)
      settleLocally(op)
      reproject()
    }, options.operationMillis)
    op.timer.unref()
    queue.push(op)
    view = op.next(view)
    // Operations of the same tick join one batch.
    if (!inFlight && queue.length === 1) queueMicrotask(flush)
  }

  const local = <A>(step: (state: S) => readonly [A, S]): Effect.Effect<A> => {
    const [result, next] = step(state)
    state = next
    view = next
    remember((s) => step(s)[1])
    counters.answered++
    return Exit.succeed(result)
  }

  const awaited = <A>(now: number, step: (state: S) => readonly [A, S]): Effect.Effect<A> => {
    counters.awaited++
    return Effect.async<A>((resume) => {
      let result: A | undefined
      let has = false
      const op: Op<S> = {
        now,
        next: (s) => step(s)[1],
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
        reproject()
      })
    })
  }

  const behind = (now: number, next: (state: S) => S) => {
    enqueue({ now, next, apply: next, settle: () => {}, settled: false, timer: undefined })
  }

  const modify = <A>(now: number, step: (state: S) => readonly [A, S]): Effect.Effect<A> => {
    lastUsed = now
    if (!link.up()) return local(step)
    if (fresh(now)) {
      const [result, next] = step(view)
      if (next === view) {
        counters.answered++
        return Exit.succeed(result)
      }
    }
    return awaited(now, step)
  }

  const modifyAhead = <A>(now: number, step: (state: S) => readonly [A, S]): Effect.Effect<A> => {
    lastUsed = now
    if (!link.up()) return local(step)
    if (!fresh(now)) return awaited(now, step)
    const [result, next] = step(view)
    counters.answered++
    if (next !== view) behind(now, (s) => step(s)[1])
    return Exit.succeed(result)
  }

  const modifyBehind = (now: number, step: (state: S) => S): Effect.Effect<void> => {
    lastUsed = now
    if (!link.up()) {
      state = step(state)
      view = state
      remember(step)
      return Exit.void
    }
    behind(now, step)
    return Exit.void
  }

  const refresh = (now: number, idleSince: number) => {
    if (inFlight || queue.length > 0 || lastUsed < idleSince || !link.up()) return
    inFlight = true
    send([], 0, now)
  }

  return { modify, modifyAhead, modifyBehind, refresh }
}
