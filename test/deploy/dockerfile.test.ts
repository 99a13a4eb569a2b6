import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config/config.js';
import {
  type DockerStage,
  execForm,
  lastInstruction,
  REPO_ROOT,
  readDockerfile,
  SECRET_NAME,
  stageEnv,
} from './deploy-files.js';

const dockerfile = readDockerfile();
const runtime = dockerfile.stages.at(-1) as DockerStage;
const runtimeEnv = stageEnv(runtime);
/** Node's own settings the image may set beside Chronos's configuration. */
/** The runtime's own settings: Node's, and glibc malloc's (docs/performance.md, "Memory"). */
const NODE_SETTINGS = new Set(['NODE_ENV', 'NODE_COMPILE_CACHE', 'MALLOC_ARENA_MAX']);

describe('Dockerfile: stages', () => {
  it('is multi-stage, and both stages use the NODE_IMAGE build argument (default node:24-slim)', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    // The tag, or the tag pinned to a full digest: never a digest that is not one.
    const nodeImage = dockerfile.globalArgs.find((a) => a.startsWith('NODE_IMAGE='));
    expect(nodeImage).toMatch(/^NODE_IMAGE=node:24-slim(@sha256:[0-9a-f]{64})?$/);
    for (const stage of dockerfile.stages) expect(stage.image).toBe(`\${NODE_IMAGE}`);
  });

  it('says how to pin the base image by digest', () => {
    expect(dockerfile.text).toContain('--build-arg NODE_IMAGE=node:24-slim@sha256:<digest>');
  });

  it('builds with npm ci and the production build in the build stage', () => {
    const build = dockerfile.stages[0] as DockerStage;
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args.join(' '));
    expect(runs.some((r) => r.startsWith('npm ci'))).toBe(true);
    expect(runs.some((r) => r.startsWith('npm run build'))).toBe(true);
  });

  it('leaves the source maps out of what the runtime stage copies', () => {
    const build = dockerfile.stages[0] as DockerStage;
    const buildRun = build.instructions.find((i) => i.keyword === 'RUN' && i.raw.includes('npm run build'));
    expect(buildRun?.raw).toMatch(/npm run build && find dist -name '\*\.map' -delete/);
  });

  it('generates the compile cache in the build stage and ships it where NODE_COMPILE_CACHE points', () => {
    const build = dockerfile.stages[0] as DockerStage;
    const warm = build.instructions.find((i) => i.keyword === 'RUN' && i.raw.includes('NODE_COMPILE_CACHE='));
    // Started as CMD starts it, with the same node flags: a cache written under other V8 flags may be refused.
    const cmd = execForm(lastInstruction(runtime, 'CMD')!) ?? [];
    expect(warm?.raw).toContain(cmd.join(' '));
    const workdir = lastInstruction(runtime, 'WORKDIR')?.args[0];
    const cacheDir = runtimeEnv['NODE_COMPILE_CACHE'];
    expect(cacheDir).toBe(`${workdir}/.cache`);
    expect(warm?.raw).toContain(`NODE_COMPILE_CACHE=${cacheDir}`);
    const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args.join(' '));
    expect(copies).toContain(`--from=${dockerfile.stages[0]?.name} ${cacheDir} ./.cache`);
  });

  it('generates the compile cache as the runtime user, and leaves it readable once copied as root’s', () => {
    // Node keeps the cache in a subdirectory named after the writer's uid: a cache written by root is
    // never looked up by the runtime user (npm run test:image checks the real image reads it).
    const build = dockerfile.stages[0] as DockerStage;
    const warmAt = build.instructions.findIndex(
      (i) => i.keyword === 'RUN' && i.raw.includes('NODE_COMPILE_CACHE='),
    );
    const userAtWarm = build.instructions
      .slice(0, warmAt)
      .filter((i) => i.keyword === 'USER')
      .at(-1)?.args[0];
    expect(userAtWarm).toBe(lastInstruction(runtime, 'USER')?.args[0]);
    const cacheDir = runtimeEnv['NODE_COMPILE_CACHE'];
    const chown = build.instructions.findIndex(
      (i) => i.keyword === 'RUN' && i.raw.includes(`chown ${userAtWarm}:${userAtWarm} ${cacheDir}`),
    );
    expect(chown).toBeGreaterThanOrEqual(0);
    expect(chown).toBeLessThan(warmAt);
    // Node writes its cache files mode 0600; COPY --from gives them to root.
    expect(build.instructions[warmAt]?.raw).toMatch(new RegExp(`chmod -R a\\+rX ${cacheDir}\\s*$`));
    const cacheCopy = runtime.instructions.find((i) => i.keyword === 'COPY' && i.args.includes(cacheDir!));
    expect(cacheCopy?.args.some((a) => a.startsWith('--chown'))).toBe(false);
  });

  it('runtime stage copies the build output and installs no npm package', () => {
    const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args.join(' '));
    expect(copies.every((c) => c.startsWith('--from='))).toBe(true);
    expect(copies.some((c) => / \.\/dist$/.test(c))).toBe(true);
    expect(copies.some((c) => / \.\/package\.json$/.test(c))).toBe(true);
    // The bundle carries every runtime dependency (the container simulation starts it without node_modules).
    const runs = runtime.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.raw);
    expect(runs.filter((r) => /\bnpm\b/.test(r))).toEqual([]);
  });
});

