import { describe, expect, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import * as machine from "../src/internal/breakerState.js"

type Command =
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "admit" }
  /** Jumps next to the open period's end, where off-by-one bugs live. */
  | { readonly _tag: "edge"; readonly delta: number }
  | { readonly _tag: "finish"; readonly pick: number; readonly outcome: machine.Outcome; readonly millis: number }

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 20_000 }) }),
  fc.record({ _tag: fc.constant("admit" as const) }),
  fc.record({ _tag: fc.constant("edge" as const), delta: fc.integer({ min: -2, max: 1 }) }),
  fc.record({
    _tag: fc.constant("finish" as const),
    pick: fc.nat(),
    outcome: fc.constantFrom<machine.Outcome>("success", "failure", "failure", "ignored"),
    millis: fc.integer({ min: 0, max: 3_000 })
  })
)

const config: fc.Arbitrary<machine.Config> = fc.record({
  trigger: fc.oneof(
    fc.record({ kind: fc.constant("consecutive" as const), failures: fc.integer({ min: 1, max: 5 }) }),
    fc.record({
      kind: fc.constant("failure-rate" as const),
      window: fc.oneof(
        fc.record({ kind: fc.constant("count" as const), size: fc.integer({ min: 1, max: 20 }) }),
        fc.record({
          kind: fc.constant("time" as const),
          bucketMillis: fc.integer({ min: 100, max: 5_000 }),
          buckets: fc.integer({ min: 1, max: 10 })
        })
      ),
      threshold: fc.double({ min: 0.05, max: 1, noNaN: true }),
      minimumCalls: fc.integer({ min: 1, max: 10 }),
      slowCallRateThreshold: fc.option(fc.double({ min: 0.05, max: 1, noNaN: true }), { nil: undefined })
    })
  ),
  slowCallMillis: fc.option(fc.integer({ min: 0, max: 2_000 }), { nil: undefined }),
  permittedCallsInHalfOpen: fc.integer({ min: 1, max: 5 }),
  maxHalfOpenMillis: fc.option(fc.integer({ min: 1, max: 60_000 }), { nil: undefined }),
  openMillis: fc.constantFrom(
    (_: number) => 10_000,
    (n: number) => 1_000 * 2 ** Math.min(n, 10)
  )
})

/** Runs a command sequence through the pure machine and checks the invariants after every step. */
const check = (cfg: machine.Config, commands: ReadonlyArray<Command>) => {
  let state = machine.initial(cfg)
  let now = 0
  const inFlight: Array<{ generation: number; trial: boolean; start: number }> = []
  const trialsByGeneration = new Map<number, number>()
  let openWindow: { readonly generation: number; readonly until: number } | undefined
  const observe = (transitions: ReadonlyArray<machine.Transition>, before: machine.BreakerState, after: machine.BreakerState) => {
    if (transitions.length > 0) expect(after.generation).toBeGreaterThan(before.generation)
    if (after.state === "open" && (openWindow === undefined || openWindow.generation !== after.generation)) {
      openWindow = { generation: after.generation, until: after.openUntil }
      expect(after.openUntil).toBeGreaterThanOrEqual(now)
    }
  }
  for (const c of commands) {
    switch (c._tag) {
      case "advance":
        now += c.millis
        break
      case "edge":
        if (state.state === "open") now = Math.max(now, state.openUntil + c.delta)
        break
      case "admit": {
        const wasOpen = state.state === "open" ? state.openUntil : undefined
        const step = machine.admit(cfg, state, now)
        observe(step.transitions, state, step.state)
        if (step.result._tag === "admitted") {
          // Never admits a call while open before its retry time.
          if (wasOpen !== undefined) expect(now).toBeGreaterThanOrEqual(wasOpen)
          expect(step.state.state).not.toBe("open")
          if (step.result.trial) {
            const n = (trialsByGeneration.get(step.result.generation) ?? 0) + 1
            trialsByGeneration.set(step.result.generation, n)
          }
          inFlight.push({ generation: step.result.generation, trial: step.result.trial, start: now })
        } else if (step.state.state === "open") {
          expect(step.result.rejection.retryAt).toBe(step.state.openUntil)
          expect(now).toBeLessThan(step.state.openUntil)
        }
        state = step.state
        break
      }
      case "finish": {
        if (inFlight.length === 0) break
        const [call] = inFlight.splice(c.pick % inFlight.length, 1)
        if (call === undefined) break
        const step = machine.record(cfg, state, call, c.outcome, c.millis, now)
        observe(step.transitions, state, step.state)
        // An outcome from another generation never moves the breaker: only time does.
        const timeOnly = machine.advance(cfg, state, now, [])
        if (call.generation !== timeOnly.generation) expect(step.state).toEqual(timeOnly)
        state = step.state
        break
      }
    }
    // Never more trial calls in flight or done than the half-open budget.
    if (state.state === "half-open") {
      expect(state.trials.admitted).toBeLessThanOrEqual(cfg.permittedCallsInHalfOpen)
      expect(state.trials.done).toBeLessThanOrEqual(state.trials.admitted)
    }
  }
  // Ignored trials give their slot back, so admissions may exceed K only by the ignored ones;
  // the budget of slots held at once never does (checked above). Count windows never exceed their size.
  if (state.window.kind === "count" && cfg.trigger.kind === "failure-rate" && cfg.trigger.window.kind === "count") {
    expect(state.window.calls).toBeLessThanOrEqual(cfg.trigger.window.size)
    expect(state.window.failures).toBeLessThanOrEqual(state.window.calls)
  }
}

describe("CircuitBreaker state machine: properties", () => {
  it("never admits while open before its retry time, never exceeds the half-open budget, ignores stale outcomes", () => {
    fc.assert(
      fc.property(config, fc.array(command, { minLength: 100, maxLength: 400 }), (cfg, commands) => {
        check(cfg, commands)
      }),
      { numRuns: 400, seed: 42 }
    )
  })

  it("with no ignored outcomes, a half-open generation admits at most K trials", () => {
    fc.assert(
      fc.property(
        config,
        fc.array(command.filter((c) => c._tag !== "finish" || c.outcome !== "ignored"), { minLength: 100, maxLength: 400 }),
        (cfg, commands) => {
          let state = machine.initial(cfg)
          let now = 0
          const trials = new Map<number, number>()
          const inFlight: Array<{ generation: number; trial: boolean }> = []
          for (const c of commands) {
            if (c._tag === "advance") now += c.millis
            else if (c._tag === "edge") {
              if (state.state === "open") now = Math.max(now, state.openUntil + c.delta)
            }
            else if (c._tag === "admit") {
              const step = machine.admit(cfg, state, now)
              state = step.state
              if (step.result._tag === "admitted") {
                inFlight.push(step.result)
                if (step.result.trial) {
                  const n = (trials.get(step.result.generation) ?? 0) + 1
                  trials.set(step.result.generation, n)
                  expect(n).toBeLessThanOrEqual(cfg.permittedCallsInHalfOpen)
                }
              }
            } else if (inFlight.length > 0) {
              const [call] = inFlight.splice(c.pick % inFlight.length, 1)
              if (call !== undefined) state = machine.record(cfg, state, call, c.outcome, c.millis, now).state
            }
          }
        }
      ),
      { numRuns: 400, seed: 7 }
    )
  })
})
