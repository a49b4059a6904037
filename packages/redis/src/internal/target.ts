/**
 * Where the store connects, checked before any connection is made. A URL
 * that cannot be parsed (or whose user or password is not valid
 * percent-encoding) made the layer fail with a defect from `new URL` or
 * `decodeURIComponent`, and one that parses but cannot connect (port 99999,
 * no host, an empty cluster) left the store degraded to local state for
 * ever, logging "unreachable" as if Redis were down. Both are configuration
 * errors: an `InvalidConfigError` naming the field, before anything starts.
 *
 * No error repeats the URL: it may carry a password.
 *
 * @internal
 */
import * as Errors from "@resilient-ai/core/Errors"
import * as Either from "effect/Either"

export interface Node {
  readonly host: string
  readonly port: number
}

/** The checked target: one server's URL as given (ioredis reads it), or a cluster's nodes and credentials. */
export type Target =
  | { readonly url: string }
  | {
    readonly cluster: ReadonlyArray<Node>
    /** The first node's credentials, used for every node. */
    readonly credentials: { readonly username?: string; readonly password?: string }
  }

const component = "RedisStore"
const expected = "expected redis://[[user]:password@]host[:port][/db] or rediss://…"

const invalid = (path: string, detail: string) => new Errors.InvalidConfigError({ component, path, detail })

/** `url` as a connectable Redis URL, or what is wrong with it (at `path`). */
const parse = (url: string, path: string): Either.Either<URL, Errors.InvalidConfigError> => {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  if (parsed === undefined) return Either.left(invalid(path, `${expected}; this is not a URL`))
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    return Either.left(invalid(path, `${expected}; the scheme is ${JSON.stringify(parsed.protocol.slice(0, -1))}`))
  }
  if (parsed.hostname === "") return Either.left(invalid(path, `${expected}; the host is missing`))
  // `URL` itself refuses a port above 65535; port 0 parses but connects nowhere.
  if (parsed.port === "0") return Either.left(invalid(path, `${expected}; port 0 is not a port to connect to`))
  const db = parsed.pathname.replace(/^\//, "")
  if (db !== "" && !/^\d+$/.test(db)) return Either.left(invalid(path, `${expected}; the database must be a number`))
  // ioredis and `credentialsOf` decode both; a bad escape would be a `URIError` defect there.
  if (!decodes(parsed.username) || !decodes(parsed.password)) {
    return Either.left(invalid(path, `${expected}; the user or password is not valid percent-encoding`))
  }
  return Either.right(parsed)
}

const decodes = (encoded: string): boolean => Either.isRight(Either.try(() => decodeURIComponent(encoded)))

const nodeOf = (url: URL): Node => ({ host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(url.port || "6379") })

const credentialsOf = (url: URL): { readonly username?: string; readonly password?: string } => ({
  ...(url.password === "" ? {} : { password: decodeURIComponent(url.password) }),
  ...(url.username === "" ? {} : { username: decodeURIComponent(url.username) })
})

/** Checks one server's URL (`url`) or a cluster's node URLs (`cluster`). */
export const check = (
  target: { readonly url: string } | { readonly cluster: ReadonlyArray<string> }
): Either.Either<Target, Errors.InvalidConfigError> => {
  if ("url" in target) return Either.map(parse(target.url, "url"), () => ({ url: target.url }))
  if (target.cluster.length === 0) return Either.left(invalid("cluster", "give at least one node to start from"))
  const nodes: Array<URL> = []
  for (const [i, url] of target.cluster.entries()) {
    const parsed = parse(url, `cluster.${i}`)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    nodes.push(parsed.right)
  }
  const [first] = nodes
  return Either.right({ cluster: nodes.map(nodeOf), credentials: first === undefined ? {} : credentialsOf(first) })
}
