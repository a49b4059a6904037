/**
 * Simulated provider deployments: a `Providers` service whose deployments
 * answer (or fail) as a {@link FaultScript} says, in virtual time.
 *
 * Every call reads the time from `Clock` and its randomness from a
 * `Random` seeded per deployment (`${seed}/${name}`), so under
 * `VirtualTime.runExit` the same seed and the same program give the same
 * run, call for call. Answers carry usage (input and output tokens) so cost
 * can be computed, and every call is counted: by deployment, by outcome,
 * and whether the script had the deployment (or the key) down when it was
 * sent.
 *
 * @since 0.1.0
 */
import { Errors } from "@resilient-ai/core"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as ErrorMapping from "@resilient-ai/llm/ErrorMapping"
import * as Provider from "@resilient-ai/llm/Provider"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Hash from "effect/Hash"
import * as Stream from "effect/Stream"
import { PCGRandom } from "effect/Utils"
import * as FaultScript from "./FaultScript.js"
import * as ChaosWire from "./internal/chaosWire.js"
import * as VirtualTime from "./VirtualTime.js"

/**
 * One simulated deployment.
 *
 * @since 0.1.0
 * @category options
 */
export interface Deployment extends FaultScript.Behaviour {
  /** The deployment name the client's `Target` carries. */
  readonly name: string
  /** Output tokens of an answer, drawn uniformly. Default 100–400. */
  readonly outputTokens?: { readonly min: number; readonly max: number }
  /** Streams: `chunks` text chunks (default 16), `interChunk` apart (default 20–60 ms); the first after the latency. */
  readonly stream?: { readonly chunks?: number; readonly interChunk?: FaultScript.Latency }
  /**
   * The client transport's first-token and stall timeouts, in milliseconds
   * (`HttpProviders`' default is 30 s): a hung stream fails with a
   * `TimeoutError` that long after its start (no content yet) or its last
   * chunk. Off unless set: a hung stream then lasts until its reader gives up.
   */
  readonly stallTimeoutMs?: number
}

/**
 * A finished call, for observers (timelines, recovery times).
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOutcome {
  readonly deployment: string
  readonly keyName: string | undefined
  readonly startedAt: number
  readonly endedAt: number
  /** `"success"`, the error's tag, or `"interrupted"` (the client gave up first). */
  readonly outcome: string
  /** The script had the deployment or the key down when the call was sent. */
  readonly down: boolean
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  readonly deployments: ReadonlyArray<Deployment>
  /** Seeds every deployment's `Random`. Default 0. */
  readonly seed?: number | string
  /** Called synchronously when a call ends, in virtual time order. */
  readonly onOutcome?: (outcome: CallOutcome) => void
}

/**
 * Counters of one deployment.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeploymentStats {
  /** Calls of the client's requests (health probes are counted apart). */
  readonly calls: number
  /** Health probes (rule 30): the model list, no tokens, not a request's call. */
  readonly probes: number
  /** Calls sent while the script had the deployment or the key down. */
  readonly callsWhileDown: number
  readonly successes: number
  readonly interrupted: number
  /** Failures by error tag. */
  readonly failures: Readonly<Record<string, number>>
  /** Tokens of the answers delivered (what the provider bills). */
  readonly inputTokens: number
  readonly outputTokens: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly forTarget: (target: Provider.Target) => Provider.Provider
  /** A snapshot of the counters, by deployment name. */
  readonly stats: Effect.Effect<Readonly<Record<string, DeploymentStats>>>
}

interface MutableStats {
  calls: number
  probes: number
  callsWhileDown: number
  successes: number
  interrupted: number
  failures: Record<string, number>
  inputTokens: number
  outputTokens: number
}

const defaultOutput = { min: 100, max: 400 }
const defaultInterChunk = FaultScript.uniform(20, 60)

/** A prompt-size estimate cheap enough to run per call: ~4 characters a token. */
const promptTokens = (request: Chat.ChatRequest): number => {
  let chars = typeof request.system === "string" ? request.system.length : 0
  for (const m of request.messages) {
    chars += 64
    if (typeof m.content === "string") chars += m.content.length
  }
  return Math.ceil(chars / 4)
}

