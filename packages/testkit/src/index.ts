/**
 * @since 0.1.0
 */
export * as Chaos from "./Chaos.js"

/**
 * @since 0.1.0
 */
export * as ChaosUpstream from "./ChaosUpstream.js"

/**
 * @since 0.1.0
 */
export * as Drill from "./Drill.js"

/**
 * @since 0.1.0
 */
export * as FaultScript from "./FaultScript.js"

/**
 * @since 0.1.0
 */
export * as Palette from "./Palette.js"

/**
 * @since 0.1.0
 */
export * as Scenarios from "./Scenarios.js"

/**
 * @since 0.1.0
 */
export * as SimulatedProviders from "./SimulatedProviders.js"

/**
 * @since 0.1.0
 */
export * as VirtualTime from "./VirtualTime.js"
