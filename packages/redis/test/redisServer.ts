/**
 * A redis-server of the tests' own: loopback only, no persistence, a pid
 * file in its own temporary directory (a second daemon never collides with
 * the first), stopped by its pid.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** The pid of the running server (changes on restart). */
  readonly pid: () => number
  /** Kills the server and waits until its process is gone. */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port. */
  readonly start: () => Promise<void>
  /** Stops it and removes its directory. */
  readonly dispose: () => Promise<void>
}

export const hasRedisServer = (): boolean => spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0

export const installHint = "Redis tests skipped: no REDIS_URL and no redis-server on PATH (Debian: apt-get install -y redis-server)"

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Resolves once the server answers PING. */
const ready = async (port: number): Promise<void> => {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = new Socket()
      socket.once("error", () => resolve(false))
      socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"))
      socket.once("data", (data) => {
        socket.destroy()
        resolve(data.toString().startsWith("+PONG"))
      })
    })
    if (ok) return
    await sleep(25)
  }
  throw new Error(`redis-server on port ${port} did not answer`)
}

export const startRedisServer = async (): Promise<RedisServer> => {
  const dir = mkdtempSync(join(tmpdir(), "resilient-ai-redis-"))
  const port = await freePort()
  const pidFile = join(dir, "redis.pid")
  let pid = 0
  const start = async () => {
    execFileSync("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes",
      "--enable-debug-command", "local", "--pidfile", pidFile, "--logfile", join(dir, "redis.log"), "--dir", dir
    ])
    await ready(port)
    pid = Number(readFileSync(pidFile, "utf8").trim())
  }
  const stop = async () => {
    if (pid === 0) return
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
    while (alive(pid)) await sleep(10)
    pid = 0
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: () => pid,
    stop,
    start,
    dispose: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