/**
 * The error an HTTP provider of kind `kind` would make of the answer the
 * chaos upstream sends for `failure`: the same body through the same table,
 * so a simulated 500, 502 or 529 is what a real one becomes.
 */
const mapped = (
  kind: Provider.Kind,
  failure: FaultScript.Failure,
  origin: { readonly deployment: string; readonly provider: string; readonly keyName: string | undefined }
): Errors.ResilienceError =>
  ErrorMapping.fromResponse(ChaosWire.failure(kind, failure, { nowEpochMs: 0, startEpochMs: 0 }, "sim"), {
    provider: origin.provider,
    deployment: origin.deployment,
    ...(origin.keyName === undefined ? {} : { keyName: origin.keyName }),
    now: 0
  })

const toError = (
  failure: FaultScript.Failure,
  origin: { readonly deployment: string; readonly provider: Provider.Kind; readonly keyName: string | undefined },
  afterMs: number
): Errors.ResilienceError => {
  // Fields in the schemas' order (`Errors` Origin, then Upstream), as validation would put them:
  // the errors are built without it.
  const where = {
    provider: origin.provider,
    deployment: origin.deployment,
    ...(origin.keyName === undefined ? {} : { keyName: origin.keyName })
  }
  switch (failure._tag) {
    case "rate-limit":
      return new Errors.RateLimitError({
        source: "upstream",
        retryAfter: Duration.millis(failure.retryAfterMs),
        ...where,
        status: 429
      }, true)
    case "auth":
      return new Errors.AuthError({ ...where, status: 401, detail: "invalid api key (simulated revocation)" }, true)
    case "quota":
      return new Errors.QuotaExhaustedError({
        ...where,
        status: 429,
        detail: "insufficient_quota (simulated)",
        ...(failure.resetAt === undefined ? {} : { resetAt: failure.resetAt })
      }, true)
    case "kind":
      switch (failure.kind) {
        case "unavailable":
          return new Errors.ProviderUnavailableError({ ...where, status: 503 }, true)
        case "internal-error":
        case "bad-gateway":
        case "overloaded":
          return mapped(origin.provider, failure, origin)
        case "gateway-timeout":
          return new Errors.ProviderUnavailableError({ ...where, status: 504, detail: "upstream timed out" }, true)
        case "connection":
          return new Errors.ConnectionError({ ...where, detail: "connection refused" }, true)
        case "hang":
          return new Errors.ConnectionError({ ...where, detail: `connection reset after ${Math.round(afterMs)} ms without an answer` }, true)
        case "malformed":
          return new Errors.MalformedResponseError({ ...where, status: 200, detail: "body does not decode" }, true)
      }
  }
}

const tagOf = (exit: Exit.Exit<unknown, Errors.ResilienceError>): string => {
  if (Exit.isSuccess(exit)) return "success"
  if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) ? failure.value._tag : "defect"
}

