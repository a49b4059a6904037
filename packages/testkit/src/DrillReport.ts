/**
 * The drill's report: a text table per scenario (the three stacks side by
 * side), the JSON document, the protected stack's targets, and an SVG
 * timeline (requests per second by who answered, breaker states as bands).
 * Pure functions of the runs' results: the same runs give the same bytes.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import type * as Drill from "./Drill.js"
import * as Palette from "./Palette.js"

/**
 * One scenario's runs, one per stack.
 *
 * @since 0.1.0
 * @category models
 */
export type ScenarioResult = Drill.ScenarioResult

/**
 * A target the protected stack should meet, and whether it did.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly name: string
  readonly value: string
  readonly ok: boolean
}

/**
 * The JSON document: every stack of every scenario. Deterministic: it holds
 * no wall-clock figure.
 *
 * @since 0.1.0
 * @category models
 */
export interface Document {
  readonly scenarios: ReadonlyArray<Drill.StackReport & { readonly targets?: ReadonlyArray<Target> }>
}

const pct = (x: number, digits = 3): string => `${(100 * x).toFixed(digits)} %`
const int = (n: number): string => Math.round(n).toLocaleString("en-US")

/**
 * `h:mm:ss`, with milliseconds when `precise`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const clock = (ms: number, precise = false): string => {
  const total = Math.floor(ms / 1000)
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = total % 60
  const base = `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`
  return precise ? `${base}.${String(Math.floor(ms % 1000)).padStart(3, "0")}` : base
}

const flapsOf = (scenario: Drill.Scenario): number | undefined => {
  for (const p of scenario.providers) {
    for (const f of p.script) {
      if (f._tag === "Flapping") return Math.ceil((f.to - f.from) / (f.downMs + f.upMs))
    }
  }
  return undefined
}

/** Flaps a flapping run needs before the primary's serving and recovery are judged. */
const minFlapsJudged = 10

/** The longest open duration of a deployment's breaker: the `max` of a growing one, or its fixed one. */
const longestOpenMs = (scenario: Drill.Scenario, deployment: string): number | undefined => {
  const breaker = scenario.client.deployments.find((d) => d.name === deployment)?.policy?.circuitBreaker
  if (breaker === undefined || breaker === false || breaker.openDuration === undefined) return undefined
  const open = breaker.openDuration
  return Duration.toMillis(Duration.decode(typeof open === "object" && "max" in open ? open.max : open))
}

/** Issue 17's targets: the incident's deployment is shed at once, without a hand-set limit. */
const sheddingTargets = (scenario: Drill.Scenario, report: Drill.StackReport): ReadonlyArray<Target> => {
  const { deployment, description } = scenario.incident
  const before = report.latencyByPhaseMs.before.p99
  const during = report.latencyByPhaseMs.during.p99
  const perRequest = report.callsDuringIncident.perRequest
  return [
    {
      name: `calls per request (not from the cache) during the ${description} ≤ 1.01`,
      value: `${perRequest.toFixed(4)}, ${int(report.callsDuringIncident.toDeployment)} calls sent to ${deployment}`,
      ok: perRequest <= 1.01
    },
    {
      name: `p99 during the ${description} ≤ 1.5 × p99 before`,
      value: `${int(during)} ms vs ${int(before)} ms (${before === 0 ? "-" : (during / before).toFixed(2)}x)`,
      ok: before > 0 && during <= 1.5 * before
    },
    {
      name: `first answer by a fallback < 0.5 s after the ${description} starts`,
      value: report.firstFallbackAnswerMs === null ? "none" : `${int(report.firstFallbackAnswerMs)} ms`,
      ok: report.firstFallbackAnswerMs !== null && report.firstFallbackAnswerMs < 500
    }
  ]
}

