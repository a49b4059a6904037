/**
 * The dashboard in a real browser: Debian's Chromium, driven by
 * playwright-core (which downloads nothing), against the demo on loopback.
 * Each test leaves screenshots in `test-output/dashboard/` (gitignored).
 * Without a Chromium these tests are skipped with one line saying how to get one.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Url from "node:url"
import { type Browser, chromium, type Page } from "playwright-core"
import * as Demo from "../src/Demo.js"
import { harness } from "./support/harness.js"

const executable = [process.env["CHROMIUM_PATH"], "/usr/bin/chromium", "/usr/bin/chromium-browser"]
  .find((p): p is string => p !== undefined && p !== "" && Fs.existsSync(p))
if (executable === undefined) {
  console.warn("Chromium is missing: the dashboard's browser tests are skipped (apt-get install -y chromium, or set CHROMIUM_PATH)")
}

const output = Path.join(Path.dirname(Url.fileURLToPath(import.meta.url)), "../../../test-output/dashboard")

/** A demo of its own for one test, stopped by the returned function. */
const startDemo = async (
  traffic: number,
  port = 0
): Promise<{ readonly url: string; readonly port: number; readonly stop: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const demo = await Effect.runPromise(Scope.extend(Demo.start({ port, traffic }), scope))
  return { url: demo.gateway.url, port: demo.gateway.port, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** A page on the dashboard, recording console errors and uncaught exceptions. */
const open = async (browser: Browser, url: string, viewport = { width: 1280, height: 800 }) => {
  const page = await browser.newPage({ viewport })
  const errors: Array<string> = []
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text())
  })
  page.on("pageerror", (e) => errors.push(String(e)))
  await page.goto(`${url}/dashboard`)
  await page.locator("#conn", { hasText: "live" }).waitFor({ timeout: 5_000 })
  return { page, errors }
}

const shot = (page: Page, name: string) => page.screenshot({ path: Path.join(output, `${name}.png`) })

const rateOf = (page: Page, source: string) =>
  page.locator(`#legend [data-source="${source}"]`).getAttribute("data-rate").then(Number)

