/**
 * The pure state machines behind the `StateStore` slots, for stores
 * kept outside this package (`@resilient-ai/redis`): a shared store keeps
 * their JSON state and runs these same functions, so every rule has one
 * implementation whichever store holds its state.
 *
 * Each namespace is one policy's machine: `(config, state, now) => step`.
 * Applications do not need this module; they provide a `StateStore` layer.
 *
 * @since 0.1.0
 */
/**
 * The circuit breaker (docs/semantics.md rules 1-11).
 *
 * @since 0.1.0
 */
export * as Breaker from "./internal/breakerState.js"
/**
 * The rate limiter's token buckets (rule 21).
 *
 * @since 0.1.0
 */
export * as TokenBucket from "./internal/tokenBucket.js"
/**
 * Key health (rules 23-26).
 *
 * @since 0.1.0
 */
export * as KeyPool from "./internal/keyPoolState.js"
/**
 * The retry budget's window (rule 17).
 *
 * @since 0.1.0
 */
export * as RetryBudget from "./internal/retryBudgetState.js"
/**
 * The adaptive concurrency limit (rule 29).
 *
 * @since 0.1.0
 */
export * as AdaptiveLimit from "./internal/adaptiveLimitState.js"
