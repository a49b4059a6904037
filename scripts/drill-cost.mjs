// What one drill request costs, in figures that do not drift with the machine's speed: Effect ops run, and
// bytes allocated and promoted to V8's old generation per request, for one scenario and stack (`npx tsc -b`
// first).
//   node scripts/drill-cost.mjs [scenario=provider-outage] [stack=protected] [scale=0.05]
// Ops are counted by wrapping the fiber runtime's op handlers (effect 3.x internals, so a measuring tool
// only); bytes from V8's own GC trace of a second run, in a child process so the counting does not weigh.
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const [scenario = "provider-outage", stack = "protected", scale = "0.05", mode = "ops"] = process.argv.slice(2)
const run = async () => {
  const Effect = await import("effect/Effect")
  const Drill = await import("@resilient-ai/testkit/Drill")
  const Scenarios = await import("@resilient-ai/testkit/Scenarios")
  const r = await Effect.runPromise(Drill.run(Scenarios.make(scenario, { scale: Number(scale) }), stack, { seed: 1 }))
  return r.report.requests
}

if (mode === "bytes") {
  console.log(`requests=${await run()}`)
} else {
  const { FiberRuntime } = await import(new URL("../node_modules/effect/dist/esm/internal/fiberRuntime.js", import.meta.url).href)
  const byOp = new Map()
  const ops = ["Sync", "Success", "Failure", "WithRuntime", "UpdateRuntimeFlags", "OnSuccess", "OnFailure", "OnSuccessAndFailure", "Async", "Yield", "Iterator", "Commit", "Tag", "While"]
  for (const op of ops) {
    const handler = FiberRuntime.prototype[op]
    if (typeof handler !== "function") continue
    FiberRuntime.prototype[op] = function(cur) {
      byOp.set(op, (byOp.get(op) ?? 0) + 1)
      return handler.call(this, cur)
    }
  }
  const requests = await run()
  let total = 0
  for (const n of byOp.values()) total += n
  // Bytes: what V8's own GC trace counts, allocated since the collection before (each collection) and
  // promoted to the old generation (each scavenge). Promoted bytes are what a scavenge copies twice and a
  // full collection later frees: the objects that outlive the young generation, really or by V8 keeping
  // them through a dead object that points at them.
  const trace = execFileSync(process.execPath, ["--max-semi-space-size=64", "--trace-gc-nvp", fileURLToPath(import.meta.url), scenario, stack, scale, "bytes"], { encoding: "utf8", maxBuffer: 1 << 28 })
  let allocatedMb = 0, promotedMb = 0
  for (const m of trace.matchAll(/ allocated=(\d+)/g)) allocatedMb += Number(m[1]) / 2 ** 20
  for (const m of trace.matchAll(/gc=s .*? promoted=(\d+)/g)) promotedMb += Number(m[1]) / 2 ** 20
  const traced = Number(/requests=(\d+)/.exec(trace)?.[1])
  console.log(`${scenario}/${stack} at scale ${scale}: ${requests} requests`)
  console.log(`effect ops per request: ${(total / requests).toFixed(1)} (${[...byOp].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${(n / requests).toFixed(1)}`).join(", ")})`)
  console.log(`allocated per request: ${(allocatedMb * 1024 / traced).toFixed(1)} KB, promoted: ${(promotedMb * 1024 / traced).toFixed(2)} KB`)
}
