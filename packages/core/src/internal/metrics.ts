import * as Metric from "effect/Metric"
import type * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"

/**
 * Metrics whose tags are fixed when the metric is made.
 *
 * `Metric.tagged(...)` merges its tags into a fresh array on every update,
 * which misses effect's hook cache and hashes the whole key again: about
 * 2 µs per update, more than a whole policy should cost. A metric made from
 * an already-tagged key resolves its hook once. Updates go through
 * `unsafeUpdate` inside effects we already run, so the hot path adds no
 * effect of its own (fiber-level `Effect.tagMetrics` labels are not added).
 */
const labels = (tags: Readonly<Record<string, string>>): ReadonlyArray<MetricLabel.MetricLabel> =>
  Object.entries(tags).map(([key, value]) => MetricLabel.make(key, value))

export const counter = (
  name: string,
  description: string,
  tags: Readonly<Record<string, string>>
): Metric.Metric.Counter<number> =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.counter(name, { description, incremental: true }), labels(tags)))

export const gauge = (
  name: string,
  description: string,
  tags: Readonly<Record<string, string>>
): Metric.Metric.Gauge<number> =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.gauge(name, { description }), labels(tags)))

export const histogram = (
  name: string,
  description: string,
  boundaries: MetricBoundaries.MetricBoundaries,
  tags: Readonly<Record<string, string>>
): Metric.Metric.Histogram<number> =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.histogram(name, boundaries, description), labels(tags)))