describe('Dockerfile: runtime stage', () => {
  it('runs as a non-root user', () => {
    const user = lastInstruction(runtime, 'USER')?.args[0];
    expect(user).toBeDefined();
    expect(['root', '0'].includes(String(user).split(':')[0] ?? '')).toBe(false);
  });

  it('sets production mode, binds every interface, and stores data in the volume', () => {
    expect(runtimeEnv['NODE_ENV']).toBe('production');
    expect(runtimeEnv['HOST']).toBe('0.0.0.0');
    expect(runtimeEnv['PORT']).toBe('8080');
    expect(runtimeEnv['CHRONOS_DATA_DIR']).toBe('/data');
    const volumes = runtime.instructions
      .filter((i) => i.keyword === 'VOLUME')
      .flatMap((i) => execForm(i) ?? i.args);
    expect(volumes).toContain('/data');
    expect(lastInstruction(runtime, 'EXPOSE')?.args).toContain('8080');
  });

  it('gives the runtime user the data directory before declaring it a volume', () => {
    const user = lastInstruction(runtime, 'USER')?.args[0];
    const index = (pred: (raw: string, keyword: string) => boolean) =>
      runtime.instructions.findIndex((i) => pred(i.raw, i.keyword));
    const chown = index((raw, k) => k === 'RUN' && raw.includes(`chown ${user}:${user} /data`));
    const volume = index((_raw, k) => k === 'VOLUME');
    expect(chown).toBeGreaterThanOrEqual(0);
    expect(chown).toBeLessThan(volume);
  });

  it('sets only configuration variables loadConfig reads, or the runtime’s own settings', () => {
    const known = new Set<string>([...CONFIG_VARIABLES, ...NODE_SETTINGS]);
    const names = runtime.instructions.flatMap((i) => (i.env ?? []).map(([name]) => name));
    expect(names.filter((name) => !known.has(name))).toEqual([]);
  });

  it('bakes no secret into ENV or ARG, and no extra CA bundle', () => {
    for (const stage of dockerfile.stages) {
      const names = stage.instructions.flatMap((i) =>
        i.keyword === 'ENV' ? (i.env ?? []).map(([name]) => name) : i.keyword === 'ARG' ? i.args : [],
      );
      expect(names.filter((name) => SECRET_NAME.test(name))).toEqual([]);
    }
    expect(runtimeEnv).not.toHaveProperty('NODE_EXTRA_CA_CERTS');
  });

  it('starts the built server with an exec-form CMD under tini, which reaps orphans and passes signals on', () => {
    const cmd = lastInstruction(runtime, 'CMD');
    const argv = cmd ? execForm(cmd) : null;
    expect(argv?.[0]).toBe('node');
    expect(argv?.at(-1)).toBe('dist/serve.js');
    const entrypoint = execForm(lastInstruction(runtime, 'ENTRYPOINT')!);
    // -s: still the reaper of the server's orphans when tini is not PID 1 (docker run --init, a platform init).
    expect(entrypoint).toEqual(['/usr/bin/tini', '-s', '--']);
    const userAt = runtime.instructions.findIndex((i) => i.keyword === 'USER');
    const install = runtime.instructions.findIndex(
      (i) => i.keyword === 'RUN' && /apt-get install .*\btini\b/.test(i.raw),
    );
    expect(install).toBeGreaterThanOrEqual(0);
    expect(install).toBeLessThan(userAt);
    // The package lists are not left in the layer.
    expect(runtime.instructions[install]?.raw).toContain('rm -rf /var/lib/apt/lists/*');
  });

  it('carries OCI labels, its version the package’s', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Record<string, string>;
    const args = Object.fromEntries(
      runtime.instructions
        .filter((i) => i.keyword === 'ARG')
        .flatMap((i) => i.args)
        .map((a) => [a.split('=')[0], a.includes('=') ? a.slice(a.indexOf('=') + 1) : undefined]),
    );
    expect(args['VERSION']).toBe(pkg['version']);
    // Re-declared without a value, so the label records the image the build actually used.
    expect(args).toHaveProperty('NODE_IMAGE', undefined);
    const labels = Object.fromEntries(runtime.instructions.flatMap((i) => i.labels ?? []));
    expect(labels).toMatchObject({
      'org.opencontainers.image.title': pkg['name'],
      'org.opencontainers.image.description': pkg['description'],
      'org.opencontainers.image.version': `\${VERSION}`,
      'org.opencontainers.image.licenses': pkg['license'],
      'org.opencontainers.image.base.name': `\${NODE_IMAGE}`,
    });
  });

  it('CMD points at a file the production build produces', () => {
    // Read statically (this is a unit test, dist/ may not be built): the build script names the entry and
    // its source exists. test/deploy/container.e2e.test.ts starts the built file itself.
    const argv = execForm(lastInstruction(runtime, 'CMD')!) ?? [];
    const entry = (argv.at(-1) ?? '').replace(/^dist\//, '').replace(/\.js$/, '');
    const buildScript = readFileSync(join(REPO_ROOT, 'scripts/build.mjs'), 'utf8');
    const source = new RegExp(`\\b${entry}: '(src/[^']+)'`).exec(buildScript)?.[1];
    expect(source, `scripts/build.mjs has no entry '${entry}'`).toBeDefined();
    expect(existsSync(join(REPO_ROOT, source ?? 'missing'))).toBe(true);
  });

  it('has a HEALTHCHECK that asks /healthz with Node’s own fetch on $PORT', () => {
    const healthcheck = lastInstruction(runtime, 'HEALTHCHECK');
    expect(healthcheck).toBeDefined();
    const argv = execForm(healthcheck!, true);
    expect(argv?.slice(0, 2)).toEqual(['node', '-e']);
    expect(argv?.[2]).toContain('fetch(');
    expect(argv?.[2]).toContain('process.env.PORT');
    expect(argv?.[2]).toContain('/healthz');
  });
});

