/**
 * effect's `Metric` registry in the Prometheus text exposition format
 * (version 0.0.4), for `GET /metrics`.
 *
 * Why not `@effect/opentelemetry`'s Prometheus exporter: it is not a
 * dependency of this repository, and it would bring the OpenTelemetry SDK
 * (a metric reader, a resource, an HTTP server of its own) to print what
 * `Metric.snapshot` already holds. This module is that printing: one pure
 * function over the snapshot.
 *
 * Rules:
 * - Metrics of one name form one family: one `# HELP` (the description) and
 *   one `# TYPE`, then a sample per tag set, sorted, so the text is stable.
 * - Counter → `counter`, gauge → `gauge`; a histogram → `histogram` with
 *   cumulative `_bucket{le}` samples (effect's buckets are cumulative), a
 *   `+Inf` bucket equal to `_count`, and `_sum`; a summary → `summary` with
 *   a `quantile` label per known quantile; a frequency → `counter` with one
 *   sample per value, its label `value`.
 * - Names that Prometheus refuses are fixed (`[^a-zA-Z0-9_:]` → `_`); label
 *   values are escaped (`\\`, `"`, newline).
 * - Tags are what the metrics were given: resilient-ai tags carry deployment
 *   and key names, never a key.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

/**
 * The media type of the text format.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const metricName = (name: string): string => {
  const fixed = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[a-zA-Z_:]/.test(fixed) ? fixed : `_${fixed}`
}

const labelName = (name: string): string => {
  const fixed = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[a-zA-Z_]/.test(fixed) ? fixed : `_${fixed}`
}

const escapeValue = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

type Labels = ReadonlyArray<readonly [string, string]>

const labels = (pairs: Labels): string =>
  pairs.length === 0 ? "" : `{${pairs.map(([k, v]) => `${labelName(k)}="${escapeValue(v)}"`).join(",")}}`

const num = (n: number | bigint): string =>
  typeof n === "bigint"
    ? n.toString()
    : Number.isNaN(n)
    ? "NaN"
    : n === Number.POSITIVE_INFINITY
    ? "+Inf"
    : n === Number.NEGATIVE_INFINITY
    ? "-Inf"
    : String(n)

interface Family {
  type: "counter" | "gauge" | "histogram" | "summary"
  help: string | undefined
  readonly lines: Array<string>
}

const samples = (name: string, base: Labels, state: MetricState.MetricState.Untyped): {
  readonly type: Family["type"]
  readonly lines: ReadonlyArray<string>
} => {
  if (MetricState.isCounterState(state)) return { type: "counter", lines: [`${name}${labels(base)} ${num(state.count)}`] }
  if (MetricState.isGaugeState(state)) return { type: "gauge", lines: [`${name}${labels(base)} ${num(state.value)}`] }
  if (MetricState.isHistogramState(state)) {
    const buckets = state.buckets
      .filter(([le]) => Number.isFinite(le))
      .map(([le, count]) => `${name}_bucket${labels([...base, ["le", num(le)]])} ${num(count)}`)
    return {
      type: "histogram",
      lines: [
        ...buckets,
        `${name}_bucket${labels([...base, ["le", "+Inf"]])} ${num(state.count)}`,
        `${name}_sum${labels(base)} ${num(state.sum)}`,
        `${name}_count${labels(base)} ${num(state.count)}`
      ]
    }
  }
  if (MetricState.isSummaryState(state)) {
    const quantiles = state.quantiles.flatMap(([q, value]) =>
      Option.isSome(value) ? [`${name}${labels([...base, ["quantile", num(q)]])} ${num(value.value)}`] : []
    )
    return {
      type: "summary",
      lines: [...quantiles, `${name}_sum${labels(base)} ${num(state.sum)}`, `${name}_count${labels(base)} ${num(state.count)}`]
    }
  }
  if (MetricState.isFrequencyState(state)) {
    const lines = [...state.occurrences.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([value, count]) => `${name}${labels([...base, ["value", value]])} ${num(count)}`)
    return { type: "counter", lines }
  }
  return { type: "gauge", lines: [] }
}

/**
 * The text of a snapshot.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (snapshot: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  const sorted = snapshot
    .map((pair) => ({
      pair,
      name: metricName(pair.metricKey.name),
      base: pair.metricKey.tags.map((t): readonly [string, string] => [t.key, t.value])
    }))
    .sort((a, b) => (a.name === b.name ? (labels(a.base) < labels(b.base) ? -1 : 1) : a.name < b.name ? -1 : 1))
  for (const { pair, name, base } of sorted) {
    const { type, lines } = samples(name, base, pair.metricState)
    const family = families.get(name) ?? { type, help: undefined, lines: [] }
    family.help ??= Option.getOrUndefined(pair.metricKey.description)
    family.lines.push(...lines)
    families.set(name, family)
  }
  const out: Array<string> = []
  for (const [name, family] of families) {
    if (family.help !== undefined) out.push(`# HELP ${name} ${escapeHelp(family.help)}`)
    out.push(`# TYPE ${name} ${family.type}`, ...family.lines)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
}

/**
 * The text of every metric registered now.
 *
 * @since 0.1.0
 * @category formatting
 */
export const scrape: Effect.Effect<string> = Effect.map(Metric.snapshot, format)
