import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import * as Net from "node:net"
import type { StreamWriter } from "../src/Endpoint.js"
import * as SseWriter from "../src/internal/sseWriter.js"

const megabyte = new Uint8Array(1 << 20).fill(120)

/**
 * A server that writes 64 batches of 1 MB each through `SseWriter.writeTo`,
 * counting the batches it pulled, and a raw client that reads nothing for
 * `pauseMs`, then everything.
 */
const run = (pauseMs: number) =>
  Effect.async<{ readonly pulledWhilePaused: number; readonly received: number; readonly afterRuns: number; readonly ended: boolean }>((resume) => {
    let pulled = 0
    let afterRuns = 0
    const writer: StreamWriter<number, never> = {
      write: (batch) => Chunk.map(batch, () => megabyte),
      end: () => Chunk.of(new TextEncoder().encode("END")),
      failed: () => Chunk.empty()
    }
    const chunks = Stream.mapChunks(Stream.rechunk(Stream.range(1, 64), 1), (batch) => {
      pulled += Chunk.size(batch)
      return batch
    })
    const server = Http.createServer((_, response) => {
      Effect.runFork(Effect.scoped(
        SseWriter.writeTo(response, { "content-type": "text/event-stream" }, chunks, writer, Effect.sync(() => void afterRuns++))
      ))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const socket = Net.connect(port, "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      let received = 0
      let tail = ""
      socket.pause()
      setTimeout(() => {
        const pulledWhilePaused = pulled
        socket.on("data", (d: Buffer) => {
          received += d.length
          tail = (tail + d.toString("latin1")).slice(-64)
        })
        socket.on("end", () => {
          server.close()
          resume(Effect.succeed({ pulledWhilePaused, received, afterRuns, ended: tail.includes("END") }))
        })
        socket.resume()
      }, pauseMs)
    })
  })

describe("SseWriter.writeTo", () => {
  it.live("a reader that does not read holds the writer: the chunks' source is not pulled ahead of it, and nothing is lost once it reads", () =>
    Effect.gen(function*() {
      const r = yield* run(500)
      // The sockets' buffers take a few MB; without waiting for `drain` all 64 would be pulled into memory at once.
      expect(r.pulledWhilePaused).toBeLessThan(32)
      expect(r.received).toBeGreaterThan(64 * megabyte.length)
      expect(r.ended).toBe(true)
      expect(r.afterRuns).toBe(1)
    }), 20_000)
})
