/**
 * Providers over HTTP: `OpenAiCompatible` (OpenAI, DeepSeek, OpenRouter,
 * relays, vLLM: whatever base URL speaks `/chat/completions`) and `Anthropic`
 * (`/v1/messages`), built on `@effect/platform`'s `HttpClient`.
 *
 * Every failure is a typed error of the taxonomy: an answer that is not a
 * 2xx goes through `ErrorMapping`'s table, a transport failure is a
 * `ConnectionError`, a body that does not decode is a
 * `MalformedResponseError`, a missing first byte is a `TimeoutError`. Streams
 * are decoded from SSE and guarded (`StreamGuard`): a first-token and a
 * stall timeout, error events inside a 200 stream, a cut without the
 * terminator; after the first content chunk any failure is a
 * `StreamInterruptedError`. Rate-limit headers come back with each answer so
 * the key pool can move traffic before a 429.
 *
 * @since 0.1.0
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Headers from "@effect/platform/Headers"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Errors, Timeout } from "@resilient-ai/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as AnthropicWire from "./AnthropicWire.js"
import type * as Chat from "./Chat.js"
import * as ErrorMapping from "./ErrorMapping.js"
import * as OpenAiWire from "./OpenAiWire.js"
import * as Provider from "./Provider.js"
import * as anthropicStream from "./internal/anthropicStream.js"
import { parseEventData, parseJson } from "./internal/json.js"
import * as Secrets from "./internal/secrets.js"
import * as RateLimitHeaders from "./RateLimitHeaders.js"
import * as Sse from "./Sse.js"
import * as StreamGuard from "./StreamGuard.js"
import * as Translate from "./Translate.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Until the response headers arrive (the model's thinking time included). Default 60 s. */
  readonly firstByteTimeout?: Duration.DurationInput
  /** A stream's first content chunk, from the response headers. Default 30 s. */
  readonly firstTokenTimeout?: Duration.DurationInput
  /** The longest gap between two stream chunks. Default 30 s. */
  readonly stallTimeout?: Duration.DurationInput
  /** Anthropic's required `max_tokens` when the request sets none. Default 4096. */
  readonly anthropicDefaultMaxTokens?: number
  /** Default `2023-06-01`. */
  readonly anthropicVersion?: string
  /** Extra headers on every request (a relay's own auth header, say). Never logged. */
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * The public APIs, used when a deployment sets no base URL.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBaseUrls: Readonly<Record<Provider.Kind, string>> = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com"
}

type CallError = Errors.ResilienceError

const originOf = (target: Provider.Target, context: Provider.CallContext): ErrorMapping.Origin => ({
  provider: target.kind,
  deployment: context.deployment,
  ...(context.keyName === undefined ? {} : { keyName: context.keyName })
})

const trimSlash = (url: string): string => url.replace(/\/+$/, "")

/** Sends `request`; a non-2xx answer fails with its mapped error. */
const send = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  origin: ErrorMapping.Origin,
  firstByte: Duration.Duration,
  phase: "attempt" | "first-token"
): Effect.Effect<HttpClientResponse.HttpClientResponse, CallError> =>
  client.execute(request).pipe(
    Effect.catchAll((e: HttpClientError.HttpClientError): Effect.Effect<never, CallError> =>
      // Our own dispatcher, closed with its layer's scope, is a bug in the program, not a provider failure to
      // retry and fall back from (`Effect.provide(ResilientClient.ResilientClient, layer)` closes it at once).
      ErrorMapping.findErrorCode(e._tag === "RequestError" ? e.cause : e).code === "UND_ERR_DESTROYED"
        ? Effect.dieMessage(
          "the HTTP transport is closed: the scope of the layer that made it has ended " +
            "(build the ResilientClient layer once, and keep it provided while calls are made)"
        )
        : Effect.fail(
          e._tag === "RequestError" ? ErrorMapping.fromRequestError(e, origin) : ErrorMapping.connectionError(e, origin)
        )
    ),
    Timeout.failWith(firstByte, () => new Errors.TimeoutError({ phase, timeout: firstByte, ...origin })),
    Effect.flatMap((response) =>
      response.status >= 200 && response.status < 300
        ? Effect.succeed(response)
        : Effect.flatMap(ErrorMapping.fromClientResponse(response, origin), (error) => Effect.fail<CallError>(error))
    )
  )