/** Issue 18's targets: with probes, a fallback that died before the outage is known dead when the outage starts. */
const deadFallbackTargets = (fallback: string, report: Drill.StackReport): ReadonlyArray<Target> => {
  const first = report.outageFirstMinuteP99Ms ?? 0
  const rest = report.outageRestP99Ms ?? 0
  const calls: Target = {
    name: `no call to the dead ${fallback} during the outage`,
    value: `${int(report.callsToDeadFallback ?? 0)} calls`,
    ok: report.callsToDeadFallback === 0
  }
  // An outage shortened (`--scale`) to a minute or less has no rest to compare its first minute with.
  if (rest === 0) return [calls]
  return [calls, {
    name: "p99 in the outage's first minute ≤ 1.2 × p99 in the rest of it",
    value: `${int(first)} ms vs ${int(rest)} ms (${(first / rest).toFixed(2)}x)`,
    ok: first <= 1.2 * rest
  }]
}

/**
 * The targets of the protected stack for a scenario (none for a scenario
 * without any).
 *
 * @since 0.1.0
 * @category targets
 */
export const targets = (scenario: Drill.Scenario, report: Drill.StackReport): ReadonlyArray<Target> => {
  if (report.stack !== "protected") return []
  const out: Array<Target> = []
  if (scenario.name === "provider-outage") {
    out.push({
      name: "availability by model, (model + fresh cache) / requests, ≥ 99.99 % with 0 failed",
      value: `${pct(report.availabilityByModel, 4)}, ${report.failed} failed`,
      ok: report.availabilityByModel >= 0.9999 && report.failed === 0
    })
    out.push({
      name: "attempts per request ≤ 1.1",
      value: report.attemptsPerRequest.toFixed(4),
      ok: report.attemptsPerRequest <= 1.1
    })
    out.push({
      name: "fail-over < 1 s",
      value: report.failoverMs === null ? "none" : `${report.failoverMs} ms`,
      ok: report.failoverMs !== null && report.failoverMs < 1000
    })
    const before = report.latencyByPhaseMs.before.p99
    const during = report.latencyByPhaseMs.during.p99
    out.push({
      name: "p99 during the outage ≤ 1.5 × p99 before",
      value: `${during} ms vs ${before} ms (${before === 0 ? "-" : (during / before).toFixed(2)}x)`,
      ok: before > 0 && during <= 1.5 * before
    })
  }
  if (scenario.sheddingTargets === true) out.push(...sheddingTargets(scenario, report))
  if (scenario.deadFallback !== undefined) out.push(...deadFallbackTargets(scenario.deadFallback, report))
  if (report.streams !== null) {
    const s = report.streams
    out.push({
      name: "no mixed answer: a streamed caller never gets content from two answers",
      value: `${s.mixedAnswers} mixed of ${int(s.requests)} streams`,
      ok: s.mixedAnswers === 0
    })
    out.push({
      name: "no stream fails before its first token (the primary's stalls fall back)",
      value: `${s.failedBeforeFirstToken} failed, ${int(s.fellBackBeforeFirstToken)} fell back`,
      ok: s.failedBeforeFirstToken === 0
    })
  }
  const flaps = flapsOf(scenario)
  if (flaps !== undefined) {
    const opens = report.breakerTransitions.filter((t) => t.breaker === scenario.incident.deployment && t.to === "open").length
    const closes = report.breakerTransitions.filter((t) => t.breaker === scenario.incident.deployment && t.to === "closed").length
    out.push({
      name: "the breaker does not open and close on every flap (closes on fewer than half)",
      value: `${opens} openings, ${closes} closings for ${flaps} flaps`,
      ok: closes < flaps / 2
    })
    // Serving between flaps and coming back take the breaker's open durations to show (up to 2 minutes):
    // a run shortened by `--scale` to a few flaps cannot tell, and is not judged on them.
    if (flaps < minFlapsJudged) return out
    const primary = scenario.incident.deployment
    const during = report.answeredByDuringIncident
    const answeredDuring = Object.values(during).reduce((a, b) => a + b, 0)
    out.push({
      name: `the primary still serves between flaps`,
      value: `${int(during[primary] ?? 0)} of ${int(answeredDuring)} answers during the flapping (${pct((during[primary] ?? 0) / Math.max(1, answeredDuring), 1)})`,
      ok: (during[primary] ?? 0) > 0
    })
    const longest = longestOpenMs(scenario, primary)
    if (longest !== undefined) {
      out.push({
        name: `the primary takes traffic back within its longest open duration (${int(longest / 1000)} s) after the flapping`,
        value: report.recoveryMs === null ? "not back" : `${int(report.recoveryMs)} ms`,
        ok: report.recoveryMs !== null && report.recoveryMs <= longest
      })
    }
  }
  return out
}

