/**
 * @since 0.1.0
 */
export * as Errors from "./Errors.js"
export * as StateStore from "./StateStore.js"
export * as Deadline from "./Deadline.js"
export * as CircuitBreaker from "./CircuitBreaker.js"
