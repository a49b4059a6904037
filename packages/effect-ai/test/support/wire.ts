/**
 * An upstream on 127.0.0.1 speaking the two wire formats the @effect/ai
 * providers use: OpenAI's Responses API (`POST /v1/responses`) and
 * Anthropic's Messages API (`POST /v1/messages`), answers and SSE streams.
 * Each test scripts what it answers per request and reads what it was sent.
 */
import * as Effect from "effect/Effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

/** What the upstream was sent. */
export interface Received {
  readonly path: string
  /** The key, from `Authorization: Bearer` or `x-api-key`. */
  readonly key: string | undefined
  readonly body: Record<string, unknown>
  /** Milliseconds since the server started (wall clock). */
  readonly at: number
}

/** One answer: a JSON body with a status, an SSE stream (cut or not), or the default success. */
export type Answer =
  | { readonly _tag: "Status"; readonly status: number; readonly headers?: Record<string, string>; readonly body: unknown }
  | { readonly _tag: "Ok"; readonly text: string; readonly delayMs?: number }
  | {
    readonly _tag: "Stream"
    readonly deltas: ReadonlyArray<string>
    readonly cutAfter?: number
    /** Holds the stream open after what it sends until this settles; then it ends, or is cut 20 ms later. */
    readonly holdUntil?: Promise<unknown>
    /** Told when the cut stream's socket is destroyed. */
    readonly onCut?: () => void
  }

export interface Upstream {
  readonly url: string
  readonly received: Array<Received>
  /** Set the script: the answer to the n-th request (0-based) of a path. */
  script: (request: Received, index: number) => Answer
}

const keyOf = (req: IncomingMessage): string | undefined => {
  const auth = req.headers["authorization"]
  if (typeof auth === "string" && auth.startsWith("Bearer ")) return auth.slice("Bearer ".length)
  const key = req.headers["x-api-key"]
  return typeof key === "string" ? key : undefined
}

const usage = { input_tokens: 5, input_tokens_details: { cached_tokens: 0 }, output_tokens: 2, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 7 }

const openAiResponse = (text: string, status: "completed" | "in_progress") => ({
  id: "resp_1",
  object: "response",
  created_at: 1_700_000_000,
  status,
  error: null,
  incomplete_details: null,
  instructions: null,
  model: "gpt-4o",
  output: status === "completed"
    ? [{ type: "message", id: "msg_1", status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [] }] }]
    : [],
  parallel_tool_calls: true,
  temperature: null,
  top_p: null,
  tool_choice: "auto",
  tools: [],
  metadata: null,
  usage
})

const anthropicMessage = (content: ReadonlyArray<unknown>, stopReason: string | null) => ({
  id: "msg_1",
  type: "message",
  role: "assistant",
  model: "claude-test",
  content,
  stop_reason: stopReason,
  stop_sequence: null,
  usage: { input_tokens: 5, output_tokens: 2 }
})

/** Anthropic answers `generateObject` through the tool it was told to call. */
const anthropicContent = (body: Record<string, unknown>, text: string): ReadonlyArray<unknown> => {
  const choice = body["tool_choice"]
  const name = typeof choice === "object" && choice !== null && "name" in choice ? choice.name : undefined
  return typeof name === "string"
    ? [{ type: "tool_use", id: "toolu_1", name, input: JSON.parse(text) as unknown }]
    : [{ type: "text", text }]
}

const openAiEvents = (deltas: ReadonlyArray<string>): ReadonlyArray<string> => {
  const text = deltas.join("")
  const events: Array<Record<string, unknown>> = [
    { type: "response.created", response: openAiResponse("", "in_progress") },
    { type: "response.output_item.added", output_index: 0, item: { type: "message", id: "msg_1", status: "in_progress", role: "assistant", content: [] } },
    ...deltas.map((delta) => ({ type: "response.output_text.delta", item_id: "msg_1", output_index: 0, content_index: 0, delta, logprobs: [] })),
    {
      type: "response.output_item.done",
      output_index: 0,
      item: { type: "message", id: "msg_1", status: "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [] }] }
    },
    { type: "response.completed", response: openAiResponse(text, "completed") }
  ]
  return events.map((e, i) => `data: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`)
}

const anthropicEvents = (deltas: ReadonlyArray<string>): ReadonlyArray<string> => {
  const events: ReadonlyArray<Record<string, unknown>> = [
    { type: "message_start", message: anthropicMessage([], null) },
    { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    ...deltas.map((text) => ({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text } })),
    { type: "content_block_stop", index: 0 },
    { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 2 } },
    { type: "message_stop" }
  ]
  return events.map((e) => `event: ${String(e["type"])}\ndata: ${JSON.stringify(e)}\n\n`)
}

const answer = (path: string, body: Record<string, unknown>, a: Answer, res: ServerResponse): void => {
  const anthropic = path.startsWith("/v1/messages")
  if (a._tag === "Status") {
    res.writeHead(a.status, { "content-type": "application/json", ...a.headers })
    res.end(JSON.stringify(a.body))
    return
  }
  if (a._tag === "Ok") {
    const send = () => {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify(anthropic ? anthropicMessage(anthropicContent(body, a.text), "end_turn") : openAiResponse(a.text, "completed")))
    }
    if (a.delayMs === undefined) send()
    else setTimeout(send, a.delayMs)
    return
  }
  const events = anthropic ? anthropicEvents(a.deltas) : openAiEvents(a.deltas)
  res.writeHead(200, { "content-type": "text/event-stream" })
  // Cut after the opening events and `cutAfter` deltas: the socket is destroyed without the terminator.
  const opening = 2
  const upTo = a.cutAfter === undefined ? events.length : opening + a.cutAfter
  for (const event of events.slice(0, upTo)) res.write(event)
  const finish = () => {
    if (a.cutAfter === undefined) res.end()
    else {
      setTimeout(() => {
        res.destroy()
        a.onCut?.()
      }, 20)
    }
  }
  if (a.holdUntil === undefined) finish()
  else void a.holdUntil.then(finish)
}

/** The upstream, closed with the test's scope. */
export const upstream: Effect.Effect<Upstream, never, import("effect/Scope").Scope> = Effect.acquireRelease(
  Effect.async<{ readonly upstream: Upstream; readonly close: () => void }>((resume) => {
    const started = Date.now()
    const counts = new Map<string, number>()
    const state: Upstream = { url: "", received: [], script: () => ({ _tag: "Ok", text: "hello" }) }
    const server = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        const path = (req.url ?? "").split("?")[0] ?? ""
        const text = Buffer.concat(chunks).toString("utf8")
        const body = (text === "" ? {} : JSON.parse(text)) as Record<string, unknown>
        const received: Received = { path, key: keyOf(req), body, at: Date.now() - started }
        state.received.push(received)
        const n = counts.get(path) ?? 0
        counts.set(path, n + 1)
        answer(path, body, state.script(received, n), res)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ upstream: Object.assign(state, { url: `http://127.0.0.1:${port}` }), close: () => {
        server.closeAllConnections()
        server.close()
      } }))
    })
  }),
  ({ close }) => Effect.sync(close)
).pipe(Effect.map(({ upstream }) => upstream))
