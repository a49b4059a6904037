/**
 * The `Clock` of a running fiber, for code that already holds the fiber
 * (inside `withFiberRuntime`).
 *
 * `Context.get` is a map lookup on every call; the fiber's default services
 * are one immutable `Context` that changes only when a `Clock` (or another
 * default service) is provided, so the last one seen and its clock are kept.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"

let lastServices: Context.Context<never> | undefined
let lastClock: Clock.Clock | undefined

export const clockOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Clock.Clock => {
  const services = fiber.currentDefaultServices
  if (services === lastServices && lastClock !== undefined) return lastClock
  const clock = Context.get(services, Clock.Clock)
  lastServices = services
  lastClock = clock
  return clock
}
