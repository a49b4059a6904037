// Standalone policies as services, each built by its own layer; the app's call uses them
// in the order of docs/semantics.md rule 18 (retry, then breaker, then bulkhead).
import { Bulkhead, CircuitBreaker, Errors, Retry, StateStore } from "@resilient-ai/core"
import { Context, Effect, Layer } from "effect"

// The app's model call, as a service: swap its layer for a real client in production.
class Upstream extends Context.Tag("app/Upstream")<Upstream, {
  readonly complete: (prompt: string) => Effect.Effect<string, Errors.ProviderUnavailableError>
}>() {}

// A flaky upstream for the example: the first two calls answer 503.
let calls = 0
const UpstreamFlaky = Layer.succeed(Upstream, {
  complete: (prompt) =>
    Effect.suspend(() =>
      ++calls <= 2 ? Effect.fail(new Errors.ProviderUnavailableError({ status: 503 })) : Effect.succeed(`echo: ${prompt}`)
    )
})

const Policies = Layer.mergeAll(
  Retry.layer({ maxRetries: 3, baseDelay: "10 millis", jitter: "none" }),
  CircuitBreaker.layer({ name: "upstream" }),
  Bulkhead.layer({ name: "upstream", maxConcurrent: 8, maxQueue: 16 })
).pipe(Layer.provide(StateStore.layerMemory))

const complete = (prompt: string) =>
  Effect.gen(function*() {
    const upstream = yield* Upstream
    const retry = yield* Retry.Retry
    const breaker = yield* CircuitBreaker.CircuitBreaker
    const bulkhead = yield* Bulkhead.Bulkhead
    return yield* retry.execute(breaker.execute(bulkhead.execute(upstream.complete(prompt))))
  })

Effect.runPromise(complete("hello").pipe(Effect.provide(Layer.merge(Policies, UpstreamFlaky)))).then(
  (answer) => console.log(`${answer} (after ${calls} calls)`)
)
