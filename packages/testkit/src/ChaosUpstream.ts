/**
 * A chaos upstream: a real HTTP server on 127.0.0.1 that speaks the OpenAI
 * chat completions and Anthropic Messages wire formats (streaming too) and
 * answers as a {@link FaultScript} says, in real time. For end-to-end tests
 * of the real HTTP clients, the resilient client and the gateway.
 *
 * ```ts
 * const chaos = yield* ChaosUpstream.make({
 *   deployments: [
 *     { name: "gpt", latency: FaultScript.fixed(20), script: [], keys: { "k1": "sk-one" } },
 *     { name: "claude", latency: FaultScript.fixed(20), script: [] }
 *   ]
 * })
 * chaos.openAiBaseUrl("gpt")        // http://127.0.0.1:PORT/gpt/v1
 * chaos.anthropicBaseUrl("claude")  // http://127.0.0.1:PORT/claude
 * yield* chaos.setScript("gpt", [{ _tag: "Outage", from: 0, to: 500 }], { from: "now" })
 * ```
 *
 * **Routes.** `POST /<deployment>/v1/chat/completions` (OpenAI) and
 * `POST /<deployment>/v1/messages` (Anthropic). Every deployment answers
 * on both; the scripts are per deployment. So an OpenAI client's base URL is
 * `openAiBaseUrl(d)` (it appends `/chat/completions`) and an Anthropic
 * client's `anthropicBaseUrl(d)` (it appends `/v1/messages`).
 *
 * **Requests** are decoded with `OpenAiWire` / `AnthropicWire`; a body that
 * is not JSON or does not decode gets a 400 in the route's error format, an
 * Anthropic request without `anthropic-version` too. An unknown deployment
 * is a 404.
 *
 * **Keys.** A deployment with `keys` (name → secret) checks the
 * `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic) header: an
 * unknown or missing secret is a 401, a known one names the key, so
 * `KeyRevoked` and `QuotaExhausted` faults hit that key only. Without `keys`
 * every call is accepted and has no key name.
 *
 * **The script** is evaluated with {@link FaultScript.decide} and
 * {@link FaultScript.streamShape}, exactly as the simulated providers do, at
 * the milliseconds elapsed since `make` on effect's `Clock` (run it with the
 * live clock: under `TestClock` the script's time and every latency stand
 * still), with a `Random` seeded per deployment (`${seed}/${name}`). Each
 * decision is rendered as the provider really answers:
 *
 * | decision | OpenAI route | Anthropic route |
 * | --- | --- | --- |
 * | answer | 200 `chat.completion` after the latency | 200 `message` |
 * | `rate-limit` | 429 `rate_limit_exceeded`, `retry-after`, `retry-after-ms`, `x-ratelimit-*` | 429 `rate_limit_error`, `retry-after`, `anthropic-ratelimit-requests-*` |
 * | `auth` | 401 `invalid_api_key` | 401 `authentication_error` |
 * | `quota` | 429 `insufficient_quota` | 402 `billing_error`; 400 "usage limits … regain access on" with a `resetAt` |
 * | `unavailable` / `overloaded` / `gateway-timeout` | 503 / 529 / 504, `server_error` | 503 `api_error` / 529 `overloaded_error` / 504 `timeout_error` |
 * | `internal-error` | 500 `server_error` | 500 `api_error` |
 * | `bad-gateway` | 502, a proxy's HTML page | same |
 * | `malformed` | 200 with a JSON body cut in the middle (a stream: an event whose data is not JSON) | same |
 * | `connection` | the socket is destroyed after the request is read | same |
 * | `hang` | nothing for `hangMs`, then the socket is destroyed | same |
 *
 * Errors come after the script's error latency (`afterMs`). Every scripted
 * fault carries an `x-chaos-fault` header naming it.
 *
 * **Streams** (`"stream": true`): OpenAI `chat.completion.chunk` events and
 * `data: [DONE]` (the usage chunk only with `stream_options.include_usage`);
 * Anthropic `message_start`, `content_block_start`, `ping`,
 * `content_block_delta`s, `content_block_stop`, `message_delta`,
 * `message_stop`. The headers go out at once, the first event after the
 * latency, the next ones `interChunk` apart (`SlowStream` changes it). A
 * `StreamStall` stops the stream after `afterChunks` events (the opening
 * event counts as one, as in the simulated providers); the deployment's
 * `stallAs` says how: `"hang"` (the default: the connection stays open,
 * silent, until the client gives up), `"cut"` (the connection is closed
 * mid-body) or `"error-event"` (an error event: Anthropic `event: error`
 * with `overloaded_error`, an OpenAI `{"error":{...}}` data chunk, then the
 * stream ends).
 *
 * **Why `@effect/platform`'s `HttpServer`/`HttpRouter` on `NodeHttpServer`
 * is enough** for socket-level faults: a handler reaches the Node socket
 * through `NodeHttpServerRequest.toIncomingMessage`, and a closed socket
 * interrupts the handler's fiber, so a dropped or cut connection is a
 * `socket.destroy()` / `socket.end()` followed by waiting to be interrupted.
 * The one addition is a finalizer that closes every connection before the
 * server closes (a hanging or stalled answer would otherwise keep
 * `server.close` waiting).
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as AnthropicWire from "@resilient-ai/llm/AnthropicWire"
import type * as Chat from "@resilient-ai/llm/Chat"
import * as OpenAiWire from "@resilient-ai/llm/OpenAiWire"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import * as FaultScript from "./FaultScript.js"
import * as wire from "./internal/chaosWire.js"
import type * as SimulatedProviders from "./SimulatedProviders.js"

/**
 * How a `StreamStall` ends a stream on the wire.
 *
 * @since 0.1.0
 * @category options
 */
