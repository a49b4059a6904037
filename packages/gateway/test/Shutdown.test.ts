import { describe, expect, it } from "@effect/vitest"
import { FaultScript } from "@resilient-ai/testkit"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import { writeFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { harness } from "./support/harness.js"

const streamBody = JSON.stringify({ model: "primary", stream: true, messages: [{ role: "user", content: "hi" }] })

/** Reads a whole SSE response as text (real I/O). */
const readStream = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: streamBody })
    try {
      return { status: response.status, text: await response.text(), error: undefined }
    } catch (e) {
      return { status: response.status, text: "", error: String(e) }
    }
  })

const eventually = <A>(read: Effect.Effect<A>, check: (a: A) => boolean) =>
  read.pipe(
    Effect.filterOrFail(check, () => "not yet"),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds"))),
    Effect.orDie
  )

describe("graceful shutdown", () => {
  it.live("closing the gateway stops accepting, and a stream in flight finishes whole before it stops", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { gateway, chaos } = yield* Scope.extend(
        harness({ primary: { stream: { chunks: 10, interChunk: FaultScript.fixed(50) } }, gateway: { shutdownTimeout: "5 seconds" } }),
        scope
      )
      const reading = yield* Effect.fork(readStream(gateway.url))
      yield* eventually(chaos.calls, (c) => c["primary"]?.streams === 1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // New connections are refused while the stream goes on.
      const refused = yield* eventually(
        Effect.promise(() => fetch(`${gateway.url}/health`).then(() => "served", () => "refused")),
        (r) => r === "refused"
      )
      expect(refused).toBe("refused")
      // Refused while the stream still goes on (10 chunks 50 ms apart), not only once it has ended.
      expect(reading.unsafePoll()).toBeNull()
      const read = yield* Fiber.join(reading)
      expect(read.status).toBe(200)
      expect(read.text).toContain("word10")
      expect(read.text.trimEnd().endsWith("data: [DONE]")).toBe(true)
      yield* Fiber.join(closing)
      expect((yield* chaos.calls)["primary"]?.successes).toBe(1)
    }))

  it.live("a stream still running at the deadline is cut, its upstream call aborted, and the close ends soon after the deadline", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { gateway, chaos } = yield* Scope.extend(
        harness({
          primary: { stream: { chunks: 100, interChunk: FaultScript.fixed(50) } },
          gateway: { shutdownTimeout: "300 millis" }
        }),
        scope
      )
      const reading = yield* Effect.fork(readStream(gateway.url))
      yield* eventually(chaos.calls, (c) => c["primary"]?.streams === 1)
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      // 100 chunks would take 5 s; the close took the deadline and a little more.
      expect(Date.now() - started).toBeLessThan(2_000)
      const read = yield* Fiber.join(reading)
      expect(read.text).not.toContain("[DONE]")
      expect((yield* chaos.calls)["primary"]?.outcomes.interrupted).toBe(1)
    }))
})

describe("the CLI", () => {
  const repo = fileURLToPath(new URL("../../..", import.meta.url))
  const cli = (args: ReadonlyArray<string>) =>
    spawn(process.execPath, ["--import", "tsx", "--conditions=source", "packages/gateway/bin/gateway.ts", ...args], {
      cwd: repo,
      stdio: ["ignore", "pipe", "pipe"]
    })

  it.live("a bad config file: exit 1, every bad field's path on stderr", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "gateway-cli-"))
      const file = join(dir, "bad.yaml")
      writeFileSync(file, "deployments:\n  - { name: a, provider: openai, keys: [] }\ncascade: [a]\ngateway: { port: -1 }\n")
      const child = cli(["--config", file])
      const result = yield* Effect.async<{ code: number | null; stderr: string }>((resume) => {
        let stderr = ""
        child.stderr.on("data", (c: Buffer) => (stderr += c.toString()))
        child.on("exit", (code) => resume(Effect.succeed({ code, stderr })))
      })
      rmSync(dir, { recursive: true, force: true })
      expect(result.code).toBe(1)
      expect(result.stderr).toContain("deployments.0.model")
      expect(result.stderr).toContain("gateway.port")
    }), 30_000)

  it.live("SIGTERM during a stream: the stream finishes with [DONE], then the process exits 0", () =>
    Effect.gen(function*() {
      const child = cli(["--demo", "--port", "0"])
      const url = yield* Effect.async<string>((resume) => {
        let out = ""
        child.stdout.on("data", (c: Buffer) => {
          out += c.toString()
          const m = /demo on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
          if (m?.[1] !== undefined) resume(Effect.succeed(m[1]))
        })
      })
      const exited = Effect.async<number | null>((resume) => {
        if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
        child.on("exit", (code) => resume(Effect.succeed(code)))
      })
      const read = yield* Effect.promise(async () => {
        const response = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: streamBody })
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        let text = decoder.decode((await reader.read()).value)
        child.kill("SIGTERM")
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          text += decoder.decode(value)
        }
        return text
      })
      expect(read).toContain("word12")
      expect(read.trimEnd().endsWith("data: [DONE]")).toBe(true)
      expect(yield* exited).toBe(0)
    }), 30_000)
})
