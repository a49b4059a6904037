import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import * as machine from "../src/internal/keyPoolState.js"

const NAMES = ["k0", "k1", "k2", "k3", "k4"]

type Command =
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "pick"; readonly avoid: ReadonlyArray<number>; readonly affinity: string | undefined }
  | { readonly _tag: "record"; readonly key: number; readonly outcome: machine.Outcome }
  | { readonly _tag: "cool"; readonly key: number; readonly millis: number }
  | { readonly _tag: "force"; readonly key: number; readonly to: "healthy" | "disabled" }

const outcome: fc.Arbitrary<machine.Outcome> = fc.oneof(
  fc.constant(machine.success),
  fc.constant(machine.ignored),
  fc.constant<machine.Outcome>({ _tag: "failure", error: "ProviderUnavailableError" }),
  fc.constant<machine.Outcome>({ _tag: "failure", error: "TimeoutError" }),
  fc.record({
    _tag: fc.constant("rate-limited" as const),
    error: fc.constant("RateLimitError"),
    retryAfter: fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: undefined })
  }),
  fc.constant<machine.Outcome>({ _tag: "auth", error: "AuthError" }),
  fc.record({
    _tag: fc.constant("quota" as const),
    error: fc.constant("QuotaExhaustedError"),
    resetAt: fc.option(fc.integer({ min: 0, max: 200_000 }), { nil: undefined })
  })
)

const command = (n: number): fc.Arbitrary<Command> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 15_000 }) }) },
    {
      weight: 5,
      arbitrary: fc.record({
        _tag: fc.constant("pick" as const),
        avoid: fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { maxLength: n }),
        affinity: fc.option(fc.constantFrom("s1", "s2", "s3", "s4"), { nil: undefined })
      })
    },
    {
      weight: 4,
      arbitrary: fc.record({ _tag: fc.constant("record" as const), key: fc.integer({ min: 0, max: n - 1 }), outcome })
    },
    {
      weight: 1,
      arbitrary: fc.record({
        _tag: fc.constant("cool" as const),
        key: fc.integer({ min: 0, max: n - 1 }),
        millis: fc.integer({ min: 0, max: 20_000 })
      })
    },
    {
      weight: 1,
      arbitrary: fc.record({
        _tag: fc.constant("force" as const),
        key: fc.integer({ min: 0, max: n - 1 }),
        to: fc.constantFrom("healthy" as const, "disabled" as const)
      })
    }
  )

const scenario = fc.integer({ min: 1, max: NAMES.length }).chain((n) =>
  fc.record({
    n: fc.constant(n),
    strategy: fc.constantFrom<machine.Strategy>("round-robin", "weighted"),
    weights: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: n, maxLength: n }),
    groups: fc.array(fc.constantFrom<string | undefined>(undefined, "a", "b"), { minLength: n, maxLength: n }),
    failuresBeforeCooldown: fc.integer({ min: 1, max: 4 }),
    commands: fc.array(command(n), { maxLength: 80 })
  })
)

const configOf = (s: {
  readonly n: number
  readonly strategy: machine.Strategy
  readonly weights: ReadonlyArray<number>
  readonly groups: ReadonlyArray<string | undefined>
  readonly failuresBeforeCooldown: number
}): machine.Config => ({
  names: NAMES.slice(0, s.n),
  weights: s.strategy === "weighted" ? s.weights : s.weights.map(() => 1),
  groupNames: s.groups,
  groups: s.groups.map((g, i) => (g === undefined ? [i] : s.groups.flatMap((h, j) => (h === g ? [j] : [])))),
  strategy: s.strategy,
  rateLimitCooldown: 60_000,
  failuresBeforeCooldown: s.failuresBeforeCooldown,
  failureCooldown: 30_000,
  quotaResetAfter: 100_000
})

/** Whether key `i` is usable at `now`, from the state alone: healthy, or out with its end passed. */
const usable = (state: machine.PoolState, i: number, now: number): boolean => {
  const k = state.keys[i]
  if (k === undefined) return false
  return k.state === "healthy" || ((k.state === "cooling" || k.state === "parked") && now >= k.until)
}