/**
 * The JSON document of a drill.
 *
 * @since 0.1.0
 * @category json
 */
export const document = (results: ReadonlyArray<ScenarioResult>): Document => ({
  scenarios: results.flatMap((r) =>
    r.runs.map((run) => {
      const t = targets(r.scenario, run.report)
      return t.length === 0 ? run.report : { ...run.report, targets: t }
    })
  )
})

/** A row of the side-by-side table; its labels are padded to the longest once all rows are known. */
interface Row {
  readonly label: string
  readonly cells: ReadonlyArray<string>
}

const render = (rows: ReadonlyArray<Row>, width: number): Array<string> => {
  const labelWidth = Math.max(0, ...rows.map((r) => r.label.length)) + 2
  return rows.map((r) => `  ${r.label.padEnd(labelWidth)}${r.cells.map((c) => c.padStart(width)).join("")}`.trimEnd())
}

/**
 * The text report of one scenario: the three stacks side by side, the
 * protected stack's breaker transitions, and its targets.
 *
 * @since 0.1.0
 * @category text
 */
export const table = (result: ScenarioResult): string => {
  const { scenario, runs } = result
  const reports = runs.map((r) => r.report)
  const lines: Array<string> = []
  const seed = reports[0]?.seed
  lines.push(`${scenario.name}: ${scenario.description} (seed ${seed ?? "-"})`)
  lines.push("")
  const rows: Array<Row> = [{ label: "", cells: reports.map((r) => r.stack) }]
  const line = (label: string, cell: (r: Drill.StackReport) => string) => rows.push({ label, cells: reports.map(cell) })
  const ms = (n: number | null) => (n === null ? "-" : `${int(n)} ms`)
  const p = (x: Drill.Percentiles) => `${int(x.p50)}/${int(x.p95)}/${int(x.p99)}`
  line("requests", (r) => int(r.requests))
  line("answered by model", (r) => int(r.answeredByModel))
  line("answered by cache (fresh)", (r) => int(r.answeredByCache))
  line("answered by stale cache (all failed)", (r) => int(r.answeredByStaleCache))
  line("answered by static reply", (r) => int(r.answeredByStatic))
  line("failed", (r) => int(r.failed))
  if (reports.some((r) => r.completions !== null)) {
    const of = (cell: (c: Drill.Completions) => string) => (r: Drill.StackReport) => (r.completions === null ? "-" : cell(r.completions))
    line("degraded, queued to complete", of((c) => `${int(c.queued)} (+${int(c.duplicates)} dup.)`))
    line("  refused (queue full)", of((c) => int(c.refused)))
    line("  completed later by a model", of((c) => int(c.completed)))
    line("  given up / left at the end", of((c) => `${int(c.failed)} / ${int(c.leftAtEnd)}`))
  }
  line("availability: (model + fresh + stale cache) / requests", (r) => pct(r.availability))
  line("availability by model: (model + fresh cache) / requests", (r) => pct(r.availabilityByModel))
  line("latency p50/p95/p99 (ms)", (r) => p(r.latencyMs))
  line(`  before the ${scenario.incident.description}`, (r) => p(r.latencyByPhaseMs.before))
  line(`  during the ${scenario.incident.description}`, (r) => p(r.latencyByPhaseMs.during))
  if (scenario.incident.to < scenario.durationMs) line("  after it", (r) => p(r.latencyByPhaseMs.after))
  line("attempts per request", (r) => r.attemptsPerRequest.toFixed(3))
  line("calls to a down provider/key", (r) => int(r.callsToDownProvider))
  line("fail-over after the start", (r) => ms(r.failoverMs))
  line(`calls to ${scenario.incident.deployment} during the ${scenario.incident.description}`, (r) => int(r.callsDuringIncident.toDeployment))
  line("  calls per request (not from the cache) during it", (r) => r.callsDuringIncident.perRequest.toFixed(4))
  line("first answer by a fallback after the start", (r) => ms(r.firstFallbackAnswerMs))
  line("adaptive limit decreases", (r) => int(r.limitDecreases))
  if (scenario.deadFallback !== undefined) {
    const dead = scenario.deadFallback
    line("health probes", (r) => (r.probes === true ? "on" : "off"))
    line(`calls to the dead ${dead} during the ${scenario.incident.description}`, (r) => int(r.callsToDeadFallback ?? 0))
    line("p99 in its first minute / the rest (ms)", (r) => `${int(r.outageFirstMinuteP99Ms ?? 0)}/${int(r.outageRestP99Ms ?? 0)}`)
  }
  line("primary takes traffic back after", (r) => ms(r.recoveryMs))
  line("breaker transitions", (r) => int(r.breakerTransitions.length))
  line("key transitions", (r) => int(r.keyTransitions.length))
  const names = [...new Set(reports.flatMap((r) => Object.keys(r.answeredBy)))]
  for (const n of names) line(`answered by ${n}`, (r) => int(r.answeredBy[n] ?? 0))
  const tags = [...new Set(reports.flatMap((r) => Object.keys(r.errors)))]
  for (const t of tags) line(`failed with ${t}`, (r) => int(r.errors[t] ?? 0))
  line("tokens in/out", (r) => `${(r.tokens.input / 1e6).toFixed(2)}M/${(r.tokens.output / 1e6).toFixed(2)}M`)
  line("cost (USD)", (r) => r.costUsd.toFixed(2))
  if (reports.some((r) => r.streams !== null)) {
    const of = (cell: (s: Drill.StreamReport) => string) => (r: Drill.StackReport) => (r.streams === null ? "-" : cell(r.streams))
    line("streamed requests", of((s) => int(s.requests)))
    line("  completed", of((s) => int(s.completed)))
    line("  fell back before the first token", of((s) => int(s.fellBackBeforeFirstToken)))
    line("  ended mid-stream (protected: by its policy)", of((s) => int(s.endedMidStream)))
    line("  failed before the first token", of((s) => int(s.failedBeforeFirstToken)))
    line("  mixed answers (must be 0)", of((s) => int(s.mixedAnswers)))
    line("  time to first token p50/p99 (ms)", of((s) => `${int(s.timeToFirstTokenMs.p50)}/${int(s.timeToFirstTokenMs.p99)}`))
  }
  // Wide enough for the widest cell (a baseline that waits 10 minutes on a hung provider), 22 at least.
  lines.push(...render(rows, Math.max(22, ...rows.flatMap((r) => r.cells.map((c) => c.length + 2)))))

  const guarded = reports.find((r) => r.stack === "protected")
  if (guarded !== undefined && guarded.breakerTransitions.length > 0) {
    const shown = 8
    lines.push("")
    lines.push(`  breaker transitions (protected), ${guarded.breakerTransitions.length} in all:`)
    for (const t of guarded.breakerTransitions.slice(0, shown)) {
      lines.push(`    ${clock(t.at, true)}  ${t.breaker.padEnd(14)} ${t.from.padStart(9)} → ${t.to.padEnd(9)}  ${t.reason}`)
    }
    if (guarded.breakerTransitions.length > shown) lines.push(`    … ${guarded.breakerTransitions.length - shown} more`)
  }
  if (guarded !== undefined) {
    const ts = targets(scenario, guarded)
    if (ts.length > 0) {
      lines.push("")
      lines.push("  targets (protected):")
      for (const t of ts) lines.push(`    ${t.ok ? "✓" : "✗"} ${t.name}: ${t.value}`)
    }
  }
  return lines.join("\n")
}

