// Compares two drill JSON documents (`npm start -- --json X.json`) field by field, per scenario and stack:
// `node scripts/drill-compare.mjs before.json after.json`. Arrays are compared by length; targets by their lines.
import { readFileSync } from "node:fs"
const [a, b] = process.argv.slice(2).map((p) => JSON.parse(readFileSync(p, "utf8")))
const key = (s) => `${s.name}/${s.stack}`
const index = (d) => new Map(d.scenarios.map((s) => [key(s), s]))
const A = index(a), B = index(b)
const flat = (o, prefix = "", out = {}) => {
  if (o === null || typeof o !== "object") { out[prefix] = o; return out }
  if (Array.isArray(o)) { out[`${prefix}.length`] = o.length; return out }
  for (const [k, v] of Object.entries(o)) flat(v, prefix === "" ? k : `${prefix}.${k}`, out)
  return out
}
for (const [k, s] of A) {
  const t = B.get(k)
  if (t === undefined) { console.log(`${k}: missing in the second`); continue }
  const fa = flat(s), fb = flat(t)
  const diffs = []
  for (const f of new Set([...Object.keys(fa), ...Object.keys(fb)])) {
    if (f.startsWith("targets")) continue
    if (JSON.stringify(fa[f]) !== JSON.stringify(fb[f])) diffs.push(`${f}: ${JSON.stringify(fa[f])} -> ${JSON.stringify(fb[f])}`)
  }
  const ta = (s.targets ?? []).map((x) => `${x.ok ? "✓" : "✗"} ${x.name}: ${x.value}`)
  const tb = (t.targets ?? []).map((x) => `${x.ok ? "✓" : "✗"} ${x.name}: ${x.value}`)
  console.log(`${k}: ${diffs.length === 0 ? "identical" : `${diffs.length} fields differ`}`)
  for (const d of diffs) console.log(`  ${d}`)
  if (JSON.stringify(ta) !== JSON.stringify(tb)) { console.log("  targets before:"); for (const x of ta) console.log(`    ${x}`); console.log("  targets after:"); for (const x of tb) console.log(`    ${x}`) }
}
for (const k of B.keys()) if (!A.has(k)) console.log(`${k}: new`)