const readJson = (
  response: HttpClientResponse.HttpClientResponse,
  origin: ErrorMapping.Origin
): Effect.Effect<unknown, CallError> =>
  Effect.flatMap(
    Effect.mapError(response.text, (e): CallError =>
      e.reason === "Decode" ? ErrorMapping.malformed(e, { ...origin, status: response.status }) : ErrorMapping.connectionError(e, origin)),
    (text) =>
      Option.match(parseJson(text), {
        onNone: () => Effect.fail(ErrorMapping.malformed(`not JSON: ${text.slice(0, 120)}`, { ...origin, status: response.status })),
        onSome: Effect.succeed
      })
  )

/** A chat answer that was filtered away entirely is a typed error, not an empty answer. */
const rejectFiltered = (response: Chat.ChatResponse, origin: ErrorMapping.Origin): Effect.Effect<Chat.ChatResponse, CallError> =>
  response.finishReason === "content_filter" && response.text === "" && response.toolCalls.length === 0 &&
    (response.customToolCalls ?? []).length === 0
    ? Effect.fail(new Errors.ContentFilterError({ ...origin, detail: response.refusal ?? "the provider filtered the answer" }))
    : Effect.succeed(response)

/**
 * How a stream's bytes become chunks, in its guard's one stage: SSE events
 * (`Sse.makeByteDecoder`), their data parsed as JSON and read by the wire
 * format's `read` (made for each run of the stream). A chunk that cannot be
 * read is a `MalformedResponseError`; the guard makes it a
 * `StreamInterruptedError` once content reached the caller.
 */
const sseFraming = (
  read: () => (data: unknown, out: Array<Chat.ChatChunk>) => CallError | undefined,
  origin: ErrorMapping.Origin
) =>
(): StreamGuard.Framing<Uint8Array, Sse.Event, Chat.ChatChunk, CallError> => {
  const bytes = Sse.makeByteDecoder()
  const readData = read()
  return {
    frame: (input) => {
      const events: Array<Sse.Event> = []
      for (const piece of input) for (const event of bytes.feed(piece)) events.push(event)
      return events
    },
    flush: bytes.end,
    emit: (event, out) => {
      const json = parseEventData(event.data)
      return Option.isNone(json)
        ? ErrorMapping.malformed(`event data is not JSON: ${event.data.slice(0, 120)}`, origin)
        : readData(json.value, out)
    }
  }
}

/**
 * What differs between the wire formats; the call and the stream around it
 * are the same for both (`fromWire`).
 */
interface WireFormat<W> {
  readonly kind: Provider.Kind
  /** The request with its headers and the key, around a JSON body. */
  readonly build: (body: unknown, context: Provider.CallContext) => HttpClientRequest.HttpClientRequest
  /** The model list, with the same headers and key: a health probe's cheap question. */
  readonly models: (context: Provider.CallContext) => HttpClientRequest.HttpClientRequest
  readonly encode: (request: Chat.ChatRequest, stream: boolean) => Effect.Effect<unknown, CallError>
  readonly decodeResponse: (json: unknown) => Effect.Effect<W, ParseResult.ParseError>
  readonly fromResponse: (wire: W) => Effect.Effect<Chat.ChatResponse, CallError>
  /**
   * A stream's reader: an event's data (parsed JSON) → the chunks it means, appended to `out`, or the
   * error it is. One per run of the stream (Anthropic's remembers the message and its tool calls).
   */
  readonly streamReader: (origin: ErrorMapping.Origin) => () => (data: unknown, out: Array<Chat.ChatChunk>) => CallError | undefined
}

