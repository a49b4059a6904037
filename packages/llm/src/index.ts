/**
 * @since 0.1.0
 */
export * as AnthropicWire from "./AnthropicWire.js"
export * as Chat from "./Chat.js"
export * as Chunks from "./Chunks.js"
export * as ClientConfig from "./ClientConfig.js"
export * as ErrorMapping from "./ErrorMapping.js"
export * as HttpProviders from "./HttpProviders.js"
export * as HttpTransport from "./HttpTransport.js"
export * as OpenAiWire from "./OpenAiWire.js"
export * as Provider from "./Provider.js"
export * as RateLimitHeaders from "./RateLimitHeaders.js"
export * as ResilientClient from "./ResilientClient.js"
export * as ResilientHttp from "./ResilientHttp.js"
export * as RetryAfter from "./RetryAfter.js"
export * as Sse from "./Sse.js"
export * as StreamGuard from "./StreamGuard.js"
export * as Translate from "./Translate.js"
