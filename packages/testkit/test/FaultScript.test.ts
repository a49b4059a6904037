import { describe, expect, it } from "@effect/vitest"
import * as FaultScript from "../src/FaultScript.js"

const healthy: FaultScript.Behaviour = { latency: FaultScript.fixed(800), script: [] }
const withScript = (script: FaultScript.Script, extra: Partial<FaultScript.Behaviour> = {}): FaultScript.Behaviour => ({
  ...healthy,
  ...extra,
  script
})
const decide = (b: FaultScript.Behaviour, now: number, key?: string, u0 = 0.5) =>
  FaultScript.decide(b, now, key, u0, 0.5, 0.5, 0.5)

describe("FaultScript", () => {
  it("an outage fails every call inside its window only, and marks the call as sent while down", () => {
    const b = withScript([{ _tag: "Outage", from: 1_000, to: 2_000 }])
    expect(decide(b, 999)).toEqual({ _tag: "answer", latencyMs: 800 })
    expect(decide(b, 1_000)).toMatchObject({ _tag: "fail", failure: { _tag: "kind", kind: "unavailable" }, down: true })
    expect(decide(b, 1_999)).toMatchObject({ _tag: "fail", down: true })
    expect(decide(b, 2_000)._tag).toBe("answer")
  })

  it("flapping alternates down and up phases, starting down", () => {
    const b = withScript([{ _tag: "Flapping", from: 0, to: 100_000, downMs: 20_000, upMs: 20_000 }])
    const phases = [0, 19_999, 20_000, 39_999, 40_000, 60_000].map((t) => FaultScript.isDown(b.script, t))
    expect(phases).toEqual([true, true, false, false, true, false])
    expect(decide(b, 45_000)._tag).toBe("fail")
    expect(decide(b, 25_000)._tag).toBe("answer")
  })

  it("a revoked key answers 401 from its time on, and only that key", () => {
    const b = withScript([{ _tag: "KeyRevoked", keyName: "k2", at: 600_000 }])
    expect(decide(b, 599_999, "k2")._tag).toBe("answer")
    expect(decide(b, 600_000, "k2")).toMatchObject({ _tag: "fail", failure: { _tag: "auth" }, down: true })
    expect(decide(b, 700_000, "k1")._tag).toBe("answer")
  })

  it("an exhausted quota fails the key until its reset", () => {
    const b = withScript([{ _tag: "QuotaExhausted", keyName: "k1", at: 100, resetAt: 200 }])
    expect(decide(b, 150, "k1")).toMatchObject({ failure: { _tag: "quota", resetAt: 200 } })
    expect(decide(b, 200, "k1")._tag).toBe("answer")
    expect(decide(b, 150, "k2")._tag).toBe("answer")
  })

  it("a 429 storm fails the share of calls whose roll is below its rate, with the Retry-After", () => {
    const b = withScript([{ _tag: "RateLimitStorm", from: 0, to: 1_000, rate: 0.6, retryAfterMs: 10_000 }])
    expect(decide(b, 10, undefined, 0.59)).toMatchObject({
      _tag: "fail",
      failure: { _tag: "rate-limit", retryAfterMs: 10_000 },
      down: false
    })
    expect(decide(b, 10, undefined, 0.61)._tag).toBe("answer")
    expect(decide(b, 1_000, undefined, 0.1)._tag).toBe("answer")
  })

  it("a latency fault replaces the latency; beyond the server timeout the call is a 504 at that time", () => {
    const b = withScript([{ _tag: "Latency", from: 0, to: 1_000, latency: FaultScript.fixed(45_000) }], { serverTimeoutMs: 30_000 })
    expect(decide(b, 10)).toEqual({
      _tag: "fail",
      failure: { _tag: "kind", kind: "gateway-timeout" },
      afterMs: 30_000,
      down: false
    })
    expect(decide(b, 1_000)).toEqual({ _tag: "answer", latencyMs: 800 })
  })

  it("a log-normal latency has its median at u = 0.5 and its p99 at z = 2.326", () => {
    const l = FaultScript.lognormal(800, 2_400)
    // u1 = 1 - e^(-z²/2) and u2 = 0 give z exactly.
    const uFor = (z: number) => 1 - Math.exp(-(z * z) / 2)
    expect(FaultScript.sample(l, uFor(0), 0)).toBeCloseTo(800, 6)
    expect(FaultScript.sample(l, uFor(2.3263478740408408), 0)).toBeCloseTo(2_400, 6)
  })

  it("a stream stalls after its chunks only for the share of rolls below the rate", () => {
    const script: FaultScript.Script = [{ _tag: "StreamStall", from: 0, to: 1_000, rate: 0.3, afterChunks: 4 }]
    expect(FaultScript.streamShape(script, 10, FaultScript.fixed(20), 0.2).stallAfter).toBe(4)
    expect(FaultScript.streamShape(script, 10, FaultScript.fixed(20), 0.4).stallAfter).toBeUndefined()
  })

  it("stacked stream stalls share one roll, and the one that wins says how the stream ends", () => {
    const script: FaultScript.Script = [
      { _tag: "StreamStall", from: 0, to: 1_000, rate: 0.2, afterChunks: 0 },
      { _tag: "StreamStall", from: 0, to: 1_000, rate: 0.3, afterChunks: 8, as: "cut" }
    ]
    const shape = (u: number) => FaultScript.streamShape(script, 10, FaultScript.fixed(20), u)
    expect(shape(0.1)).toMatchObject({ stallAfter: 0, stallAs: undefined })
    expect(shape(0.3)).toMatchObject({ stallAfter: 8, stallAs: "cut" })
    expect(shape(0.6)).toMatchObject({ stallAfter: undefined, stallAs: undefined })
  })

  it("shift moves every window and time later by the same amount; infinite ends stay infinite", () => {
    const script: FaultScript.Script = [
      { _tag: "Outage", from: 0, to: Infinity },
      { _tag: "KeyRevoked", keyName: "k", at: 10 },
      { _tag: "QuotaExhausted", at: 20, resetAt: 30 },
      { _tag: "QuotaExhausted", at: 40 }
    ]
    expect(FaultScript.shift(script, 1_000)).toEqual([
      { _tag: "Outage", from: 1_000, to: Infinity },
      { _tag: "KeyRevoked", keyName: "k", at: 1_010 },
      { _tag: "QuotaExhausted", at: 1_020, resetAt: 1_030 },
      { _tag: "QuotaExhausted", at: 1_040 }
    ])
    const b = withScript(FaultScript.shift([{ _tag: "Outage", from: 0, to: 100 }], 500))
    expect(decide(b, 499)._tag).toBe("answer")
    expect(decide(b, 500)._tag).toBe("fail")
    expect(decide(b, 600)._tag).toBe("answer")
  })
})
