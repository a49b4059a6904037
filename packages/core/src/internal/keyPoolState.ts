/**
 * The key pool as a pure state machine over JSON state.
 *
 * Every function takes the state and `now` and returns the next state with
 * the transitions it made, so the same rules run on the in-memory store and on
 * a shared one, and property tests drive it without fibers. The state holds
 * key names and health only, never a secret.
 *
 * Keys come back lazily: a cooling or parked key whose `until` has passed is
 * moved back to healthy by {@link advance} at the start of every step (no
 * timer fibers).
 */
import * as Duration from "effect/Duration"

export type KeyState = "healthy" | "cooling" | "disabled" | "parked"

export type Strategy = "round-robin" | "weighted"

/** The resolved, validated configuration the machine needs. Indices are the configured key order. */
export interface Config {
  readonly names: ReadonlyArray<string>
  readonly weights: ReadonlyArray<number>
  /** For each key, the indices of every key of its quota group (itself included). */
  readonly groups: ReadonlyArray<ReadonlyArray<number>>
  /** For each key, the indices of every key sharing its rate limit (itself included); none: each key alone. */
  readonly rateLimitGroups?: ReadonlyArray<ReadonlyArray<number>>
  /** The group's name per key, for reasons. */
  readonly groupNames: ReadonlyArray<string | undefined>
  readonly strategy: Strategy
  /** Cooldown after an upstream 429 without Retry-After. */
  readonly rateLimitCooldown: number
  readonly failuresBeforeCooldown: number
  readonly failureCooldown: number
  /** Park duration after a quota error without `resetAt`. */
  readonly quotaResetAfter: number
}

export interface KeyHealth {
  readonly state: KeyState
  /** End (epoch ms) of a cooldown or park; 0 otherwise. */
  readonly until: number
  /** Consecutive transient failures while healthy. */
  readonly failures: number
  /** Tag of the last error that said something about the key. */
  readonly lastError: string | null
}

/**
 * A pick changes only `cursor` (round-robin) or `current` (weighted), so the
 * hot path never copies `keys`; `keys` changes only when health does.
 */
export interface PoolState {
  /** The key names this state was built for, in order: state of another key set is reconciled by name. */
  readonly names: ReadonlyArray<string>
  /** Round-robin: the index to look at first. */
  readonly cursor: number
  /** Smooth weighted round-robin: each key's current weight. */
  readonly current: ReadonlyArray<number>
  readonly keys: ReadonlyArray<KeyHealth>
}

export interface Transition {
  readonly key: string
  readonly from: KeyState
  readonly to: KeyState
  readonly at: number
  readonly reason: string
}

/** What a step did: its result, the next state, and the transitions it made (in order). */
export interface Step<A> {
  readonly result: A
  readonly state: PoolState
  readonly transitions: ReadonlyArray<Transition>
}

export interface Picked {
  readonly _tag: "picked"
  readonly index: number
}

export type Pick =
  | Picked
  /** No healthy key. `availableAt`: the earliest end of a cooldown or park; undefined when all are disabled. */
  | { readonly _tag: "none"; readonly availableAt: number | undefined }

/** What an outcome says about the key that served it. */
export type Outcome =
  | { readonly _tag: "success" }
  | { readonly _tag: "ignored" }
  /** A transient failure (the breaker's "failure" verdict). */
  | { readonly _tag: "failure"; readonly error: string }
  | { readonly _tag: "rate-limited"; readonly error: string; readonly retryAfter: number | undefined }
  | { readonly _tag: "auth"; readonly error: string }
  | { readonly _tag: "quota"; readonly error: string; readonly resetAt: number | undefined }

export const success: Outcome = { _tag: "success" }
export const ignored: Outcome = { _tag: "ignored" }

const fresh: KeyHealth = { state: "healthy", until: 0, failures: 0, lastError: null }
const noTransitions: ReadonlyArray<Transition> = []

export const initial = (config: Config): PoolState => ({
  names: config.names,
  cursor: 0,
  current: config.names.map(() => 0),
  keys: config.names.map(() => fresh)
})