const fromWire = <W>(
  client: HttpClient.HttpClient,
  target: Provider.Target,
  options: Options,
  wire: WireFormat<W>
): Provider.Provider => {
  const firstByte = Duration.decode(options.firstByteTimeout ?? "60 seconds")

  const chat = (request: Chat.ChatRequest, context: Provider.CallContext): Effect.Effect<Provider.ProviderAnswer, CallError> => {
    const origin = originOf(target, context)
    return Effect.gen(function*() {
      const body = yield* wire.encode({ ...request, model: context.model }, false)
      const response = yield* send(client, wire.build(body, context), origin, firstByte, "attempt")
      const json = yield* readJson(response, origin)
      const decoded = yield* Effect.mapError(
        wire.decodeResponse(json),
        (e) => ErrorMapping.malformed(e, { ...origin, status: response.status })
      )
      const chat = yield* Effect.flatMap(wire.fromResponse(decoded), (r) => rejectFiltered(r, origin))
      const now = yield* Clock.currentTimeMillis
      return { response: chat, rateLimit: RateLimitHeaders.parse(response.headers, now) }
    })
  }

  const stream = (request: Chat.ChatRequest, context: Provider.CallContext): Effect.Effect<Provider.StreamAnswer, CallError> => {
    const origin = originOf(target, context)
    return Effect.gen(function*() {
      const body = yield* wire.encode({ ...request, model: context.model }, true)
      const sse = HttpClientRequest.setHeader(wire.build(body, context), "accept", "text/event-stream")
      const response = yield* send(client, sse, origin, firstByte, "first-token")
      yield* expectEventStream(response, origin)
      const now = yield* Clock.currentTimeMillis
      const chunks = response.stream.pipe(
        Stream.mapError((e): CallError => ErrorMapping.connectionError(e, origin)),
        StreamGuard.guardFramed(
          StreamGuard.protocolOf(wire.kind),
          sseFraming(wire.streamReader(origin), origin),
          guardOptions(options, origin)
        )
      )
      return { chunks, rateLimit: RateLimitHeaders.parse(response.headers, now) }
    })
  }

  const probe = (context: Provider.CallContext): Effect.Effect<void, CallError> =>
    Effect.flatMap(
      send(client, wire.models(context), originOf(target, context), firstByte, "attempt"),
      // The list itself is not needed; reading it to its end frees the connection.
      (response) => Effect.ignore(response.text)
    )

  return { kind: wire.kind, chat, stream, probe }
}

/**
 * A 2xx answer to a stream request that is not an event stream (a relay
 * that answered JSON, say) is a `MalformedResponseError` that says what
 * arrived, read before any chunk: never a stream "cut without its
 * terminator" to be retried.
 */
const expectEventStream = (
  response: HttpClientResponse.HttpClientResponse,
  origin: ErrorMapping.Origin
): Effect.Effect<void, CallError> => {
  const type = response.headers["content-type"] ?? ""
  if (type.toLowerCase().startsWith("text/event-stream")) return Effect.void
  return Effect.flatMap(
    Effect.orElseSucceed(response.text, () => ""),
    (text) =>
      Effect.fail(
        new Errors.MalformedResponseError({
          ...origin,
          status: response.status,
          detail: `expected an event stream (text/event-stream), got ${type === "" ? "no content type" : type}` +
            (text === "" ? "" : `: ${ErrorMapping.sanitize(text.slice(0, 200))}`)
        })
      )
  )
}

const guardOptions = (options: Options, origin: ErrorMapping.Origin): StreamGuard.GuardOptions => ({
  firstTokenTimeout: options.firstTokenTimeout ?? "30 seconds",
  stallTimeout: options.stallTimeout ?? "30 seconds",
  origin
})

/** A deployment's headers, their values masked in provider texts from now on (a relay's header may be its key). */
const registered = (headers: Readonly<Record<string, string>> | undefined): Readonly<Record<string, string>> => {
  for (const value of Object.values(headers ?? {})) Secrets.register(value)
  return headers ?? {}
}

/**
 * The client, with the names of the deployment's own headers redacted in
 * its traces (`http.request.header.*` span attributes), as `authorization`
 * and `x-api-key` already are: a relay's header may be its key.
 */
const redacting = (
  client: HttpClient.HttpClient,
  headers: Readonly<Record<string, string>>
): HttpClient.HttpClient => {
  const names = Object.keys(headers).map((name) => name.toLowerCase())
  if (names.length === 0) return client
  return HttpClient.transform(client, (response) =>
    Effect.locallyWith(response, Headers.currentRedactedNames, (current) => [...current, ...names]))
}

const jsonPost = (url: string, headers: Readonly<Record<string, string>>, body: unknown) =>
  HttpClientRequest.post(url).pipe(
    HttpClientRequest.setHeaders(headers),
    HttpClientRequest.bodyText(JSON.stringify(body), "application/json")
  )

/**
 * A provider for an OpenAI-compatible deployment.
 *
 * @since 0.1.0
 * @category constructors
 */
