/**
 * @since 0.1.0
 */
export * as AiErrors from "./AiErrors.js"
export * as KeyRotation from "./KeyRotation.js"
export * as ResilientLanguageModel from "./ResilientLanguageModel.js"