const sameNames = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean => {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * State written for another key set (a pool rebuilt with keys added or
 * removed) keeps the health of the keys still present, by name.
 */
export const reconcile = (config: Config, s: PoolState): PoolState => {
  if (sameNames(s.names, config.names)) return s
  const byName = new Map<string, KeyHealth>()
  s.names.forEach((name, i) => {
    const k = s.keys[i]
    if (k !== undefined) byName.set(name, k)
  })
  return {
    names: config.names,
    cursor: 0,
    current: config.names.map(() => 0),
    keys: config.names.map((name) => byName.get(name) ?? fresh)
  }
}

const format = (millis: number): string => Duration.format(Duration.millis(millis))

/** A copy-on-write view of the keys, so steps that change nothing allocate nothing. */
class Draft {
  private copy: Array<KeyHealth> | undefined
  transitions: Array<Transition> | undefined
  constructor(readonly base: PoolState) {}
  get(i: number): KeyHealth {
    return (this.copy ?? this.base.keys)[i] ?? fresh
  }
  set(i: number, k: KeyHealth): void {
    if (this.copy === undefined) this.copy = this.base.keys.slice()
    this.copy[i] = k
  }
  move(config: Config, i: number, k: KeyHealth, to: KeyState, until: number, now: number, reason: string): void {
    const t: Transition = { key: config.names[i] ?? "", from: k.state, to, at: now, reason }
    if (this.transitions === undefined) this.transitions = [t]
    else this.transitions.push(t)
    this.set(i, { state: to, until, failures: 0, lastError: k.lastError })
  }
  done(): PoolState {
    return this.copy === undefined ? this.base : { ...this.base, keys: this.copy }
  }
  step<A>(result: A): Step<A> {
    return { result, state: this.done(), transitions: this.transitions ?? noTransitions }
  }
}

const isOut = (k: KeyHealth): boolean => k.state === "cooling" || k.state === "parked"

const advanceInto = (config: Config, d: Draft, now: number): void => {
  const keys = d.base.keys
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]
    if (k !== undefined && isOut(k) && now >= k.until) {
      d.move(config, i, k, "healthy", 0, now, k.state === "cooling" ? "cooldown elapsed" : "quota reset time reached")
    }
  }
}

const anyDue = (s: PoolState, now: number): boolean => {
  for (const k of s.keys) if (isOut(k) && now >= k.until) return true
  return false
}

/** Reconciles and applies the lazy moves that time alone makes. */
const begin = (config: Config, state: PoolState, now: number): Draft => {
  const d = new Draft(reconcile(config, state))
  advanceInto(config, d, now)
  return d
}

/** The lazy moves that time alone makes: cooling and parked keys whose end has come are healthy again. */
export const advance = (config: Config, state: PoolState, now: number): Step<void> =>
  begin(config, state, now).step(undefined)

/** Earliest end of a cooldown or park, or undefined when no key will come back by itself. */
export const availableAt = (s: PoolState): number | undefined => {
  let at: number | undefined
  for (const k of s.keys) {
    if (isOut(k) && (at === undefined || k.until < at)) at = k.until
  }
  return at
}

/** FNV-1a over a string, continuing from `h`. */
const fnv = (h: number, s: string): number => {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h
}