export const openAiCompatible = (
  client: HttpClient.HttpClient,
  target: Provider.Target,
  options: Options = {}
): Provider.Provider => {
  const base = trimSlash(target.baseUrl ?? defaultBaseUrls.openai)
  const headers = { ...options.headers, ...registered(target.headers) }
  const authorized = (request: HttpClientRequest.HttpClientRequest, context: Provider.CallContext) => {
    if (context.key === undefined) return request
    // A key given in code (not from the config) is masked in provider texts too.
    Secrets.registerKey(context.key)
    return HttpClientRequest.bearerToken(request, context.key)
  }
  return fromWire(redacting(client, headers), target, options, {
    kind: "openai",
    build: (body, context) => authorized(jsonPost(`${base}/chat/completions`, headers, body), context),
    models: (context) => authorized(HttpClientRequest.setHeaders(HttpClientRequest.get(`${base}/models`), headers), context),
    encode: (request, stream) =>
      Effect.map(Translate.toOpenAiRequest({ ...request, stream }), (body) =>
        // A streamed answer reports its usage in a last chunk only when asked to.
        stream ? { ...body, stream_options: { ...(body.stream_options ?? {}), include_usage: true } } : body),
    decodeResponse: OpenAiWire.decodeResponse,
    fromResponse: Translate.fromOpenAiResponse,
    streamReader: (origin) => () => (data, out) => {
      const chunk = OpenAiWire.decodeChunkEither(data)
      if (Either.isLeft(chunk)) return ErrorMapping.malformed(chunk.left, origin)
      out.push(Translate.fromOpenAiChunk(chunk.right))
      return undefined
    }
  })
}

/**
 * A provider for an Anthropic Messages deployment.
 *
 * @since 0.1.0
 * @category constructors
 */
export const anthropic = (
  client: HttpClient.HttpClient,
  target: Provider.Target,
  options: Options = {}
): Provider.Provider => {
  const base = trimSlash(target.baseUrl ?? defaultBaseUrls.anthropic)
  const translateOptions = { defaultMaxTokens: options.anthropicDefaultMaxTokens ?? Translate.defaultAnthropicMaxTokens }
  const headers = { "anthropic-version": options.anthropicVersion ?? "2023-06-01", ...options.headers, ...registered(target.headers) }
  const authorized = (request: HttpClientRequest.HttpClientRequest, context: Provider.CallContext) => {
    if (context.key === undefined) return request
    Secrets.registerKey(context.key)
    return HttpClientRequest.setHeader(request, "x-api-key", Redacted.value(context.key))
  }
  return fromWire(redacting(client, { ...options.headers, ...target.headers }), target, options, {
    kind: "anthropic",
    build: (body, context) => authorized(jsonPost(`${base}/v1/messages`, headers, body), context),
    models: (context) => authorized(HttpClientRequest.setHeaders(HttpClientRequest.get(`${base}/v1/models`), headers), context),
    encode: (request, stream) => Translate.toAnthropicRequest({ ...request, stream }, translateOptions),
    decodeResponse: AnthropicWire.decodeResponse,
    fromResponse: (message) => Effect.succeed(Translate.fromAnthropicResponse(message)),
    streamReader: (origin) => () => {
      let state = anthropicStream.initialStreamState
      return (data, out) => {
        const event = AnthropicWire.decodeStreamEventEither(data)
        if (Either.isLeft(event)) return ErrorMapping.malformed(event.left, origin)
        const step = anthropicStream.stepStreamEvent(state, event.right)
        if (Errors.isResilienceError(step)) return step
        state = step[0]
        for (const chunk of step[1]) out.push(chunk)
        return undefined
      }
    }
  })
}

/**
 * The `Providers` service over HTTP: a provider per deployment, by its kind
 * and base URL.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Provider.Providers, never, HttpClient.HttpClient> =>
  Layer.effect(
    Provider.Providers,
    Effect.map(HttpClient.HttpClient, (traced) => {
      // Trace headers go only to deployments that opt in (`Target.propagateTrace`).
      const untraced = HttpClient.withTracerPropagation(traced, false)
      const cache = new Map<string, Provider.Provider>()
      return {
        forTarget: (target) => {
          const propagate = target.propagateTrace === true
          const key = `${target.kind} ${target.name} ${target.baseUrl ?? ""} ${propagate} ${JSON.stringify(target.headers ?? {})}`
          const existing = cache.get(key)
          if (existing !== undefined) return existing
          const client = propagate ? traced : untraced
          const made = target.kind === "openai"
            ? openAiCompatible(client, target, options)
            : anthropic(client, target, options)
          cache.set(key, made)
          return made
        }
      }
    })
  )
