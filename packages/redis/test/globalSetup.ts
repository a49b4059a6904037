/**
 * Gives the Redis tests a server: `REDIS_URL` when set, else a redis-server
 * of their own when the binary is on PATH (stopped at the end), else none,
 * and the tests that need one are skipped with one line saying how to get it.
 */
import type {} from "vitest"
import type { TestProject } from "vitest/node"
import { hasRedisServer, installHint, startRedisServer } from "./redisServer.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** The URL of a Redis server for the tests, or "" when there is none. */
    readonly redisUrl: string
    /** Whether tests may start servers of their own (fault tests stop and restart theirs). */
    readonly redisServerBinary: boolean
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const binary = hasRedisServer()
  project.provide("redisServerBinary", binary)
  const given = process.env["REDIS_URL"]
  if (given !== undefined && given !== "") {
    project.provide("redisUrl", given)
    return undefined
  }
  if (!binary) {
    console.warn(installHint)
    project.provide("redisUrl", "")
    return undefined
  }
  const server = await startRedisServer()
  project.provide("redisUrl", server.url)
  return () => server.dispose()
}
