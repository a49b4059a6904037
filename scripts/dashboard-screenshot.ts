/**
 * The README's picture of the dashboard during an outage (docs/dashboard.png):
 * the demo with 10 questions a second for 60 s, then "Primary down" clicked on
 * the page, then a screenshot 12 s later, in Debian's Chromium at 1280x800.
 *
 *   node --conditions=source --import tsx scripts/dashboard-screenshot.ts [out.png]
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { chromium } from "playwright-core"
import * as Demo from "../packages/gateway/src/Demo.js"

const out = process.argv[2] ?? "docs/dashboard.png"
const scope = Effect.runSync(Scope.make())
const demo = await Effect.runPromise(Scope.extend(Demo.start({ port: 0, traffic: 10 }), scope))
const browser = await chromium.launch({
  executablePath: process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium",
  args: process.getuid?.() === 0 ? ["--no-sandbox"] : []
})
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  await page.goto(`${demo.gateway.url}/dashboard`)
  await page.waitForTimeout(60_000)
  await page.click("#down")
  await page.waitForTimeout(12_000)
  await page.screenshot({ path: out })
  console.log(`wrote ${out}`)
} finally {
  await browser.close()
  await Effect.runPromise(Scope.close(scope, Exit.void))
}
