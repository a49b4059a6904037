import { describe, expect, it } from "@effect/vitest"
import { FaultScript } from "@resilient-ai/testkit"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Fiber from "effect/Fiber"
import * as Http from "node:http"
import * as Net from "node:net"
import { get, harness, post } from "./support/harness.js"

const ok = JSON.stringify({ model: "primary", messages: [{ role: "user", content: "hi" }] })

/** The gateway still answers a good request. */
const stillServes = (url: string) =>
  Effect.map(post(`${url}/v1/chat/completions`, ok), (r) => {
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ object: "chat.completion" })
  })

/** Waits (real I/O, bounded to 5 s) until `check` passes. */
const eventually = <A>(read: Effect.Effect<A>, check: (a: A) => boolean) =>
  read.pipe(
    Effect.filterOrFail(check, () => "not yet"),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds"))),
    Effect.orDie
  )

/** A body sent chunked (no content-length), as a streaming client sends it. */
const postChunked = (url: string, parts: ReadonlyArray<string>) =>
  Effect.async<{ readonly status: number; readonly text: string }>((resume) => {
    const request = Http.request(url, { method: "POST", headers: { "content-type": "application/json" } }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (c: string) => (text += c))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, text })))
    })
    request.on("error", () => resume(Effect.succeed({ status: 0, text: "" })))
    for (const part of parts) request.write(part)
    request.end()
  })

describe("bad inputs: each gets its status and OpenAI error body, and the gateway keeps serving", () => {
  const rows: ReadonlyArray<readonly [string, string, number, Record<string, unknown>]> = [
    ["malformed JSON", "{\"model\": \"primary\", \"messages\": [", 400, { type: "invalid_request_error", param: null }],
    ["an empty body", "", 400, { type: "invalid_request_error" }],
    ["a JSON array", "[1,2]", 400, { type: "invalid_request_error", code: "invalid_value" }],
    ["messages of the wrong type", JSON.stringify({ model: "primary", messages: "hi" }), 400, { param: "messages" }],
    ["temperature of the wrong type", JSON.stringify({ model: "primary", messages: [], temperature: "hot" }), 400, {
      param: "temperature"
    }],
    ["a message with an unknown role", JSON.stringify({ model: "primary", messages: [{ role: "robot", content: "x" }] }), 400, {
      param: "messages[0].role"
    }],
    ["no model", JSON.stringify({ messages: [{ role: "user", content: "hi" }] }), 400, { param: "model" }],
    ["an unknown model", JSON.stringify({ model: "gpt-9", messages: [{ role: "user", content: "hi" }] }), 404, {
      code: "model_not_found",
      param: "model"
    }]
  ]
  for (const [label, body, status, error] of rows) {
    it.live(`${label} → ${status}`, () =>
      Effect.scoped(Effect.gen(function*() {
        const { gateway, chaos } = yield* harness()
        const response = yield* post(`${gateway.url}/v1/chat/completions`, body)
        expect(response.status).toBe(status)
        expect(response.json).toMatchObject({ error: error })
        expect(typeof (response.json as { error: { message: unknown } }).error.message).toBe("string")
        // Refused before any upstream call.
        expect((yield* chaos.calls)["primary"]?.calls).toBe(0)
        yield* stillServes(gateway.url)
      })))
  }

  it.live("a body over maxBodyBytes → 413, whether its content-length says so or it comes chunked", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({ gateway: { maxBodyBytes: 1024 } })
      const huge = JSON.stringify({ model: "primary", messages: [{ role: "user", content: "x".repeat(5000) }] })
      const declared = yield* post(`${gateway.url}/v1/chat/completions`, huge)
      expect(declared.status).toBe(413)
      expect(declared.json).toMatchObject({ error: { code: "request_too_large" } })
      const chunked = yield* postChunked(`${gateway.url}/v1/chat/completions`, Array.from({ length: 10 }, () => "x".repeat(500)))
      expect(chunked.status).toBe(413)
      expect(JSON.parse(chunked.text)).toMatchObject({ error: { code: "request_too_large" } })
      yield* stillServes(gateway.url)
    })))

  it.live("a body of exactly maxBodyBytes is served, whether it comes chunked or its content-length says so", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({ gateway: { maxBodyBytes: 1024 } })
      const empty = JSON.stringify({ model: "primary", messages: [{ role: "user", content: "" }] })
      const body = JSON.stringify({ model: "primary", messages: [{ role: "user", content: "x".repeat(1024 - empty.length) }] })
      expect(Buffer.byteLength(body)).toBe(1024)
      // Chunked first: no content-length, so only the count of the bytes read decides.
      const chunked = yield* postChunked(`${gateway.url}/v1/chat/completions`, [body.slice(0, 300), body.slice(300, 700), body.slice(700)])
      expect(chunked.status).toBe(200)
      expect(JSON.parse(chunked.text)).toMatchObject({ object: "chat.completion" })
      const declared = yield* post(`${gateway.url}/v1/chat/completions`, body)
      expect(declared.status).toBe(200)
      expect(declared.json).toMatchObject({ object: "chat.completion" })
    })))

  it.live("an unknown route → 404 in OpenAI's shape", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness()
      const response = yield* get(`${gateway.url}/v1/embeddings`)
      expect(response.status).toBe(404)
      expect(response.json).toMatchObject({ error: { type: "invalid_request_error", code: "unknown_url" } })
    })))

  it.live("a client that goes away mid-request: the upstream sees its request aborted, and no fallback is called", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({ primary: { latency: FaultScript.fixed(3_000) } })
      const controller = new AbortController()
      const sent = Effect.promise(() =>
        fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", body: ok, signal: controller.signal }).then(
          () => "answered",
          () => "aborted"
        )
      )
      const fiber = yield* Effect.fork(sent)
      yield* eventually(chaos.calls, (c) => (c["primary"]?.calls ?? 0) === 1)
      controller.abort()
      expect(yield* fiber.await.pipe(Effect.flatten)).toBe("aborted")
      const calls = yield* eventually(chaos.calls, (c) => c["primary"]?.outcomes.interrupted === 1)
      expect(calls["primary"]?.successes).toBe(0)
      expect(calls["backup"]?.calls).toBe(0)
      yield* eventually(Effect.sync(() => gateway.inFlight()), (n) => n === 0)
    })))

  it.live("a client that vanishes mid-stream: the upstream stream is aborted, and the gateway keeps serving", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway, chaos } = yield* harness({
        primary: { stream: { chunks: 50, interChunk: FaultScript.fixed(100) } }
      })
      const controller = new AbortController()
      const firstEvent = yield* Effect.promise(async () => {
        const response = await fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          body: JSON.stringify({ model: "primary", stream: true, messages: [{ role: "user", content: "hi" }] }),
          signal: controller.signal
        })
        const reader = response.body!.getReader()
        const { value } = await reader.read()
        controller.abort()
        return { status: response.status, type: response.headers.get("content-type"), text: new TextDecoder().decode(value) }
      })
      expect(firstEvent.status).toBe(200)
      expect(firstEvent.type).toContain("text/event-stream")
      expect(firstEvent.text).toMatch(/^data: \{"id"/)
      const calls = yield* eventually(chaos.calls, (c) => c["primary"]?.outcomes.interrupted === 1)
      expect(calls["primary"]?.successes).toBe(0)
      yield* eventually(Effect.sync(() => gateway.inFlight()), (n) => n === 0)
      yield* stillServes(gateway.url)
    })))
})

