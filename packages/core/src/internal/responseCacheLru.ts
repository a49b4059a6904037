/**
 * A least-recently-used map with a fixed capacity. A JavaScript `Map` keeps
 * insertion order, so "use" is delete + re-insert and the least recently used
 * entry is the first key: every operation is O(1).
 */
export class Lru<V> {
  private readonly map = new Map<string, V>()

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.map.size
  }

  /** Reads `key` and makes it the most recently used. */
  get(key: string): V | undefined {
    const value = this.map.get(key)
    if (value === undefined) return undefined
    this.map.delete(key)
    this.map.set(key, value)
    return value
  }

  /** Reads `key` without touching its recency. */
  peek(key: string): V | undefined {
    return this.map.get(key)
  }

  /**
   * Writes `key` as the most recently used and evicts the least recently used
   * entries beyond capacity; returns how many were evicted.
   */
  set(key: string, value: V): number {
    this.map.delete(key)
    this.map.set(key, value)
    let evicted = 0
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next()
      if (oldest.done === true) break
      this.map.delete(oldest.value)
      evicted++
    }
    return evicted
  }

  delete(key: string): boolean {
    return this.map.delete(key)
  }

  clear(): void {
    this.map.clear()
  }

  keys(): ReadonlyArray<string> {
    return Array.from(this.map.keys())
  }
}
