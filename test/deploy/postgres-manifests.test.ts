import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CONFIG_VARIABLES } from '../../src/config/config.js';
import { loadConfig } from '../../src/config/load.js';
import { HEALTH_PATH } from '../../src/http/server.js';
import { REPO_ROOT, readDockerfile, readFlyToml, SECRET_NAME, stageEnv, type Toml } from './deploy-files.js';

/*
 * The deployment files for PostgreSQL (docs/deploy-postgres.md): the Knative and Cloud Run services under
 * deploy/, and fly.postgres.toml. They must parse, name only variables loadConfig reads, keep secrets out
 * of the file, and make a valid configuration once the secrets exist.
 */

const known = new Set<string>(CONFIG_VARIABLES);
const dockerEnv = stageEnv(readDockerfile().stages.at(-1)!);
const scratch = mkdtempSync(join(tmpdir(), 'chronos-manifests-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  image: string;
  env: EnvVar[];
  ports?: Array<{ containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface KnativeService {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    template: {
      metadata: { annotations: Record<string, string> };
      spec: {
        containers: Container[];
        volumes?: Array<{ name: string; secret?: { secretName: string } }>;
      };
    };
  };
}

function readService(file: string): KnativeService {
  return parseYaml(readFileSync(join(REPO_ROOT, file), 'utf8')) as KnativeService;
}

/** Secret contents a deployment would mount, for loadConfig to read. */
const SECRET_FILES: Record<string, string> = {
  CHRONOS_DATABASE_URL_FILE: 'postgres://chronos:secret@db.example.com:5432/chronos?sslmode=verify-full',
  CHRONOS_ACCESS_TOKEN_FILE: 'agent-access-token',
  CHRONOS_ADMIN_TOKEN_FILE: 'an-admin-token-of-32-characters!',
};

/** The container's environment, with each *_FILE path replaced by a scratch file holding a plausible secret. */
function configEnv(container: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env) {
    const content = SECRET_FILES[variable.name];
    if (content === undefined) {
      env[variable.name] = variable.value ?? '';
      continue;
    }
    const file = join(scratch, variable.name);
    writeFileSync(file, `${content}\n`);
    env[variable.name] = file;
  }
  return env;
}

/** The annotation value under either spelling (`min-scale`, or Cloud Run's `minScale`). */
function annotation(annotations: Record<string, string>, kebab: string): string | undefined {
  const camel = kebab.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
  return annotations[`autoscaling.knative.dev/${kebab}`] ?? annotations[`autoscaling.knative.dev/${camel}`];
}

for (const file of ['deploy/knative-service.yaml', 'deploy/cloud-run-service.yaml']) {
  describe(`${file}: a Knative Service on PostgreSQL`, () => {
    const service = readService(file);
    const template = service.spec.template;
    const container = template.spec.containers[0]!;
    const env = new Map(container.env.map((v) => [v.name, v.value]));

    it('is a serving.knative.dev/v1 Service with one container on the port the image listens on', () => {
      expect(service.apiVersion).toBe('serving.knative.dev/v1');
      expect(service.kind).toBe('Service');
      expect(template.spec.containers).toHaveLength(1);
      expect(container.ports?.[0]?.containerPort).toBe(Number(dockerEnv['PORT'] ?? 8080));
    });

    it('sets only variables loadConfig reads, each once', () => {
      const names = container.env.map((v) => v.name);
      expect(names.filter((name) => !known.has(name))).toEqual([]);
      expect(new Set(names).size).toBe(names.length);
    });

    it('keeps secrets out of the file: the database URL and tokens come from mounted secret files', () => {
      for (const variable of container.env) {
        if (SECRET_NAME.test(variable.name) || variable.name.startsWith('CHRONOS_DATABASE_URL'))
          expect(variable.name, `${variable.name} must be a *_FILE variable`).toMatch(/_FILE$/);
        expect(variable.value ?? '').not.toMatch(/^postgres(ql)?:\/\//);
      }
      const secretVolumes = new Set(
        (template.spec.volumes ?? []).filter((v) => v.secret !== undefined).map((v) => v.name),
      );
      const secretMounts = (container.volumeMounts ?? []).filter((m) => secretVolumes.has(m.name));
      for (const name of Object.keys(SECRET_FILES)) {
        const path = env.get(name);
        expect(path, `${name} is set`).toBeTypeOf('string');
        expect(
          secretMounts.some((m) => path!.startsWith(`${m.mountPath}/`)),
          `${name}=${path} lies in a mounted secret volume`,
        ).toBe(true);
      }
    });

    it('scales to zero and to two replicas, with the platform (not idle exit) stopping them', () => {
      expect(annotation(template.metadata.annotations, 'min-scale')).toBe('0');
      expect(Number(annotation(template.metadata.annotations, 'max-scale'))).toBeGreaterThanOrEqual(2);
      expect(env.get('CHRONOS_IDLE_EXIT_SECONDS')).toBe('0');
      expect(env.get('CHRONOS_PROVIDER')).toBe('chronos');
    });

    it('is a valid configuration on PostgreSQL once the secrets are mounted', () => {
      const config = loadConfig({ ...dockerEnv, ...configEnv(container) });
      expect(config.provider).toBe('chronos');
      expect(config.host).toBe('0.0.0.0');
      expect(config.idleExitSeconds).toBe(0);
      expect(config.adminToken).toBe(SECRET_FILES['CHRONOS_ADMIN_TOKEN_FILE']);
      expect(JSON.stringify(config)).toContain('db.example.com');
    });
  });
}

describe('deploy/cloud-run-service.yaml: what Cloud Run needs on top', () => {
  const service = readService('deploy/cloud-run-service.yaml');
  const annotations = service.spec.template.metadata.annotations;
  const env = new Map(service.spec.template.spec.containers[0]!.env.map((v) => [v.name, v.value]));

  it('keeps the CPU allocated after the reply (the run and the next arm happen after the 202)', () => {
    expect(annotations['run.googleapis.com/cpu-throttling']).toBe('false');
  });

  it('drains within the 10 s Cloud Run leaves between SIGTERM and the kill', () => {
    expect(Number(env.get('CHRONOS_SHUTDOWN_GRACE_SECONDS'))).toBeLessThan(10);
  });
});

describe('fly.postgres.toml: two Machines on a managed PostgreSQL', () => {
  const fly = readFlyToml(`${REPO_ROOT}fly.postgres.toml`);
  const single = readFlyToml();
  const env = fly['env'] as Record<string, string>;
  const http = fly['http_service'] as Toml;

  it('has no volume: the ledger is in the database', () => {
    expect(fly['mounts']).toBeUndefined();
  });

  it('sets only variables loadConfig reads, and no secret (the database URL is a Fly secret)', () => {
    expect(Object.keys(env).filter((name) => !known.has(name))).toEqual([]);
    expect(Object.keys(env).filter((name) => SECRET_NAME.test(name))).toEqual([]);
    expect(Object.keys(env).filter((name) => name.startsWith('CHRONOS_DATABASE_URL'))).toEqual([]);
  });

  it('keeps the single-Machine file’s scale-to-zero settings', () => {
    const singleHttp = single['http_service'] as Toml;
    for (const key of ['auto_stop_machines', 'auto_start_machines', 'min_machines_running', 'internal_port'])
      expect(http[key], key).toEqual(singleHttp[key]);
    expect(fly['kill_signal']).toBe(single['kill_signal']);
    expect(fly['kill_timeout']).toEqual(single['kill_timeout']);
    expect(fly['restart']).toEqual(single['restart']);
    const checks = http['checks'] as Toml[];
    expect(checks[0]?.['path']).toBe(HEALTH_PATH);
  });

  it('is a valid PostgreSQL configuration once the secrets are added', () => {
    const config = loadConfig({
      ...dockerEnv,
      ...env,
      CHRONOS_ACCESS_TOKEN: 'set-with-fly-secrets',
      CHRONOS_DATABASE_URL: 'postgres://chronos:secret@db.example.com:5432/chronos?sslmode=verify-full',
    });
    expect(config.provider).toBe('chronos');
    expect(config.idleExitSeconds).toBeGreaterThan(0);
    expect(config.callbackUrl).toBe(`https://${fly['app']}.fly.dev`);
    expect(JSON.stringify(config)).toContain('db.example.com');
  });
});