describe("slow-loris clients", () => {
  it.live("a client that never finishes its request gets a 408 and is disconnected at requestTimeout, while others are served", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({ gateway: { requestTimeout: "400 millis" } })
      const started = Date.now()
      const slow = yield* Effect.fork(Effect.async<{ readonly answer: string; readonly closedAfterMs: number }>((resume) => {
        const socket = Net.connect(gateway.port, "127.0.0.1", () => {
          // Headers announce a body that never comes whole: one byte every 100 ms.
          socket.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        })
        let answer = ""
        const drip = setInterval(() => socket.writable && socket.write(" "), 100)
        socket.on("data", (d) => (answer += d.toString()))
        socket.on("close", () => {
          clearInterval(drip)
          resume(Effect.succeed({ answer, closedAfterMs: Date.now() - started }))
        })
        socket.on("error", () => undefined)
        return Effect.sync(() => {
          clearInterval(drip)
          socket.destroy()
        })
      }))
      // Meanwhile the gateway answers others.
      yield* stillServes(gateway.url)
      const result = yield* Fiber.join(slow)
      expect(result.answer).toMatch(/^HTTP\/1\.1 408/)
      expect(result.closedAfterMs).toBeGreaterThanOrEqual(350)
      expect(result.closedAfterMs).toBeLessThan(3_000)
      yield* stillServes(gateway.url)
    })))

  it.live("requestTimeout bounds receiving the request only: a slow answer and a long stream are not cut by it", () =>
    Effect.scoped(Effect.gen(function*() {
      const { gateway } = yield* harness({
        gateway: { requestTimeout: "300 millis" },
        primary: { latency: FaultScript.fixed(800), stream: { chunks: 20, interChunk: FaultScript.fixed(50) } }
      })
      yield* stillServes(gateway.url)
      const streamed = yield* Effect.promise(() =>
        fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          body: JSON.stringify({ model: "primary", stream: true, messages: [{ role: "user", content: "hi" }] })
        }).then((r) => r.text())
      )
      expect(streamed).toContain("word20")
      expect(streamed.trimEnd().endsWith("data: [DONE]")).toBe(true)
    })))
})
