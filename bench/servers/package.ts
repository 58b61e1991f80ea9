// Loads the package only in the variants that use it, so the baselines run (and the harness can be proven) before
// `npm run build` has produced dist/. Under bench/tsconfig.run.json this resolves through the package's own
// exports to the built dist/, which is what users install.
export type Package = typeof import('express-fanout');

let loaded = false;

export function loadPackage(): Promise<Package> {
  loaded = true;
  return import('express-fanout');
}

/** The file the package's implementation was loaded from, once a variant has loaded it. */
export function packagePath(): string | undefined {
  if (!loaded) return undefined;
  try {
    return require.resolve('express-fanout');
  } catch {
    return undefined;
  }
}
