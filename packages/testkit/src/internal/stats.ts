/**
 * Incremental statistics for long simulated runs: a log-bucketed latency
 * histogram (1 % resolution, constant memory) and per-bucket counters for
 * timelines.
 */

const RATIO = 1.01
const LOG_RATIO = Math.log(RATIO)
const BUCKETS = 2400 // 1.01^2400 ms is far beyond any run

/** Latencies in milliseconds; percentiles are exact to 1 %. */
export class Histogram {
  private readonly counts = new Float64Array(BUCKETS)
  count = 0
  max = 0

  add(ms: number): void {
    const i = ms < 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(ms) / LOG_RATIO))
    this.counts[i] = (this.counts[i] ?? 0) + 1
    this.count += 1
    if (ms > this.max) this.max = ms
  }

  /** The `q`-quantile (0–1), as the upper edge of its bucket, in whole milliseconds; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0
      if (seen >= rank) return Math.round(Math.min(this.max, i === 0 ? 1 : Math.pow(RATIO, i)))
    }
    return Math.round(this.max)
  }
}

/** Counts per time bucket, per named series. */
export class Timeline {
  readonly series = new Map<string, Uint32Array>()
  readonly size: number

  constructor(readonly durationMs: number, readonly bucketMs: number) {
    this.size = Math.max(1, Math.ceil(durationMs / bucketMs))
  }

  add(name: string, atMs: number): void {
    let s = this.series.get(name)
    if (s === undefined) {
      s = new Uint32Array(this.size)
      this.series.set(name, s)
    }
    const i = Math.min(this.size - 1, Math.max(0, Math.floor(atMs / this.bucketMs)))
    s[i] = (s[i] ?? 0) + 1
  }
}
