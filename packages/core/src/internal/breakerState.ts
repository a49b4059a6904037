/**
 * The circuit breaker as a pure state machine over JSON state.
 *
 * Every function takes the state and `now` and returns the next state, so the
 * same rules run on the in-memory store and on a shared store, and property
 * tests can drive it without fibers. docs/semantics.md rules 1-11 are numbered
 * where they are implemented.
 */

export type State = "closed" | "open" | "half-open" | "forced-open" | "forced-closed" | "disabled"

export type Outcome = "success" | "failure" | "ignored"

/** The resolved, validated configuration the machine needs. */
export interface Config {
  readonly trigger:
    | { readonly kind: "consecutive"; readonly failures: number }
    | {
      readonly kind: "failure-rate"
      readonly window:
        | { readonly kind: "count"; readonly size: number }
        | { readonly kind: "time"; readonly bucketMillis: number; readonly buckets: number }
      readonly threshold: number
      readonly minimumCalls: number
      readonly slowCallRateThreshold: number | undefined
    }
  readonly slowCallMillis: number | undefined
  readonly permittedCallsInHalfOpen: number
  readonly maxHalfOpenMillis: number | undefined
  /** Open duration for the n-th consecutive opening (n >= 1). */
  readonly openMillis: (opening: number) => number
}

/** A ring of the last N outcomes; bit 1 = failure, bit 2 = slow. */
export interface CountWindow {
  readonly kind: "count"
  readonly ring: ReadonlyArray<number>
  readonly next: number
  readonly calls: number
  readonly failures: number
  readonly slow: number
}

export interface Bucket {
  /** `floor(time / bucketMillis)`: buckets are aligned to the clock, not to the first call. */
  readonly epoch: number
  readonly calls: number
  readonly failures: number
  readonly slow: number
  /** Calls both slow and failed (for status; the rates need only `failures` and `slow`). */
  readonly slowFailures?: number
}

export interface TimeWindow {
  readonly kind: "time"
  readonly buckets: ReadonlyArray<Bucket>
}

export type Window = CountWindow | TimeWindow | { readonly kind: "none" }

export interface BreakerState {
  readonly state: State
  /** Changes on every transition; only outcomes of the current generation count (rule 11). */
  readonly generation: number
  readonly consecutiveFailures: number
  readonly window: Window
  /** Consecutive openings since the breaker was last closed; grows the open duration (rule 8). */
  readonly openings: number
  readonly openedAt: number
  readonly openUntil: number
  readonly halfOpenedAt: number
  readonly trials: { readonly admitted: number; readonly done: number; readonly failures: number; readonly slow: number }
}

export type Rejection = { readonly state: "open" | "half-open" | "forced-open"; readonly retryAt: number | undefined }

export interface Admitted {
  readonly _tag: "admitted"
  readonly generation: number
  readonly trial: boolean
  readonly recorded: boolean
}

export type Admission = Admitted | { readonly _tag: "rejected"; readonly rejection: Rejection }

export interface Transition {
  readonly from: State
  readonly to: State
  readonly at: number
  readonly reason: string
}

/** What a step did: its result, the next state, and the transitions it made (in order). */
export interface Step<A> {
  readonly result: A
  readonly state: BreakerState
  readonly transitions: ReadonlyArray<Transition>
}

const noTrials = { admitted: 0, done: 0, failures: 0, slow: 0 } as const

export const emptyWindow = (config: Config): Window => {
  if (config.trigger.kind === "consecutive") return { kind: "none" }
  const window = config.trigger.window
  return window.kind === "count"
    ? { kind: "count", ring: [], next: 0, calls: 0, failures: 0, slow: 0 }
    : { kind: "time", buckets: [] }
}

export const initial = (config: Config): BreakerState => ({
  state: "closed",
  generation: 0,
  consecutiveFailures: 0,
  window: emptyWindow(config),
  openings: 0,
  openedAt: 0,
  openUntil: 0,
  halfOpenedAt: 0,
  trials: noTrials
})

// ---------------------------------------------------------------------------
// Windows (rule 4)

