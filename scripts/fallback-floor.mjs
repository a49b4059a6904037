// The earliest a fallback can answer in the drill's flash-sale, whatever the primary's limit does: every call
// from the sale's first instant refused at once and sent to the secondary (Poisson arrivals at the sale's
// 75 req/s, the secondary's latency lognormal with median 900 ms and p99 2,700 ms, as in Scenarios.ts).
//   node scripts/fallback-floor.mjs [runs=20000] [ratePerSecond=75] [medianMs=900] [p99Ms=2700]
const [runs = 20_000, rate = 75, median = 900, p99 = 2_700] = process.argv.slice(2).map(Number)
// A seeded generator (mulberry32), so the figures are the same on every run.
let seed = 1
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
}
const sigma = Math.log(p99 / median) / 2.3263
const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random())
const firsts = []
for (let run = 0; run < runs; run++) {
  let at = 0
  let first = Infinity
  for (;;) {
    at += (-Math.log(1 - random()) / rate) * 1000
    if (at > first) break
    first = Math.min(first, at + median * Math.exp(sigma * normal()))
  }
  firsts.push(first)
}
firsts.sort((a, b) => a - b)
const quantile = (p) => Math.round(firsts[Math.floor(p * (firsts.length - 1))])
const under = firsts.filter((ms) => ms < 500).length / firsts.length
console.log(`first fallback answer, every call refused from the start (${runs} runs):`)
console.log(`  p10 ${quantile(0.1)} ms, p50 ${quantile(0.5)} ms, p90 ${quantile(0.9)} ms; under 0.5 s in ${(100 * under).toFixed(1)} % of runs`)
