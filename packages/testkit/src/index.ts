/**
 * @since 0.1.0
 */
export * as VirtualTime from "./VirtualTime.js"
