/**
 * The HTTP client the providers use: undici, with a connect timeout of its
 * own and the proxies of the standard environment variables.
 *
 * A connect timeout is separate from the first-byte and total timeouts: a
 * host that does not accept the connection within a second is down (and a
 * retry on it is safe, nothing was sent), while a model may think for a
 * minute before its first byte. Corporate networks need `HTTPS_PROXY` /
 * `HTTP_PROXY` / `NO_PROXY`; undici's `EnvHttpProxyAgent` reads them (a
 * loopback address in `NO_PROXY` keeps local tests direct).
 *
 * Calls go through undici's `dispatch` (`internal/undiciHttpClient.ts` says
 * why not `@effect/platform-node`'s client).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { EnvHttpProxyAgent } from "undici"
import * as UndiciHttpClient from "./internal/undiciHttpClient.js"

/**
 * @since 0.1.0
 * @category options
 */
export interface Options {
  /** Establishing the TCP/TLS connection. Default 10 s. */
  readonly connectTimeout?: Duration.DurationInput
  /** Use `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`. Default true. */
  readonly proxyFromEnvironment?: boolean
  /** Overrides of the environment variables. */
  readonly httpsProxy?: string
  readonly httpProxy?: string
  readonly noProxy?: string
}

/**
 * An `HttpClient` over an undici dispatcher with these settings; the
 * dispatcher is closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<HttpClient.HttpClient> => {
  const connect = { timeout: Duration.toMillis(Duration.decode(options.connectTimeout ?? "10 seconds")) }
  return Layer.scoped(
    HttpClient.HttpClient,
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() =>
          options.proxyFromEnvironment === false
            ? new EnvHttpProxyAgent({ connect, httpProxy: "", httpsProxy: "", noProxy: "*" })
            : new EnvHttpProxyAgent({
              connect,
              ...(options.httpProxy === undefined ? {} : { httpProxy: options.httpProxy }),
              ...(options.httpsProxy === undefined ? {} : { httpsProxy: options.httpsProxy }),
              ...(options.noProxy === undefined ? {} : { noProxy: options.noProxy })
            })
        ),
        (agent) => Effect.promise(() => agent.destroy())
      ),
      UndiciHttpClient.make
    )
  )
}