/** Resolves when `ok` holds, polling; the elapsed ms. */
const until = async (ok: () => Promise<boolean>, timeoutMs: number, seen?: () => Promise<unknown>): Promise<number> => {
  const start = Date.now()
  while (!(await ok())) {
    if (Date.now() - start > timeoutMs) {
      throw new Error(`not within ${timeoutMs} ms${seen === undefined ? "" : `; last seen: ${String(await seen())}`}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return Date.now() - start
}

describe.skipIf(executable === undefined)("the dashboard in Chromium", () => {
  let browser: Browser
  beforeAll(async () => {
    Fs.mkdirSync(output, { recursive: true })
    browser = await chromium.launch({
      executablePath: executable!,
      args: process.getuid?.() === 0 ? ["--no-sandbox"] : []
    })
  }, 30_000)
  afterAll(async () => {
    await browser?.close()
  })

  it("loads with no console errors, shows every deployment, and fits a phone's width", async () => {
    const demo = await startDemo(5)
    try {
      const { page, errors } = await open(browser, demo.url)
      await page.locator("[data-deployment]").nth(1).waitFor()
      const tiles = await page.locator("[data-deployment]").all()
      expect(await Promise.all(tiles.map((t) => t.getAttribute("data-deployment")))).toEqual(["primary", "backup"])
      expect(await page.locator("[data-deployment=primary]").getAttribute("data-state")).toBe("closed")
      await until(() => rateOf(page, "primary").then((r) => r > 0), 8_000)
      await shot(page, "loaded")
      expect(await page.content()).not.toContain("sk-demo")

      const phone = await open(browser, demo.url, { width: 390, height: 844 })
      await phone.page.locator("[data-deployment]").nth(1).waitFor()
      await shot(phone.page, "phone")
      expect(await phone.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")).toBe(true)
      expect([...errors, ...phone.errors]).toEqual([])
    } finally {
      await demo.stop()
    }
  }, 30_000)

  it("Primary down: the tile turns open within 2 s and the chart shows the fallback; Primary up: it closes again", async () => {
    const demo = await startDemo(10)
    try {
      const { page, errors } = await open(browser, demo.url)
      const primary = page.locator("[data-deployment=primary]")
      await until(() => rateOf(page, "primary").then((r) => r > 0), 8_000)

      await page.click("#down")
      const openedIn = await until(() => primary.getAttribute("data-state").then((s) => s === "open"), 2_000)
      console.log(`dashboard: primary tile open ${openedIn} ms after the click`)
      await until(() => rateOf(page, "fallback-provider").then((r) => r > 0), 8_000)
      expect(await page.locator("#chart polygon[data-source=fallback-provider]").count()).toBe(1)
      await page.locator("#transitions li[data-to=open]").first().waitFor()
      await shot(page, "outage")

      await page.click("#up")
      // Open for 10 s (the demo's openDuration), then a trial call closes it.
      await until(() => primary.getAttribute("data-state").then((s) => s === "closed"), 20_000)
      await until(() => rateOf(page, "primary").then((r) => r > 0), 8_000)
      await shot(page, "recovered")
      expect(errors).toEqual([])
    } finally {
      await demo.stop()
    }
  }, 45_000)

  it("survives the server going away: the page says so, reconnects to the next one and draws its state", async () => {
    const first = await startDemo(10)
    let second: Awaited<ReturnType<typeof startDemo>> | undefined
    try {
      const { page, errors } = await open(browser, first.url)
      const primary = page.locator("[data-deployment=primary]")
      await page.click("#down")
      await until(() => primary.getAttribute("data-state").then((s) => s === "open"), 2_000)
      await first.stop()
      await page.locator("#conn", { hasText: "reconnecting" }).waitFor({ timeout: 3_000 })
      second = await startDemo(10, first.port)
      // EventSource retries after the stream's `retry: 1000`; the new gateway's breaker is closed.
      const back = await until(() => page.locator("#conn").textContent().then((t) => t === "live"), 5_000)
      console.log(`dashboard: live again ${back} ms after the new server started`)
      await until(() => primary.getAttribute("data-state").then((s) => s === "closed"), 2_000)
      await shot(page, "reconnected")
      // A browser logs the refused reconnection attempts itself; the page's own code raised nothing.
      expect(errors.filter((e) => !e.includes("ERR_CONNECTION_REFUSED") && !e.includes("Failed to load resource"))).toEqual([])
    } finally {
      await (second ?? first).stop().catch(() => undefined)
    }
  }, 30_000)

  it("a failure-rate breaker's tile shows its rates against the thresholds, its window, limiter tokens and the bulkhead", async () => {
    const scope = Effect.runSync(Scope.make())
    try {
      const { gateway } = await Effect.runPromise(Scope.extend(
        harness({
          primaryPolicy: {
            circuitBreaker: {
              trigger: { kind: "failure-rate", window: { kind: "count", size: 20 }, threshold: 0.5, minimumCalls: 4, slowCallRateThreshold: 0.8 },
              // Far above a 5 ms answer even on a loaded machine: no call of this test is slow.
              slowCallDuration: "10 seconds"
            },
            rateLimiter: { requestsPerMinute: 600 },
            bulkhead: { maxConcurrent: 4, maxQueue: 8 }
          }
        }),
        scope
      ))
      const { page, errors } = await open(browser, gateway.url)
      for (let i = 0; i < 6; i++) {
        await fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "primary", messages: [{ role: "user", content: "Hi" }] })
        })
      }
      const primary = page.locator("[data-deployment=primary]")
      // The six calls are in the window once a snapshot after the last one has been drawn (4 a second; a loaded CI
      // machine delays both, hence 10 s).
      await until(
        () => primary.textContent().then((t) => t?.includes("6 calls, 0 failed, 0 slow") === true),
        10_000,
        () => primary.textContent()
      )
      const text = await primary.textContent()
      expect(text).toContain("failure rate0% / 50%")
      expect(text).toContain("slow rate0% / 80%")
      expect(text).toMatch(/limiter of primary-1 requests left59\d \/ 600/)
      expect(text).toContain("bulkhead in use / queued0/4 · 0/8")
      expect(text).not.toContain("sk-primary")
      await shot(page, "failure-rate")
      expect(errors).toEqual([])
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }, 30_000)

  it("429 storm: the primary's key cools down with a countdown while the fallback answers", async () => {
    const demo = await startDemo(10)
    try {
      const { page, errors } = await open(browser, demo.url)
      await page.click("#storm")
      const key = page.locator("li.key[data-key=primary-key]")
      await until(() => key.getAttribute("data-state").then((s) => s === "cooling"), 5_000)
      expect(await key.textContent()).toMatch(/cooling for \d+\.\d s/)
      await until(() => rateOf(page, "fallback-provider").then((r) => r > 0), 8_000)
      await shot(page, "storm")
      expect(errors).toEqual([])
    } finally {
      await demo.stop()
    }
  }, 30_000)
})
