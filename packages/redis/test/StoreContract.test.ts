/**
 * The store contract: whatever store holds a slot, the same operations at
 * the same times give the same answers. Seeded sequences of operations run in
 * lockstep on the memory store and on the Redis store; every answer (result,
 * state and transitions) must be equal. On Redis they run once through one
 * instance, and once spread over three instances (three connections, one
 * prefix) with no cache (`refreshInterval: 0`): shared state must then be
 * indistinguishable from one process's.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Machines from "@resilient-ai/core/StateMachines"
import * as StateStore from "@resilient-ai/core/StateStore"
import * as Effect from "effect/Effect"
import { instances, redisUrl } from "./stores.js"

/** A small seeded PRNG (mulberry32): the same sequence on every run. */
const prng = (seed: number) => {
  let a = seed
  return (n: number): number => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n)
  }
}

/** One operation, run against a store. */
type Op = (store: StateStore.Service) => Effect.Effect<unknown>
interface Plan {
  readonly name: string
  /**
   * A read of the slot at `now`. Ops whose write goes behind the call (`behind`) are followed by it,
   * through the same instance, so the write has landed before another instance reads; it runs on
   * the memory store too, so both see the same operations.
   */
  readonly sync?: (now: number) => Op
  /** Returns the i-th operation; may look at earlier answers (a record needs an admission). */
  readonly next: (i: number, now: number, answers: ReadonlyArray<unknown>) => { readonly op: Op; readonly behind: boolean }
}

const breakerConfigs: ReadonlyArray<readonly [string, Machines.Breaker.Config]> = [
  ["consecutive", {
    trigger: { kind: "consecutive", failures: 3 },
    slowCallMillis: 800,
    permittedCallsInHalfOpen: 2,
    maxHalfOpenMillis: 5000,
    openMillis: (n) => 1000 * n
  }],
  ["failure-rate, count window", {
    trigger: { kind: "failure-rate", window: { kind: "count", size: 6 }, threshold: 0.5, minimumCalls: 4, slowCallRateThreshold: 0.8 },
    slowCallMillis: 800,
    permittedCallsInHalfOpen: 1,
    maxHalfOpenMillis: undefined,
    openMillis: () => 2000
  }],
  ["failure-rate, time window", {
    trigger: {
      kind: "failure-rate",
      window: { kind: "time", bucketMillis: 1000, buckets: 5 },
      threshold: 0.4,
      minimumCalls: 3,
      slowCallRateThreshold: undefined
    },
    slowCallMillis: undefined,
    permittedCallsInHalfOpen: 2,
    maxHalfOpenMillis: 3000,
    openMillis: (n) => 1500 * n
  }]
]

const breakerPlan = (name: string, config: Machines.Breaker.Config, rand: (n: number) => number): Plan => {
  const outstanding: Array<Machines.Breaker.Admitted> = []
  let lastAdmit = -1
  return {
    name,
    next: (i, now, answers) => {
      const previous = answers[lastAdmit]
      if (lastAdmit === i - 1 && previous !== undefined) {
        const step = previous as Machines.Breaker.Step<Machines.Breaker.Admission>
        if (step.result._tag === "admitted") outstanding.push(step.result)
      }
      const r = rand(20)
      if (r < 9) {
        lastAdmit = i
        return { op: (s) => s.breaker("b", config).admit(now), behind: false }
      }
      if (r < 17 && outstanding.length > 0) {
        const admission = outstanding.splice(rand(outstanding.length), 1)[0]!
        const outcome = (["success", "failure", "failure", "ignored"] as const)[rand(4)]!
        const duration = rand(1200)
        return { op: (s) => s.breaker("b", config).record(admission, outcome, duration, now), behind: false }
      }
      if (r === 19) {
        const to = (["forced-open", "forced-closed", "disabled", "closed"] as const)[rand(4)]!
        return { op: (s) => s.breaker("b", config).force(to, now), behind: false }
      }
      return { op: (s) => s.breaker("b", config).read(now), behind: false }
    }
  }
}

const bucketConfig = Machines.TokenBucket.makeConfig([
  { name: "requests", capacity: 5, refillAmount: 1, refillInterval: 400 },
  { name: "tokens", capacity: 1000, refillAmount: 100, refillInterval: 250 }
])

const tokenBucketPlan = (rand: (n: number) => number): Plan => ({
  name: "token buckets (rule 21)",
  sync: (now) => (s) => s.tokenBucket("t", bucketConfig).read(now),
  next: (_i, now) => {
    const slot = (s: StateStore.Service) => s.tokenBucket("t", bucketConfig)
    const costs = [1 + rand(2), rand(400)]
    const r = rand(20)
    if (r < 11) {
      const maxWait = rand(3) * 500
      const deadline = rand(2) === 0 ? Number.POSITIVE_INFINITY : now + rand(2000)
      return { op: (s) => slot(s).reserve(costs, now, maxWait, deadline), behind: false }
    }
    if (r < 13) return { op: (s) => slot(s).release(costs, now), behind: true }
    const bucket = rand(2)
    const delta = rand(300) - 150
    const until = now + rand(1500)
    if (r < 15) return { op: (s) => slot(s).correct(bucket, delta, now), behind: true }
    if (r === 15) return { op: (s) => slot(s).pause(until, now), behind: false }
    return { op: (s) => slot(s).read(now), behind: false }
  }
})

