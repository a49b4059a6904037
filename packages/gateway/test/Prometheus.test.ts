import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Prometheus from "../src/Prometheus.js"

describe("Prometheus text from effect's metrics", () => {
  it.effect("counters, gauges and histograms: one HELP and TYPE per family, tags as labels, cumulative buckets ending in +Inf", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("test_prom_calls_total", { description: "calls\nby outcome", incremental: true })
      yield* Metric.increment(Metric.tagged(counter, "outcome", "ok"))
      yield* Metric.increment(Metric.tagged(counter, "outcome", "ok"))
      yield* Metric.increment(Metric.tagged(counter, "outcome", "say \"no\""))
      yield* Metric.set(Metric.gauge("test-prom.gauge"), 3)
      const histogram = Metric.histogram("test_prom_latency_ms", MetricBoundaries.fromIterable([10, 100]))
      yield* Metric.update(histogram, 5)
      yield* Metric.update(histogram, 50)
      yield* Metric.update(histogram, 500)
      const text = Prometheus.format((yield* Metric.snapshot).filter((p) => p.metricKey.name.startsWith("test")))
      expect(text).toContain([
        "# HELP test_prom_calls_total calls\\nby outcome",
        "# TYPE test_prom_calls_total counter",
        "test_prom_calls_total{outcome=\"ok\"} 2",
        "test_prom_calls_total{outcome=\"say \\\"no\\\"\"} 1"
      ].join("\n"))
      // A name Prometheus refuses is fixed.
      expect(text).toContain("# TYPE test_prom_gauge gauge\ntest_prom_gauge 3\n")
      expect(text).toContain([
        "# TYPE test_prom_latency_ms histogram",
        "test_prom_latency_ms_bucket{le=\"10\"} 1",
        "test_prom_latency_ms_bucket{le=\"100\"} 2",
        "test_prom_latency_ms_bucket{le=\"+Inf\"} 3",
        "test_prom_latency_ms_sum 555",
        "test_prom_latency_ms_count 3"
      ].join("\n"))
      expect(text.endsWith("\n")).toBe(true)
      expect(text.match(/# TYPE test_prom_calls_total/g)).toHaveLength(1)
    }))

  it("an empty registry is an empty text", () => {
    expect(Prometheus.format([])).toBe("")
  })
})
