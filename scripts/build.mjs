// Production build: one ESM bundle per entry, with code splitting so that
// modules the fire path does not need (admin API, NAS client, run targets,
// emulator) load only when first used. Cold start is the product's main
// performance figure (SPEC §10), and bundling roughly halves it.
import { rm } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

/**
 * Options shared with the cold-start benchmark, which bundles its minimal Fastify baseline with
 * exactly these so that the comparison measures the application, not the bundler settings.
 */
export const bundleOptions = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.18',
  sourcemap: 'linked',
  // Bundled CommonJS dependencies (fastify, pino) call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __chronosCreateRequire } from 'node:module'; const require = __chronosCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
};

export async function buildProduction() {
  const outdir = new URL('../dist/', import.meta.url).pathname;
  await rm(outdir, { recursive: true, force: true });
  await build({
    ...bundleOptions,
    // `emulator` is the in-process NAS emulator for benchmarks and tools; the serve path never imports it.
    entryPoints: {
      serve: 'src/serve.ts',
      cli: 'src/cli/main.ts',
      index: 'src/index.ts',
      emulator: 'src/emulator/index.ts',
    },
    outdir,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await buildProduction();
