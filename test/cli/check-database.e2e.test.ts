import { describe, expect, it } from 'vitest';
import { PostgresStore } from '../../src/store/postgres/postgres-store.js';
import { freshDatabase } from '../helpers/pg-test.js';
import { adminQuery } from '../helpers/postgres.js';
import { runCli } from '../helpers/run-cli.js';

describe('chronos check with CHRONOS_DATABASE_URL', () => {
  it('reports an empty database, a current one, and refuses a newer one', async () => {
    const url = await freshDatabase('check');
    const env = { CHRONOS_DATABASE_URL: url };
    const empty = await runCli(['check'], { env });
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain('database: no Chronos tables yet; they are created (version 3) at start');

    await (await PostgresStore.open({ url })).close();
    const current = await runCli(['check', '--json'], { env });
    expect(current.code).toBe(0);
    expect(JSON.parse(current.stdout)).toMatchObject({
      database: { state: 'current', database: 3, code: 3 },
      errors: [],
    });

    await adminQuery(url, 'UPDATE chronos_schema SET version = 2');
    expect((await runCli(['check'], { env })).stdout).toContain(
      'database: schema version 2; migrated to version 3 at the next start',
    );

    await adminQuery(url, 'UPDATE chronos_schema SET version = 9');
    const newer = await runCli(['check'], { env });
    expect(newer.code).toBe(1);
    expect(newer.stderr).toMatch(
      /database: the database's Chronos schema is version 9, newer than this Chronos/,
    );
  });

  it('reports a database it cannot reach', async () => {
    const result = await runCli(['check'], {
      env: { CHRONOS_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/database: cannot read the schema version: /);
  });
});
