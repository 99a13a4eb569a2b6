import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../../helpers/pg-test.js';
import { adminQuery, type PostgresServer, startPostgres } from '../../helpers/postgres.js';

describe('PostgreSQL test harness', () => {
  it('gives each caller a new empty database on the shared server', async () => {
    const a = await freshDatabase();
    const b = await freshDatabase();
    expect(a).not.toBe(b);
    await adminQuery(a, 'CREATE TABLE t (x int)');
    expect(await adminQuery(b, "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 't'")).toEqual([
      { n: 0 },
    ]);
    const [settings] = (await adminQuery(a, 'SHOW fsync')) as { fsync: string }[];
    expect(settings?.fsync).toBe('on');
  });

  describe('a private server, stopped and started', () => {
    let server: PostgresServer;
    beforeAll(async () => {
      server = await startPostgres({ label: 'harness' });
    });
    afterAll(async () => {
      await server.destroy();
    });

    it('keeps its data across a stop and start, and refuses connections while stopped', async () => {
      const url = await server.createDatabase('kept');
      await adminQuery(url, 'CREATE TABLE t (x int); INSERT INTO t VALUES (7)');
      await server.stop();
      await expect(adminQuery(url, 'SELECT 1')).rejects.toThrow();
      await server.start();
      expect(await adminQuery(url, 'SELECT x FROM t')).toEqual([{ x: 7 }]);
    });
  });
});
