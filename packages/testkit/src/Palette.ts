/**
 * The colours of who answered and of breaker states, shared by the drill's
 * SVG (`DrillReport`) and the gateway's live dashboard, so a source reads
 * the same in both. It lives here because the gateway depends on the
 * testkit, not the other way round.
 *
 * The drill charts answers by deployment in cascade order; the dashboard
 * charts them by source. The two meet because the first deployment of a
 * cascade is the primary and the next ones are its fallbacks: `primary` has
 * the colour of cascade position 0, `fallback-provider` that of position 1.
 *
 * @since 0.1.0
 */

/**
 * Colours of the deployments of a cascade, by position (0 = the primary).
 *
 * @since 0.1.0
 * @category colours
 */
export const cascade: ReadonlyArray<string> = ["#3d85c6", "#6aa84f", "#e69138", "#45818e", "#a64d79"]

/**
 * Colours of the sources of an answer (`ResilientClient.ChatResult["source"]`, plus `failed`).
 *
 * @since 0.1.0
 * @category colours
 */
export const source = {
  primary: "#3d85c6",
  /** The primary deployment through another of its keys: the primary's hue, lighter. */
  "backup-key": "#9fc5e8",
  "fallback-provider": "#6aa84f",
  cache: "#8e7cc3",
  "stale-cache": "#b4a7d6",
  static: "#f1c232",
  failed: "#cc0000"
} as const

/**
 * A source of an answer, as {@link source} names it.
 *
 * @since 0.1.0
 * @category models
 */
export type Source = keyof typeof source

/**
 * Colours of circuit breaker states.
 *
 * @since 0.1.0
 * @category colours
 */
export const breakerState = {
  closed: "#d9ead3",
  open: "#cc0000",
  "half-open": "#f1c232",
  "forced-open": "#990000",
  "forced-closed": "#b6d7a8",
  disabled: "#cccccc"
} as const
