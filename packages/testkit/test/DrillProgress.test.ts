import { describe, expect, it } from "@effect/vitest"
import * as Progress from "../bin/progress.js"

/** A stderr stand-in that keeps what was written. */
const capture = (isTTY: boolean) => {
  const written: Array<string> = []
  const stream = Object.assign(Object.create(process.stderr) as NodeJS.WriteStream, {
    isTTY,
    columns: 160,
    write: (chunk: string | Uint8Array) => {
      written.push(String(chunk))
      return true
    }
  })
  return { stream, text: () => written.join("") }
}

describe("drill progress display", () => {
  it("on a terminal: a line per worker with virtual time done / total and requests, under the drill's runs", () => {
    const { stream, text } = capture(true)
    const progress = Progress.make(2, 6, stream)
    progress.start(0, "provider-outage/protected", 3 * 3_600_000)
    progress.update(0, 0.25, 135_000)
    progress.start(1, "flapping/none", 40 * 60_000)
    progress.update(1, 0.5, 24_000)
    progress.end()
    const out = text()
    expect(out).toMatch(/provider-outage\/protected +█{6}░{18} +25 % +virtual 0:45:00 \/ 3:00:00 +135,000 requests/)
    expect(out).toMatch(/flapping\/none +█{12}░{12} +50 % +virtual 0:20:00 \/ 0:40:00 +24,000 requests/)
    expect(out).toMatch(/drill .* 0\/6 runs +159,000 requests/)
  })

  it("in a log: finished runs as plain lines at once, no bar characters", () => {
    const { stream, text } = capture(false)
    const progress = Progress.make(1, 3, stream)
    progress.start(0, "key-revoked/none", 30 * 60_000)
    progress.update(0, 1, 36_000)
    progress.finish(0, "key-revoked/none", 36_000, 1_234)
    progress.end()
    expect(text()).toBe("drill: key-revoked/none done in 1.2 s, 36,000 requests (1/3)\n")
  })
})
