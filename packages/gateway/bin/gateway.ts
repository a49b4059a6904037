/**
 * `npm run gateway`: the OpenAI-compatible gateway.
 *
 *   npm run gateway -- --config FILE [--port N]   a JSON or YAML config file
 *   npm run gateway -- --demo [--port N]          chaos upstreams on loopback, no auth
 *
 * A bad config file stops the start with every bad field's path (exit 1);
 * bad arguments print the usage (exit 2). SIGTERM or SIGINT stops the
 * gateway gracefully: no new connections, the requests and streams in
 * flight finish up to `gateway.shutdownTimeout`, the rest are cut.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Demo from "../src/Demo.js"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"

const usage = `usage:
  npm run gateway -- --config FILE [--port N]
  npm run gateway -- --demo [--port N]`

type Command =
  | { readonly _tag: "config"; readonly file: string; readonly port: number | undefined }
  | { readonly _tag: "demo"; readonly port: number | undefined }
  | { readonly _tag: "usage"; readonly problem: string | undefined }

const parseArgs = (args: ReadonlyArray<string>): Command => {
  let file: string | undefined
  let demo = false
  let port: number | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (arg === "--help" || arg === "-h") return { _tag: "usage", problem: undefined }
    if (arg === "--demo") demo = true
    else if (arg === "--config") file = args[++i]
    else if (arg === "--port") {
      const n = Number(args[++i])
      if (!Number.isInteger(n) || n < 0 || n > 65535) return { _tag: "usage", problem: `--port wants a port from 0 to 65535` }
      port = n
    } else return { _tag: "usage", problem: `unknown argument ${arg}` }
  }
  if (demo && file !== undefined) return { _tag: "usage", problem: "--demo and --config go alone" }
  if (demo) return { _tag: "demo", port }
  if (file === undefined || file === "") return { _tag: "usage", problem: "--config FILE or --demo is required" }
  return { _tag: "config", file, port }
}

const demoHelp = (url: string) => `
resilient-ai gateway demo on ${url} (chaos upstreams on loopback, no auth)

  dashboard: ${url}/dashboard   (5 questions a second; buttons take the primary down and up)

  curl -s ${url}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"primary","messages":[{"role":"user","content":"Hello"}]}' -D - 
  curl -s -X POST ${url}/admin/outage -d '{"deployment":"primary","seconds":60}'
  # the same request again: x-resilient-source: fallback-provider, x-resilient-deployment: backup
  curl -s ${url}/status
  curl -s -X DELETE ${url}/admin/outage
`

const main = (command: Command): Effect.Effect<void> => {
  switch (command._tag) {
    case "usage":
      return Effect.zipRight(
        Console.error(command.problem === undefined ? usage : `${command.problem}\n${usage}`),
        Effect.sync(() => void (process.exitCode = command.problem === undefined ? 0 : 2))
      )
    case "demo":
      return Effect.scoped(Effect.gen(function*() {
        const { gateway } = yield* Demo.start({ traffic: 5, ...(command.port === undefined ? {} : { port: command.port }) })
        yield* Console.log(demoHelp(gateway.url))
        return yield* Effect.never
      })).pipe(Effect.catchAll((e) => failed(e.message)))
    case "config":
      return Effect.scoped(Effect.gen(function*() {
        const config = yield* GatewayConfig.fromFile(command.file)
        const gateway = yield* Gateway.start({ config, ...(command.port === undefined ? {} : { port: command.port }) })
        yield* Console.log(`resilient-ai gateway on ${gateway.url}: models ${gateway.models.names.join(", ")}`)
        return yield* Effect.never
      })).pipe(Effect.catchAll((e) => failed(e.message)))
  }
}

const failed = (message: string) =>
  Effect.zipRight(Console.error(message), Effect.sync(() => void (process.exitCode = 1)))

NodeRuntime.runMain(main(parseArgs(process.argv.slice(2))), { disableErrorReporting: true })
