/**
 * @since 0.1.0
 */
export * as AttemptEvents from "./AttemptEvents.js"
export * as Bulkhead from "./Bulkhead.js"
export * as CircuitBreaker from "./CircuitBreaker.js"
export * as Deadline from "./Deadline.js"
export * as Errors from "./Errors.js"
export * as Fallback from "./Fallback.js"
export * as Policy from "./Policy.js"
export * as RateLimiter from "./RateLimiter.js"
export * as RequestBudget from "./RequestBudget.js"
export * as Retry from "./Retry.js"
export * as RetryBudget from "./RetryBudget.js"
export * as StateStore from "./StateStore.js"
export * as StaticReply from "./StaticReply.js"
export * as Timeout from "./Timeout.js"
