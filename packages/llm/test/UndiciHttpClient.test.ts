import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import type * as Http from "node:http"
import * as HttpTransport from "../src/HttpTransport.js"
import { upstream } from "./support/loopback.js"

/** A deferred completed when the upstream sees its client close the connection before the answer ended. */
const closedEarly = (res: Http.ServerResponse, closed: Deferred.Deferred<void>) =>
  res.on("close", () => {
    if (!res.writableFinished) Deferred.unsafeDone(closed, Effect.void)
  })

const transport = HttpTransport.layer({ proxyFromEnvironment: false })

describe("HttpTransport's client (undici dispatch)", () => {
  it.scoped("a 4 MB answer read slowly as a stream arrives whole, in order (the socket pauses past 64 KB unread)", () =>
    Effect.gen(function*() {
      const size = 4 * 1024 * 1024
      const payload = Buffer.alloc(size)
      for (let i = 0; i < size; i++) payload[i] = i % 251
      const { url } = yield* upstream((_, __, res) => {
        res.writeHead(200, { "content-type": "application/octet-stream" })
        res.end(payload)
      })
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get(`${url}/big`))
      // Reading only after the whole answer could have arrived: it must have waited, paused, not been lost.
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 100)))
      const chunks = yield* Stream.runCollect(Stream.tap(response.stream, () => Effect.yieldNow()))
      const received = Buffer.concat(Chunk.toReadonlyArray(chunks))
      expect(received.length).toBe(size)
      expect(received.equals(payload)).toBe(true)
    }).pipe(Effect.provide(transport)))

  it.scoped("two readers of one answer at once get the same whole text", () =>
    Effect.gen(function*() {
      const half = Buffer.alloc(100_000, "a").toString()
      const { url } = yield* upstream((_, __, res) => {
        res.writeHead(200, { "content-type": "text/plain" })
        res.write(half)
        setTimeout(() => res.end(half.replaceAll("a", "b")), 20)
      })
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get(`${url}/twice`))
      const [first, second] = yield* Effect.all([response.text, response.text], { concurrency: 2 })
      expect(first.length).toBe(200_000)
      expect(second).toBe(first)
      expect(first.endsWith("b")).toBe(true)
    }).pipe(Effect.provide(transport)))

  it.scoped("text can be read twice, and json parses it; headers and status are the upstream's", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => {
        res.writeHead(201, { "content-type": "application/json", "x-upstream": "yes" })
        res.end(JSON.stringify({ hello: "world" }))
      })
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.post(`${url}/x`).pipe(HttpClientRequest.bodyText("{}")))
      expect(response.status).toBe(201)
      expect(response.headers["x-upstream"]).toBe("yes")
      expect(yield* response.text).toBe("{\"hello\":\"world\"}")
      expect(yield* response.text).toBe("{\"hello\":\"world\"}")
      expect(yield* response.json).toEqual({ hello: "world" })
    }).pipe(Effect.provide(transport)))

  it.scoped("interrupting a request before its answer aborts it: the upstream sees the connection close", () =>
    Effect.gen(function*() {
      const closed = yield* Deferred.make<void>()
      const arrived = yield* Deferred.make<void>()
      const { url } = yield* upstream((_, __, res) => {
        closedEarly(res, closed)
        Deferred.unsafeDone(arrived, Effect.void)
      })
      const client = yield* HttpClient.HttpClient
      const call = yield* Effect.fork(client.execute(HttpClientRequest.post(`${url}/hang`).pipe(HttpClientRequest.bodyText("{}"))))
      yield* Deferred.await(arrived)
      yield* Fiber.interrupt(call)
      yield* Deferred.await(closed).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "the upstream request was never aborted" }))
    }).pipe(Effect.provide(transport)))

  it.scoped("a reader that stops a stream early aborts the rest of the answer", () =>
    Effect.gen(function*() {
      const closed = yield* Deferred.make<void>()
      const { url } = yield* upstream((_, __, res) => {
        closedEarly(res, closed)
        res.writeHead(200, { "content-type": "text/event-stream" })
        res.write("data: first\n\n")
        // and never ends
      })
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get(`${url}/events`))
      const first = yield* Stream.runHead(response.stream)
      expect(first._tag).toBe("Some")
      yield* Deferred.await(closed).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "the rest of the stream was never aborted" }))
    }).pipe(Effect.provide(transport)))

  it.scoped("a connection cut in the middle of the body fails the read with a ResponseError, never a short text", () =>
    Effect.gen(function*() {
      const { url } = yield* upstream((_, __, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-length": "1000" })
        res.write("{\"partial\":")
        setTimeout(() => res.socket?.destroy(), 20)
      })
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(HttpClientRequest.get(`${url}/cut`))
      const error = yield* Effect.flip(response.text)
      expect(error._tag).toBe("ResponseError")
    }).pipe(Effect.provide(transport)))

  it.scoped("a refused connection is a RequestError (Transport)", () =>
    Effect.gen(function*() {
      const { server, url } = yield* upstream(() => undefined)
      yield* Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      const client = yield* HttpClient.HttpClient
      const error = yield* Effect.flip(client.execute(HttpClientRequest.get(`${url}/gone`)))
      expect(error._tag).toBe("RequestError")
      expect(error._tag === "RequestError" ? error.reason : undefined).toBe("Transport")
    }).pipe(Effect.provide(transport)))
})
