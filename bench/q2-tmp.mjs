import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
const io = Effect.async((resume) => { setImmediate(() => resume(Effect.succeed(1))) })
const N = 40000
const loop = (eff, n) => Effect.runPromise(Effect.gen(function* () { for (let i = 0; i < n; i++) yield* eff }))
const cpu = async (f) => { const t = process.cpuUsage(); await f(); const d = process.cpuUsage(t); return (d.user + d.system) * 1000 }
const h = { onFailure: Exit.failCause, onSuccess: Exit.succeed }
const variants = {
  same: io,
  withFiber: Effect.withFiberRuntime(() => io),
  suspend: Effect.suspend(() => io),
  match: Effect.matchCauseEffect(io, h),
  catchAllCause: Effect.catchAllCause(io, Exit.failCause),
  uninterruptible: Effect.uninterruptible(io),
  maskNoRestore: Effect.uninterruptibleMask(() => io),
  mask: Effect.uninterruptibleMask((restore) => restore(io)),
  maskMatch: Effect.uninterruptibleMask((restore) => Effect.matchCauseEffect(restore(io), h)),
  interruptible: Effect.interruptible(io),
}
for (const [name, stack] of Object.entries(variants)) {
  for (let w = 0; w < 3; w++) { await loop(stack, N); await loop(io, N) }
  const rounds = []
  for (let r = 0; r < 9; r++) { const b1 = await cpu(() => loop(io, N / 2)); const s = await cpu(() => loop(stack, N)); const b2 = await cpu(() => loop(io, N / 2)); rounds.push((s - b1 - b2) / N) }
  rounds.sort((a, b) => a - b)
  console.log(name.padEnd(16), Math.round(rounds[4]), "ns cpu")
}