const pushCount = (w: CountWindow, size: number, failed: boolean, slow: boolean): CountWindow => {
  const entry = (failed ? 1 : 0) | (slow ? 2 : 0)
  const ring = w.ring.slice()
  let { calls, failures, slow: slowCount } = w
  if (calls === size) {
    const evicted = ring[w.next] ?? 0
    failures -= evicted & 1
    slowCount -= (evicted & 2) >> 1
  } else {
    calls += 1
  }
  ring[w.next] = entry
  return {
    kind: "count",
    ring,
    next: (w.next + 1) % size,
    calls,
    failures: failures + (failed ? 1 : 0),
    slow: slowCount + (slow ? 1 : 0)
  }
}

/** Drops buckets that fell out of the window: arithmetic on every read and write, no timers. */
const liveBuckets = (w: TimeWindow, bucketMillis: number, buckets: number, now: number): ReadonlyArray<Bucket> => {
  const oldest = Math.floor(now / bucketMillis) - buckets + 1
  return w.buckets.every((b) => b.epoch >= oldest) ? w.buckets : w.buckets.filter((b) => b.epoch >= oldest)
}

const pushTime = (
  w: TimeWindow,
  bucketMillis: number,
  buckets: number,
  now: number,
  failed: boolean,
  slow: boolean
): TimeWindow => {
  const epoch = Math.floor(now / bucketMillis)
  const live = liveBuckets(w, bucketMillis, buckets, now)
  const last = live[live.length - 1]
  const add = (b: Bucket): Bucket => ({
    epoch,
    calls: b.calls + 1,
    failures: b.failures + (failed ? 1 : 0),
    slow: b.slow + (slow ? 1 : 0),
    slowFailures: (b.slowFailures ?? 0) + (failed && slow ? 1 : 0)
  })
  return last !== undefined && last.epoch === epoch
    ? { kind: "time", buckets: [...live.slice(0, -1), add(last)] }
    : { kind: "time", buckets: [...live, add({ epoch, calls: 0, failures: 0, slow: 0 })] }
}

export interface Tally {
  readonly calls: number
  readonly failures: number
  readonly slow: number
}

/** The window's counts for status, slow failures included. */
export const counts = (config: Config, w: Window, now: number): Tally & { readonly slowFailures: number } => {
  const t = tally(config, w, now)
  let slowFailures = 0
  if (w.kind === "count") {
    for (let i = 0; i < w.calls; i++) if ((w.ring[i] ?? 0) === 3) slowFailures++
  } else if (w.kind === "time") {
    const trigger = config.trigger
    if (trigger.kind === "failure-rate" && trigger.window.kind === "time") {
      for (const b of liveBuckets(w, trigger.window.bucketMillis, trigger.window.buckets, now)) slowFailures += b.slowFailures ?? 0
    }
  }
  return { calls: t.calls, failures: t.failures, slow: t.slow, slowFailures }
}

export const tally = (config: Config, w: Window, now: number): Tally => {
  switch (w.kind) {
    case "none":
      return { calls: 0, failures: 0, slow: 0 }
    case "count":
      return w
    case "time": {
      const trigger = config.trigger
      if (trigger.kind !== "failure-rate" || trigger.window.kind !== "time") return { calls: 0, failures: 0, slow: 0 }
      let calls = 0, failures = 0, slow = 0
      for (const b of liveBuckets(w, trigger.window.bucketMillis, trigger.window.buckets, now)) {
        calls += b.calls
        failures += b.failures
        slow += b.slow
      }
      return { calls, failures, slow }
    }
  }
}

const push = (config: Config, w: Window, now: number, failed: boolean, slow: boolean): Window => {
  const trigger = config.trigger
  if (trigger.kind !== "failure-rate") return w
  const spec = trigger.window
  if (spec.kind === "count" && w.kind === "count") return pushCount(w, spec.size, failed, slow)
  if (spec.kind === "time" && w.kind === "time") return pushTime(w, spec.bucketMillis, spec.buckets, now, failed, slow)
  return w
}

/** Rule 3 and 5: rate >= threshold, once the window holds the minimum number of calls. */
const rateTrips = (config: Config, t: Tally, minimumCalls: number): boolean => {
  const trigger = config.trigger
  if (trigger.kind !== "failure-rate" || t.calls === 0 || t.calls < minimumCalls) return false
  if (t.failures / t.calls >= trigger.threshold) return true
  return trigger.slowCallRateThreshold !== undefined && t.slow / t.calls >= trigger.slowCallRateThreshold
}