export type StallAs = FaultScript.StallKind

/**
 * One deployment of the chaos upstream: a simulated deployment (latency,
 * script, stream shape, output tokens) plus what only a real server needs.
 *
 * @since 0.1.0
 * @category options
 */
export interface Deployment extends SimulatedProviders.Deployment {
  /** Key name → secret. When set, calls must present one of the secrets. */
  readonly keys?: Readonly<Record<string, string>>
  /** How a `StreamStall` without its own `as` shows. Default `"hang"`. */
  readonly stallAs?: StallAs
}

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  readonly deployments: ReadonlyArray<Deployment>
  /** Seeds every deployment's `Random`. Default 0. */
  readonly seed?: number | string
  /** Default 0: a free port. */
  readonly port?: number
  /** Loopback only. Default `"127.0.0.1"`. */
  readonly host?: "127.0.0.1"
  /** Keep this many call records for {@link Service.log}. Default 10 000. */
  readonly logSize?: number
}

/**
 * How a call ended, from the server's side.
 *
 * - `"success"`: a whole answer (a stream to its terminator);
 * - the script's failures: `"rate-limit"`, `"auth"`, `"quota"` and the
 *   {@link FaultScript.FailureKind}s;
 * - `"stream-stall"`, `"stream-cut"`, `"stream-error"`: a `StreamStall`;
 * - `"bad-request"` (the body did not decode), `"unknown-key"`;
 * - `"interrupted"`: the client went away first.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome =
  | "success"
  | "rate-limit"
  | "auth"
  | "quota"
  | FaultScript.FailureKind
  | "stream-stall"
  | "stream-cut"
  | "stream-error"
  | "bad-request"
  | "unknown-key"
  | "interrupted"

/**
 * One finished call.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallRecord {
  readonly deployment: string
  readonly wire: "openai" | "anthropic"
  readonly stream: boolean
  readonly keyName: string | undefined
  /** Milliseconds since the upstream started. */
  readonly startedAt: number
  readonly endedAt: number
  readonly outcome: Outcome
  /** The script had the deployment or the key down when the call came. */
  readonly down: boolean
}

/**
 * Counters of one deployment.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeploymentStats {
  readonly calls: number
  readonly streams: number
  /** Calls that came while the script had the deployment or the key down. */
  readonly callsWhileDown: number
  readonly successes: number
  /** Calls by outcome (successes and interruptions included). */
  readonly outcomes: Readonly<Partial<Record<Outcome, number>>>
  /** Calls by key name (calls without a known key are not counted here). */
  readonly byKey: Readonly<Record<string, number>>
  /** Tokens of the answers delivered whole. */
  readonly inputTokens: number
  readonly outputTokens: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string
  readonly port: number
  /** The base URL an OpenAI client takes for `deployment` (`…/<deployment>/v1`). */
  readonly openAiBaseUrl: (deployment: string) => string
  /** The base URL an Anthropic client takes for `deployment` (`…/<deployment>`). */
  readonly anthropicBaseUrl: (deployment: string) => string
  /**
   * Replaces a deployment's script; calls that arrive after it see the new
   * one. Times are on the upstream's clock (since `make`), or since this
   * call with `from: "now"`. Fails for an unknown deployment.
   */
  readonly setScript: (
    deployment: string,
    script: FaultScript.Script,
    options?: { readonly from?: "start" | "now" }
  ) => Effect.Effect<void, Cause.NoSuchElementException>
  /** Milliseconds since the upstream started (the script's time). */
  readonly elapsed: Effect.Effect<number>
  /** A snapshot of the counters, by deployment. */
  readonly calls: Effect.Effect<Readonly<Record<string, DeploymentStats>>>
  /** The last finished calls, oldest first. */
  readonly log: Effect.Effect<ReadonlyArray<CallRecord>>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ChaosUpstream extends Context.Tag("@resilient-ai/testkit/ChaosUpstream")<ChaosUpstream, Service>() {}