// -----------------------------------------------------------------------------
// SVG
// -----------------------------------------------------------------------------

// The drill's series keys: deployments by name, then these (the shared palette names them by source).
const colours: Record<string, string> = {
  cache: Palette.source.cache,
  stale: Palette.source["stale-cache"],
  static: Palette.source.static,
  failed: Palette.source.failed
}
const palette = Palette.cascade
const stateColour: Record<string, string> = Palette.breakerState

const escape = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

const fmt = (n: number): string => (Math.round(n * 10) / 10).toString()

interface Panel {
  readonly svg: string
  readonly height: number
}

const panel = (result: ScenarioResult, top: number, width: number): Panel => {
  const { scenario } = result
  const run = result.runs.find((r) => r.report.stack === "protected") ?? result.runs[0]
  const bare = result.runs.find((r) => r.report.stack === "none")
  if (run === undefined) return { svg: "", height: 0 }
  const left = 60
  const plotW = width - left - 150
  const chartH = 160
  const breakers = [...new Set(run.report.breakerTransitions.map((t) => t.breaker))]
  const bandH = 12
  const titleH = 34
  const height = titleH + chartH + 24 + breakers.length * (bandH + 4) + 30
  const out: Array<string> = []
  const y0 = top + titleH
  out.push(`<text x="${left}" y="${top + 14}" class="title">${escape(scenario.name)}</text>`)
  out.push(`<text x="${left}" y="${top + 28}" class="sub">${escape(scenario.description)} (protected stack; red line: unprotected failures/s)</text>`)

  const { bucketMs, series } = run.timeline
  const cascade = scenario.client.cascade
  const order = [...cascade, ...Object.keys(series).filter((k) => !cascade.includes(k) && !["cache", "stale", "static", "failed"].includes(k)), "cache", "stale", "static", "failed"]
    .filter((k) => series[k] !== undefined)
  const buckets = Math.max(1, ...order.map((k) => series[k]?.length ?? 0))
  const columns = Math.min(plotW, buckets)
  const perColumn = buckets / columns
  const rateOf = (s: Uint32Array | undefined, c: number): number => {
    if (s === undefined) return 0
    const from = Math.floor(c * perColumn)
    const to = Math.max(from + 1, Math.floor((c + 1) * perColumn))
    let sum = 0
    for (let i = from; i < to; i++) sum += s[i] ?? 0
    return sum / ((to - from) * bucketMs / 1000)
  }
  const stacked: Array<Float64Array> = []
  const totals = new Float64Array(columns)
  for (const k of order) {
    const s = series[k]
    const values = new Float64Array(columns)
    for (let c = 0; c < columns; c++) {
      values[c] = rateOf(s, c)
      totals[c] = (totals[c] ?? 0) + (values[c] ?? 0)
    }
    stacked.push(values)
  }
  const bareFailed = bare?.timeline.series["failed"]
  let maxRate = 1
  for (let c = 0; c < columns; c++) {
    maxRate = Math.max(maxRate, totals[c] ?? 0, rateOf(bareFailed, c))
  }
  const x = (c: number) => left + (c / columns) * plotW
  const y = (v: number) => y0 + chartH - (v / maxRate) * chartH
  const xt = (ms: number) => left + (ms / scenario.durationMs) * plotW

  // The incident, shaded.
  out.push(
    `<rect x="${fmt(xt(scenario.incident.from))}" y="${y0}" width="${fmt(xt(scenario.incident.to) - xt(scenario.incident.from))}" height="${chartH}" fill="#f4cccc" opacity="0.35"/>`
  )
  // Stacked areas, bottom first.
  const base = new Float64Array(columns)
  order.forEach((k, i) => {
    const values = stacked[i]
    if (values === undefined) return
    const upper: Array<string> = []
    const lower: Array<string> = []
    for (let c = 0; c < columns; c++) {
      const b = base[c] ?? 0
      const v = b + (values[c] ?? 0)
      upper.push(`${fmt(x(c))},${fmt(y(v))}`, `${fmt(x(c + 1))},${fmt(y(v))}`)
      lower.push(`${fmt(x(c + 1))},${fmt(y(b))}`, `${fmt(x(c))},${fmt(y(b))}`)
      base[c] = v
    }
    const colour = colours[k] ?? palette[cascade.indexOf(k) >= 0 ? cascade.indexOf(k) % palette.length : i % palette.length]
    out.push(`<polygon points="${upper.join(" ")} ${lower.reverse().join(" ")}" fill="${colour}" opacity="0.85"/>`)
    out.push(`<rect x="${left + plotW + 12}" y="${y0 + i * 16}" width="10" height="10" fill="${colour}"/>`)
    out.push(`<text x="${left + plotW + 26}" y="${y0 + i * 16 + 9}" class="legend">${escape(k)}</text>`)
  })
  if (bareFailed !== undefined) {
    const points: Array<string> = []
    for (let c = 0; c < columns; c++) points.push(`${fmt(x(c + 0.5))},${fmt(y(rateOf(bareFailed, c)))}`)
    out.push(`<polyline points="${points.join(" ")}" fill="none" stroke="#cc0000" stroke-width="1" stroke-dasharray="3,2"/>`)
  }
  // Axes.
  out.push(`<line x1="${left}" y1="${y0 + chartH}" x2="${left + plotW}" y2="${y0 + chartH}" class="axis"/>`)
  out.push(`<line x1="${left}" y1="${y0}" x2="${left}" y2="${y0 + chartH}" class="axis"/>`)
  out.push(`<text x="${left - 6}" y="${y0 + 4}" class="tick" text-anchor="end">${fmt(maxRate)}/s</text>`)
  out.push(`<text x="${left - 6}" y="${y0 + chartH}" class="tick" text-anchor="end">0</text>`)
  const ticks = 6
  for (let i = 0; i <= ticks; i++) {
    const ms = (i / ticks) * scenario.durationMs
    out.push(`<text x="${fmt(xt(ms))}" y="${y0 + chartH + 14}" class="tick" text-anchor="middle">${clock(ms)}</text>`)
  }
  // Breaker states as bands.
  breakers.forEach((name, i) => {
    const by = y0 + chartH + 24 + i * (bandH + 4)
    out.push(`<text x="${left - 6}" y="${by + 10}" class="tick" text-anchor="end">${escape(name)}</text>`)
    out.push(`<rect x="${left}" y="${by}" width="${plotW}" height="${bandH}" fill="${stateColour["closed"]}"/>`)
    const ts = run.report.breakerTransitions.filter((t) => t.breaker === name)
    ts.forEach((t, j) => {
      const end = ts[j + 1]?.at ?? scenario.durationMs
      if (t.to === "closed") return
      const w = Math.max(0.5, xt(end) - xt(t.at))
      out.push(`<rect x="${fmt(xt(t.at))}" y="${by}" width="${fmt(w)}" height="${bandH}" fill="${stateColour[t.to] ?? "#999"}"/>`)
    })
  })
  if (breakers.length > 0) {
    const ly = y0 + chartH + 24 + breakers.length * (bandH + 4) + 12
    out.push(
      `<text x="${left}" y="${ly}" class="legend">breaker: <tspan fill="${stateColour["open"]}">■ open</tspan> <tspan fill="#bf9000">■ half-open</tspan> <tspan fill="#93c47d">■ closed</tspan></text>`
    )
  }
  return { svg: out.join("\n"), height }
}

/**
 * The timeline of every scenario as one SVG document.
 *
 * @since 0.1.0
 * @category svg
 */
export const svg = (results: ReadonlyArray<ScenarioResult>): string => {
  const width = 1100
  let top = 10
  const panels: Array<string> = []
  for (const r of results) {
    const p = panel(r, top, width)
    panels.push(p.svg)
    top += p.height + 16
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${top}" viewBox="0 0 ${width} ${top}" font-family="sans-serif">`,
    `<style>.title{font-size:14px;font-weight:bold}.sub{font-size:11px;fill:#444}.tick{font-size:10px;fill:#444}.legend{font-size:11px}.axis{stroke:#666;stroke-width:1}</style>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...panels,
    `</svg>`,
    ""
  ].join("\n")
}