/** Rule 5: for a count window the minimum is clamped to the window size. */
export const effectiveMinimumCalls = (config: Config): number => {
  const trigger = config.trigger
  if (trigger.kind !== "failure-rate") return 0
  return trigger.window.kind === "count" ? Math.min(trigger.minimumCalls, trigger.window.size) : trigger.minimumCalls
}

// ---------------------------------------------------------------------------
// Transitions

const move = (
  config: Config,
  s: BreakerState,
  to: State,
  now: number,
  reason: string,
  transitions: Array<Transition>
): BreakerState => {
  transitions.push({ from: s.state, to, at: now, reason })
  const generation = s.generation + 1
  switch (to) {
    case "open": {
      const openings = s.openings + 1
      return {
        ...s,
        state: "open",
        generation,
        openings,
        openedAt: now,
        openUntil: now + config.openMillis(openings),
        trials: noTrials
      }
    }
    case "half-open":
      return { ...s, state: "half-open", generation, halfOpenedAt: now, trials: noTrials }
    case "closed":
      // A fresh window and a fresh open-duration schedule (rule 8).
      return { ...initial(config), generation }
    case "forced-open":
    case "forced-closed":
    case "disabled":
      return { ...s, state: to, generation, trials: noTrials }
  }
}

/** Rules 8 and 10: the lazy moves that time alone makes, applied before any admission or read. */
export const advance = (config: Config, s: BreakerState, now: number, transitions: Array<Transition>): BreakerState => {
  if (s.state === "open" && now >= s.openUntil) {
    return move(config, s, "half-open", now, "open duration elapsed", transitions)
  }
  // Only a trial still out can hang: with none outstanding there is nothing to give up on (and
  // re-opening would grow the open duration without a single failure).
  if (
    s.state === "half-open" && config.maxHalfOpenMillis !== undefined && s.trials.admitted > s.trials.done &&
    now >= s.halfOpenedAt + config.maxHalfOpenMillis
  ) {
    return move(config, s, "open", now, "half-open trials did not finish within maxHalfOpenDuration", transitions)
  }
  return s
}

/**
 * The admission of a breaker that admits without moving (closed, forced
 * closed, disabled): the same as {@link admit}, without a new state, a step or
 * a transition list; `undefined` for every other state (use `admit`). The
 * result depends on the state only, so a caller may keep it for as long as the
 * state object is the same.
 */
export const admitUnchanged = (state: BreakerState): Admitted | undefined =>
  state.state === "closed" || state.state === "forced-closed" || state.state === "disabled"
    ? { _tag: "admitted", generation: state.generation, trial: false, recorded: state.state !== "disabled" }
    : undefined

/**
 * Whether recording `outcome` leaves the state as it is: a success or an
 * ignored outcome in CLOSED with no failure to reset and no window (the
 * consecutive mode's hot path), or any outcome of another generation.
 */
export const recordIsNoop = (
  state: BreakerState,
  admission: { readonly generation: number; readonly trial: boolean },
  outcome: Outcome
): boolean =>
  admission.generation !== state.generation ||
  (outcome !== "failure" && !admission.trial && state.state === "closed" && state.consecutiveFailures === 0 &&
    state.window.kind === "none")

export const admit = (config: Config, state: BreakerState, now: number): Step<Admission> => {
  const transitions: Array<Transition> = []
  const s = advance(config, state, now, transitions)
  const admitted = (next: BreakerState, trial: boolean, recorded: boolean): Step<Admission> => ({
    result: { _tag: "admitted", generation: next.generation, trial, recorded },
    state: next,
    transitions
  })
  const rejected = (rejection: Rejection): Step<Admission> => ({
    result: { _tag: "rejected", rejection },
    state: s,
    transitions
  })
  switch (s.state) {
    case "closed":
    case "forced-closed":
      return admitted(s, false, true)
    case "disabled":
      return admitted(s, false, false)
    case "forced-open":
      return rejected({ state: "forced-open", retryAt: undefined })
    case "open":
      return rejected({ state: "open", retryAt: s.openUntil })
    case "half-open":
      // Rule 9: a budget of trial calls, not a concurrency limit; beyond it, fail fast.
      if (s.trials.admitted >= config.permittedCallsInHalfOpen) {
        return rejected({ state: "half-open", retryAt: undefined })
      }
      // Rule 10's clock runs while a trial is out: it starts with the first one outstanding.
      return admitted(
        {
          ...s,
          halfOpenedAt: s.trials.admitted === s.trials.done ? now : s.halfOpenedAt,
          trials: { ...s.trials, admitted: s.trials.admitted + 1 }
        },
        true,
        true
      )
  }
}

