// Shared pieces of the benchmarks: statistics, child environments, result files, the NAS emulator.
import { rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { bundleOptions } from '../../scripts/build.mjs';

const BUILD = new URL('../../dist/', import.meta.url);
export const RESULTS = new URL('../results/', import.meta.url);

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function summarise(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    median: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    min: sorted[0],
    max: sorted.at(-1),
  };
}

/**
 * The environment every compared Node process gets. This machine exports NODE_EXTRA_CA_CERTS, which
 * adds ~55 ms to every Node 20 start; candidate and baselines must all run without it.
 */
export function childEnv(extra = {}) {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_COMPILE_CACHE;
  return { ...env, ...extra };
}

/** 'K=V K2=V2' (a benchmark's variant environment) as an object. */
export function parseEnv(text) {
  return Object.fromEntries(
    (text ?? '')
      .split(' ')
      .filter(Boolean)
      .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  );
}

let snapshot;
/**
 * A private copy of dist/ taken once per process: the working tree is shared, and a test run elsewhere
 * rebuilds (deletes) dist/ at any moment. The bundle needs no node_modules, so the copy runs anywhere.
 */
export function distDir() {
  snapshot ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chronos-bench-dist-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    try {
      await cp(BUILD, dir, { recursive: true });
    } catch (err) {
      throw new Error(`cannot copy ${BUILD.pathname} (run npm run build first): ${err.message}`);
    }
    return pathToFileURL(`${dir}/`);
  })();
  return snapshot;
}

export async function importDist(name) {
  const url = new URL(name, await distDir());
  try {
    return await import(url.href);
  } catch (err) {
    throw new Error(`cannot load ${url.pathname} (run npm run build first): ${err.message}`);
  }
}

let internals;
/**
 * The internals the benchmarks use (bench/lib/internals.ts: FileStore, claimOccurrence, currentOwner,
 * buildJob), bundled once per process with the production build's options into the dist/ snapshot.
 * src/index.ts exports only the embedding surface, so they are not in dist/index.js.
 */
export function importInternals() {
  internals ??= (async () => {
    const outfile = fileURLToPath(new URL('bench-internals.js', await distDir()));
    await build({
      ...bundleOptions,
      entryPoints: [fileURLToPath(new URL('./internals.ts', import.meta.url))],
      outfile,
      sourcemap: false,
    });
    return import(pathToFileURL(outfile).href);
  })();
  return internals;
}

export async function writeResult(name, result) {
  await mkdir(RESULTS, { recursive: true });
  await writeFile(new URL(`${name}.json`, RESULTS), `${JSON.stringify(result, null, 2)}\n`);
}

export function isMain(meta) {
  return meta.url === pathToFileURL(process.argv[1] ?? '').href;
}

export const ms = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '-');

/** Fixed-width table: rows are arrays of cells, first row is the header. */
export function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows
    .map((r) =>
      r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '),
    )
    .join('\n');
}

/** Chronos environment for the chronos provider against an emulator. */
export function chronosEnv(emulator, dataDir, extra = {}) {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    CHRONOS_PROVIDER: 'chronos',
    CHRONOS_PORTAL_URL: emulator.url,
    CHRONOS_CALLBACK_URL: 'http://127.0.0.1:9',
    CHRONOS_EXPECTED_AUDIENCE: emulator.audience,
    CHRONOS_JWKS_URL: emulator.jwksUrl,
    CHRONOS_ACCESS_TOKEN: emulator.agentToken,
    CHRONOS_DATA_DIR: dataDir,
    ...extra,
  };
}

/** Every fire answered by the bench itself, never by the emulator's own deliveries. */
export async function quietEmulator() {
  const { startEmulator } = await importDist('emulator.js');
  const emulator = await startEmulator();
  emulator.faults.dropDeliveries = Number.MAX_SAFE_INTEGER;
  return emulator;
}

/**
 * The reference for cold start and memory: bench/baselines/fastify-minimal.mjs bundled into `outdir` with the
 * production build's esbuild options. Returns the bundle's path.
 */
export async function bundleFastifyBaseline(outdir) {
  const outfile = join(outdir, 'fastify-minimal.mjs');
  await build({
    ...bundleOptions,
    entryPoints: [fileURLToPath(new URL('../baselines/fastify-minimal.mjs', import.meta.url))],
    outfile,
    sourcemap: false,
  });
  return outfile;
}
