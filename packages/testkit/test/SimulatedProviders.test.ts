import { describe, expect, it } from "@effect/vitest"
import * as Provider from "@resilient-ai/llm/Provider"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import * as FaultScript from "../src/FaultScript.js"
import * as SimulatedProviders from "../src/SimulatedProviders.js"
import * as VirtualTime from "../src/VirtualTime.js"

const request = { model: "m", messages: [{ role: "user" as const, content: "hello there" }] }
const target: Provider.Target = { name: "primary", kind: "openai", baseUrl: undefined, model: "gpt" }
const call = (keyName = "k1"): Provider.CallContext => ({ deployment: "primary", model: "gpt", key: undefined, keyName })

const run = <A, E>(effect: Effect.Effect<A, E, Provider.Providers>, deployments: ReadonlyArray<SimulatedProviders.Deployment>, seed = 1) =>
  VirtualTime.runExit(Effect.provide(effect, SimulatedProviders.layer({ deployments, seed })))

const primary = (script: FaultScript.Script, latency = FaultScript.lognormal(800, 2_400)): SimulatedProviders.Deployment => ({
  name: "primary",
  latency,
  script
})

describe("SimulatedProviders", () => {
  it("answers after the sampled latency, with usage, in virtual time", () => {
    const { exit } = run(
      Effect.gen(function*() {
        const provider = (yield* Provider.Providers).forTarget(target)
        const answer = yield* provider.chat(request, call())
        return { answer, at: yield* Clock.currentTimeMillis }
      }),
      [primary([], FaultScript.fixed(750))]
    )
    expect(Exit.isSuccess(exit) && exit.value.at).toBe(750)
    expect(Exit.isSuccess(exit) && exit.value.answer.response).toMatchObject({ model: "gpt", finishReason: "stop" })
    const usage = Exit.isSuccess(exit) ? exit.value.answer.response.usage : undefined
    expect(usage?.inputTokens).toBeGreaterThan(0)
    expect(usage?.outputTokens).toBeGreaterThanOrEqual(100)
  })

  describe("the 5xx fault kinds become what a real provider's answer becomes, through ErrorMapping's table", () => {
    const rows: ReadonlyArray<readonly [FaultScript.FailureKind, Provider.Kind, number, RegExp]> = [
      ["internal-error", "openai", 500, /server had an error/],
      ["internal-error", "anthropic", 500, /Internal server error/],
      ["bad-gateway", "openai", 502, /502 Bad Gateway/],
      ["bad-gateway", "anthropic", 502, /502 Bad Gateway/],
      ["overloaded", "anthropic", 529, /Overloaded/],
      ["overloaded", "openai", 529, /overloaded/]
    ]
    for (const [kind, providerKind, status, detail] of rows) {
      it(`${kind} on ${providerKind}: ProviderUnavailableError, HTTP ${status}, counted by its tag`, () => {
        const { exit } = run(
          Effect.gen(function*() {
            const sim = yield* SimulatedProviders.make({
              deployments: [primary([{ _tag: "ErrorRate", from: 0, to: 1_000, rate: 1, error: kind }])]
            })
            const error = yield* Effect.flip(sim.forTarget({ ...target, kind: providerKind }).chat(request, call()))
            return { error, stats: yield* sim.stats }
          }),
          []
        )
        if (!Exit.isSuccess(exit)) return expect.fail(String(exit))
        expect(exit.value.error).toMatchObject({
          _tag: "ProviderUnavailableError",
          status,
          provider: providerKind,
          deployment: "primary",
          keyName: "k1"
        })
        expect(exit.value.error.message).toMatch(detail)
        expect(exit.value.stats["primary"]?.failures).toEqual({ ProviderUnavailableError: 1 })
      })
    }
  })

  it("an outage fails calls with a typed 503 and counts them as sent while down", () => {
    const { exit } = run(
      Effect.gen(function*() {
        const sim = yield* SimulatedProviders.make({ deployments: [primary([{ _tag: "Outage", from: 0, to: 10_000 }])] })
        const provider = sim.forTarget(target)
        const during = yield* Effect.flip(provider.chat(request, call()))
        yield* Effect.sleep("10 seconds")
        yield* provider.chat(request, call())
        return { during, stats: yield* sim.stats }
      }),
      []
    )
    expect(Exit.isSuccess(exit) && exit.value.during).toMatchObject({
      _tag: "ProviderUnavailableError",
      status: 503,
      deployment: "primary",
      keyName: "k1"
    })
    expect(Exit.isSuccess(exit) && exit.value.stats["primary"]).toMatchObject({
      calls: 2,
      callsWhileDown: 1,
      successes: 1,
      failures: { ProviderUnavailableError: 1 }
    })
  })

  it("a revoked key gets 401 and the other keys still answer; a 429 storm carries Retry-After", () => {
    const script: FaultScript.Script = [
      { _tag: "KeyRevoked", keyName: "k2", at: 0 },
      { _tag: "RateLimitStorm", from: 5_000, to: 6_000, rate: 1, retryAfterMs: 7_000 }
    ]
    const { exit } = run(
      Effect.gen(function*() {
        const provider = (yield* Provider.Providers).forTarget(target)
        const revoked = yield* Effect.flip(provider.chat(request, call("k2")))
        const other = yield* provider.chat(request, call("k1"))
        yield* Effect.sleep("5 seconds")
        const limited = yield* Effect.flip(provider.chat(request, call("k1")))
        return { revoked, other, limited }
      }),
      [primary(script)]
    )
    expect(Exit.isSuccess(exit)).toBe(true)
    if (Exit.isSuccess(exit)) {
      expect(exit.value.revoked).toMatchObject({ _tag: "AuthError", status: 401, keyName: "k2" })
      expect(exit.value.other.response.finishReason).toBe("stop")
      expect(exit.value.limited).toMatchObject({ _tag: "RateLimitError", source: "upstream", status: 429 })
      expect(exit.value.limited._tag === "RateLimitError" && exit.value.limited.retryAfter).toEqual(Duration.millis(7_000))
    }
  })

  it("the same seed gives the same latencies, call for call; another seed does not", () => {
    const latencies = (seed: number) =>
      run(
        Effect.gen(function*() {
          const provider = (yield* Provider.Providers).forTarget(target)
          const out: Array<number> = []
          for (let i = 0; i < 20; i++) {
            const start = yield* Clock.currentTimeMillis
            yield* provider.chat(request, call())
            out.push((yield* Clock.currentTimeMillis) - start)
          }
          return out
        }),
        [primary([])],
        seed
      ).exit
    expect(latencies(3)).toEqual(latencies(3))
    expect(latencies(3)).not.toEqual(latencies(4))
  })

  it("a stream sends its chunks apart; a slow stream slower; a stalled stream stops sending", () => {
    const deployment = (script: FaultScript.Script): SimulatedProviders.Deployment => ({
      ...primary(script, FaultScript.fixed(300)),
      stream: { chunks: 4, interChunk: FaultScript.fixed(50) }
    })
    const timed = Effect.gen(function*() {
      const provider = (yield* Provider.Providers).forTarget(target)
      const start = yield* Clock.currentTimeMillis
      const chunks = yield* Stream.runCollect(
        Stream.mapEffect(Provider.chunksOf(provider.stream(request, call())), (c) => Effect.map(Clock.currentTimeMillis, (t) => ({ c, t: t - start })))
      )
      return Chunk.toReadonlyArray(chunks)
    })
    const normal = run(timed, [deployment([])]).exit
    expect(Exit.isSuccess(normal) && normal.value.map((x) => x.t)).toEqual([300, 350, 400, 450, 500, 550])
    expect(Exit.isSuccess(normal) && normal.value.at(-1)?.c).toMatchObject({ finishReason: "stop", usage: { outputTokens: expect.any(Number) } })

    const slow = run(timed, [deployment([{ _tag: "SlowStream", from: 0, to: 1_000, interChunk: FaultScript.fixed(2_000) }])]).exit
    expect(Exit.isSuccess(slow) && slow.value.map((x) => x.t)).toEqual([300, 2_300, 4_300, 6_300, 8_300, 10_300])

    const stalled = run(
      Effect.timeoutTo(timed, { duration: "1 minute", onTimeout: () => "stalled" as const, onSuccess: () => "ended" as const }),
      [deployment([{ _tag: "StreamStall", from: 0, to: 1_000, rate: 1, afterChunks: 2 }])]
    )
    expect(stalled.exit).toEqual(Exit.succeed("stalled"))
    expect(stalled.endedAt).toBe(60_000)
  })

  describe("a stalled stream ends as the client's transport ends it", () => {
    const deployment = (stall: FaultScript.Fault): SimulatedProviders.Deployment => ({
      ...primary([stall], FaultScript.fixed(300)),
      stream: { chunks: 4, interChunk: FaultScript.fixed(50) },
      stallTimeoutMs: 30_000
    })
    /** What the reader got: content chunks, the error, and when it came. */
    const read = Effect.gen(function*() {
      const provider = (yield* Provider.Providers).forTarget(target)
      const texts: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(Provider.chunksOf(provider.stream(request, call())), (c) =>
          Effect.sync(() => {
            if (c.text !== undefined && c.text !== "") texts.push(c.text)
          }))
      )
      return { texts, error, at: yield* Clock.currentTimeMillis }
    })
    const stall = (afterChunks: number, as?: FaultScript.StallKind): FaultScript.Fault => ({
      _tag: "StreamStall",
      from: 0,
      to: 1_000,
      rate: 1,
      afterChunks,
      ...(as === undefined ? {} : { as })
    })
    const outcome = (fault: FaultScript.Fault) => {
      const { exit } = run(read, [deployment(fault)])
      if (!Exit.isSuccess(exit)) return expect.fail(String(exit))
      return exit.value
    }

    it("a hang before the first token: TimeoutError first-token, 30 s after the stream's start", () => {
      for (const afterChunks of [0, 1]) {
        const r = outcome(stall(afterChunks))
        expect(r.texts).toEqual([])
        expect(r.error).toMatchObject({ _tag: "TimeoutError", phase: "first-token", deployment: "primary" })
        expect(r.at).toBe(30_000)
      }
    })

    it("a hang mid-stream: TimeoutError stall, 30 s after the last chunk", () => {
      // Chunks at 300 (role), 350 and 400 (content); the stall timer runs from 400.
      const r = outcome(stall(3))
      expect(r.texts).toEqual(["word1", " word2"])
      expect(r.error).toMatchObject({ _tag: "TimeoutError", phase: "stall" })
      expect(r.at).toBe(30_400)
    })

    it("a cut: ConnectionError when the next chunk was due; an error event: the 529 overloaded error", () => {
      const cut = outcome(stall(3, "cut"))
      expect(cut.texts).toEqual(["word1", " word2"])
      expect(cut.error).toMatchObject({ _tag: "ConnectionError", detail: expect.stringMatching(/without its terminator/) })
      expect(cut.at).toBe(450)
      const event = outcome(stall(3, "error-event"))
      expect(event.error).toMatchObject({ _tag: "ProviderUnavailableError", status: 529 })
      expect(event.at).toBe(450)
    })
  })
})
