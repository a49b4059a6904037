// A module resolve hook for the children of bench/overhead.ts that load the compiled llm package.
//
// The llm build imports `@resilient-ai/core`, which the workspace's package exports resolve to
// core's TypeScript sources: under tsx that would load a second, tsx-compiled copy of core
// beside the build under test (and ignore `--core`). This sends `@resilient-ai/core` and
// `@resilient-ai/core/<Module>` to the core build the bench measures.
let core

export async function initialize(data) {
  core = data.core
}

export async function resolve(specifier, context, next) {
  if (specifier === "@resilient-ai/core") return { url: core, shortCircuit: true }
  const module = /^@resilient-ai\/core\/([A-Za-z]+)$/.exec(specifier)
  if (module !== null) return { url: new URL(`./${module[1]}.js`, core).href, shortCircuit: true }
  return next(specifier, context)
}
