// Runs the drill from the `tsc -b` output: maps `@resilient-ai/<package>[/<Module>]`
// (whose package exports point at the TypeScript sources) to `packages/<package>/build/src/`.
import { register } from "node:module"

register(new URL("./resolve-build.mjs", import.meta.url))
