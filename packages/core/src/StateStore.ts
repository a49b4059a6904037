/**
 * Where policies keep their state: breaker windows, token buckets, retry
 * budgets, key health.
 *
 * A policy's state is plain JSON data and every change is one atomic
 * `modify` with a pure function, so the same policy code runs on the
 * embedded in-memory store (one process, no set-up) and on a shared store
 * (Redis: compare-and-set of the encoded state) that lets N replicas open one
 * breaker together. A shared store degrades to local state on trouble; it
 * never fails a call, so `modify` has no error channel.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fastPath from "./internal/fastPath.js"

/**
 * A typed slot in the store. `id` is namespaced by policy kind
 * (`"breaker/openai-gpt4o"`); `initial` builds the state of a slot never
 * written. State must be JSON data (numbers, strings, booleans, arrays,
 * plain objects) and is never mutated: `modify` returns a new value.
 *
 * @since 0.1.0
 * @category models
 */
export interface StateKey<S> {
  readonly id: string
  readonly initial: () => S
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const key = <S>(id: string, initial: () => S): StateKey<S> => ({ id, initial })

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Atomically replaces the state with `f`'s second result and returns its first. */
  readonly modify: <S, A>(key: StateKey<S>, f: (state: S) => readonly [A, S]) => Effect.Effect<A>
  readonly get: <S>(key: StateKey<S>) => Effect.Effect<S>
  readonly set: <S>(key: StateKey<S>, state: S) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class StateStore extends Context.Tag("@resilient-ai/core/StateStore")<StateStore, Service>() {}

/**
 * An in-memory store. `modify` runs `f` synchronously, so within one process
 * it is atomic without locks.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (): Service => {
  // One cell per id, so a policy can resolve its slot once (see internal/fastPath.ts).
  const cells = new Map<string, { present: boolean; value: unknown; beforeRead: (() => void) | undefined }>()
  const cellOf = (id: string) => {
    let cell = cells.get(id)
    if (cell === undefined) {
      cell = { present: false, value: undefined, beforeRead: undefined }
      cells.set(id, cell)
    }
    return cell
  }
  const read = <S>(k: StateKey<S>): S => {
    const cell = cells.get(k.id)
    if (cell === undefined) return k.initial()
    cell.beforeRead?.()
    return cell.present ? (cell.value as S) : k.initial()
  }
  const write = <S>(k: StateKey<S>, state: S): void => {
    const cell = cellOf(k.id)
    cell.present = true
    cell.value = state
  }
  const service: Service = {
    modify: (k, f) =>
      Effect.sync(() => {
        const [a, next] = f(read(k))
        write(k, next)
        return a
      }),
    get: (k) => Effect.sync(() => read(k)),
    set: (k, state) => Effect.sync(() => write(k, state))
  }
  // Lets the policies decide an admission inside one effect (see internal/fastPath.ts).
  // One `SyncCell` per id: a policy may keep per-slot data beside it, shared by every instance on that slot.
  const syncCells = new Map<string, fastPath.SyncCell<unknown>>()
  fastPath.syncStores.set(service, <S>(k: StateKey<S>): fastPath.SyncCell<S> => {
    const known = syncCells.get(k.id)
    if (known !== undefined) return known as fastPath.SyncCell<S>
    const cell = cellOf(k.id)
    const made: fastPath.SyncCell<S> = {
      get: () => (cell.present ? (cell.value as S) : k.initial()),
      set: (state) => {
        cell.present = true
        cell.value = state
      },
      beforeRead: (write) => {
        cell.beforeRead = write
      }
    }
    syncCells.set(k.id, made as fastPath.SyncCell<unknown>)
    return made
  })
  return service
}

/**
 * The embedded default: state lives in this process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<StateStore> = Layer.sync(StateStore, makeMemory)
