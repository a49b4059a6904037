import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Errors from "../src/Errors.js"
import * as HealthProbe from "../src/HealthProbe.js"
import * as KeyPool from "../src/KeyPool.js"
import * as Policy from "../src/Policy.js"
import * as StateStore from "../src/StateStore.js"

/** A deployment's policy with two keys, and a probe call that answers as `answer` says, logging the keys it used. */
const setUp = (policyOptions: Partial<Policy.Options> = {}) =>
  Effect.gen(function*() {
    const keyPool = yield* KeyPool.make({
      name: "fallback",
      keys: [{ name: "k1", key: Redacted.make("sk-one") }, { name: "k2", key: Redacted.make("sk-two") }]
    })
    const policy = yield* Policy.make({ deployment: "fallback", keyPool, retry: false, ...policyOptions })
    const calls: Array<string> = []
    let answer: (key: string) => Effect.Effect<void, Errors.ResilienceError> = () => Effect.void
    let lastUsed: number | undefined
    const target: HealthProbe.Target = {
      circuitBreaker: policy.circuitBreaker,
      keyPool,
      lastUsed: Effect.sync(() => lastUsed),
      call: (key) =>
        Effect.suspend(() => {
          calls.push(key?.name ?? "none")
          return answer(key?.name ?? "none")
        })
    }
    return {
      policy,
      keyPool,
      calls,
      target,
      answerWith: (f: typeof answer) => {
        answer = f
      },
      usedAt: (t: number | undefined) => {
        lastUsed = t
      }
    }
  }).pipe(Effect.provide(StateStore.layerMemory))

describe("HealthProbe (rule 30)", () => {
  it.scoped("probes on its schedule only while the deployment is idle", () =>
    Effect.gen(function*() {
      const t = yield* setUp()
      const probe = yield* HealthProbe.make({ name: "fallback", every: "30 seconds", idleFor: "1 minute" }, t.target)
      yield* TestClock.adjust("95 seconds")
      expect(t.calls.length).toBe(3)
      // Real traffic at 95 s: the probes of 120 s and 150 s find it busy and do not call.
      t.usedAt(95_000)
      yield* TestClock.adjust("55 seconds")
      expect(t.calls.length).toBe(3)
      expect(yield* probe.probe).toBe("busy")
      // Idle for a minute again: the probe of 180 s calls.
      yield* TestClock.adjust("30 seconds")
      expect(t.calls.length).toBe(4)
      expect((yield* probe.status).lastOutcome).toBe("ok")
    }))

  it.scoped("a 401 on a probe disables the key it used; when every key is out the deployment is unfit", () =>
    Effect.gen(function*() {
      const t = yield* setUp()
      t.answerWith(() => Effect.fail(new Errors.AuthError({ status: 401 })))
      const probe = yield* HealthProbe.make({ name: "fallback", every: "1 hour" }, t.target)
      expect(yield* probe.probe).toBe("AuthError")
      const after = yield* t.keyPool.status
      expect(after.keys.map((k) => k.state)).toEqual(["disabled", "healthy"])
      expect(probe.unfit()).toBeUndefined()
      expect(yield* probe.probe).toBe("AuthError")
      expect((yield* t.keyPool.status).keys.map((k) => k.state)).toEqual(["disabled", "disabled"])
      expect(probe.unfit()).toBe("every key is disabled")
      expect(t.calls).toEqual(["k1", "k2"])
    }))

  it.scoped("a probe's failures open the breaker after the usual threshold; it is then unfit, and a later probe is the half-open trial", () =>
    Effect.gen(function*() {
      const t = yield* setUp({ circuitBreaker: { trigger: { kind: "consecutive", failures: 3 }, openDuration: "1 minute" } })
      t.answerWith(() => Effect.fail(new Errors.ProviderUnavailableError({ status: 503 })))
      // Probed by hand here: the schedule's own probes would take the half-open trial first.
      const probe = yield* HealthProbe.make({ name: "fallback", maxPerMinute: 10, every: "1 hour" }, t.target)
      for (let i = 0; i < 3; i++) expect(yield* probe.probe).toBe("ProviderUnavailableError")
      // The keys learned nothing: a 503 is the provider's, not a key's (rule 23).
      expect((yield* t.keyPool.status).healthy).toBe(2)
      expect(probe.unfit()).toBe("its breaker is open")
      // While open, a probe is refused by the breaker without a call.
      expect(yield* probe.probe).toBe("CircuitOpenError")
      expect(t.calls.length).toBe(3)
      // After the open duration the probe is the half-open trial, and its success closes the breaker.
      yield* TestClock.adjust("61 seconds")
      t.answerWith(() => Effect.void)
      expect(yield* probe.probe).toBe("ok")
      expect((yield* t.policy.status).circuitBreaker?.state).toBe("closed")
      expect(probe.unfit()).toBeUndefined()
    }))

  it.scoped("probes take no bulkhead permit and no limiter tokens, and keep to their own budget", () =>
    Effect.gen(function*() {
      const t = yield* setUp({ bulkhead: { maxConcurrent: 1 }, rateLimiter: { requestsPerMinute: 1, maxWait: 0 } })
      // A real call holds the only permit and has spent the only token of its key.
      const real = yield* Effect.fork(t.policy.execute(() => Effect.sleep("10 seconds")))
      yield* TestClock.adjust("1 second")
      const before = yield* t.policy.status
      const probe = yield* HealthProbe.make({ name: "fallback", maxPerMinute: 2, every: "1 hour" }, t.target)
      expect(yield* probe.probe).toBe("ok")
      expect(yield* probe.probe).toBe("ok")
      expect(yield* probe.probe).toBe("over-budget")
      const after = yield* t.policy.status
      expect(after.bulkhead).toEqual(before.bulkhead)
      expect(after.keyRateLimiters).toEqual(before.keyRateLimiters)
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(real)
    }))
})
