/**
 * Metrics tagged by values known only at run time, made once per value.
 *
 * `Metric.tagged(...)` (and `taggedWithLabels` with a fresh label array)
 * builds a new metric on every update, and effect's registry then hashes the
 * whole key again to find its hook: about 2 µs per update, more than a whole
 * policy should cost. `taggedBy` keeps one tagged metric per combination of
 * values, with its labels in a fixed order (the order nested `Metric.tagged`
 * calls give), so the metric and its key are the same as before.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"

/**
 * `taggedBy(requests, ["deployment", "source"])("gpt-4o", "primary")` is
 * `requests` tagged `deployment=gpt-4o, source=primary`, made on first use.
 *
 * @since 0.1.0
 * @category constructors
 */
export const taggedBy = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  tags: ReadonlyArray<string>
): (...values: ReadonlyArray<string>) => Metric.Metric<Type, In, Out> => {
  const made = new Map<string, Metric.Metric<Type, In, Out>>()
  return (...values) => {
    const key = values.join("\u0000")
    let tagged = made.get(key)
    if (tagged === undefined) {
      tagged = Metric.taggedWithLabels(metric, tags.map((tag, i) => MetricLabel.make(tag, values[i] ?? "")))
      made.set(key, tagged)
    }
    return tagged
  }
}
