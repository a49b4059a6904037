/**
 * The drill CLI's arguments, parsed and checked before any run starts: a
 * mistake (an unknown scenario, a seed JavaScript cannot hold exactly, an
 * output file that cannot be written) is a one-line message and exit code
 * 2, not a stack trace after minutes of simulation.
 */
import { accessSync, constants, statSync } from "node:fs"
import { dirname, resolve } from "node:path"
import * as Scenarios from "@resilient-ai/testkit/Scenarios"

export interface Args {
  readonly scenarios: ReadonlyArray<Scenarios.Name>
  readonly seed: number
  readonly json: string | undefined
  readonly plot: string | undefined
  readonly scale: number
  readonly rateScale: number
  readonly workers: number | undefined
  /** No progress display on stderr. */
  readonly quiet: boolean
}

export const usage =
  "usage: npm start -- [--scenario NAME]... [--seed N] [--json FILE] [--plot FILE.svg] [--scale X] [--rate-scale X] [--workers N] [--quiet]"

/**
 * A seed is a safe integer written as one: `Number("99999999999999999999")`
 * rounds to 1e20 and `Number("1e3")` or `Number("0x10")` would be accepted
 * as another spelling, so the text itself is checked.
 */
export const parseSeed = (value: string | undefined): number | string => {
  if (value === undefined || !/^-?\d+$/.test(value)) return "--seed needs an integer"
  const n = Number(value)
  return Number.isSafeInteger(n)
    ? n
    : `--seed ${value} is not a safe integer (|seed| ≤ ${Number.MAX_SAFE_INTEGER}): it would run as ${n}`
}

/** `"usage"` for `--help`, a message for a mistake, or the arguments. */
export const parse = (argv: ReadonlyArray<string>): Args | string => {
  const scenarios: Array<Scenarios.Name> = []
  let seed = 1
  let json: string | undefined
  let plot: string | undefined
  let scale = 1
  let rateScale = 1
  let workers: number | undefined
  let quiet = false
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[i + 1]
    const number = (name: string): number | string => {
      const n = Number(value)
      return value === undefined || !Number.isFinite(n) || n <= 0 ? `${name} needs a positive number` : n
    }
    switch (flag) {
      case "--scenario": {
        for (const name of (value ?? "").split(",")) {
          if (!Scenarios.isName(name)) return `unknown scenario "${name}"; one of: ${Scenarios.names.join(", ")}`
          scenarios.push(name)
        }
        i++
        break
      }
      case "--seed": {
        const n = parseSeed(value)
        if (typeof n === "string") return n
        seed = n
        i++
        break
      }
      case "--json":
      case "--plot": {
        if (value === undefined) return `${flag} needs a file name`
        const problem = unwritable(value)
        if (problem !== undefined) return `${flag} ${value}: ${problem}`
        if (flag === "--json") json = value
        else plot = value
        i++
        break
      }
      case "--scale":
      case "--rate-scale":
      case "--workers": {
        const n = number(flag)
        if (typeof n === "string") return n
        if (flag === "--scale") scale = n
        else if (flag === "--rate-scale") rateScale = n
        else workers = Math.floor(n)
        i++
        break
      }
      case "--quiet":
        quiet = true
        break
      case "--help":
        return "usage"
      default:
        return `unknown argument "${flag}"`
    }
  }
  return { scenarios: scenarios.length === 0 ? [...Scenarios.names] : scenarios, seed, json, plot, scale, rateScale, workers, quiet }
}

/**
 * Why `path` cannot be written, or undefined: its folder must exist and be
 * writable, and the path must not be a folder. Checked without creating
 * the file, so a bad path leaves nothing behind.
 */
export const unwritable = (path: string): string | undefined => {
  const full = resolve(path)
  const folder = dirname(full)
  try {
    if (!statSync(folder).isDirectory()) return `${folder} is not a folder`
  } catch {
    return `no folder ${folder}`
  }
  try {
    if (statSync(full).isDirectory()) return "is a folder"
    accessSync(full, constants.W_OK)
    return undefined
  } catch (e) {
    // No such file yet: the folder must let us create it.
    if (typeof e === "object" && e !== null && "code" in e && e.code === "ENOENT") {
      try {
        accessSync(folder, constants.W_OK)
        return undefined
      } catch {
        return `folder ${folder} is not writable`
      }
    }
    return "not writable"
  }
}
