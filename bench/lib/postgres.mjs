// PostgreSQL for the benchmarks: the tests' own harness (test/helpers/postgres.ts: Debian's server binaries,
// initdb into a temporary directory, loopback port, removed afterwards) and the PostgresStore, both compiled
// from source with esbuild on first use, so the benchmarks and the tests start the same server the same way.
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { RESULTS } from './common.mjs';

const ROOT = new URL('../../', import.meta.url);

let compiled;
/** { startPostgres, PostgresStore, claimOccurrence, currentOwner } built from src/ and test/helpers/. */
export function postgresModules() {
  compiled ??= compile(ROOT, '.pg/');
  return compiled;
}

const compiledElsewhere = new Map();
/**
 * The PostgresStore of another checkout's src/ (`root`: its directory), e.g. main's, as a same-run baseline.
 * Compiled into this tree's results, so that it resolves `postgres` from this tree's node_modules.
 */
export function postgresStoreOf(root) {
  const key = new URL(root.endsWith('/') ? root : `${root}/`, `file://${process.cwd()}/`);
  if (!compiledElsewhere.has(key.href))
    compiledElsewhere.set(key.href, compile(key, `.pg-compare-${compiledElsewhere.size}/`));
  return compiledElsewhere.get(key.href).then((modules) => modules.PostgresStore);
}

function compile(root, outName) {
  return (async () => {
    const { build } = await import('esbuild');
    // Inside the repository, so the compiled files resolve `postgres` from its node_modules.
    const out = new URL(outName, RESULTS);
    await mkdir(out, { recursive: true });
    const entries = {
      harness: fileURLToPath(new URL('test/helpers/postgres.ts', root)),
      store: fileURLToPath(new URL('src/store/postgres/postgres-store.ts', root)),
    };
    await build({
      entryPoints: entries,
      outdir: fileURLToPath(out),
      outExtension: { '.js': '.mjs' },
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      logLevel: 'error',
    });
    const [harness, store] = await Promise.all([
      import(new URL('harness.mjs', out).href),
      import(new URL('store.mjs', out).href),
    ]);
    return { startPostgres: harness.startPostgres, PostgresStore: store.PostgresStore };
  })();
}

let server;
/**
 * One PostgreSQL server per benchmark, stopped and removed by its `close()` or at exit. `npm run bench`
 * runs the benchmarks in one process: after a `close()` the next call starts a new server.
 */
export function benchPostgres() {
  server ??= (async () => {
    const { startPostgres } = await postgresModules();
    const pg = await startPostgres({ label: 'bench' });
    const stopAtExit = () => void pg.destroy();
    process.once('beforeExit', stopAtExit);
    let count = 0;
    return {
      server: pg,
      /** A new empty database; returns its URL. */
      async database(prefix) {
        count += 1;
        return pg.createDatabase(`${prefix}_${process.pid}_${count}`);
      },
      async close() {
        server = undefined;
        process.off('beforeExit', stopAtExit);
        await pg.destroy();
      },
    };
  })();
  return server;
}