/**
 * Builds the simulated deployments. A target whose name no deployment has
 * gets a provider that fails every call with a `ConnectionError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service> =>
  Effect.sync(() => {
    const seed = options.seed ?? 0
    const onOutcome = options.onOutcome
    const counters = new Map<string, MutableStats>()
    const providers = new Map<string, Provider.Provider>()

    const build = (d: Deployment, kind: Provider.Kind): Provider.Provider => {
      // The generator of `Random.make(\`${seed}/${d.name}\`)` (same seed hash, same draws), read in place:
      // the five draws of a call take no op each.
      const prng = new PCGRandom(Hash.hash(`${seed}/${d.name}`))
      const next: Effect.Effect<number> = Effect.sync(() => prng.number())
      const stats: MutableStats = {
        calls: 0,
        probes: 0,
        callsWhileDown: 0,
        successes: 0,
        interrupted: 0,
        failures: {},
        inputTokens: 0,
        outputTokens: 0
      }
      counters.set(d.name, stats)
      const output = d.outputTokens ?? defaultOutput
      const chunks = d.stream?.chunks ?? 16
      const interChunk = d.stream?.interChunk ?? defaultInterChunk
      let serial = 0

      /** Draws the call's fate at `now`: five uniforms, the script's decision. */
      const decideAt = (now: number, keyName: string | undefined) => {
        const u0 = prng.number()
        const u1 = prng.number()
        const u2 = prng.number()
        const u3 = prng.number()
        const u4 = prng.number()
        const decision = FaultScript.decide(d, now, keyName, u0, u1, u2, u3)
        stats.calls += 1
        if (decision._tag === "fail" && decision.down) stats.callsWhileDown += 1
        return { now, decision, u4 }
      }

      /** Draws the call's fate: time, five uniforms, the script's decision. */
      const decideNow = (keyName: string | undefined) =>
        Effect.withFiberRuntime<{ readonly now: number; readonly decision: FaultScript.Decision; readonly u4: number }>((fiber) =>
          Effect.succeed(decideAt(Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis(), keyName))
        )

      const recordOutcome = (
        context: Provider.CallContext,
        startedAt: number,
        down: boolean,
        outcome: string,
        endedAt: number
      ): void => {
        if (outcome === "success") stats.successes += 1
        else if (outcome === "interrupted") stats.interrupted += 1
        else stats.failures[outcome] = (stats.failures[outcome] ?? 0) + 1
        onOutcome?.({ deployment: d.name, keyName: context.keyName, startedAt, endedAt, outcome, down })
      }

      const finish = (
        context: Provider.CallContext,
        startedAt: number,
        down: boolean,
        exit: Exit.Exit<unknown, Errors.ResilienceError>
      ) =>
        Effect.withFiberRuntime<void>((fiber) => {
          recordOutcome(
            context,
            startedAt,
            down,
            tagOf(exit),
            Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
          )
          return Effect.void
        })

      const usageFor = (request: Chat.ChatRequest, u: number): Chat.Usage => ({
        inputTokens: promptTokens(request),
        outputTokens: Math.floor(output.min + u * (output.max - output.min + 1))
      })
      const bill = (usage: Chat.Usage) => {
        stats.inputTokens += usage.inputTokens
        stats.outputTokens += usage.outputTokens
      }
      const origin = (context: Provider.CallContext) => ({ deployment: d.name, provider: kind, keyName: context.keyName })
      // Errors are immutable values: one made per failure kind and key serves every call that fails
      // that way (the ones that carry a time, a hang's or a limit's, are made per call).
      const madeErrors = new Map<string, Errors.ResilienceError>()
      const errorOf = (failure: FaultScript.Failure, context: Provider.CallContext, afterMs: number): Errors.ResilienceError => {
        const constant = failure._tag === "auth" ? "auth" : failure._tag === "kind" && failure.kind !== "hang" ? failure.kind : undefined
        if (constant === undefined) return toError(failure, origin(context), afterMs)
        const id = context.keyName === undefined ? constant : `${constant}/${context.keyName}`
        let error = madeErrors.get(id)
        if (error === undefined) {
          error = toError(failure, origin(context), afterMs)
          madeErrors.set(id, error)
        }
        return error
      }

      const answer = (request: Chat.ChatRequest, context: Provider.CallContext, u4: number): Provider.ProviderAnswer => {
        const usage = usageFor(request, u4)
        bill(usage)
        serial += 1
        return {
          response: {
            id: `sim-${d.name}-${serial}`,
            model: context.model,
            text: `answer from ${d.name}`,
            toolCalls: [],
            finishReason: "stop",
            usage
          },
          rateLimit: undefined
        }
      }

      /**
       * A call on the virtual clock: one timer whose firing settles the call (answer or error,
       * and its outcome) and resumes the caller, and one canceler that records an interruption.
       * The same events at the same virtual times as the generic path below (the timer is set
       * where its sleep would set it, and the caller runs as soon as it fires), without a sleep,
       * a delay and an `onExit` around each of the drill's calls.
       */
      const virtualCall = (
        clock: VirtualTime.VirtualClock,
        traced: boolean,
        request: Chat.ChatRequest,
        context: Provider.CallContext,
        now: number,
        decision: FaultScript.Decision,
        u4: number
      ): Effect.Effect<Provider.ProviderAnswer, Errors.ResilienceError> => {
        const down = decision._tag === "fail" && decision.down
        const error = decision._tag === "fail" ? errorOf(decision.failure, context, decision.afterMs) : undefined
        const delayMs = decision._tag === "fail" ? decision.afterMs : decision.latencyMs
        return Effect.async<Provider.ProviderAnswer, Errors.ResilienceError>((resume) => {
          let pending = true
          const cancel = clock.schedule(() => {
            pending = false
            if (error !== undefined) {
              recordOutcome(context, now, down, error._tag, clock.now)
              // `Effect.fail` only adds the caller's span to the error: with no span, its exit.
              resume(traced ? Effect.fail(error) : Exit.fail(error))
            } else {
              const answered = answer(request, context, u4)
              recordOutcome(context, now, down, "success", clock.now)
              resume(Exit.succeed(answered))
            }
          }, VirtualTime.sleepMillis(delayMs))
          return Effect.sync(() => {
            if (!pending) return
            pending = false
            cancel()
            recordOutcome(context, now, down, "interrupted", clock.now)
          })
        })
      }

      const chat: Provider.Provider["chat"] = (request, context) =>
        Effect.withFiberRuntime((fiber) => {
          const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
          const { decision, now, u4 } = decideAt(clock.unsafeCurrentTimeMillis(), context.keyName)
          if (clock instanceof VirtualTime.VirtualClock) {
            return virtualCall(clock, fiber.currentSpan !== undefined, request, context, now, decision, u4)
          }
          const call: Effect.Effect<Provider.ProviderAnswer, Errors.ResilienceError> = decision._tag === "fail"
            ? Effect.delay(Effect.fail(errorOf(decision.failure, context, decision.afterMs)), Duration.millis(decision.afterMs))
            : Effect.delay(Effect.sync(() => answer(request, context, u4)), Duration.millis(decision.latencyMs))
          return Effect.onExit(call, (exit) => finish(context, now, decision._tag === "fail" && decision.down, exit))
        })

      /**
       * How a stream that stops after `sent` chunks ends for its reader: a hang until the
       * transport's timeout (first-token while no content came: from the stream's start;
       * stall: from the last chunk), or never without one; a cut or an error event when
       * the next chunk was due (`gap`).
       */
      const stalled = (
        how: FaultScript.StallKind,
        sent: number,
        latencyMs: number,
        context: Provider.CallContext,
        gap: Effect.Effect<number>
      ): Effect.Effect<never, Errors.ResilienceError> => {
        const where = { provider: kind, deployment: d.name, ...(context.keyName === undefined ? {} : { keyName: context.keyName }) }
        switch (how) {
          case "hang": {
            if (d.stallTimeoutMs === undefined) return Effect.never
            const beforeContent = sent <= 1
            const waited = sent === 1 ? latencyMs : 0
            const timeout = new Errors.TimeoutError({
              phase: beforeContent ? "first-token" : "stall",
              timeout: Duration.millis(d.stallTimeoutMs),
              ...where
            }, true)
            return Effect.delay(Effect.fail(timeout), Duration.millis(Math.max(0, d.stallTimeoutMs - waited)))
          }
          case "cut":
            return Effect.flatMap(gap, (ms) =>
              Effect.delay(
                Effect.fail(new Errors.ConnectionError({ ...where, detail: "the stream ended without its terminator" }, true)),
                Duration.millis(ms)
              ))
          case "error-event":
            return Effect.flatMap(gap, (ms) =>
              Effect.delay(
                Effect.fail(mapped(kind, { _tag: "kind", kind: "overloaded" }, { ...where, keyName: context.keyName })),
                Duration.millis(ms)
              ))
        }
      }

      const stream: Provider.Provider["stream"] = (request, context) =>
        Effect.flatMap(decideNow(context.keyName), ({ decision, now, u4 }): Effect.Effect<
          Provider.StreamAnswer,
          Errors.ResilienceError
        > => {
          if (decision._tag === "fail") {
            // Refused when it opens, as an HTTP provider's status would refuse it.
            return Effect.onExit(
              Effect.delay(Effect.fail(errorOf(decision.failure, context, decision.afterMs)), Duration.millis(decision.afterMs)),
              (exit) => finish(context, now, decision.down, exit)
            )
          }
          return Effect.map(next, (roll) => {
            const shape = FaultScript.streamShape(d.script, now, interChunk, roll)
            serial += 1
            const id = `sim-${d.name}-${serial}`
            const usage = usageFor(request, u4)
            const chunkAt = (i: number): Chat.ChatChunk =>
              i === 0
                ? { id, model: context.model, role: "assistant" }
                : i <= chunks
                ? { id, model: context.model, text: `${i === 1 ? "" : " "}word${i}` }
                : { id, model: context.model, finishReason: "stop", usage }
            const delayOf = (i: number): Effect.Effect<number> =>
              i === 0
                ? Effect.succeed(decision.latencyMs)
                : Effect.sync(() => FaultScript.sample(shape.interChunk, prng.number(), prng.number()))
            const chunked = Stream.unfoldEffect(0, (i): Effect.Effect<
              Option.Option<readonly [Chat.ChatChunk, number]>,
              Errors.ResilienceError
            > => {
              if (i > chunks + 1) return Effect.succeed(Option.none())
              if (shape.stallAfter !== undefined && i >= shape.stallAfter) {
                return stalled(shape.stallAs ?? "hang", i, decision.latencyMs, context, delayOf(i))
              }
              return Effect.flatMap(delayOf(i), (ms) =>
                Effect.delay(
                  Effect.sync(() => {
                    if (i === chunks + 1) bill(usage)
                    return Option.some([chunkAt(i), i + 1] as const)
                  }),
                  Duration.millis(ms)
                ))
            })
            return { chunks: Stream.ensuringWith(chunked, (exit) => finish(context, now, false, exit)), rateLimit: undefined }
          })
        })

      // Probes draw from a generator of their own: a run with probes makes every call's draws the same as one without.
      const probePrng = new PCGRandom(Hash.hash(`${seed}/${d.name}/probe`))
      const probe: NonNullable<Provider.Provider["probe"]> = (context) =>
        Effect.withFiberRuntime((fiber) => {
          const now = Context.get(fiber.currentDefaultServices, Clock.Clock).unsafeCurrentTimeMillis()
          const u = () => probePrng.number()
          const decision = FaultScript.decide(d, now, context.keyName, u(), u(), u(), u())
          stats.probes += 1
          // A model list is answered at once by a live provider; a dead one fails as it would fail a call.
          return decision._tag === "fail"
            ? Effect.delay(Effect.fail(errorOf(decision.failure, context, decision.afterMs)), Duration.millis(decision.afterMs))
            : Effect.sleep(Duration.millis(50))
        })

      return { kind, chat, stream, probe }
    }

    const byName = new Map(options.deployments.map((d) => [d.name, d]))

    const unknown = (target: Provider.Target): Provider.Provider => ({
      kind: target.kind,
      chat: () => Effect.fail(new Errors.ConnectionError({ deployment: target.name, detail: "no simulated deployment of that name" })),
      stream: () => Effect.fail(new Errors.ConnectionError({ deployment: target.name, detail: "no simulated deployment of that name" }))
    })

    return {
      forTarget: (target) => {
        const built = providers.get(target.name)
        if (built !== undefined) return built
        const d = byName.get(target.name)
        if (d === undefined) return unknown(target)
        const provider = build(d, target.kind)
        providers.set(target.name, provider)
        return provider
      },
      stats: Effect.sync(() => {
        const out: Record<string, DeploymentStats> = {}
        for (const [name, s] of counters) out[name] = { ...s, failures: { ...s.failures } }
        return out
      })
    }
  })

/**
 * The simulated deployments as the `Providers` service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Provider.Providers> => Layer.effect(Provider.Providers, make(options))
