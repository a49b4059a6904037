/**
 * Real-time load at a steady rate, and the figures of an outage scenario
 * read from it: what share was answered, latency by phase, when the primary
 * took its share back.
 */
import * as Net from "node:net"

/** One client request: when it started (ms since the load began), how it ended. */
export interface Sample {
  readonly startMs: number
  readonly latencyMs: number
  readonly answered: boolean
  /** `x-resilient-deployment`. */
  readonly deployment: string | null
  /** `x-resilient-attempts`: calls that reached a provider (0 without the header). */
  readonly attempts: number
  /** The HTTP status, 0 when the request failed. */
  readonly status: number
  /** What went wrong, for an unanswered request: the start of its body, or the fetch error. */
  readonly problem?: string
  /** Text deltas the client received (the chaos upstream's `wordN` tokens); 0 for a whole answer. */
  readonly tokens: number
}

export interface Load {
  /** Requests per second. */
  readonly rate: number
  readonly durationMs: number
  readonly url: string
  readonly body: string
  readonly stream: boolean
  /** Run at these times (ms since the load began), without holding the load up. */
  readonly at?: ReadonlyArray<{ readonly ms: number; readonly run: () => Promise<void> }>
}

const call = async (load: Load, startMs: number, t0: number): Promise<Sample> => {
  try {
    const response = await fetch(load.url, { method: "POST", body: load.body, headers: { "content-type": "application/json" } })
    const text = await response.text()
    // A stream is answered when it ends with [DONE] and carries no error event.
    const answered = response.status === 200 && (!load.stream || (text.includes("data: [DONE]") && !text.includes(`"error"`)))
    return {
      startMs,
      latencyMs: performance.now() - t0 - startMs,
      answered,
      deployment: response.headers.get("x-resilient-deployment"),
      attempts: Number(response.headers.get("x-resilient-attempts") ?? 0),
      status: response.status,
      tokens: load.stream ? (text.match(/"content":"\s?word\d+"/g) ?? []).length : 0,
      ...(answered ? {} : { problem: text.slice(0, 300) })
    }
  } catch (e) {
    return { startMs, latencyMs: performance.now() - t0 - startMs, answered: false, deployment: null, attempts: 0, status: 0, tokens: 0, problem: String(e) }
  }
}

/** Starts a request every `1000 / rate` ms for `durationMs` (on schedule, not after the previous one), then waits for all. */
export const run = async (load: Load): Promise<ReadonlyArray<Sample>> => {
  const t0 = performance.now()
  const interval = 1000 / load.rate
  const pending: Array<Promise<Sample>> = []
  const events = [...(load.at ?? [])].sort((a, b) => a.ms - b.ms)
  const side: Array<Promise<void>> = []
  for (let i = 0; i * interval < load.durationMs; i++) {
    const due = i * interval
    const wait = t0 + due - performance.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    while (events[0] !== undefined && events[0].ms <= due) side.push(events.shift()!.run())
    pending.push(call(load, performance.now() - t0, t0))
  }
  await Promise.all(side)
  return Promise.all(pending)
}

export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN
}

export const between = (samples: ReadonlyArray<Sample>, from: number, to: number) =>
  samples.filter((s) => s.startMs >= from && s.startMs < to)

/**
 * Milliseconds from `endMs` to the first request from which on every request
 * was answered by `deployment`; Infinity when that never happened.
 */
export const tookBackAfter = (samples: ReadonlyArray<Sample>, deployment: string, endMs: number): number => {
  const after = samples.filter((s) => s.startMs >= endMs).sort((a, b) => a.startMs - b.startMs)
  let from: number | undefined
  for (const s of after) {
    if (s.deployment !== deployment) from = undefined
    else if (from === undefined) from = s.startMs
  }
  return from === undefined ? Number.POSITIVE_INFINITY : from - endMs
}

/**
 * A TCP forwarder to `target()` (read per connection: the target may be
 * known only later), on a port of its own, that can refuse connections:
 * `refuse()` closes its listening socket and every connection (a new
 * connection then gets ECONNREFUSED), `accept()` listens again.
 */
export const forwarder = async (target: () => { readonly host: string; readonly port: number }) => {
  const sockets = new Set<Net.Socket>()
  const server = Net.createServer((client) => {
    const { host, port } = target()
    const upstream = Net.connect(port, host)
    sockets.add(client).add(upstream)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on("error", drop).on("close", drop)
    upstream.on("error", drop).on("close", drop)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  return {
    port,
    refuse: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
        sockets.clear()
      }),
    accept: () => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        if (server.listening) server.close(() => resolve())
        else resolve()
      })
  }
}
