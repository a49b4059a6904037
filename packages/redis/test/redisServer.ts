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

export const startRedisServer = async (extraArgs: ReadonlyArray<string> = []): Promise<RedisServer> => {
  const dir = mkdtempSync(join(tmpdir(), "resilient-ai-redis-"))
  const port = await freePort()
  const pidFile = join(dir, "redis.pid")
  let pid = 0
  const start = async () => {
    execFileSync("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes",
      "--enable-debug-command", "local", "--pidfile", pidFile, "--logfile", join(dir, "redis.log"), "--dir", dir,
      ...extraArgs
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

export interface RedisCluster {
  /** The nodes' URLs. */
  readonly urls: ReadonlyArray<string>
  /** Stops every node and removes their directories. */
  readonly dispose: () => Promise<void>
}

/**
 * A Redis Cluster of 3 masters on loopback (no replicas), its slots spread
 * by `redis-cli --cluster create`; resolves once every node says the cluster
 * is ok.
 */
export const startRedisCluster = async (): Promise<RedisCluster> => {
  const nodes: Array<RedisServer> = []
  try {
    for (let i = 0; i < 3; i++) {
      // Each node's cluster config file lives in its own directory (--dir).
      nodes.push(await startRedisServer(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]))
    }
    execFileSync("redis-cli", [
      "--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"
    ], { stdio: "ignore" })
    for (const node of nodes) {
      for (let i = 0; ; i++) {
        const info = execFileSync("redis-cli", ["-p", String(node.port), "cluster", "info"], { encoding: "utf8" })
        if (info.includes("cluster_state:ok")) break
        if (i > 400) throw new Error(`cluster node on port ${node.port} never reached cluster_state:ok`)
        await sleep(25)
      }
    }
  } catch (e) {
    await Promise.all(nodes.map((n) => n.dispose()))
    throw e
  }
  return {
    urls: nodes.map((n) => n.url),
    dispose: async () => {
      await Promise.all(nodes.map((n) => n.dispose()))
    }
  }
}
