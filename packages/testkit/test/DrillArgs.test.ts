import { describe, expect, it } from "@effect/vitest"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as DrillArgs from "../bin/args.js"
import * as Scenarios from "../src/Scenarios.js"

describe("drill arguments", () => {
  it("--seed takes safe integers only, written as integers", () => {
    expect(DrillArgs.parseSeed("7")).toBe(7)
    expect(DrillArgs.parseSeed("-3")).toBe(-3)
    expect(DrillArgs.parseSeed(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER)
    expect(DrillArgs.parseSeed("99999999999999999999")).toMatch(/not a safe integer.*100000000000000000000$/)
    expect(DrillArgs.parseSeed(String(Number.MAX_SAFE_INTEGER + 1))).toMatch(/not a safe integer/)
    for (const bad of ["1e3", "0x10", "1.5", "", " 1", undefined]) expect(DrillArgs.parseSeed(bad)).toBe("--seed needs an integer")
  })

  it("--json and --plot are checked before the run: a missing folder or a folder as the file is a message", () => {
    expect(DrillArgs.parse(["--json", "/nonexistent/dir/r.json"])).toBe("--json /nonexistent/dir/r.json: no folder /nonexistent/dir")
    const dir = mkdtempSync(join(tmpdir(), "drill-args-"))
    expect(DrillArgs.parse(["--plot", dir])).toBe(`--plot ${dir}: is a folder`)
    const ok = DrillArgs.parse(["--json", join(dir, "r.json"), "--quiet", "--seed", "5"])
    expect(ok).toMatchObject({ json: join(dir, "r.json"), quiet: true, seed: 5, scenarios: [...Scenarios.names] })
  })

  it("an unknown scenario or argument is named", () => {
    expect(DrillArgs.parse(["--scenario", "nope"])).toMatch(/^unknown scenario "nope"/)
    expect(DrillArgs.parse(["--frobnicate"])).toBe(`unknown argument "--frobnicate"`)
    expect(DrillArgs.parse(["--help"])).toBe("usage")
  })
})

describe("--scale", () => {
  it("shortens the flapping scenario but keeps its 20 s down / 20 s up flaps", () => {
    for (const scale of [1, 0.05, 0.02]) {
      const s = Scenarios.make("flapping", { scale })
      const flap = s.providers[0]?.script.find((f) => f._tag === "Flapping")
      expect(flap).toMatchObject({ downMs: 20_000, upMs: 20_000 })
      expect(s.durationMs).toBe(40 * 60_000 * scale)
    }
  })
})
