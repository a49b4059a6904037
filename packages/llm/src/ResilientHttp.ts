/**
 * The resilient client over HTTP, everything from one configuration: the
 * deployments and policies (`ResilientClient`), the providers' time limits
 * (`HttpProviders`: first byte, first token, stall) and the connection's
 * (`HttpTransport`: connect), all read from the config's `transport`, and
 * the static replies from its `staticReplies`.
 *
 * A separate module so that `ResilientClient` stays free of the Node HTTP
 * stack: a client on simulated providers (testkit) never loads undici.
 *
 * @since 0.1.0
 */
import type { Errors, StateStore } from "@resilient-ai/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ClientConfig from "./ClientConfig.js"
import * as HttpProviders from "./HttpProviders.js"
import * as HttpTransport from "./HttpTransport.js"
import * as ResilientClient from "./ResilientClient.js"

/**
 * What code adds to the configuration: the client's extras, and transport
 * options the config file has no place for (proxies).
 *
 * @since 0.1.0
 * @category options
 */
export interface Extras extends ResilientClient.Extras {
  readonly transport?: Omit<HttpTransport.Options, "connectTimeout">
}

/**
 * The client, its providers and its transport, built from `config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: ClientConfig.ClientConfig,
  extras?: Extras
): Layer.Layer<ResilientClient.ResilientClient, Errors.InvalidConfigError, StateStore.StateStore> =>
  ResilientClient.layer(config, extras).pipe(
    Layer.provide(HttpProviders.layer(ClientConfig.providerOptions(config))),
    Layer.provide(HttpTransport.layer({ ...extras?.transport, ...ClientConfig.transportOptions(config) }))
  )

/**
 * {@link layer} from a JSON text: a bad value fails the layer with its path
 * in the file.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromJson = (
  json: string,
  extras?: Extras
): Layer.Layer<ResilientClient.ResilientClient, Errors.InvalidConfigError, StateStore.StateStore> =>
  Layer.unwrapEffect(Effect.map(ClientConfig.fromJson(json), (config) => layer(config, extras)))

/**
 * {@link layer} from a JSON file.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromFile = (
  path: string,
  extras?: Extras
): Layer.Layer<ResilientClient.ResilientClient, Errors.InvalidConfigError, StateStore.StateStore> =>
  Layer.unwrapEffect(Effect.map(ClientConfig.fromFile(path), (config) => layer(config, extras)))