describe("KeyPool state machine: properties", () => {
  it("never picks an unavailable key while a healthy one exists, never a disabled key; avoided keys only as a last resort", () =>
    fc.assert(
      fc.property(scenario, (s) => {
        const config = configOf(s)
        let state = machine.initial(config)
        let now = 0
        for (const c of s.commands) {
          switch (c._tag) {
            case "advance":
              now += c.millis
              break
            case "pick": {
              const avoid = new Set(c.avoid.map((i) => NAMES[i] ?? ""))
              const before = state
              const step = machine.pick(config, state, now, avoid, c.affinity)
              state = step.state
              const anyUsable = config.names.some((_, i) => usable(before, i, now))
              if (step.result._tag === "picked") {
                const i = step.result.index
                expect(usable(before, i, now)).toBe(true)
                expect(state.keys[i]?.state).toBe("healthy")
                expect(before.keys[i]?.state).not.toBe("disabled")
                if (avoid.has(config.names[i] ?? "")) {
                  // Only when no key outside `avoid` is usable.
                  config.names.forEach((name, j) => {
                    if (!avoid.has(name)) expect(usable(before, j, now)).toBe(false)
                  })
                }
              } else {
                expect(anyUsable).toBe(false)
                const ends = before.keys
                  .filter((k) => k.state === "cooling" || k.state === "parked")
                  .map((k) => k.until)
                expect(step.result.availableAt).toBe(ends.length === 0 ? undefined : Math.min(...ends))
                if (step.result.availableAt !== undefined) expect(step.result.availableAt).toBeGreaterThan(now)
              }
              break
            }
            case "record":
              state = machine.record(config, state, c.key, c.outcome, now).state
              if (c.outcome._tag === "auth") expect(state.keys[c.key]?.state).toBe("disabled")
              break
            case "cool":
              state = machine.cool(config, state, c.key, now + c.millis, now, "headers").state
              break
            case "force":
              state = machine.force(config, state, c.key, c.to, now).state
              expect(state.keys[c.key]?.state).toBe(c.to)
              break
          }
          // Structural invariants after every step.
          expect(state.keys.length).toBe(config.names.length)
          for (const k of state.keys) {
            if (k.state === "healthy" || k.state === "disabled") expect(k.until).toBe(0)
            expect(k.failures).toBeLessThan(config.failuresBeforeCooldown)
          }
        }
      }),
      { numRuns: 300 }
    ))

  it("weighted: over any sum-of-weights consecutive picks from the start, each key is picked exactly its weight", () =>
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 4 }), (weights, rounds) => {
        const config = configOf({
          n: weights.length,
          strategy: "weighted",
          weights,
          groups: weights.map(() => undefined),
          failuresBeforeCooldown: 5
        })
        let state = machine.initial(config)
        const total = weights.reduce((a, b) => a + b, 0)
        for (let r = 0; r < rounds; r++) {
          const counts = weights.map(() => 0)
          for (let p = 0; p < total; p++) {
            const step = machine.pick(config, state, 0, undefined, undefined)
            state = step.state
            expect(step.result._tag).toBe("picked")
            if (step.result._tag === "picked") counts[step.result.index] = (counts[step.result.index] ?? 0) + 1
          }
          expect(counts).toEqual(weights)
        }
      })
    ))

  it("state is JSON: it survives a round trip through JSON unchanged in behaviour", () =>
    fc.assert(
      fc.property(scenario, (s) => {
        const config = configOf(s)
        let a = machine.initial(config)
        let b: machine.PoolState = JSON.parse(JSON.stringify(a))
        let now = 0
        for (const c of s.commands) {
          if (c._tag === "advance") now += c.millis
          else if (c._tag === "pick") {
            const avoid = new Set(c.avoid.map((i) => NAMES[i] ?? ""))
            const sa = machine.pick(config, a, now, avoid, c.affinity)
            const sb = machine.pick(config, b, now, avoid, c.affinity)
            expect(sb.result).toEqual(sa.result)
            a = sa.state
            b = JSON.parse(JSON.stringify(sb.state))
          } else if (c._tag === "record") {
            a = machine.record(config, a, c.key, c.outcome, now).state
            b = JSON.parse(JSON.stringify(machine.record(config, b, c.key, c.outcome, now).state))
          }
        }
        expect(b).toEqual(JSON.parse(JSON.stringify(a)))
      }),
      { numRuns: 100 }
    ))
})
