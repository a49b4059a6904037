/**
 * The adaptive concurrency limit as a pure machine over plain JSON state
 * (docs/semantics.md rule 29). Outcomes are gathered over a window; when a
 * window closes the limit moves once:
 *
 * - **decrease** (multiplicative, `limit · backoff`) when the window saw a
 *   drop: a timeout, an overload (5xx, 529), a refused or lost connection;
 *   when its answers were, on average, far slower than usual for their
 *   size; or when it saw a hang:
 *   no call ended well while two or more were in flight far longer than a
 *   usual call takes (a hang sends no outcome at all; one long answer among
 *   calls that end well is not a hang). A hang closes the window at once
 *   when it shows before the window's end (a provider whose calls take 60 ms
 *   is seen hanging after 0.2 s, not after the next second), and its cut
 *   starts from the calls in flight when they are fewer than the limit, as
 *   TCP takes its threshold from the flight size (RFC 5681);
 * - **increase** (doubling, or back to half the last limit that held) when the calls pressed against the
 *   limit (in flight at ≥ `saturation` of it, or refused by it) and the
 *   provider kept up: calls ended well at `saturation` or more of the rate
 *   they were admitted at (calls that pile up on a provider starting to
 *   hang press against the limit too, but do not end);
 * - otherwise it stays: a limit that is not reached says nothing.
 *
 * Both slowness verdicts have a floor (`minJudgedMillis`): a call is hung
 * only once in flight that long, a window is slow only when its mean latency
 * is that long, whatever `slowFactor` times the usual says. Against a
 * provider that answers in half a millisecond, three usual call times is
 * 1.5 ms: a pause of the process (a GC, a busy event loop) that ends no call
 * for a few ms is not congestion, and was read as a hang.
 *
 * "Usual" is learned from the calls that went well: an exponentially
 * weighted mean of their latency per unit of work, where the work of a call
 * is `workBase + tokens` (the answer's tokens, when the caller says them;
 * `workBase` stands for the time to the first token). LLM calls vary 100×
 * with the answer's length; a long answer is long in tokens too, so it is
 * not read as a slowdown, where a plain
 * latency gradient (Netflix's Gradient2, Envoy's gradient controller)
 * would shrink the limit on it.
 *
 * @internal
 */

export interface Config {
  readonly initialLimit: number
  readonly minLimit: number
  readonly maxLimit: number
  /** Milliseconds of one window. */
  readonly windowMillis: number
  /** A success slower than `slowFactor` × the usual latency for its work is a drop; so is a call in flight that long. */
  readonly slowFactor: number
  /** The limit is multiplied by this on a window with drops. */
  readonly backoff: number
  /** The share of the limit in flight that counts as pressing against it. */
  readonly saturation: number
  /** Tokens added to every call's work: the part of its latency no token count explains. */
  readonly workBase: number
  /** Weight of a new sample in the learned means. */
  readonly smoothing: number
  /** How long a call may stay in flight before it counts as hung, until a usual latency is learned. */
  readonly initialHangMillis: number
  /**
   * The latency floor of every verdict, ms: a call is hung only once in flight this long, and a window is slow only
   * when its mean latency is this long too, however fast the usual is.
   */
  readonly minJudgedMillis: number
}

export interface State {
  /** A real number: the admitted concurrency is its floor. */
  readonly limit: number
  /** The highest limit calls pressed against while the provider kept up. */
  readonly lastGood: number
  readonly windowStart: number
  readonly admissions: number
  readonly successes: number
  /** Sums over the window's successes: latency per unit of work, and latency. */
  readonly windowMsPerWork: number
  readonly windowMillis: number
  readonly drops: number
  /** Calls were in flight at `saturation` of the limit, or refused by it, in this window. */
  readonly pressed: boolean
  /** Learned from good calls: milliseconds per unit of work. */
  readonly msPerWork: number | undefined
  /** Successes the learned means are made of: a baseline from the first few is biased (short calls end first). */
  readonly learnedFrom: number
  /** Learned from good calls: their latency, for a call in flight whose work is not known yet. */
  readonly usualMillis: number | undefined
  /** When a call last ended well (epoch ms); undefined before the first. */
  readonly lastSuccessAt?: number | undefined
}

export type Outcome =
  /** The call went well; `work` as `workBase + tokens`. */
  | { readonly _tag: "Success"; readonly millis: number; readonly work: number | undefined }
  | { readonly _tag: "Drop" }
  /** Says nothing about the provider's capacity (a bad request, a key's 429, an interruption). */
  | { readonly _tag: "Ignore" }

export interface Change {
  readonly from: number
  readonly to: number
  readonly reason: "drop" | "hang" | "slow" | "pressed"
}

/** Successes a window needs before its mean latency can call the provider slow. */
const MIN_SAMPLES = 3
/** Successes the baseline needs before any window is judged slow against it. */
const MIN_LEARNED = 100

/** A window with nothing recorded yet. */
const emptyWindow = {
  admissions: 0,
  successes: 0,
  windowMsPerWork: 0,
  windowMillis: 0,
  drops: 0,
  pressed: false
} as const

export const initial = (config: Config, now: number): State => ({
  limit: config.initialLimit,
  lastGood: config.initialLimit,
  windowStart: now,
  ...emptyWindow,
  msPerWork: undefined,
  learnedFrom: 0,
  usualMillis: undefined
})

/** The concurrency the state admits. */
export const admitted = (state: State): number => Math.floor(state.limit)

const mean = (config: Config, previous: number | undefined, sample: number): number =>
  previous === undefined ? sample : previous + config.smoothing * (sample - previous)