export const record = (
  config: Config,
  state: BreakerState,
  admission: { readonly generation: number; readonly trial: boolean },
  outcome: Outcome,
  durationMillis: number,
  now: number
): Step<void> => {
  const transitions: Array<Transition> = []
  const done = (next: BreakerState): Step<void> => ({ result: undefined, state: next, transitions })
  // Rule 10 first: a probe that hung past maxHalfOpenDuration already lost its generation,
  // even if nothing has looked at the breaker since.
  const s = advance(config, state, now, transitions)
  // Rule 11: an outcome from another generation never moves the breaker.
  if (admission.generation !== s.generation) return done(s)
  if (outcome === "ignored") {
    // Rule 9: an ignored or interrupted trial gives its slot back.
    return done(
      admission.trial && s.state === "half-open"
        ? { ...s, trials: { ...s.trials, admitted: Math.max(0, s.trials.admitted - 1) } }
        : s
    )
  }
  const failed = outcome === "failure"
  // Rule 6: strictly above the threshold is slow; slow failures are slow too.
  const slow = config.slowCallMillis !== undefined && durationMillis > config.slowCallMillis
  switch (s.state) {
    case "closed":
    case "forced-closed": {
      const consecutiveFailures = failed ? s.consecutiveFailures + 1 : 0
      const window = push(config, s.window, now, failed, slow)
      // The hot path (a success, no failure before it, no window): nothing changes, nothing is copied.
      const next: BreakerState = consecutiveFailures === s.consecutiveFailures && window === s.window
        ? s
        : { ...s, consecutiveFailures, window }
      if (s.state === "forced-closed") return done(next)
      const trigger = config.trigger
      if (trigger.kind === "consecutive") {
        return done(
          consecutiveFailures >= trigger.failures
            ? move(config, next, "open", now, `${consecutiveFailures} consecutive failures`, transitions)
            : next
        )
      }
      // Rule 3: evaluated after every recorded outcome.
      const t = tally(config, window, now)
      return done(
        rateTrips(config, t, effectiveMinimumCalls(config))
          ? move(config, next, "open", now, describeRates(t), transitions)
          : next
      )
    }
    case "half-open": {
      const trials = {
        admitted: s.trials.admitted,
        done: s.trials.done + 1,
        failures: s.trials.failures + (failed ? 1 : 0),
        slow: s.trials.slow + (slow ? 1 : 0)
      }
      const next: BreakerState = { ...s, trials }
      if (config.trigger.kind === "consecutive") {
        // Rule 7: the first failed trial re-opens at once; K successful trials close.
        if (failed) return done(move(config, next, "open", now, "a half-open trial failed", transitions))
        return done(
          trials.done - trials.failures >= config.permittedCallsInHalfOpen
            ? move(config, next, "closed", now, `${trials.done} successful trials`, transitions)
            : next
        )
      }
      // Rule 9: the verdict comes when all K trial outcomes are in.
      if (trials.done < config.permittedCallsInHalfOpen) return done(next)
      const t = { calls: trials.done, failures: trials.failures, slow: trials.slow }
      return done(
        rateTrips(config, t, 1)
          ? move(config, next, "open", now, `half-open trials: ${describeRates(t)}`, transitions)
          : move(config, next, "closed", now, `half-open trials: ${describeRates(t)}`, transitions)
      )
    }
    case "open":
    case "forced-open":
    case "disabled":
      return done(s)
  }
}

const percent = (n: number, d: number): string => `${Math.round((n / d) * 1000) / 10} %`

const describeRates = (t: Tally): string =>
  `failure rate ${percent(t.failures, t.calls)}, slow rate ${percent(t.slow, t.calls)} of ${t.calls} calls`

/** A manual move (rule 12); `reset` also clears the window and the opening count. */
export const force = (
  config: Config,
  s: BreakerState,
  to: "forced-open" | "forced-closed" | "disabled" | "closed",
  now: number
): Step<void> => {
  const transitions: Array<Transition> = []
  if (s.state === to && to !== "closed") return { result: undefined, state: s, transitions }
  const next = move(config, s, to, now, "manual", transitions)
  return { result: undefined, state: next, transitions }
}
