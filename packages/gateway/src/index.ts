/**
 * @since 0.1.0
 */
export * as ChatCompletions from "./ChatCompletions.js"
export * as Dashboard from "./Dashboard.js"
export * as Demo from "./Demo.js"
export * as Endpoint from "./Endpoint.js"
export * as Gateway from "./Gateway.js"
export * as GatewayAuth from "./GatewayAuth.js"
export * as GatewayConfig from "./GatewayConfig.js"
export * as Health from "./Health.js"
export * as Messages from "./Messages.js"
export * as ModelRoutes from "./ModelRoutes.js"
export * as OpenAiErrors from "./OpenAiErrors.js"
export * as Prometheus from "./Prometheus.js"
export * as StatusStream from "./StatusStream.js"
