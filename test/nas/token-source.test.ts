import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChronosError } from '../../src/errors.js';
import { checkTokenSourceSync, createTokenSource } from '../../src/nas/token-source.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chronos-token-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<ChronosError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ChronosError);
  return err as ChronosError;
}

describe('createTokenSource', () => {
  it('returns an inline token trimmed, for get and refresh alike', async () => {
    const source = createTokenSource({ token: '  abc \n' });
    expect(await source.get()).toBe('abc');
    expect(await source.refresh()).toBe('abc');
  });

  it('reads a token file at first use, trims it and caches it', async () => {
    const file = join(dir, 'token');
    const source = createTokenSource({ file });
    // Created lazily: the file may appear after the source is built.
    await writeFile(file, 'first-token\n');
    expect(await source.get()).toBe('first-token');
    await writeFile(file, 'second-token\n');
    expect(await source.get()).toBe('first-token');
  });

  it('re-reads the file on refresh (rotation) and serves the new token afterwards', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'old');
    const source = createTokenSource({ file });
    expect(await source.get()).toBe('old');
    await writeFile(file, 'new\n');
    expect(await source.refresh()).toBe('new');
    expect(await source.get()).toBe('new');
  });

  it('prefers the file over an inline token', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'from-file');
    expect(await createTokenSource({ token: 'inline', file }).get()).toBe('from-file');
  });

  it('fails with invalid_config naming a missing file', async () => {
    const file = join(dir, 'absent');
    const err = await rejection(createTokenSource({ file }).get());
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain(file);
    expect(err.message).toContain('does not exist');
  });

  it('fails with invalid_config naming an empty file', async () => {
    const file = join(dir, 'token');
    await writeFile(file, '  \n');
    const err = await rejection(createTokenSource({ file }).get());
    expect(err.code).toBe('invalid_config');
    expect(err.message).toContain(file);
    expect(err.message).toContain('empty');
  });

  it('keeps serving the cached token when a refresh fails', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'kept');
    const source = createTokenSource({ file });
    expect(await source.get()).toBe('kept');
    await rm(file);
    expect((await rejection(source.refresh())).code).toBe('invalid_config');
    expect(await source.get()).toBe('kept');
  });

  it('fails with invalid_config when nothing is configured', async () => {
    expect((await rejection(createTokenSource({}).get())).code).toBe('invalid_config');
    expect((await rejection(createTokenSource({ token: ' ' }).get())).code).toBe('invalid_config');
  });
});

describe('checkTokenSourceSync', () => {
  it('accepts a readable non-empty file and an inline token', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'tok');
    expect(checkTokenSourceSync({ file })).toBeNull();
    expect(checkTokenSourceSync({ token: 'tok' })).toBeNull();
  });

  it('says why the source is unusable', async () => {
    const empty = join(dir, 'empty');
    await writeFile(empty, '\n');
    const folder = join(dir, 'folder');
    await mkdir(folder);
    expect(checkTokenSourceSync({})).toMatch(/no access token configured/);
    expect(checkTokenSourceSync({ token: '' })).toMatch(/empty/);
    expect(checkTokenSourceSync({ file: join(dir, 'absent') })).toMatch(/absent does not exist/);
    expect(checkTokenSourceSync({ file: empty })).toMatch(/empty is empty/);
    expect(checkTokenSourceSync({ file: folder })).toMatch(/is a directory/);
  });

  it.skipIf(process.getuid?.() === 0)('reports an unreadable file', async () => {
    const file = join(dir, 'locked');
    await writeFile(file, 'tok');
    await chmod(file, 0o000);
    expect(checkTokenSourceSync({ file })).toMatch(/not readable/);
  });
});