/** murmur3's finalizer: spreads FNV's weak low bits over the whole word. */
const mix = (h: number): number => {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Weighted rendezvous (highest-random-weight) score of a key for an affinity
 * value: `-weight / ln(u)` with `u` a hash of both in (0, 1). Removing a key
 * moves only the affinities whose highest score it had.
 */
export const rendezvousScore = (affinityHash: number, name: string, weight: number): number => {
  const u = (mix(fnv(affinityHash, name)) + 1) / 4294967297
  return -weight / Math.log(u)
}

export const hashAffinity = (affinity: string): number => fnv(0x811c9dc5, affinity + "\u0000")

const pickedResults: Array<Pick> = []
/** The pick of key `index`: immutable, so one object per index. */
const pickedAt = (index: number): Pick => (pickedResults[index] ??= { _tag: "picked", index })

/**
 * Picks a key: skips every key that is not healthy; keys in `avoid` only when
 * no other key is healthy; with `affinity`, the healthy key of highest
 * rendezvous score (the turn of round-robin and weighted picks is left
 * alone); else round-robin or smooth weighted round-robin (nginx).
 */
export const pick = (
  config: Config,
  state: PoolState,
  now: number,
  avoid: ReadonlySet<string> | undefined,
  affinity: string | undefined
): Step<Pick> => {
  // The hot path: nothing to reconcile or bring back, nothing allocated but the next state.
  const reconciled = reconcile(config, state)
  let s = reconciled
  let transitions = noTransitions
  if (anyDue(reconciled, now)) {
    const d = begin(config, reconciled, now)
    s = d.done()
    transitions = d.transitions ?? noTransitions
  }
  const keys = s.keys
  const names = config.names
  const n = names.length
  const avoiding = avoid !== undefined && avoid.size > 0
  const picked = (index: number, next: PoolState): Step<Pick> => ({
    result: pickedAt(index),
    state: next,
    transitions
  })

  // Pass 0: healthy keys not avoided; pass 1 (only when avoiding): the avoided healthy keys.
  for (let pass = 0; pass < (avoiding ? 2 : 1); pass++) {
    const avoided = pass === 1
    if (affinity !== undefined) {
      const h = hashAffinity(affinity)
      let best = -1
      let bestScore = -Infinity
      for (let i = 0; i < n; i++) {
        if (keys[i]?.state !== "healthy" || (avoiding && avoid.has(names[i] ?? "") !== avoided)) continue
        const score = rendezvousScore(h, names[i] ?? "", config.weights[i] ?? 1)
        if (score > bestScore) {
          best = i
          bestScore = score
        }
      }
      if (best >= 0) return picked(best, s)
    } else if (config.strategy === "round-robin") {
      const start = s.cursor % n
      for (let j = 0; j < n; j++) {
        const i = (start + j) % n
        if (keys[i]?.state !== "healthy" || (avoiding && avoid.has(names[i] ?? "") !== avoided)) continue
        return picked(i, { names: s.names, cursor: (i + 1) % n, current: s.current, keys })
      }
    } else {
      // Smooth weighted round-robin (nginx): every eligible key gains its weight,
      // the highest current wins (first on ties) and loses the total.
      const current = s.current.length === n ? s.current.slice() : names.map(() => 0)
      let best = -1
      let total = 0
      for (let i = 0; i < n; i++) {
        if (keys[i]?.state !== "healthy" || (avoiding && avoid.has(names[i] ?? "") !== avoided)) continue
        const w = config.weights[i] ?? 1
        total += w
        const c = (current[i] ?? 0) + w
        current[i] = c
        if (best < 0 || c > (current[best] ?? 0)) best = i
      }
      if (best >= 0) {
        current[best] = (current[best] ?? 0) - total
        return picked(best, { names: s.names, cursor: s.cursor, current, keys })
      }
    }
  }
  return { result: { _tag: "none", availableAt: availableAt(s) }, state: s, transitions }
}

/**
 * A success on key `i`: resets its failure count. Needs no clock (nothing
 * moves), so the hot path of a healthy key reads the clock once per call.
 */
export const succeed = (config: Config, state: PoolState, i: number): PoolState => {
  const s = reconcile(config, state)
  const k = s.keys[i]
  if (k === undefined || k.failures === 0) return s
  const keys = s.keys.slice()
  keys[i] = { ...k, failures: 0 }
  return { ...s, keys }
}

/** Takes key `i` out of rotation until `until` (a cooldown); never shortens one, never revives a disabled key. */
const coolInto = (config: Config, d: Draft, i: number, until: number, now: number, reason: string): void => {
  const k = d.get(i)
  if (until <= now || k.state === "disabled") return
  if (k.state === "healthy") d.move(config, i, k, "cooling", until, now, reason)
  else if (until > k.until) d.set(i, { ...k, until })
}

const withError = (d: Draft, i: number, error: string): void => {
  const k = d.get(i)
  if (k.lastError !== error) d.set(i, { ...k, lastError: error })
}

/** Records what an outcome on key `i` says about it. */
export const record = (config: Config, state: PoolState, i: number, outcome: Outcome, now: number): Step<void> => {
  const d = begin(config, state, now)
  const done = (): Step<void> => d.step(undefined)
  const k = d.get(i)
  switch (outcome._tag) {
    case "ignored":
      return done()
    case "success":
      if (k.failures !== 0) d.set(i, { ...k, failures: 0 })
      return done()
    case "failure": {
      withError(d, i, outcome.error)
      // Late outcomes of a key already out of rotation do not count toward the next cooldown.
      if (k.state !== "healthy") return done()
      const failures = k.failures + 1
      if (failures >= config.failuresBeforeCooldown) {
        coolInto(
          config,
          d,
          i,
          now + config.failureCooldown,
          now,
          `${failures} consecutive failures (last: ${outcome.error}); cooling for ${format(config.failureCooldown)}`
        )
      } else {
        d.set(i, { ...d.get(i), failures })
      }
      return done()
    }
    case "rate-limited": {
      withError(d, i, outcome.error)
      const millis = outcome.retryAfter ?? config.rateLimitCooldown
      coolGroupInto(config, d, i, now + millis, now, `upstream rate limit; cooling for ${format(millis)}`)
      return done()
    }
    case "auth": {
      withError(d, i, outcome.error)
      const current = d.get(i)
      if (current.state !== "disabled") d.move(config, i, current, "disabled", 0, now, `${outcome.error}: key rejected`)
      return done()
    }
    case "quota": {
      withError(d, i, outcome.error)
      const until = outcome.resetAt !== undefined && outcome.resetAt > now ? outcome.resetAt : now + config.quotaResetAfter
      const group = config.groupNames[i]
      const reason = group === undefined
        ? `quota exhausted; parked until ${new Date(until).toISOString()}`
        : `quota of group "${group}" exhausted (seen on key ${config.names[i] ?? ""}); parked until ${
          new Date(until).toISOString()
        }`
      for (const j of config.groups[i] ?? [i]) {
        const kj = d.get(j)
        if (kj.state === "disabled") continue
        if (kj.state === "parked" || kj.state === "cooling") {
          const next = Math.max(kj.until, until)
          if (kj.state === "parked") {
            if (next !== kj.until) d.set(j, { ...kj, until: next })
          } else {
            d.move(config, j, kj, "parked", next, now, reason)
          }
        } else {
          d.move(config, j, kj, "parked", until, now, reason)
        }
      }
      return done()
    }
  }
}

/** Cools key `i` and the keys sharing its rate limit (a 429, or rate-limit headers on it). */
const coolGroupInto = (config: Config, d: Draft, i: number, until: number, now: number, reason: string): void => {
  const group = config.rateLimitGroups?.[i] ?? [i]
  for (const j of group) {
    coolInto(config, d, j, until, now, j === i ? reason : `${reason} (shares the rate limit of ${config.names[i] ?? ""})`)
  }
}

/** Cools key `i`, and the keys sharing its rate limit, until `until` (rate-limit headers said nothing is left). */
export const cool = (config: Config, state: PoolState, i: number, until: number, now: number, reason: string): Step<void> => {
  const d = begin(config, state, now)
  coolGroupInto(config, d, i, until, now, reason)
  return d.step(undefined)
}

/** A manual move: `healthy` (enable: clears any cooldown, park or disable) or `disabled`. */
export const force = (config: Config, state: PoolState, i: number, to: "healthy" | "disabled", now: number): Step<void> => {
  const d = begin(config, state, now)
  const k = d.get(i)
  if (k.state !== to) d.move(config, i, k, to, 0, now, "manual")
  else if (k.failures !== 0) d.set(i, { ...k, failures: 0 })
  return d.step(undefined)
}