interface MutableStats {
  calls: number
  streams: number
  callsWhileDown: number
  successes: number
  outcomes: Partial<Record<Outcome, number>>
  byKey: Record<string, number>
  inputTokens: number
  outputTokens: number
}

interface State {
  readonly deployment: Deployment
  script: FaultScript.Script
  readonly next: Effect.Effect<number>
  readonly stats: MutableStats
}

const defaultOutput = { min: 100, max: 400 }
const defaultInterChunk = FaultScript.uniform(20, 60)

const bearer = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  const m = /^Bearer\s+(.+)$/i.exec(header.trim())
  return m?.[1]
}

const keyNameOf = (keys: Readonly<Record<string, string>>, secret: string | undefined): string | undefined => {
  if (secret === undefined) return undefined
  for (const [name, value] of Object.entries(keys)) if (value === secret) return name
  return undefined
}

const respond = (r: wire.Rendered): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(r.body, { status: r.status, headers: r.headers })

const firstIssue = (error: ParseResult.ParseError): string => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  return issue === undefined ? "invalid request body" : `${issue.path.join(".") || "body"}: ${issue.message}`
}

/** The parts of a decoded request the upstream uses. */
interface Parsed {
  readonly model: string
  readonly stream: boolean
  readonly includeUsage: boolean
}

const parseBody = (route: wire.Wire, text: string): Effect.Effect<Parsed, string> =>
  Option.match(Option.liftThrowable((s: string): unknown => JSON.parse(s))(text), {
    onNone: () =>
      Effect.fail(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"
      ),
    onSome: (json) =>
      route === "openai"
        ? Effect.mapBoth(OpenAiWire.decodeRequest(json), {
          onFailure: firstIssue,
          onSuccess: (r): Parsed => ({
            model: r.model,
            stream: r.stream === true,
            includeUsage: r.stream_options?.include_usage === true
          })
        })
        : Effect.mapBoth(AnthropicWire.decodeRequest(json), {
          onFailure: firstIssue,
          onSuccess: (r): Parsed => ({ model: r.model, stream: r.stream === true, includeUsage: true })
        })
  })

