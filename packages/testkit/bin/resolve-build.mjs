// A module resolve hook: `@resilient-ai/<package>` and `@resilient-ai/<package>/<Module>`
// resolve to the compiled modules in `packages/<package>/build/src/`.
export async function resolve(specifier, context, next) {
  const match = /^@resilient-ai\/([a-z-]+)(?:\/([A-Za-z]+))?$/.exec(specifier)
  if (match !== null) {
    const url = new URL(`../../${match[1]}/build/src/${match[2] ?? "index"}.js`, import.meta.url)
    return { url: url.href, shortCircuit: true }
  }
  return next(specifier, context)
}