describe('.dockerignore', () => {
  const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));

  it('keeps dependencies, build output, tests, local data and secrets out of the build context', () => {
    for (const pattern of [
      'node_modules',
      'dist',
      'test',
      'bench',
      '.chronos-data',
      '.env',
      '.env.*',
      '*.pem',
      '*.key',
      '.git',
    ]) {
      expect(ignored, pattern).toContain(pattern);
    }
  });

  it('does not exclude what the build stage copies', () => {
    const build = dockerfile.stages[0] as DockerStage;
    const sources = build.instructions
      .filter((i) => i.keyword === 'COPY' && !i.args.some((a) => a.startsWith('--from=')))
      .flatMap((i) => i.args.slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      expect(ignored, source).not.toContain(source);
      expect(existsSync(join(REPO_ROOT, source)), source).toBe(true);
    }
  });
});

describe('.env.example beside the image', () => {
  const example = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8');
  const active = Object.fromEntries(
    [...example.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]),
  );

  it('leaves uncommented nothing that would undo what the image sets, if given to it as an env file', () => {
    const imageConfig = Object.entries(runtimeEnv).filter(([name]) =>
      (CONFIG_VARIABLES as readonly string[]).includes(name),
    );
    expect(imageConfig.length).toBeGreaterThan(0);
    for (const [name, value] of imageConfig) if (name in active) expect(active[name], name).toBe(value);
  });

  it('reads the same under `docker run --env-file` as under `node --env-file`: bare values only', () => {
    for (const [name, value] of Object.entries(active)) {
      expect(value, name).not.toMatch(/^["']|\s#|^\s|\s$/);
    }
  });
});