/** How long a call in flight may take before it counts as hung: never less than the floor. */
export const hangMillis = (config: Config, state: State): number =>
  Math.max(
    config.minJudgedMillis,
    state.usualMillis === undefined ? config.initialHangMillis : config.slowFactor * state.usualMillis
  )

/** Records one outcome, ended at `now`, in the current window. */
export const record = (config: Config, state: State, outcome: Outcome, now: number): State => {
  switch (outcome._tag) {
    case "Ignore":
      return state
    case "Drop":
      return { ...state, drops: state.drops + 1 }
    case "Success": {
      const work = config.workBase + (outcome.work ?? 0)
      return {
        ...state,
        lastSuccessAt: now,
        successes: state.successes + 1,
        windowMsPerWork: state.windowMsPerWork + outcome.millis / work,
        windowMillis: state.windowMillis + outcome.millis
      }
    }
  }
}

/** Counts an admission, `inFlight` calls in flight after it, and notes whether they press against the limit. */
export const admit = (config: Config, state: State, inFlight: number): State => ({
  ...state,
  admissions: state.admissions + 1,
  pressed: state.pressed || inFlight >= config.saturation * admitted(state)
})

/**
 * Closes the window if its time is over: moves the limit once and opens the
 * next window. `inFlightSince(t)`: the calls in flight that started before
 * epoch ms `t` (the in-flight calls are the process's own, not state).
 */
export const advance = (
  config: Config,
  state: State,
  now: number,
  inFlightSince: (start: number) => number
): readonly [State, Change | undefined] => {
  const hang = hangMillis(config, state)
  // How long nothing has ended well in this window: the whole window when nothing has.
  const quiet = now - Math.max(state.windowStart, state.lastSuccessAt ?? -Infinity)
  const closes = now - state.windowStart >= config.windowMillis
  // At the window's end, the window's own verdict; before it, only a hang, once it has lasted `hang` ms.
  if (!closes && quiet < hang) return [state, undefined]
  const hung = quiet >= Math.min(hang, config.windowMillis) && inFlightSince(now - hang) >= 2
  if (!closes && !hung) return [state, undefined]
  const keptUp = state.successes > 0 && state.successes >= config.saturation * state.admissions
  // One slow answer in a heavy-tailed distribution says little; the window's mean says whether the provider slowed.
  const perWork = state.successes === 0 ? undefined : state.windowMsPerWork / state.successes
  const slow = perWork !== undefined && state.msPerWork !== undefined && state.learnedFrom >= MIN_LEARNED &&
    state.successes >= MIN_SAMPLES && perWork > config.slowFactor * state.msPerWork &&
    state.windowMillis / state.successes > config.minJudgedMillis
  const reason = state.drops > 0 ? "drop" : hung ? "hang" : slow ? "slow" : state.pressed && keptUp ? "pressed" : undefined
  const limit = reason === undefined
    ? state.limit
    : reason === "pressed"
    // Doubling, as TCP's slow start; back to half the last limit that held at once (its ssthresh), so a
    // provider back from an outage is not held at a handful of calls for seconds.
    ? Math.min(config.maxLimit, Math.max(state.limit * 2, state.lastGood * config.backoff))
    // On a hang every call in flight is stuck, and a limit far above them refuses nothing: the cut starts from what
    // is in flight (RFC 5681's FlightSize), so a provider that hangs while the traffic needs a tenth of the limit is
    // shed at once. A drop comes from a provider that still answers: the limit is halved (from the calls in flight
    // too, the drill's flapping primary served 7 % fewer answers between its flaps).
    : Math.max(config.minLimit, (reason === "hang" ? Math.min(state.limit, inFlightSince(Infinity)) : state.limit) * config.backoff)
  const learned = perWork === undefined || slow
    ? { msPerWork: state.msPerWork, learnedFrom: state.learnedFrom, usualMillis: state.usualMillis }
    : {
      msPerWork: mean(config, state.msPerWork, perWork),
      learnedFrom: state.learnedFrom + state.successes,
      usualMillis: mean(config, state.usualMillis, state.windowMillis / state.successes)
    }
  const next: State = {
    ...state,
    ...learned,
    limit,
    lastGood: reason === "pressed" ? Math.max(state.lastGood, state.limit) : state.lastGood,
    windowStart: now,
    ...emptyWindow
  }
  return [next, limit === state.limit || reason === undefined ? undefined : { from: state.limit, to: limit, reason }]
}

/** What a step records before the window is looked at. */
export type Event =
  | Outcome
  /** A call was admitted; `inFlight` calls are in flight with it. */
  | { readonly _tag: "Admitted"; readonly inFlight: number }
  /** A call found the calls in flight at the limit: refused, or waiting for a slot. */
  | { readonly _tag: "OverLimit" }
  /** Nothing to record: the limit is read. */
  | { readonly _tag: "Read" }

/** One atomic step of the machine: `event` recorded, then the window advanced. `stored` is undefined before the first. */
export const step = (
  config: Config,
  stored: State | undefined,
  event: Event,
  now: number,
  inFlightSince: (start: number) => number
): readonly [State, Change | undefined] => {
  const state = stored ?? initial(config, now)
  const recorded = event._tag === "Read"
    ? state
    : event._tag === "Admitted"
    ? admit(config, state, event.inFlight)
    : event._tag === "OverLimit"
    ? (state.pressed ? state : { ...state, pressed: true })
    : record(config, state, event, now)
  return advance(config, recorded, now, inFlightSince)
}
