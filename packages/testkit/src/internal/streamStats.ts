/**
 * What the drill's streamed requests did, read from the chunks their caller
 * received: who answered (the chunks' model names a deployment), when the
 * first content came, and whether content from two answers reached one
 * caller (a mixed answer: the one outcome a streaming client must never
 * give, rule 28).
 */
import type * as Chat from "@resilient-ai/llm/Chat"
import type { StreamReport } from "../Drill.js"
import { Histogram } from "./stats.js"

/** The chunks one streamed request received, across whatever attempts the stack made. */
export class StreamWatch {
  firstContentAt: number | undefined
  model: string | undefined
  /** Ids of the answers whose content reached the caller. */
  readonly answers = new Set<string>()

  constructor(readonly clock: { readonly unsafeCurrentTimeMillis: () => number }) {}

  readonly onChunk = (chunk: Chat.ChatChunk): void => {
    const content = (chunk.text !== undefined && chunk.text !== "") || (chunk.toolCalls !== undefined && chunk.toolCalls.length > 0)
    if (!content) return
    this.firstContentAt ??= this.clock.unsafeCurrentTimeMillis()
    this.model = chunk.model
    this.answers.add(chunk.id)
  }
}

export class StreamStats {
  requests = 0
  completed = 0
  fellBack = 0
  endedMidStream = 0
  failedBeforeFirstToken = 0
  mixed = 0
  readonly ttft = new Histogram()

  constructor(readonly primary: string) {}

  /** A stream that ended; `answeredBy` the deployment of its content when it completed. */
  ended(watch: StreamWatch, arrivedAt: number, outcome: { readonly completed: true; readonly answeredBy: string } | { readonly completed: false }): void {
    this.requests += 1
    if (watch.answers.size > 1) this.mixed += 1
    if (watch.firstContentAt !== undefined) this.ttft.add(watch.firstContentAt - arrivedAt)
    if (outcome.completed) {
      this.completed += 1
      if (outcome.answeredBy !== this.primary) this.fellBack += 1
    } else if (watch.firstContentAt === undefined) this.failedBeforeFirstToken += 1
    else this.endedMidStream += 1
  }

  report(): StreamReport {
    return {
      requests: this.requests,
      completed: this.completed,
      fellBackBeforeFirstToken: this.fellBack,
      endedMidStream: this.endedMidStream,
      failedBeforeFirstToken: this.failedBeforeFirstToken,
      mixedAnswers: this.mixed,
      timeToFirstTokenMs: { p50: this.ttft.quantile(0.5), p99: this.ttft.quantile(0.99) }
    }
  }
}