/**
 * Starts the chaos upstream on loopback; it stops with the scope (open
 * connections are closed).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const seed = options.seed ?? 0
    const logSize = options.logSize ?? 10_000
    const startEpochMs = yield* Clock.currentTimeMillis
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - startEpochMs)
    const states = new Map<string, State>()
    for (const d of options.deployments) {
      states.set(d.name, {
        deployment: d,
        script: d.script,
        next: Random.make(`${seed}/${d.name}`).next,
        stats: {
          calls: 0,
          streams: 0,
          callsWhileDown: 0,
          successes: 0,
          outcomes: {},
          byKey: {},
          inputTokens: 0,
          outputTokens: 0
        }
      })
    }
    const log: Array<CallRecord> = []
    let serial = 0

    /** Opens the record of one call; the first `settle` wins (later ones are ignored). */
    const open = (
      state: State,
      route: wire.Wire,
      stream: boolean,
      keyName: string | undefined,
      startedAt: number
    ) => {
      const stats = state.stats
      stats.calls += 1
      if (stream) stats.streams += 1
      if (keyName !== undefined) stats.byKey[keyName] = (stats.byKey[keyName] ?? 0) + 1
      let down = false
      let settled = false
      return {
        markDown: () => {
          down = true
          stats.callsWhileDown += 1
        },
        settle: (outcome: Outcome, usage?: Chat.Usage): Effect.Effect<void> =>
          Effect.flatMap(elapsed, (endedAt) =>
            Effect.sync(() => {
              if (settled) return
              settled = true
              stats.outcomes[outcome] = (stats.outcomes[outcome] ?? 0) + 1
              if (outcome === "success") stats.successes += 1
              if (usage !== undefined) {
                stats.inputTokens += usage.inputTokens
                stats.outputTokens += usage.outputTokens
              }
              log.push({ deployment: state.deployment.name, wire: route, stream, keyName, startedAt, endedAt, outcome, down })
              if (log.length > logSize) log.splice(0, log.length - logSize)
            }))
      }
    }

    const handler = (route: wire.Wire) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const params = yield* HttpRouter.params
        serial += 1
        const n = serial
        const requestId = `req_chaos_${n}`
        const name = params["deployment"] ?? ""
        const state = states.get(name)
        if (state === undefined) {
          return respond(wire.clientError(route, 404, `The deployment \`${name}\` does not exist.`, requestId))
        }
        const d = state.deployment
        const socket = NodeHttpServerRequest.toIncomingMessage(request).socket
        const startedAt = yield* elapsed
        const text = yield* Effect.orElseSucceed(request.text, () => "")
        const parsed = yield* Effect.either(parseBody(route, text))
        const stream = parsed._tag === "Right" && parsed.right.stream

        // Keys first (a real API authenticates before it reads the body).
        const secret = route === "openai" ? bearer(request.headers["authorization"]) : request.headers["x-api-key"]
        const keyName = d.keys === undefined ? undefined : keyNameOf(d.keys, secret)
        const call = open(state, route, stream, keyName, startedAt)
        if (d.keys !== undefined && keyName === undefined) {
          yield* call.settle("unknown-key")
          return respond(wire.failure(route, { _tag: "auth" }, { nowEpochMs: startEpochMs + startedAt, startEpochMs }, requestId))
        }
        if (route === "anthropic" && request.headers["anthropic-version"] === undefined) {
          yield* call.settle("bad-request")
          return respond(wire.clientError(route, 400, "anthropic-version: header is required", requestId))
        }
        if (parsed._tag === "Left") {
          yield* call.settle("bad-request")
          return respond(wire.clientError(route, 400, parsed.left, requestId))
        }
        const body = parsed.right

        // The script decides, as in the simulated providers.
        const [u0, u1, u2, u3, u4] = yield* Effect.all([state.next, state.next, state.next, state.next, state.next])
        const decision = FaultScript.decide({ ...d, script: state.script }, startedAt, keyName, u0, u1, u2, u3)
        if (decision._tag === "fail" && decision.down) call.markDown()

        const work: Effect.Effect<HttpServerResponse.HttpServerResponse> = Effect.gen(function*() {
          if (decision._tag === "fail") {
            yield* Effect.sleep(decision.afterMs)
            const failure = decision.failure
            if (failure._tag === "kind" && (failure.kind === "connection" || failure.kind === "hang")) {
              yield* call.settle(failure.kind)
              socket.destroy()
              return yield* Effect.never
            }
            if (failure._tag === "kind" && failure.kind === "malformed") {
              yield* call.settle("malformed")
              return stream
                ? HttpServerResponse.stream(Stream.make(wire.streamMalformed(route)), {
                  headers: wire.streamHeaders(route, requestId),
                  contentType: "text/event-stream"
                })
                : respond(wire.malformed(route, requestId))
            }
            yield* call.settle(failure._tag === "kind" ? failure.kind : failure._tag)
            const now = yield* Clock.currentTimeMillis
            return respond(wire.failure(route, failure, { nowEpochMs: now, startEpochMs }, requestId))
          }

          const output = d.outputTokens ?? defaultOutput
          const usage: Chat.Usage = {
            inputTokens: Math.max(1, Math.ceil(text.length / 4)),
            outputTokens: Math.floor(output.min + u4 * (output.max - output.min + 1))
          }
          const id = route === "openai" ? `chatcmpl-chaos-${n}` : `msg_chaos_${n}`

          if (!stream) {
            yield* Effect.sleep(decision.latencyMs)
            const rendered = yield* wire.answer(route, {
              id,
              model: body.model,
              text: `answer from ${d.name}`,
              toolCalls: [],
              finishReason: "stop",
              usage
            }, requestId)
            yield* call.settle("success", usage)
            return respond(rendered)
          }

          const roll = yield* state.next
          const shape = FaultScript.streamShape(state.script, startedAt, d.stream?.interChunk ?? defaultInterChunk, roll)
          const chunks = d.stream?.chunks ?? 16
          const created = Math.floor((yield* Clock.currentTimeMillis) / 1000)
          const plan: wire.StreamPlan = { id, model: body.model, chunks, usage, includeUsage: body.includeUsage, created }
          const total = chunks + 2
          const sent = shape.stallAfter === undefined ? total : Math.min(shape.stallAfter, total)
          const delayOf = (i: number): Effect.Effect<number> =>
            i === 0
              ? Effect.succeed(decision.latencyMs)
              : Effect.map(Effect.all([state.next, state.next]), ([a, b]) => FaultScript.sample(shape.interChunk, a, b))
          const steps = Stream.mapEffect(
            Stream.fromIterable(Array.from({ length: sent }, (_, i) => i)),
            (i) => Effect.flatMap(delayOf(i), (ms) => Effect.zipRight(Effect.sleep(ms), wire.streamStep(route, plan, i)))
          )
          const stallEnding = (how: StallAs): Stream.Stream<Uint8Array> => {
            switch (how) {
              case "hang":
                return Stream.fromEffect(Effect.zipRight(call.settle("stream-stall"), Effect.never))
              case "cut":
                // `end` flushes what was written, then closes: the body stops mid-stream.
                return Stream.fromEffect(
                  Effect.zipRight(call.settle("stream-cut"), Effect.zipRight(Effect.sync(() => socket.end()), Effect.never))
                )
              case "error-event":
                return Stream.concat(
                  Stream.make(wire.streamError(route)),
                  Stream.drain(Stream.fromEffect(call.settle("stream-error")))
                )
            }
          }
          const ending: Stream.Stream<Uint8Array> = sent === total
            ? Stream.drain(Stream.fromEffect(call.settle("success", usage)))
            : stallEnding(shape.stallAs ?? d.stallAs ?? "hang")
          return HttpServerResponse.stream(
            Stream.ensuring(Stream.concat(steps, ending), call.settle("interrupted")),
            { headers: wire.streamHeaders(route, requestId), contentType: "text/event-stream" }
          )
        })
        return yield* Effect.onInterrupt(work, () => call.settle("interrupted"))
      })

    const app = HttpRouter.empty.pipe(
      HttpRouter.post("/:deployment/v1/chat/completions", handler("openai")),
      HttpRouter.post("/:deployment/v1/messages", handler("anthropic")),
      Effect.catchTag("RouteNotFound", (e) =>
        Effect.succeed(respond(wire.clientError("openai", 404, `Unknown route ${e.request.method} ${e.request.url}`, "req_chaos_0"))))
    )

    const nodeServer = Http.createServer()
    // A backlog above Node's 511: a burst of new connections (a load test) must not overflow the accept queue.
    const server = yield* NodeHttpServer.make(() => nodeServer, { port: options.port ?? 0, host: options.host ?? "127.0.0.1", backlog: 4096 })
    // Runs before the server's own close: a hanging or stalled answer would keep `close` waiting.
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
    yield* server.serve(app)

    const address = server.address
    const port = address._tag === "TcpAddress" ? address.port : 0
    const url = `http://127.0.0.1:${port}`

    const snapshot = Effect.sync(() => {
      const out: Record<string, DeploymentStats> = {}
      for (const [name, s] of states) {
        out[name] = { ...s.stats, outcomes: { ...s.stats.outcomes }, byKey: { ...s.stats.byKey } }
      }
      return out
    })

    const service: Service = {
      url,
      port,
      openAiBaseUrl: (deployment) => `${url}/${encodeURIComponent(deployment)}/v1`,
      anthropicBaseUrl: (deployment) => `${url}/${encodeURIComponent(deployment)}`,
      setScript: (deployment, script, setOptions) =>
        Effect.flatMap(elapsed, (now) => {
          const state = states.get(deployment)
          if (state === undefined) return Effect.fail(new Cause.NoSuchElementException(`no deployment "${deployment}"`))
          return Effect.sync(() => {
            state.script = setOptions?.from === "now" ? FaultScript.shift(script, now) : script
          })
        }),
      elapsed,
      calls: snapshot,
      log: Effect.sync(() => log.slice())
    }
    return service
  })

/**
 * The chaos upstream as a service, for tests and the gateway's harness.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<ChaosUpstream, HttpServerError.ServeError> =>
  Layer.scoped(ChaosUpstream, make(options))
