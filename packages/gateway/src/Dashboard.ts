/**
 * `GET /dashboard`: a live page of the gateway's deployments, fed by
 * `GET /status/stream` (`StatusStream`).
 *
 * It shows a tile per deployment (breaker state in colour, failure and slow
 * rates against their thresholds, window counts, time until half-open,
 * latency p50/p99, keys with their health and cooldowns, limiter tokens
 * left, bulkhead in use and queued, the adaptive limit), requests per
 * second by who answered over the last three minutes, and the last
 * transitions. With `controls` (the demo), buttons take the primary down,
 * bring it up and start a 429 storm through `/admin/outage`.
 *
 * Rules:
 * - One self-contained document: inline style and script, no build step,
 *   nothing fetched from another origin, standard APIs only (EventSource,
 *   fetch, SVG); the colours are the drill's (`Palette`).
 * - It holds no data of its own, so it is served without gateway auth; the
 *   stream it reads is guarded like `/status`. It shows names, never keys.
 *
 * @since 0.1.0
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Palette from "@resilient-ai/testkit/Palette"
import * as page from "./internal/dashboardPage.js"

const labels: Record<Palette.Source, string> = {
  primary: "primary",
  "backup-key": "backup key",
  "fallback-provider": "fallback",
  cache: "cache",
  "stale-cache": "stale cache",
  static: "static",
  failed: "failed"
}

/**
 * The page's HTML.
 *
 * @since 0.1.0
 * @category rendering
 */
export const html = (options: { readonly controls: boolean }): string =>
  page.render({
    colours: { source: Palette.source, breakerState: Palette.breakerState },
    sources: Object.entries(labels),
    controls: options.controls
  })

/**
 * The response of `GET /dashboard`, rendered once.
 *
 * @since 0.1.0
 * @category responses
 */
export const response = (options: { readonly controls: boolean }): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.text(html(options), {
    contentType: "text/html; charset=utf-8",
    headers: { "cache-control": "no-cache" }
  })