const keyConfig: Machines.KeyPool.Config = {
  names: ["k1", "k2", "k3", "k4"],
  weights: [1, 1, 2, 1],
  groups: [[0, 1], [0, 1], [2], [3]],
  groupNames: ["org-a", "org-a", undefined, undefined],
  strategy: "round-robin",
  rateLimitCooldown: 1000,
  failuresBeforeCooldown: 2,
  failureCooldown: 1500,
  quotaResetAfter: 4000
}

const keyOutcomes: ReadonlyArray<(now: number, rand: (n: number) => number) => Machines.KeyPool.Outcome> = [
  () => Machines.KeyPool.success,
  () => Machines.KeyPool.success,
  () => Machines.KeyPool.ignored,
  () => ({ _tag: "failure", error: "ProviderUnavailableError" }),
  (now, rand) => ({ _tag: "rate-limited", error: "RateLimitError", retryAfter: rand(2) === 0 ? undefined : now + rand(3000) }),
  () => ({ _tag: "auth", error: "AuthError" }),
  (now, rand) => ({ _tag: "quota", error: "QuotaExhaustedError", resetAt: rand(2) === 0 ? undefined : now + rand(5000) })
]

const keyHealthPlan = (strategy: Machines.KeyPool.Strategy, rand: (n: number) => number): Plan => {
  const config = { ...keyConfig, strategy }
  return {
    name: `key health, ${strategy} (rules 23-26)`,
    next: (_i, now) => {
      const slot = (s: StateStore.Service) => s.keyHealth("k", config)
      const r = rand(20)
      if (r < 8) {
        const avoid = rand(3) === 0 ? new Set([config.names[rand(4)]!]) : undefined
        const affinity = rand(4) === 0 ? `user-${rand(5)}` : undefined
        return { op: (s) => slot(s).pick(now, avoid, affinity), behind: false }
      }
      if (r < 15) {
        const outcome = keyOutcomes[rand(keyOutcomes.length)]!(now, rand)
        const index = rand(4)
        return { op: (s) => slot(s).record(index, outcome, now), behind: false }
      }
      if (r < 17) {
        const index = rand(4)
        const until = now + rand(3000)
        return { op: (s) => slot(s).cool(index, until, now, "rate-limit headers"), behind: false }
      }
      if (r === 17) {
        const index = rand(4)
        const to = rand(3) === 0 ? "disabled" : "healthy"
        return { op: (s) => slot(s).force(index, to, now), behind: false }
      }
      return { op: (s) => slot(s).read(now), behind: false }
    }
  }
}

const budgetConfig: Machines.RetryBudget.Config = { ratio: 0.2, minRetriesPerSecond: 1, windowSeconds: 3 }

const retryBudgetPlan = (rand: (n: number) => number): Plan => ({
  name: "retry budget (rule 17)",
  sync: (now) => (s) => s.retryBudget("r", budgetConfig).read(now),
  next: (_i, now) => {
    const slot = (s: StateStore.Service) => s.retryBudget("r", budgetConfig)
    const r = rand(10)
    if (r < 5) return { op: (s) => slot(s).recordAttempt(now), behind: true }
    if (r < 8) return { op: (s) => slot(s).tryAcquireRetry(now), behind: false }
    return { op: (s) => slot(s).read(now), behind: false }
  }
})

const plans = (seed: number): ReadonlyArray<Plan> => {
  const rand = prng(seed)
  return [
    ...breakerConfigs.map(([name, config]) => breakerPlan(`breaker, ${name} (rules 1-11)`, config, rand)),
    tokenBucketPlan(rand),
    keyHealthPlan("round-robin", rand),
    keyHealthPlan("weighted", rand),
    retryBudgetPlan(rand)
  ]
}

/** Runs one plan in lockstep: the memory store's answer, then each Redis instance's in turn. */
const lockstep = (plan: Plan, stores: ReadonlyArray<StateStore.Service>, steps: number, rand: (n: number) => number) =>
  Effect.gen(function*() {
    const memory = StateStore.makeMemory()
    const answers: Array<unknown> = []
    let now = 1_700_000_000_000
    for (let i = 0; i < steps; i++) {
      now += [0, 0, 50, 200, 700, 1500][rand(6)]!
      const { behind, op } = plan.next(i, now, answers)
      const store = stores[i % stores.length]!
      const expected = yield* op(memory)
      const actual = yield* op(store)
      if (behind && plan.sync !== undefined) {
        yield* plan.sync(now)(memory)
        yield* plan.sync(now)(store)
      }
      expect({ step: i, answer: actual }).toEqual({ step: i, answer: expected })
      answers.push(expected)
    }
  })

const steps = 150

describe.skipIf(redisUrl === "")("RedisStore keeps the memory store's contract", () => {
  for (const [index, plan] of plans(1).entries()) {
    it.scopedLive(`${plan.name}: the same answers as the memory store, op for op, through one instance`, () =>
      Effect.gen(function*() {
        const [one] = yield* instances(1)
        yield* lockstep(plans(100 + index)[index]!, [one!.store], steps, prng(200 + index))
      }))

    it.scopedLive(`${plan.name}: the same answers spread over three instances sharing one prefix (no cache)`, () =>
      Effect.gen(function*() {
        const three = yield* instances(3, { refreshInterval: 0 })
        yield* lockstep(plans(300 + index)[index]!, three.map((i) => i.store), steps, prng(400 + index))
      }))
  }
})
