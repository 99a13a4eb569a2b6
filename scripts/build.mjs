// Production build: one ESM bundle per entry, with code splitting so that
// modules the fire path does not need (admin API, NAS client, run targets,
// emulator) load only when first used. Cold start is the product's main
// performance figure (docs/performance.md), and bundling roughly halves it.
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
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

/**
 * Dependencies that Chronos's server never executes but that would otherwise be bundled: Fastify's ajv
 * and fast-json-stringify compilers (src/http/server.ts gives Fastify its own trivial compilers) and
 * light-my-request (only app.inject(), used by tests against src/). About a third of the bundle's bytes;
 * V8 compiles every byte of an ES module before running it, so they cost cold-start time for nothing.
 * Each is replaced by a module that fails loudly if anything ever requires it.
 */
export const UNUSED_AT_RUNTIME = [
  '@fastify/ajv-compiler',
  '@fastify/fast-json-stringify-compiler',
  'light-my-request',
];

const stubUnused = {
  name: 'stub-unused',
  setup(b) {
    const filter = new RegExp(`^(${UNUSED_AT_RUNTIME.map((m) => m.replace(/[/.]/g, '\\$&')).join('|')})$`);
    b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'stub-unused' }));
    b.onLoad({ filter: /.*/, namespace: 'stub-unused' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not part of the Chronos bundle (scripts/build.mjs UNUSED_AT_RUNTIME)`)});`,
      loader: 'js',
    }));
  },
};

/**
 * Browser scripts the status page loads, copied into dist/ui/ beside the page's own files (src/ui/assets/),
 * since the runtime image has no node_modules. Keep in step with UI_VENDOR_FILES in src/ui/assets.ts.
 */
const UI_VENDOR_FILES = {
  'cronstrue.min.js': 'cronstrue/dist/cronstrue.min.js',
  // Its minified file carries no copyright notice; the MIT licence asks for one beside every copy.
  'cronstrue.LICENSE.txt': 'cronstrue/LICENSE',
};

/** The status page is served as written, with no front-end build: its files are only copied. */
async function copyUiAssets(root, outdir) {
  await mkdir(`${outdir}/ui`, { recursive: true });
  await cp(`${root}src/ui/assets`, `${outdir}/ui`, { recursive: true });
  const require = createRequire(`${root}package.json`);
  for (const [name, file] of Object.entries(UI_VENDOR_FILES)) {
    await cp(require.resolve(file), `${outdir}/ui/${name}`);
  }
}

export async function buildProduction() {
  const root = new URL('../', import.meta.url).pathname;
  const outdir = `${root}dist`;
  // Build beside dist/ and swap it in with renames, so a process running from dist/ (a test, a bench,
  // the dev loop) never sees it half-written or missing.
  const staging = `${root}.dist-${process.pid}-${Date.now()}`;
  const shared = {
    ...bundleOptions,
    outdir: staging,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    plugins: [stubUnused],
  };
  // The server is built on its own: everything its start needs lands in serve.js itself, and only what
  // it loads later (NAS client, runner, admin API) is split off. Built together with the other entries,
  // its code was spread over ~20 chunks shared with them, each one more module to resolve at start.
  await build({ ...shared, entryPoints: { serve: 'src/serve.ts' } });
  // `emulator` is the in-process NAS emulator for benchmarks and tools; the serve path never imports it.
  await build({
    ...shared,
    entryPoints: { cli: 'src/cli/main.ts', index: 'src/index.ts', emulator: 'src/emulator/index.ts' },
  });
  await copyUiAssets(root, staging);
  const retired = `${staging}.old`;
  await rename(outdir, retired).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await rename(staging, outdir);
  await rm(retired, { recursive: true, force: true });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await buildProduction();
